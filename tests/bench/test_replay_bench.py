"""bench/replay.py runs (on two sessions: the rate itself is measured by running it, not here)."""

from __future__ import annotations

from bench.replay import main


def test_the_replay_benchmark_runs(capsys) -> None:
    assert main(["--sessions", "2", "--turns", "2", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 sessions" in out and "recorded events/s" in out
