"""The edge's speech / echo / barge-in gate, case by case: each case is a run of frames (what AEC3, the VAD and
the playout report) and what the gate must decide. Levels are PCM16 RMS: 1650 is a person at -26 dBFS."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ingest.gate import EchoMatch, FrameIn, Gate
from ingest.speech import SpeechStart

MS = 1_000_000
NOISE = 30.0  # a microphone's own noise
ECHO_ALONE = EchoMatch(residual=0.5, raw=0.97)  # what an echo alone measured through WebRTC and Opus
ECHO_WEAKLY_MATCHED = EchoMatch(residual=0.44, raw=0.78)  # the weakest match an echo alone gave there
PERSON_OVER_ECHO = EchoMatch(residual=0.2, raw=0.6)  # double talk at equal levels: the reply and a person
PERSON_OVER_QUIET_ECHO = EchoMatch(residual=0.1, raw=0.3)  # the person 12 dB louder than the echo
PERSON_ALONE = EchoMatch(residual=0.05, raw=0.05)


@dataclass(frozen=True)
class Span:
    """``frames`` alike frames."""

    frames: int
    clean_p: float = 0.0
    raw_p: float = 0.0
    raw: float = NOISE
    clean: float = 8.0
    far: float = 0.0
    playing: bool = False
    match: EchoMatch = ECHO_ALONE  # how the microphone matches what was played


def quiet(n: int, playing: bool = False) -> Span:
    return Span(n, playing=playing)


def echo(n: int, level: float, cancelled: bool = True) -> Span:
    """The reply playing and its echo at ``level``: cancelled by AEC3, or passing it (not converged)."""
    return Span(n, clean_p=0.0 if cancelled else 0.95, raw_p=0.98, raw=level, clean=8.0 if cancelled else level * 0.8,
                far=5000.0, playing=True, match=ECHO_ALONE)


def double_talk(n: int, echo_level: float = 1650.0, suppressed: bool = False) -> Span:
    """The person talks over the reply. AEC3 may suppress them (residual near the noise) or let them through."""
    raw = (echo_level ** 2 + 1650.0 ** 2) ** 0.5
    return Span(n, clean_p=0.0 if suppressed else 0.9, raw_p=0.97, raw=raw, clean=8.0 if suppressed else 1500.0,
                far=5000.0, playing=True, match=PERSON_OVER_ECHO if echo_level >= 800 else PERSON_OVER_QUIET_ECHO)


def person(n: int, playing: bool = False, far: float = 0.0) -> Span:
    return Span(n, clean_p=0.95, raw_p=0.95 if playing else 0.0, raw=1650.0, clean=1500.0, far=far, playing=playing,
                match=PERSON_ALONE)


@dataclass
class Run:
    barge_ins: list[int]  # frame numbers
    starts: list[int]  # frames where published speech started
    echo_frames: int


def run(spans: list[Span]) -> Run:
    gate, k, out = Gate(), 0, Run([], [], 0)
    for span in spans:
        for _ in range(span.frames):
            f = FrameIn(k * 20 * MS, k * 20 * MS, span.clean_p, span.raw_p if span.playing else None, span.raw,
                        span.clean, span.far, span.playing)
            result = gate.push(f, lambda: span.match)
            if result.barge_in is not None:
                out.barge_ins.append(k)
            out.starts += [k for d in result.decisions if isinstance(d, SpeechStart)]
            out.echo_frames += result.echo
            k += 1
    return out


CASES: dict[str, tuple[list[Span], bool, bool]] = {
    # name: frames, a barge-in expected, speech published expected
    "echo cancelled, as loud as a person": ([quiet(25), echo(200, 1650.0)], False, False),
    "echo cancelled, 6 dB louder than a person": ([quiet(25), echo(200, 3300.0)], False, False),
    "echo cancelled, 12 dB quieter": ([quiet(25), echo(200, 410.0)], False, False),
    "echo passing an unconverged canceller": ([quiet(25), echo(200, 1650.0, cancelled=False)], False,
                                              False),
    "echo passing the canceller, weakly matched": ([quiet(25), Span(100, 0.95, 0.98, 2574.0, 3111.0, 5000.0, True,
                                                         ECHO_WEAKLY_MATCHED)], False, False),
    "reply out of exact digital silence": ([Span(25, raw=0.0, clean=0.0), echo(5, 40.0), echo(100, 1650.0)], False,
                                           False),
    "person before the reply's first word": ([person(25), double_talk(50)], True, True),
    "person at the reply's first word": ([quiet(25), double_talk(50)], True, True),
    "person 0.4 s into the reply": ([quiet(25), echo(20, 1650.0), double_talk(50)], True, True),
    "person suppressed by AEC3": ([quiet(25), echo(20, 1650.0), double_talk(50, suppressed=True)], False, False),
    "person over an unconverged canceller": ([quiet(25), echo(20, 1650.0, cancelled=False), double_talk(50)],
                                             True, True),
    "person after an unconverged canceller's echo": ([quiet(25), echo(20, 1650.0, cancelled=False),
                                                      quiet(15, True), double_talk(50)], True, True),
    "headset: no echo at all": ([quiet(25), Span(20, far=5000.0, playing=True), person(50, True, 5000.0)], True, True),
    "a click over the reply (one frame)": ([quiet(25), echo(20, 1650.0), double_talk(1), echo(50, 1650.0)], False,
                                           False),
    "person with nothing playing": ([quiet(25), person(50)], False, True),
    "person over a reply in a quiet room, AEC3 suppressing them": ([quiet(25), Span(20, far=5000.0, playing=True),
                                                                  double_talk(50, 0.0, suppressed=True)], True, False),
}


@pytest.mark.parametrize("name", CASES)
def test_gate(name: str) -> None:
    spans, barge_in, speech = CASES[name]
    out = run(spans)
    assert bool(out.barge_ins) == barge_in, out
    assert bool(out.starts) == speech, out


def test_barge_in_is_decided_two_frames_into_double_talk() -> None:
    out = run([quiet(25), echo(20, 1650.0), double_talk(50)])
    assert out.barge_ins == [25 + 20 + 1]


def test_echo_taken_for_speech_is_not_published_until_it_stops() -> None:
    out = run([quiet(25), echo(100, 1650.0, cancelled=False), quiet(30, playing=True)])
    assert out.starts == [] and out.echo_frames > 90


def test_a_person_suppressed_by_aec3_is_heard_once_the_reply_pauses() -> None:
    """AEC3 hides the person under the reply; between two sentences (nothing played) their voice comes through."""
    out = run([quiet(25), double_talk(30, suppressed=True), person(30, playing=True, far=0.0)])
    assert out.barge_ins and out.barge_ins[0] >= 55
