"""A speculative reply released while it is still being made: what it made while held goes out first, in order,
and nothing it makes during the release (more audio, its end) overtakes it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

from inference.engines.base import LlmEngine, Message
from inference.history import Exchange
from inference.reply import ReplyJob
from schemas.base import Stamper
from schemas.conversation import TurnSpeculative
from tests.inference.fakes import Tone

SID = "0123456789abcdef0123456789abcdef"


class Words(LlmEngine):
    name = "words"

    async def stream(self, messages: Sequence[Message]) -> AsyncGenerator[str, None]:
        for word in "One. Two. Three. Four. Five. Six.".split():
            yield word + " "


async def test_a_released_reply_keeps_its_order() -> None:
    sent: list[object] = []

    async def send(event: object) -> None:
        sent.append(event)
        for _ in range(20):  # a slow broker: the loop runs the job's own task meanwhile
            await asyncio.sleep(0)

    turn = TurnSpeculative(**Stamper(SID)(0), turn_id="t1", node_id="edge-1", text="count",
                           speech_start_media_ns=0, speech_end_media_ns=0)
    progress = asyncio.Event()
    job = ReplyJob(turn, [], Words(), Tone(), send=send, envelope=Stamper(SID), chunk_ms=200, max_lead_ms=2000,
                   held=True, on_progress=progress.set)
    task = job.start()
    async with asyncio.timeout(10):
        while job.work.audio_ms < 1000:  # part of the reply made, held back
            progress.clear()
            await progress.wait()
    assert sent == []
    await job.release(Exchange("t1", "count"))
    await task
    chunks = [e.index for e in sent if e.type == "reply_audio_chunk"]  # type: ignore[attr-defined]
    assert chunks == list(range(len(chunks))) and len(chunks) >= 10
    assert sent[-1].type == "reply_ended"  # type: ignore[attr-defined]


async def test_the_edge_learns_the_stages_before_the_first_chunk_it_may_play() -> None:
    """Held: the commit's time is known only at the release, which sends the stages ahead of the held chunks."""
    sent: list[object] = []

    async def send(event: object) -> None:
        sent.append(event)

    turn = TurnSpeculative(**Stamper(SID)(0), turn_id="t1", node_id="edge-1", text="count",
                           speech_start_media_ns=0, speech_end_media_ns=0)
    progress = asyncio.Event()
    job = ReplyJob(turn, [], Words(), Tone(), send=send, envelope=Stamper(SID), chunk_ms=200, max_lead_ms=600,
                   held=True, on_progress=progress.set)
    task = job.start()
    async with asyncio.timeout(10):
        while job.chunks < 2:
            progress.clear()
            await progress.wait()
    await job.release(Exchange("t1", "count"), committed_wall_ns=123)
    await task
    types = [e.type for e in sent]  # type: ignore[attr-defined]
    assert types.count("reply_stages") == 1 and types.index("reply_stages") < types.index("reply_audio_chunk")
    stages = next(e for e in sent if e.type == "reply_stages").stages  # type: ignore[attr-defined]
    stamped = {e.stage: e.stage_wall_ns for e in sent if e.type == "stage_stamped"}  # type: ignore[attr-defined]
    assert stages == {**stamped, "turn_committed": 123} and set(stamped) == {"llm_first_token", "tts_first_audio"}
