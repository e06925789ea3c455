"""The turn processor's Faust app, as configured (no broker needed)."""

from __future__ import annotations

from pathlib import Path

from streams.app import make_processor
from streams.turns.settings import TurnSettings


def test_the_changelog_is_not_taken_for_a_stalled_stream(tmp_path: Path) -> None:
    # Faust's livelock check reports every acked topic that no stream processes as stalled, at ERROR, every few
    # minutes: the table's changelog is read only to recover the table, so it must not be acked (as Faust's own
    # changelogs are not).
    processor = make_processor(TurnSettings(data_dir=tmp_path))
    assert processor.table.changelog_topic.acks is False
    # The sources are: their offsets are committed as their events are processed.
    assert processor.app.agents["turns"].channel.acks is True
