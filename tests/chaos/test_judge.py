"""How bench.chaos judges a fault's outcome from what was recorded (pure)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace as E

import pytest

from bench.chaos import judge, render
from bench.utterances import Utterance


def committed(turn: str) -> E:
    return E(type="turn_committed", turn_id=turn)


def utt(answered: bool) -> Utterance:
    u = Utterance("s" * 32, 0, "a.wav", 0, 0, 1000, 1.0)
    u.reply_onset = 2.0 if answered else None
    return u


@pytest.mark.parametrize("events, started, ch, expect", [
    # every committed turn heard once, all in ClickHouse
    ([committed("a"), committed("b")], {"a": 1, "b": 1}, {"a", "b"}, dict(answered=2, lost=0, twice=0, ok=True)),
    # a turn committed twice (a restarted processor) is one turn
    ([committed("a"), committed("a")], {"a": 1}, {"a"}, dict(committed=1, lost=0, ok=True)),
    # not heard but cancelled with a reason: reported, not lost
    ([committed("a"), E(type="turn_cancelled", turn_id="a", reason="barge_in")], {}, {"a"},
     dict(reported=1, lost=0, reasons="barge_in 1", ok=True)),
    ([committed("a"), E(type="turn_ended", turn_id="a", outcome="interrupted")], {}, {"a"},
     dict(reported=1, lost=0, ok=True)),
    ([committed("a"), E(type="reply_cancelled", turn_id="a")], {}, {"a"}, dict(reported=1, lost=0, ok=True)),
    # a completed end is no reason: neither heard nor reported is lost
    ([committed("a"), E(type="turn_ended", turn_id="a", outcome="completed")], {}, {"a"},
     dict(lost=1, ok=False)),
    # heard twice
    ([committed("a")], {"a": 2}, {"a"}, dict(twice=1, ok=False)),
    # missing in ClickHouse
    ([committed("a"), committed("b")], {"a": 1, "b": 1}, {"a"}, dict(in_clickhouse=1, ok=False)),
    # a cancelled turn that was never committed is not counted
    ([E(type="turn_cancelled", turn_id="x", reason="asr_timeout")], {}, set(), dict(committed=0, ok=False)),
])
def test_judge(events, started, ch, expect):
    o = judge("f", events, Counter(started), ch, [utt(True)], True, True)
    got = {k: (o.ok if k == "ok" else getattr(o, k)) for k in expect}
    assert got == expect
    assert "| f |" in render([o])


def test_not_recovered_when_the_last_utterance_is_unanswered_or_a_service_is_missing():
    events, started = [committed("a")], Counter({"a": 1})
    assert not judge("f", events, started, {"a"}, [], False, True).ok
    assert not judge("f", events, started, {"a"}, [], True, False).ok
