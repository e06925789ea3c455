"""What a simulated caller said and heard: where the speech is in each recording, what the edge told the client
about its replies, and which reply answered each utterance (see bench/simulate.py for how they are paired).
Pure apart from reading the client's records, so the pairing is tested on its own."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ingest.client import Clip, EdgeClient, Told, frames_of, load_speech
from schemas.audio import FRAME_MS

FRAME_S = FRAME_MS / 1000
SPAN_SLACK_MS = 400  # how far an edge span may sit outside the recording's speech and still belong to it
END_SLACK_MS = 600  # a turn whose span ends this close to the utterance's end covers its end
ONSET_SLACK_S = 0.1  # reply audio may arrive this much before the data channel says the reply started


# -- where the speech is in a recording --


@dataclass(frozen=True)
class Recording:
    path: Path
    clip: Clip
    speech_start_s: float
    speech_end_s: float
    source: str  # how the speech span was found: "labels", "vad" or "energy"

    @property
    def name(self) -> str:
        return self.path.name


def label_span(path: Path) -> tuple[float, float] | None:
    """Speech from the first onset to the last offset in a ``.lab`` file (``start end state`` lines)."""
    try:
        lines = path.read_text().split("\n")
    except OSError:
        return None
    starts, ends = [], []
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[2] in ("speech", "silence"):
            (starts if parts[2] == "speech" else ends).append(float(parts[0]))
    if not starts:
        return None
    end = max((e for e in ends if e > starts[-1]), default=None)
    return (starts[0], end) if end is not None else None


def speech_frames(pcm: np.ndarray) -> tuple[np.ndarray, str]:
    """Which 20 ms frames of a recording are speech: loud ones (well above the recording's noise floor); when the
    project's VAD model is installed, only loud frames within 100 ms of a run of VAD speech (so a recording's
    trailing noise, e.g. applause, does not count as speech, but a soft final consonant does)."""
    frames = frames_of(pcm)
    rms = np.array([np.sqrt(np.mean(f.astype(np.float32) ** 2)) for f in frames])
    loud = rms > max(3 * float(np.percentile(rms, 10)), 0.05 * float(rms.max()), 1.0)
    try:
        from ingest.engines.vad import SileroVad

        stream = SileroVad().stream()
        voiced = np.array([stream.probability(f) >= 0.5 for f in frames])
    except ImportError:
        return loud, "energy"
    keep = np.zeros(len(frames), dtype=bool)
    i = 0
    while i < len(voiced):  # runs of at least 3 voiced frames (60 ms, as the edge's VAD), widened by 5 frames
        j = i
        while j < len(voiced) and voiced[j]:
            j += 1
        if j - i >= 3:
            keep[max(0, i - 5):j + 5] = True
        i = j + 1 if j == i else j
    return (loud & keep) if (loud & keep).any() else loud, "vad"


@functools.cache
def recording(path: Path) -> Recording:
    pcm = load_speech(path)
    clip = Clip.of(pcm)
    span = label_span(path.with_suffix(".lab"))
    if span is not None:
        return Recording(path, clip, span[0], span[1], "labels")
    speech, source = speech_frames(pcm)
    where = np.nonzero(speech)[0]
    if not len(where):
        return Recording(path, clip, 0.0, len(pcm) / 16000, source)
    return Recording(path, clip, float(where[0]) * FRAME_S, float(where[-1] + 1) * FRAME_S, source)


# -- what the edge said --


@dataclass
class ReplyHeard:
    turn_id: str
    speech_start_ms: int | None
    speech_end_ms: int | None
    started_at: float | None = None  # arrival of reply_started
    ended_at: float | None = None  # arrival of reply_ended
    played_ms: int | None = None
    interrupted: bool = False  # a barge-in ended it (it was paused and never resumed)
    cancelled: bool = False
    paused_ms: list[int] = field(default_factory=list)  # played when each barge-in paused it
    resumed: int = 0  # pauses that ended in a resume (false interruptions)

    @property
    def paused(self) -> bool:
        """Silent now: paused by a barge-in, neither resumed nor ended yet."""
        return len(self.paused_ms) > self.resumed and self.ended_at is None


KINDS = ("reply_started", "reply_paused", "reply_resumed", "reply_ended", "reply_cancelled")


def replies_of(told: Sequence[Told]) -> dict[str, ReplyHeard]:
    out: dict[str, ReplyHeard] = {}
    for t in told:
        m = t.message
        if t.type not in KINDS or "turn_id" not in m:
            continue
        reply = out.get(m["turn_id"])
        if reply is None:
            reply = ReplyHeard(m["turn_id"], m.get("speech_start_ms"), m.get("speech_end_ms"))
            out[m["turn_id"]] = reply
        if reply.speech_start_ms is None and "speech_start_ms" in m:
            reply.speech_start_ms, reply.speech_end_ms = m["speech_start_ms"], m.get("speech_end_ms")
        if t.type == "reply_started":
            reply.started_at = t.at
        elif t.type == "reply_paused":
            reply.paused_ms.append(int(m.get("played_ms", 0)))
        elif t.type == "reply_resumed":
            reply.resumed += 1
        elif t.type == "reply_ended":
            reply.ended_at, reply.played_ms = t.at, m.get("played_ms")
            reply.interrupted = bool(m.get("interrupted"))
        else:
            reply.cancelled = True
    return out


def speech_heard(told: Sequence[Told]) -> list[tuple[int, int | None]]:
    """The utterances the edge's VAD heard, as media ms spans (end None while still speaking)."""
    spans: list[tuple[int, int | None]] = []
    for t in told:
        if t.type != "speech" or "speech_start_ms" not in t.message:
            continue
        start = int(t.message["speech_start_ms"])
        if t.message.get("speaking"):
            spans.append((start, None))
        else:
            spans = [s for s in spans if s != (start, None)]
            spans.append((start, int(t.message.get("speech_end_ms", start))))
    return spans


