"""A conversation through every real part: WebRTC edge, Kafka, turn processor, ASR, responder, telemetry, chDB."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from bench.simulate import Script, converse
from bench.utterances import Utterance
from streams.telemetry.backend import open_backend
from streams.telemetry.queries import WATERFALL
from streams.telemetry.settings import TelemetrySettings
from tests.conftest import SPEECH
from tests.e2e.conftest import Platform, wait_healthy

pytestmark = pytest.mark.e2e

GO_FORWARD = SPEECH / "misc" / "goforward.wav"


async def turns_in_clickhouse(session_id: str, expected: int, timeout: float = 30.0) -> list[dict]:
    backend = open_backend(TelemetrySettings())
    async with asyncio.timeout(timeout):
        while True:
            rows = (await asyncio.to_thread(backend.run, "session_turns", {"session_ids": [session_id]})).records()
            complete = [r for r in rows if r["voice_to_voice_ms"] is not None]
            if len(complete) >= expected:
                return complete
            await asyncio.sleep(0.3)  # the sink writes in batches; poll, bounded by the timeout


async def test_each_utterance_is_answered_and_every_turn_lands_in_clickhouse(platform: Platform) -> None:
    script = Script([GO_FORWARD], turns=2, pause_s=0.5, reply_timeout_s=30.0, barge_in_every=0)
    heard: list[Utterance] = await converse(platform.url, "", script, 0, lambda u: None)

    assert [u.answered for u in heard] == [True, True], [u.note for u in heard]
    for u in heard:
        # The reply was paired by the speech span the edge announced with it: that span is where the client
        # put the utterance (microphone frame x 20 ms), and the reply was heard after the speech ended.
        assert u.turns == [u.answer_turn] and u.answer_span_ms is not None, u
        assert abs(u.answer_span_ms[0] - u.speech_start_ms) <= 200 and abs(u.answer_span_ms[1] - u.speech_end_ms) <= 300
        assert u.reply_onset is not None and u.reply_onset > u.speech_end_at
    assert heard[0].answer_turn != heard[1].answer_turn
    rows = await turns_in_clickhouse(heard[0].session_id, expected=2)
    assert len(rows) == 2
    assert {r["turn_id"] for r in rows} == {u.answer_turn for u in heard}  # the client's turns, by turn id
    for row in rows:
        offsets = [row[f"{stage}_offset_ms"] for stage in WATERFALL]
        assert all(o is not None for o in offsets), row
        # Causality across three services' clocks: the decision chain and the model chain each run in order
        # and meet at the edge. (The models may start before the commit: speculation.)
        for chain in (("vad_end", "turn_committed", "reply_first_at_edge", "reply_first_sent"),
                      ("llm_first_token", "tts_first_audio", "reply_first_at_edge")):
            times = [row[f"{stage}_offset_ms"] for stage in chain]
            assert times == sorted(times), (chain, row)
        # The waterfall ends at voice-to-voice, and what endpointing and the models do not explain (the
        # platform's overhead) is a real, non-negative remainder: stamps from three services agree.
        assert row["reply_first_sent_offset_ms"] == pytest.approx(row["voice_to_voice_ms"], abs=0.01)
        assert row["endpointing_ms"] > 0 and row["platform_overhead_ms"] >= 0


async def test_a_service_that_dies_is_restarted(platform: Platform) -> None:
    before = platform.pid("ingest")
    os.kill(before, signal.SIGKILL)
    async with asyncio.timeout(30):
        while True:
            child = next(c for c in platform.children if c.name == "ingest")
            if child.proc is not None and child.proc.pid != before and child.proc.returncode is None:
                break
            await asyncio.sleep(0.1)  # waiting for the supervisor's restart, bounded
    await wait_healthy(platform.url, 30)
