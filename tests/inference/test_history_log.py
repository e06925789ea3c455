"""The conversation history survives its responder: a real responder process answers two turns (the second one
barged into), is killed with SIGKILL, and another process answers the third turn with the first two in its LLM
request, the barged-in reply cut to what was heard. The LLM is the local OpenAI-protocol server, which records
every request."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import pytest

from bench.reference_server import OpenAiProtocolServer, serving
from inference.text import heard_text
from schemas.history import ConversationHistory, HeardTurn, SpokenSentence
from schemas.topics import HISTORY, TURNS
from tests.inference.kafka_helpers import NODE, Producer, Turns, ended, watching
from tests.inference.workers import REPLY_TOPIC, Worker, running_responder, start_workers, stop_workers

pytestmark = pytest.mark.integration

REPLY = ("Once upon a time there was a lighthouse keeper who counted the ships that passed each night. "
         "One winter a storm came in from the sea and the light went out for an hour. "
         "The keeper climbed the stairs with a lantern and held it up until the morning came.")
PLAYED_MS = 4000  # of the second reply, before the person cut in (it is about fifteen seconds long)


def chats(server: OpenAiProtocolServer) -> list[list[dict[str, str]]]:
    return [body["messages"] for path, body in server.requests if path.endswith("/chat/completions")]


def spoken(events, turn_id: str) -> list[tuple[str, float, bool]]:
    """The reply's sentences as the edge got them: each sentence's text rides on its first chunk."""
    out: list[tuple[str, float, bool]] = []
    for e in events:
        if e.type == "reply_audio_chunk" and e.turn_id == turn_id:
            if e.text:
                out.append((e.text, 0.0, True))
            text, ms, done = out[-1]
            out[-1] = (text, ms + len(e.pcm) / 32, done)
    return out


async def assigned(worker: Worker, count: int) -> None:
    async with asyncio.timeout(60):
        while worker.partitions() != count:
            assert worker.proc.returncode is None, "".join(worker.lines)
            worker.changed.clear()
            await worker.changed.wait()


async def test_a_responder_that_takes_a_session_over_answers_with_its_history_as_heard(topics):
    await topics.create_all((NODE,))
    server = OpenAiProtocolServer()
    server.behaviour.reply_text = REPLY
    group = f"responder-{uuid.uuid4().hex[:8]}"
    turns = Turns()
    t1, t2, t3 = (f"{turns.session_id}-{n}" for n in (1, 2, 3))
    workers: list[Worker] = []
    async with serving(server):
        env = {"VOICEBUS_LLM_ENGINE": "openai", "VOICEBUS_LLM_OPENAI_URL": server.url,
               "VOICEBUS_RESPONDER_MAX_LEAD_MS": "0"}
        try:
            (first,) = await start_workers(topics, group, 1, **env)
            workers.append(first)
            await assigned(first, 8)
            async with Producer(topics) as producer, watching(topics, REPLY_TOPIC) as edge:
                await producer.send(TURNS.name, turns.committed(t1, "hello there"))
                await edge.until(ended(t1), timeout=30)
                await producer.send(TURNS.name, turns.ended(t1, "completed"))
                await producer.send(TURNS.name, turns.committed(t2, "tell me a story"))
                await edge.until(ended(t2), timeout=30)
                # The person talks over the second reply: the turn processor's barge-in, then words came.
                await producer.send(TURNS.name, turns.barge_in(t2, PLAYED_MS), turns.cancelled(t2, "barge_in"),
                                    turns.ended(t2, "interrupted"))
                await edge.until(lambda ev: any(e.type == "reply_cancelled" and e.turn_id == t2 for e in ev))
                second = spoken(edge.events, t2)
                first.proc.send_signal(signal.SIGKILL)
                await first.proc.wait()
                (other,) = await start_workers(topics, group, 1, **env)
                workers.append(other)
                await producer.send(TURNS.name, turns.committed(t3, "and then what happened"))
                async with asyncio.timeout(60):
                    while not any(c[-1]["content"] == "and then what happened" for c in chats(server)):
                        assert other.proc.returncode is None, "".join(other.lines)
                        server.changed.clear()
                        await server.changed.wait()
        finally:
            await stop_workers(workers)

    heard = heard_text(second, PLAYED_MS)
    assert heard.endswith("...") and len(heard) < len(REPLY) / 2 and REPLY.startswith(heard[:-3]), heard
    (request,) = [c for c in chats(server) if c[-1]["content"] == "and then what happened"]
    assert [(m["role"], m["content"]) for m in request if m["role"] != "system"] == [
        ("user", "hello there"), ("assistant", REPLY),
        ("user", "tell me a story"), ("assistant", heard),
        ("user", "and then what happened"),
    ]


async def test_a_responder_rebuilds_its_sessions_from_the_log_and_does_not_answer_an_answered_turn_again(topics):
    """What the other responder left on voice.history, read at assignment: the third turn is answered with it,
    the second (read again: its offset was not committed) is not answered twice, and the history goes on."""
    turns = Turns()
    t1, t2, t3 = (f"{turns.session_id}-{n}" for n in (1, 2, 3))
    left = ConversationHistory(session_id=turns.session_id, seq=5, media_ns=0, wall_ns=time.time_ns(), turns=(
        HeardTurn(turn_id=t1, user_text="hello there", answered=True,
                  sentences=(SpokenSentence(text="Hi, how can I help?", ms=1500.0, complete=True),)),
        HeardTurn(turn_id=t2, user_text="tell me a story", answered=True, played_ms=1000, sentences=(
            SpokenSentence(text="Once upon a time there was a keeper.", ms=2000.0, complete=True),
            SpokenSentence(text="He counted ships.", ms=1000.0, complete=True))),
    ))
    server = OpenAiProtocolServer()
    server.behaviour.reply_text = "And so it ended."
    await topics.create_all((NODE,))
    async with Producer(topics) as producer:
        await producer.send(HISTORY.name, left)
    async with serving(server), running_responder(topics, llm_engine="openai", llm_openai_url=server.url,
                                                   responder_max_lead_ms=0) as (_, producer, edge), \
            watching(topics, HISTORY.name) as history:
        await producer.send(TURNS.name, turns.committed(t2, "tell me a story"),
                            turns.committed(t3, "and then what happened"))
        await edge.until(ended(t3), timeout=30)
        await history.until(lambda ev: any(t3 in [t.turn_id for t in e.turns] for e in ev))
    assert [e.turn_id for e in edge.events if e.type == "reply_ended"] == [t3]  # t2 not answered again
    (request,) = chats(server)
    assert [(m["role"], m["content"]) for m in request if m["role"] != "system"] == [
        ("user", "hello there"), ("assistant", "Hi, how can I help?"),
        ("user", "tell me a story"), ("assistant", "Once upon a time..."),
        ("user", "and then what happened"),
    ]
    latest = history.events[-1]
    assert [(t.turn_id, t.answered) for t in latest.turns] == [(t1, True), (t2, True), (t3, True)]
    assert latest.turns[:2] == left.turns and latest.turns[2].sentences[0].text == "And so it ended."
