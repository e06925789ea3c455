"""The LLM contract, run against every implementation (embedded rules; a chat-completions server over SSE)."""

from __future__ import annotations

from inference.engines.base import Message


async def reply(engine, *turns: str) -> tuple[str, list[str]]:
    """The reply to the last of ``turns`` (alternating user / assistant, starting with user)."""
    roles = ["user", "assistant"]
    messages = [Message("system", "Be brief.")] + [Message(roles[i % 2], t) for i, t in enumerate(turns)]  # type: ignore[arg-type]
    tokens = [token async for token in engine.stream(messages)]
    return "".join(tokens), tokens


async def test_streams_a_reply_in_pieces(llm_engine):
    text, tokens = await reply(llm_engine, "Hello there")
    assert len(tokens) > 3 and all(tokens)
    assert text.strip() and text == "".join(tokens)


async def test_answers_from_the_conversation_history(llm_engine):
    text, _ = await reply(llm_engine, "my name is alice", "Nice to meet you.", "what is my name")
    assert "Alice" in text
    text, _ = await reply(llm_engine, "what is my name")
    assert "Alice" not in text


async def test_closing_the_stream_early_stops_it_and_the_engine_stays_usable(llm_engine):
    stream = llm_engine.stream([Message("user", "tell me a story")])
    first = await anext(stream)
    assert first
    await stream.aclose()
    text, _ = await reply(llm_engine, "what is seven times six")
    assert "42" in text
