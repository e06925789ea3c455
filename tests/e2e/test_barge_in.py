"""Barge-in end to end: the person talks over a long reply; it stops at the client, the conversation history
keeps only what was heard, and the next turn is answered.

The responder talks to a real OpenAI-protocol chat server (tests/inference/openai_server.py) that records every
request, so the history the responder sends for the next turn can be read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ingest.client import Clip, EdgeClient, load_speech
from tests.conftest import SPEECH
from tests.e2e.conftest import Platform
from tests.inference.openai_server import OpenAiProtocolServer, serving

pytestmark = pytest.mark.e2e

LONG_REPLY = ("Once upon a time there was a lighthouse keeper who counted the ships that passed each night. "
              "One winter a storm came in from the sea and the light went out for an hour. "
              "The keeper climbed the stairs with a lantern and held it up until the morning came. "
              "Every ship came home safely, and the village remembered that night for many years.")


SPEECH_ONSET_S = 0.5  # where the speech in goforward.wav begins


@pytest.fixture
async def chat_server() -> AsyncIterator[OpenAiProtocolServer]:
    server = OpenAiProtocolServer()
    server.behaviour.reply_text = LONG_REPLY
    async with serving(server):
        yield server


@pytest.fixture
def platform_env(chat_server: OpenAiProtocolServer) -> dict[str, str]:
    return {"VOICEBUS_LLM_ENGINE": "openai", "VOICEBUS_LLM_OPENAI_URL": chat_server.url}


def chats(server: OpenAiProtocolServer) -> list[list[dict[str, str]]]:
    return [body["messages"] for path, body in server.requests if path.endswith("/chat/completions")]


async def test_talking_over_a_reply_stops_it_and_history_keeps_what_was_heard(
        platform: Platform, chat_server: OpenAiProtocolServer) -> None:
    client = EdgeClient(platform.url)
    await client.connect()
    hearing, mic = client.hearing, client.mic
    utterance = Clip.of(load_speech(SPEECH / "misc" / "goforward.wav"))
    try:
        await mic.say(utterance)
        await hearing.wait_for(lambda: hearing.first_loud() is not None, timeout=30)
        onset = hearing.first_loud()
        assert onset is not None
        # Let about two seconds of the (about twenty second) reply play, then talk over it.
        await hearing.wait_for(lambda: len(hearing.loud) > onset + 100, timeout=10)
        first_frame, _ = await mic.say(utterance)
        interrupt_at = mic.capture_times[first_frame]
        # The reply stops at the client while the person is still talking (speech starts 0.5 s into the clip;
        # how fast it stops is measured by the benchmark, not asserted here) ...
        quiet_from = interrupt_at + SPEECH_ONSET_S + 0.5
        speech_end = interrupt_at + len(utterance.frames) * 0.02
        await hearing.wait_for(lambda: hearing.arrivals[-1] > speech_end, timeout=10)
        during = [loud for t, loud in zip(hearing.arrivals, hearing.loud, strict=True)
                  if quiet_from <= t <= speech_end]
        assert during and not any(during), "the agent kept talking over the person"
        # ... and the next turn is answered.
        after = len(hearing.loud)
        await hearing.wait_for(lambda: hearing.first_loud(after) is not None, timeout=30)
    finally:
        await client.close()

    async with asyncio.timeout(5):  # the second request came before its reply was heard: normally at once
        while len(chats(chat_server)) < 2:
            chat_server.changed.clear()
            await chat_server.changed.wait()
    second = chats(chat_server)[-1]
    assistant = [m["content"] for m in second if m["role"] == "assistant"]
    assert len(assistant) == 1, second
    heard = assistant[0]
    assert heard and len(heard) < len(LONG_REPLY) / 2, heard
    assert LONG_REPLY.startswith(heard.rstrip(".… ").rstrip()), heard