def overlaps(a0: float, a1: float | None, b0: float, b1: float, slack: float) -> bool:
    return a0 <= b1 + slack and (a1 is None or a1 >= b0 - slack)


# -- one utterance --


@dataclass
class Utterance:
    session_id: str
    index: int
    audio: str
    first_frame: int  # microphone frame the recording started at
    speech_start_ms: int  # where the edge should see the speech (media ms = microphone frame x 20)
    speech_end_ms: int
    speech_end_at: float  # wall time the microphone captured the frame where the speech ends
    turns: list[str] = field(default_factory=list)  # turns whose replies answered (part of) it, in order
    answer_turn: str | None = None  # the turn covering the end of the utterance, whose reply was heard
    answer_span_ms: tuple[int, int] | None = None  # that turn's speech span, as the edge said
    reply_onset: float | None = None  # wall time the first loud audio of that reply arrived
    reply_end: float | None = None
    barged_in: bool = False  # the script interrupted the reply with its next utterance
    barge_in_reaction_ms: float | None = None  # the next utterance's onset -> the reply's last audio heard
    interrupted_ms: int | None = None  # the answering reply was cut off after this much
    edge_speech_ms: list[tuple[int, int | None]] = field(default_factory=list)
    note: str = ""

    @property
    def client_v2v_ms(self) -> float | None:
        return None if self.reply_onset is None else (self.reply_onset - self.speech_end_at) * 1000

    @property
    def answered(self) -> bool:
        return self.reply_onset is not None

    def report(self) -> dict[str, Any]:
        return asdict(self) | {"client_v2v_ms": self.client_v2v_ms}


def answering(u: Utterance, replies: dict[str, ReplyHeard]) -> list[ReplyHeard]:
    """Replies whose turn spans overlap the utterance, in the order they started playing."""
    found = [r for r in replies.values() if r.speech_start_ms is not None and r.speech_end_ms is not None
             and overlaps(r.speech_start_ms, r.speech_end_ms, u.speech_start_ms, u.speech_end_ms, SPAN_SLACK_MS)]
    return sorted(found, key=lambda r: (r.started_at is None, r.started_at or 0.0, r.speech_end_ms or 0))


