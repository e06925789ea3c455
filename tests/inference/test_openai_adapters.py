"""The OpenAI-compatible adapters against a local server that speaks the protocol: retries, errors, SSE."""

from __future__ import annotations

import asyncio

import pytest

from bench.reference_server import Fault
from inference.engines.base import EngineError, Message
from inference.engines.openai_compat import OpenAiAsr, OpenAiLlm, OpenAiTts
from inference.engines.openai_http import Endpoint
from tests.conftest import free_port
from tests.inference.conftest import endpoint
from tests.inference.recordings import load

HELLO = [Message("user", "hello")]
HELLO_REPLY = "Hello! I'm the voicebus demo agent. How can I help you today?"


async def chat(llm: OpenAiLlm, messages=HELLO) -> str:
    return "".join([t async for t in llm.stream(messages)])


@pytest.fixture
async def llm(openai_server):
    engine = OpenAiLlm(endpoint(openai_server))
    yield engine
    await engine.aclose()


def chat_requests(server) -> int:
    return sum(path.endswith("/chat/completions") for path, _ in server.requests)


@pytest.mark.parametrize("faults", [
    [Fault(503)],
    [Fault(500), Fault(502)],
    [Fault(429, retry_after="0")],
    [Fault(408)],
])
async def test_retryable_statuses_are_retried(openai_server, llm, faults):
    openai_server.behaviour.faults = list(faults)
    assert await chat(llm) == HELLO_REPLY
    assert chat_requests(openai_server) == len(faults) + 1


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_are_not_retried(openai_server, llm, status):
    openai_server.behaviour.faults = [Fault(status)]
    with pytest.raises(EngineError, match=str(status)) as raised:
        await chat(llm)
    assert not raised.value.retryable
    assert chat_requests(openai_server) == 1


async def test_retries_give_up_with_a_retryable_error(openai_server, llm):
    openai_server.behaviour.faults = [Fault(503)] * 5
    with pytest.raises(EngineError, match="503") as raised:
        await chat(llm)
    assert raised.value.retryable
    assert chat_requests(openai_server) == 3  # the first try and two retries


async def test_request_carries_model_messages_and_key(openai_server):
    openai_server.behaviour.api_key = "sk-test"
    llm = OpenAiLlm(endpoint(openai_server, "my-model", api_key="sk-test"), temperature=0.2, max_tokens=50)
    try:
        assert await chat(llm, [Message("system", "Be brief."), *HELLO]) == HELLO_REPLY
    finally:
        await llm.aclose()
    _, body = openai_server.requests[-1]
    assert body["model"] == "my-model" and body["stream"] is True and body["max_tokens"] == 50
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]


async def test_wrong_key_is_a_clear_non_retryable_error(openai_server, llm):
    openai_server.behaviour.api_key = "sk-right"
    with pytest.raises(EngineError, match="401") as raised:
        await chat(llm)
    assert not raised.value.retryable


@pytest.mark.parametrize("raw, expected", [
    ((b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"choices":[{"delta":{"content":"b"}}]}\n\n'
      b"data: [DONE]\n\n"), "ab"),
    (b'data: {"choices":[{"delta":{"content":"crlf"}}]}\r\n\r\ndata: [DONE]\r\n\r\n', "crlf"),
    (b': comment\n\nevent: message\ndata: {"choices":[{"delta":{"content":"x"}}]}\n\n', "x"),  # no [DONE]
    (b'data: {"choices":\ndata: [{"delta":{"content":"two lines"}}]}\n\n', "two lines"),
    (b'data:{"choices":[{"delta":{"content":"no space"}}]}\n\n', "no space"),
    (b'data: {"choices":[{"delta":{"content":"tail without blank line"}}]}', "tail without blank line"),
    (b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\ndata: {"choices":[]}\n\n', ""),
])
async def test_server_sent_events_are_parsed(openai_server, llm, raw, expected):
    openai_server.behaviour.raw_sse = raw
    assert await chat(llm) == expected


@pytest.mark.parametrize("raw", [b"data: not json\n\n", b'data: ["a list"]\n\n'])
async def test_malformed_events_are_engine_errors(openai_server, llm, raw):
    openai_server.behaviour.raw_sse = raw
    with pytest.raises(EngineError):
        await chat(llm)


async def test_error_event_mid_stream_raises(openai_server, llm):
    openai_server.behaviour.error_event_after = 3
    with pytest.raises(EngineError, match="model crashed"):
        await chat(llm)


async def test_stream_that_breaks_off_raises_a_retryable_error_without_retrying(openai_server, llm):
    openai_server.behaviour.break_after = 3
    got: list[str] = []
    with pytest.raises(EngineError) as raised:
        async for token in llm.stream(HELLO):
            got.append(token)
    assert raised.value.retryable
    assert got and chat_requests(openai_server) == 1  # output was already used: no silent retry


async def test_stalled_server_times_out(openai_server):
    openai_server.behaviour.stall_s = 1.0
    llm = OpenAiLlm(endpoint(openai_server, timeout_s=0.2, retries=1))
    try:
        with pytest.raises(EngineError) as raised:
            await chat(llm)
        assert raised.value.retryable
    finally:
        await llm.aclose()


async def test_no_server_is_a_retryable_error():
    llm = OpenAiLlm(Endpoint(f"http://127.0.0.1:{free_port()}/v1", "m", timeout_s=1.0, retries=1, backoff_s=0.01))
    try:
        with pytest.raises(EngineError) as raised:
            await chat(llm)
        assert raised.value.retryable
    finally:
        await llm.aclose()


async def test_closing_a_slow_stream_disconnects_from_the_server(openai_server, llm):
    openai_server.behaviour.token_delay_s = 0.05
    stream = llm.stream([Message("user", "tell me a story")])
    assert await anext(stream)
    await stream.aclose()
    async with asyncio.timeout(5):
        while openai_server.disconnects == 0:
            openai_server.changed.clear()
            await openai_server.changed.wait()
    assert openai_server.finished_streams == 0


async def test_transcription_and_speech_retry_too(openai_server, speech_dir):
    asr = OpenAiAsr(endpoint(openai_server, "whisper-1"), language="en")
    tts = OpenAiTts(endpoint(openai_server, "tts-1"))
    try:
        openai_server.behaviour.faults = [Fault(503), Fault(502)]
        stream = await asr.stream(16000)
        await stream.push(load(speech_dir / "misc" / "goforward.wav"))
        assert await stream.finish() == "go forward ten meters"
        path, form = openai_server.requests[-1]
        assert path == "/v1/audio/transcriptions" and form == {"model": "whisper-1", "response_format": "json",
                                                               "language": "en"}
        openai_server.behaviour.faults = [Fault(500)]
        assert [p async for p in tts.stream("Hello.")]
        assert openai_server.requests[-1][1]["voice"] == "alloy"
    finally:
        await asr.aclose()
        await tts.aclose()
