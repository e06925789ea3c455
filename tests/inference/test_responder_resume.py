"""A barge-in pauses a reply instead of stopping it; a false interruption resumes it, a real one or the window's
end cancels it. The responder on the real broker, with fakes of the engine ABCs (a gated LLM, a tone TTS)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

import pytest

from inference.engines.base import LlmEngine, Message
from schemas.conversation import BargeIn, FalseInterruption
from schemas.topics import TURNS
from tests.inference.fakes import Tone
from tests.inference.kafka_helpers import Turns, ended
from tests.inference.workers import running_responder

pytestmark = pytest.mark.integration

FIRST, SECOND = "The first part of the story.", "The second part of the story."


class Gated(LlmEngine):
    """Says the first sentence, then the second once ``more`` is set."""

    name = "gated"

    def __init__(self) -> None:
        self.more = asyncio.Event()

    async def stream(self, messages: Sequence[Message]) -> AsyncGenerator[str, None]:
        yield FIRST + " "
        await self.more.wait()
        yield SECOND


def chunks(events, turn_id):
    return [e for e in events if e.type == "reply_audio_chunk" and e.turn_id == turn_id]


def judged(turns: Turns, kind: type, turn_id: str, played_ms: int):
    return kind(turn_id=turn_id, played_ms=played_ms, **turns._base())


async def test_a_barge_in_keeps_the_reply_and_a_false_interruption_resumes_it(topics):
    turns, llm = Turns(), Gated()
    async with running_responder(topics, llm=llm, tts=Tone(), responder_max_lead_ms=0) as (responder, producer,
                                                                                            edge):
        await producer.send(TURNS.name, turns.committed("t1", "tell me a story"))
        await edge.until(lambda ev: len(chunks(ev, "t1")) >= 3)  # the first sentence
        await producer.send(TURNS.name, judged(turns, BargeIn, "t1", 300))
        await responder.wait_for(lambda r: "t1" in r._paused, 10)
        heard = responder._history.messages(turns.session_id, "", "next")[1].content
        assert heard.startswith("The first") and heard != FIRST  # truncated at 300 ms while paused
        llm.more.set()  # generation goes on while the edge holds the reply paused
        await edge.until(ended("t1"))
        await producer.send(TURNS.name, judged(turns, FalseInterruption, "t1", 300))
        events = await edge.until(lambda ev: any(e.type == "reply_resumed" for e in ev))
        messages = responder._history.messages(turns.session_id, "", "next")
    types = [e.type for e in events if e.turn_id == "t1"]
    # Finished generating before the false interruption came: the edge may still hold the rest, so it is told.
    assert types[-3:] == ["reply_text", "reply_ended", "reply_resumed"] and "reply_cancelled" not in types
    assert len(chunks(events, "t1")) == 6
    assert messages[1].content == f"{FIRST} {SECOND}"  # heard to the end again
    assert (responder.stats.resumed, responder.stats.cancelled, responder.stats.completed) == (1, 0, 1)


async def test_a_barge_in_not_judged_in_time_cancels_the_reply_and_a_late_resume_is_not_sent(topics):
    turns, llm = Turns(), Gated()
    async with running_responder(topics, llm=llm, tts=Tone(), responder_max_lead_ms=0,
                                 reply_resume_window_ms=300) as (responder, producer, edge):
        await producer.send(TURNS.name, turns.committed("t1", "tell me a story"))
        await edge.until(lambda ev: len(chunks(ev, "t1")) >= 3)
        await producer.send(TURNS.name, judged(turns, BargeIn, "t1", 300))
        await edge.until(lambda ev: any(e.type == "reply_cancelled" for e in ev), timeout=10)
        await producer.send(TURNS.name, judged(turns, FalseInterruption, "t1", 300))  # too late
        llm.more.set()
        await producer.send(TURNS.name, turns.committed("t2", "hello"))  # same session: its reply comes after
        events = await edge.until(ended("t2"))
    assert [e.type for e in events if e.turn_id == "t1"][-1] == "reply_cancelled"
    assert "reply_resumed" not in [e.type for e in events]
    assert (responder.stats.resumed, responder.stats.cancelled) == (0, 1)


async def test_words_after_a_barge_in_cancel_the_paused_reply(topics):
    turns, llm = Turns(), Gated()
    async with running_responder(topics, llm=llm, tts=Tone(), responder_max_lead_ms=0) as (responder, producer,
                                                                                            edge):
        await producer.send(TURNS.name, turns.committed("t1", "tell me a story"))
        await edge.until(lambda ev: len(chunks(ev, "t1")) >= 3)
        await producer.send(TURNS.name, judged(turns, BargeIn, "t1", 300), turns.cancelled("t1", "barge_in"))
        events = await edge.until(lambda ev: any(e.type == "reply_cancelled" for e in ev))
        assert not responder._paused
        heard = responder._history.messages(turns.session_id, "", "next")[1].content
    assert heard.startswith("The first") and heard != FIRST
    assert [e.type for e in events if e.turn_id == "t1"][-1] == "reply_cancelled"
    assert responder.stats.cancelled == 1
