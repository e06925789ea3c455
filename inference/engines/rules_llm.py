"""Embedded LLM: a small deterministic conversational responder, enough for a demo and for tests.

It greets, remembers the person's name, does small arithmetic ("what is seven times six"), tells a story (a
long reply, handy for barge-in), follows simple movement commands, and otherwise reflects what it heard and asks
back. Same conversation in, same words out: tests and redelivered turns get identical replies.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Sequence

from inference.engines.base import LlmEngine, Message

UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
NUMBER_WORDS = {w: i for i, w in enumerate(UNITS)} | {w: 20 + 10 * i for i, w in enumerate(TENS)}
OPERATORS = {"plus": "+", "add": "+", "minus": "-", "times": "*", "multiplied": "*", "divided": "/", "over": "/"}

STORY = (
    "Once upon a time, a small robot lived in a lighthouse by the sea. "
    "Every night it counted the ships that passed, and every morning it wrote their names in a notebook. "
    "One stormy evening the great lamp went dark, and the robot climbed the long spiral stair to fix it. "
    "Its hands were cold and the wind was loud, but it found the loose wire and joined it again. "
    "The light swept across the waves, and far away a fishing boat turned safely toward the harbour. "
    "The next morning the fishermen left a basket of shells at the door, and the robot kept them all. "
    "Would you like to hear another one?"
)

RULES: tuple[tuple[str, str], ...] = (
    (r"\b(good ?bye|bye|see you)\b", "Goodbye! It was nice talking with you."),
    (r"\b(thanks|thank you)\b", "You're welcome! Is there anything else I can do for you?"),
    (r"\bhow are you\b", "I'm doing well, thank you for asking. How are you today?"),
    (r"\b(what is|what's) your name\b|\bwho are you\b",
     "I'm the voicebus demo agent, a small rule-based responder running on this machine. What's your name?"),
    (r"\b(what can you do|help me|help)\b",
     ("I can chat a little, remember your name, do simple arithmetic, and tell you a story. "
      "What would you like to try?")),
    (r"\bstory\b", STORY),
    (r"\b(weather|temperature)\b",
     "I can't see outside from here, so I don't know the weather. Is it nice where you are?"),
    (r"\b(time|date|day is it)\b", "I don't have a clock I can trust, I'm afraid. Is something coming up soon?"),
    (r"^(hello|hi|hey|good (morning|afternoon|evening))\b",
     "Hello! I'm the voicebus demo agent. How can I help you today?"),
)
QUESTION_START = re.compile(r"^(what|why|how|who|when|where|which|is|are|can|could|do|does|did|will|would|should)\b")


def _number(words: list[str]) -> int | None:
    """'forty two' -> 42, '7' -> 7; None if the words are not a number below one hundred."""
    if len(words) == 1 and words[0].isdigit():
        return int(words[0])
    values = [NUMBER_WORDS.get(w) for w in words]
    if not values or any(v is None for v in values):
        return None
    if len(values) == 1:
        return values[0]
    if len(values) == 2 and values[0] >= 20 and values[1] < 10:  # type: ignore[operator]
        return values[0] + values[1]  # type: ignore[operator]
    return None


def _first_number(words: list[str], from_end: bool) -> int | None:
    """The two-word number in ``words`` if they make one, else the single word next to the operator."""
    if len(words) == 2 and (both := _number(words)) is not None:
        return both
    return _number(words[-1:] if from_end else words[:1])


def _spell(value: float) -> str:
    if value != int(value):
        return f"{value:.2f}".rstrip("0")
    return str(int(value))


def arithmetic(text: str) -> str | None:
    """The answer to 'what is A <op> B' with A, B spoken or written numbers, else None."""
    words = re.sub(r"[^a-z0-9 ]", " ", text.lower()).split()
    for i, word in enumerate(words):
        if word not in OPERATORS:
            continue
        op = OPERATORS[word]
        right_start = i + 1 + (1 if i + 1 < len(words) and words[i + 1] in ("by", "to") else 0)
        left = _first_number(words[max(0, i - 2):i], from_end=True)
        right = _first_number(words[right_start:right_start + 2], from_end=False)
        if left is None or right is None:
            continue
        if op == "/" and right == 0:
            return "Dividing by zero is not something even I can do. Try another number?"
        result = {"+": left + right, "-": left - right, "*": left * right, "/": left / right if right else 0}[op]
        spoken = " ".join(words[i:right_start])  # the operator as said: "times", "divided by"
        return f"{left} {spoken} {right} is {_spell(result)}."
    return None


def _name_from(messages: Sequence[Message]) -> str | None:
    for message in reversed(messages):
        if message.role == "user" and (m := re.search(r"\bmy name is (\w+)", message.content.lower())):
            return m.group(1).capitalize()
    return None


def reply_to(messages: Sequence[Message]) -> str:
    """The whole reply to the last user message of the conversation."""
    users = [m for m in messages if m.role == "user"]
    if not users:
        raise ValueError("the conversation has no user message to answer")
    text = " ".join(users[-1].content.split())
    lower = text.lower().rstrip(".?!")
    if not lower:
        return "Sorry, I didn't catch that. Could you say it again?"
    if m := re.search(r"\bmy name is (\w+)", lower):
        return f"Nice to meet you, {m.group(1).capitalize()}. What would you like to talk about?"
    if re.search(r"\bwhat is my name\b|\bwhat's my name\b|\bdo you know my name\b", lower):
        name = _name_from(messages[:-1])
        return f"Your name is {name}." if name else "You haven't told me your name yet. What is it?"
    if answer := arithmetic(lower):
        return answer
    if m := re.match(r"^(go|move|turn|drive|walk)\b(.*)$", lower):
        verb = {"go": "going", "move": "moving", "turn": "turning", "drive": "driving", "walk": "walking"}
        return f"Okay, {verb[m.group(1)]}{m.group(2)}. Tell me when to stop."
    for pattern, answer in RULES:
        if re.search(pattern, lower):
            return answer
    if QUESTION_START.search(lower) or text.endswith("?"):
        return (f"That's a good question: {lower}? I'm a small demo model, so I can't look that up. "
                "What made you curious about it?")
    return f"I heard you say: {text.rstrip('.?!')}. Can you tell me more about that?"


class RulesLlm(LlmEngine):
    name = "embedded-rules"

    async def stream(self, messages: Sequence[Message]) -> AsyncGenerator[str, None]:
        words = reply_to(messages).split(" ")
        for i, word in enumerate(words):
            yield word if i == len(words) - 1 else word + " "
            await asyncio.sleep(0)  # a token boundary is a cancellation point, as with a real model