def covers_end(u: Utterance, r: ReplyHeard) -> bool:
    return r.speech_end_ms is not None and r.speech_end_ms >= u.speech_end_ms - END_SLACK_MS


def reply_onset(client: EdgeClient, reply: ReplyHeard, replies: dict[str, ReplyHeard]) -> int | None:
    """Index of the first loud frame heard of this reply: after the data channel said it started (less a margin
    for audio overtaking the message) but not before the reply playing before it ended, and before it ended."""
    if reply.started_at is None:
        return None
    lo = reply.started_at - ONSET_SLACK_S
    for other in replies.values():
        if other is not reply and other.ended_at is not None and other.ended_at <= reply.started_at:
            lo = max(lo, other.ended_at - 0.01)
    hi = None if reply.ended_at is None else reply.ended_at + ONSET_SLACK_S
    hearing = client.hearing
    for i in range(len(hearing.arrivals) - 1, -1, -1):  # the recent past: replies are heard in order
        if hearing.arrivals[i] < lo:
            break
    else:
        i = -1
    for j in range(i + 1, len(hearing.arrivals)):
        if hi is not None and hearing.arrivals[j] > hi:
            return None
        if hearing.loud[j]:
            return j
    return None


def playing(client: EdgeClient) -> bool:
    """Whether a reply is playing now, as far as the data channel says (paused counts: it may resume)."""
    return any(r.started_at is not None and r.ended_at is None for r in replies_of(client.told).values())


def settle(u: Utterance, client: EdgeClient) -> bool:
    """Update the utterance from what was heard; True once the reply covering its end was heard (or is over)."""
    replies = replies_of(client.told)
    found = answering(u, replies)
    u.turns = [r.turn_id for r in found if r.started_at is not None]
    u.edge_speech_ms = [s for s in speech_heard(client.told)
                        if overlaps(s[0], s[1], u.speech_start_ms, u.speech_end_ms, SPAN_SLACK_MS)]
    last = next((r for r in reversed(found) if r.started_at is not None and covers_end(u, r)), None)
    if last is None:
        return False
    u.answer_turn = last.turn_id
    if last.speech_start_ms is not None and last.speech_end_ms is not None:
        u.answer_span_ms = (last.speech_start_ms, last.speech_end_ms)
    onset = reply_onset(client, last, replies)
    if onset is not None:
        u.reply_onset = client.hearing.arrivals[onset]
    u.interrupted_ms = last.played_ms if last.interrupted else None
    return u.reply_onset is not None or last.ended_at is not None


def explain(u: Utterance, client: EdgeClient, timeout_s: float) -> str:
    """Why an utterance got no reply heard, from what the edge said."""
    replies = answering(u, replies_of(client.told))
    if u.answer_turn is not None:
        return "reply to its turn started, no loud audio heard"
    if not u.edge_speech_ms:
        return "no reply: the edge heard no speech"
    played = [r for r in replies if r.started_at is not None]
    if played:
        seconds = (u.speech_end_ms - u.speech_start_ms) / 1000
        upto = (max(r.speech_end_ms or 0 for r in played) - u.speech_start_ms) / 1000
        why = [f"no reply to its end within {timeout_s:.0f} s: {len(played)} turn(s) answered its speech to "
               f"{upto:.1f} of {seconds:.1f} s"]
        heard_to = max((s[1] if s[1] is not None else u.speech_end_ms) for s in u.edge_speech_ms)
        if heard_to < u.speech_end_ms - END_SLACK_MS:
            why.append(f"the edge heard no speech after {(heard_to - u.speech_start_ms) / 1000:.1f} s")
        early = [r for r in played if r.started_at is not None and r.started_at < u.speech_end_at]
        if early:
            why.append(f"a reply started {(u.speech_end_at - early[-1].started_at) * 1000:.0f} ms before the "
                       "speech ended")
        return "; ".join(why)
    if any(r.cancelled for r in replies):
        return "no reply: reply cancelled before it played"
    return f"no reply within {timeout_s:.0f} s: edge heard speech, no turn answered it"
