"""Faults during a conversation of two callers, on one platform run the way `voicebus up` runs it (bench.chaos):
SIGKILL the turn processor, the responder, the ASR worker, the telemetry sink; stop the broker for 15 s.

Each time: no committed turn lost (answered, or ended with a reason), no reply heard twice, every committed turn
in ClickHouse, and the platform recovers without a restart of `up` (every service runs again and each caller's
last utterance is answered). The faults x outcomes table goes to test-artifacts/chaos.md and the output.
Then the edge itself is killed under a caller: `voicebus simulate`'s caller ends (bounded), keeping what it said.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from bench.chaos import FAULTS, run_chaos, write_table
from bench.running import Platform
from bench.simulate import SPEECH, CallerFailed, Script, converse
from bench.utterances import Utterance

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]


async def a_caller_outlives_its_edge(p: Platform) -> None:
    """The edge dies mid-conversation: the caller does not hang; it fails saying why, with what it heard."""
    script = Script([SPEECH / "misc" / "goforward.wav"], turns=4, pause_s=0.5, reply_timeout_s=15.0,
                    barge_in_every=0, stall_s=5.0)
    heard: list[Utterance] = []
    caller = asyncio.create_task(converse(p.url, "", script, 0, lambda u: None, heard))
    async with asyncio.timeout(60):
        while not heard:
            await asyncio.sleep(0.1)  # the first utterance is said (bounded)
    os.kill(p.services()["ingest"], signal.SIGKILL)
    t0 = time.monotonic()
    async with asyncio.timeout(120):  # every wait of the caller is bounded: it ends well within this
        result = await asyncio.gather(caller, return_exceptions=True)
    print(f"caller ended {time.monotonic() - t0:.1f} s after its edge was killed: {result[0]!r}")
    assert isinstance(result[0], CallerFailed | list), result
    assert heard and heard[0].speech_end_at > 0  # what it said before the edge died is kept


@pytest.mark.timeout(900)  # five faults of about a minute each, the broker's restart, the platform's start
async def test_no_turn_is_lost_under_faults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = await run_chaos(tmp_path / "chaos", then=a_caller_outlives_its_edge)
    table = write_table(outcomes)
    with capsys.disabled():
        print("\n" + table)
    assert [o.fault for o in outcomes] == list(FAULTS)
    for o in outcomes:
        assert o.committed > 0, o  # the conversation went on around the fault
        assert o.lost == 0, o  # every committed turn was answered or ended with a reason
        assert o.twice == 0, o  # no reply heard twice
        assert o.in_clickhouse == o.committed, o  # every turn in ClickHouse (one row per turn id)
        assert o.recovered, o  # every service back, the last utterances answered, `up` never restarted
