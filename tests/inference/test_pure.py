"""Pure parts of the inference workers: text cutting, what was heard, offsets, history, the rules, audio."""

from __future__ import annotations

import numpy as np
import pytest

from inference.engines.base import Message
from inference.engines.rules_llm import arithmetic, reply_to
from inference.history import History, Spoken
from inference.offsets import OffsetTracker
from inference.text import SentenceSplitter, heard_text
from runtime.pcm import Resampler, read_wav, resample, wav_bytes
from schemas.history import ConversationHistory
from schemas.topics import HISTORY


def split(tokens: list[str]) -> list[str]:
    s = SentenceSplitter()
    out = [piece for t in tokens for piece in s.push(t)]
    return out + s.flush()


@pytest.mark.parametrize("text, pieces", [
    ("Hello there. How are you?", ["Hello there.", "How are you?"]),
    ("It costs 3.5 dollars. Okay!", ["It costs 3.5 dollars.", "Okay!"]),
    ("Once upon a time, a robot lived by the sea.", ["Once upon a time,", "a robot lived by the sea."]),
    ("Yes, sure.", ["Yes, sure."]),  # a first clause shorter than 12 characters stays
    ("Wait... what?", ["Wait...", "what?"]),
    ('He said "go." Then left.', ['He said "go."', "Then left."]),
    ("no punctuation at all", ["no punctuation at all"]),
    ("", []),
])
def test_sentences(text, pieces):
    assert split(text.split(" ")[:1] + [" " + w for w in text.split(" ")[1:]] if text else []) == pieces
    assert split(list(text)) == pieces  # the same whatever the token boundaries


def test_long_text_without_stops_is_cut_at_a_space():
    pieces = split(["word " * 100])
    assert all(len(p) <= 200 for p in pieces) and " ".join(pieces) == ("word " * 100).strip()


S = [("Hello there.", 1000.0, True), ("How are you doing today?", 2000.0, True)]


@pytest.mark.parametrize("sentences, played, heard", [
    (S, None, "Hello there. How are you doing today?"),
    (S, 5000, "Hello there. How are you doing today..."),  # all played, still cut in at the end
    (S, 1000, "Hello there..."),
    (S, 2000, "Hello there. How are..."),  # half of the second sentence: 2 of its 5 words
    (S, 500, "Hello..."),
    (S, 0, ""),
    ([("Hello there.", 1000.0, True), ("A sentence still being made.", 500.0, False)], 1500,
     "Hello there. A..."),  # its length is estimated from the pace of the first: 2.3 s, not 0.5 s
    ([], 800, ""),
])
def test_heard_text(sentences, played, heard):
    assert heard_text(sentences, played) == heard


@pytest.mark.parametrize("ops, committable", [
    ([("c", 0), ("c", 1), ("c", 2)], 3),
    ([("c", 0), ("h", 1), ("c", 1), ("c", 2)], 1),  # 1 is being answered: a crash re-reads from it
    ([("c", 0), ("h", 1), ("c", 1), ("c", 2), ("r", 1)], 3),
    ([("h", 1), ("h", 1), ("c", 1), ("r", 1)], 1),  # held twice (speculative, then committed)
    ([("h", 4), ("c", 4), ("h", 6), ("c", 6), ("r", 6)], 4),
])
def test_offsets(ops, committable):
    t: OffsetTracker[str] = OffsetTracker()
    for op, offset in ops:
        {"c": t.consumed, "h": t.hold, "r": t.release}[op]("p", offset)
    assert t.committable() == {"p": committable}
    t.committed(t.committable())
    assert t.committable() == {}
    t.forget(["p"])
    assert t.committable() == {}


def test_history_keeps_what_was_heard_and_is_bounded():
    h = History(max_turns=2, max_sessions=2)
    ex = h.add("s1", "t1", "tell me a story")
    ex.sentences += [Spoken("Once upon a time.", 1000, True), Spoken("The end.", 800, True)]
    assert h.heard("s1", "t1", 1200) and not h.heard("s1", "nope", 5)
    assert [m.content for m in h.messages("s1", "sys", "next")] == ["sys", "tell me a story", "Once upon a time...",
                                                                    "next"]
    h.add("s1", "t2", "a")
    h.add("s1", "t3", "b")  # t1 falls out: two turns kept
    assert [m.content for m in h.messages("s1", "", "c")] == ["a", "b", "c"]
    h.add("s2", "t4", "x")
    h.add("s3", "t5", "y")  # s1 is the least recently used session: forgotten
    assert h.messages("s1", "", "c") == [Message("user", "c")]
    h.drop("s3")
    assert h.messages("s3", "", "c") == [Message("user", "c")]


def test_history_round_trips_through_its_record_and_a_turn_answered_again_replaces_itself():
    h = History(max_turns=5, max_sessions=5)
    h.add("s1", "t1", "hello").sentences += [Spoken("Hi there.", 700, True)]
    h.add("s1", "t2", "tell me a story").sentences += [Spoken("Once upon a time.", 1000, True),
                                                       Spoken("The end came", 300, False)]
    h.heard("s1", "t2", 1100)
    record = ConversationHistory(session_id="0" * 32, seq=0, media_ns=0, wall_ns=0, turns=h.snapshot("s1"))
    other = History(max_turns=5, max_sessions=5)
    other.restore("s1", HISTORY.codec.decode(HISTORY.codec.encode(record)).turns)
    assert other.messages("s1", "", "and then") == h.messages("s1", "", "and then")
    assert [m.content for m in other.messages("s1", "", "and then")] == [
        "hello", "Hi there.", "tell me a story", "Once upon a time...", "and then"]
    # The new owner answers t2 again (its offset was not committed): t2 leaves its own request, and its new
    # reply takes its place.
    assert [m.content for m in other.messages("s1", "", "tell me a story", "t2")] == [
        "hello", "Hi there.", "tell me a story"]
    other.add("s1", "t2", "tell me a story").sentences += [Spoken("A story.", 500, True)]
    assert [t.turn_id for t in other.snapshot("s1")] == ["t1", "t2"]
    assert other.snapshot("s1")[1].played_ms is None and other.resumed("s1", "t1")
    other.clear()
    assert not other.knows("s1") and other.snapshot("s1") == ()


@pytest.mark.parametrize("text, answer", [
    ("what is seven times six", "7 times 6 is 42."),
    ("what is forty two divided by six", "42 divided by 6 is 7."),
    ("twenty minus fifty five", "20 minus 55 is -35."),
    ("eight over three", "8 over 3 is 2.67."),
    ("what is 3 plus 4", "3 plus 4 is 7."),
    ("what is five divided by zero", "Dividing by zero is not something even I can do. Try another number?"),
    ("what is the plus side", None),
])
def test_arithmetic(text, answer):
    assert arithmetic(text) == answer


@pytest.mark.parametrize("said, starts", [
    ("hello there", "Hello!"),
    ("go forward ten meters", "Okay, going forward ten meters."),
    ("what is the capital of france", "That's a good question"),
    ("I like trains", "I heard you say: I like trains."),
    ("", "Sorry, I didn't catch that."),
    ("thank you", "You're welcome!"),
])
def test_rules_replies(said, starts):
    assert reply_to([Message("user", said)]).startswith(starts)


def test_rules_need_a_user_message():
    with pytest.raises(ValueError):
        reply_to([Message("system", "hi")])


def test_resampling_keeps_duration_and_wav_round_trips():
    tone = (np.sin(np.arange(22050) / 22050 * 2 * np.pi * 440) * 8000).astype("<i2").tobytes()
    r = Resampler(22050, 16000)
    pieces = [r.push(tone[i:i + 1001]) for i in range(0, len(tone), 1001)]  # odd sizes split samples
    assert len(b"".join(pieces) + r.flush()) == 32000
    assert resample(tone, 16000, 16000) == tone
    samples, rate = read_wav(wav_bytes(tone, 22050))
    assert (samples.tobytes(), rate) == (tone, 22050)
    with pytest.raises(ValueError):
        read_wav(b"RIFF nonsense")
