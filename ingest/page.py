"""What the edge works out for its page, beyond passing events on: where each sentence of a reply starts in its
audio, and each turn's latency breakdown.

The breakdown uses the turn's stage times, the same ones the services stamp on voice.telemetry: ``speech_end``
from the SpeechStopped the edge published (the turn processor stamps speech_end from it), ``asr_final`` from the
last final words of the turn's speech (SpeechRecognised copies the transcripts, same wall time), what the
responder sent in ReplyStages (``turn_committed``, ``llm_first_token``, ``tts_first_audio``), and the edge's own
``reply_first_at_edge`` and ``reply_first_sent``. The segments are those of design.md and
streams/telemetry/ddl/003_turn_latency.sql, except that model time is split into recognition (ASR lag after the
commit) and model (LLM first token + TTS first audio), and the edge's playout wait (the reply's first audio in
the edge until its first frame is sent) is split out of platform overhead:

    voice to voice = endpointing + recognition + model + platform + playout

Wall times from different services are compared, so on several hosts the segments carry their clock skew.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Any

KEPT = 64  # turns (and speech ends, finals) remembered per session until their reply plays
SEGMENTS = ("endpointing", "recognition", "model", "platform", "playout")


def _ms(ns: int) -> float:
    return round(ns / 1e6, 1)


def _remember(table: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > KEPT:
        table.popitem(last=False)


def segments(t: Mapping[str, int]) -> dict[str, float | None]:
    """The segments (ms) of voice to voice from the turn's stage wall times; None where a stage is missing."""
    def have(*stages: str) -> bool:
        return all(s in t for s in stages)

    out: dict[str, float | None] = dict.fromkeys(SEGMENTS)
    if have("speech_end", "turn_committed"):
        out["endpointing"] = _ms(t["turn_committed"] - t["speech_end"])
    if have("turn_committed", "asr_final"):
        out["recognition"] = _ms(max(0, t["asr_final"] - t["turn_committed"]))
    if have("turn_committed", "asr_final", "llm_first_token", "tts_first_audio"):
        ready = max(t["turn_committed"], t["asr_final"])
        llm = max(0, t["llm_first_token"] - ready)
        tts = max(0, t["tts_first_audio"] - max(ready, t["llm_first_token"]))
        out["model"] = _ms(llm + tts)
    if have("reply_first_at_edge", "reply_first_sent"):
        out["playout"] = _ms(t["reply_first_sent"] - t["reply_first_at_edge"])
    if have("speech_end", "reply_first_sent") and None not in (out["endpointing"], out["recognition"], out["model"],
                                                               out["playout"]):
        v2v = _ms(t["reply_first_sent"] - t["speech_end"])
        out["platform"] = round(v2v - sum(out[s] or 0.0 for s in SEGMENTS if s != "platform"), 1)
    return out


class PageNotes:
    """One session's bookkeeping for its page."""

    def __init__(self) -> None:
        self._speech_ends: OrderedDict[int, int] = OrderedDict()  # speech end media ns -> its wall ns
        self._finals: deque[tuple[int, int, int]] = deque(maxlen=KEPT)  # (start, end media ns, wall ns)
        self._stages: OrderedDict[str, dict[str, int]] = OrderedDict()  # turn id -> stage -> wall ns
        self._audio: OrderedDict[str, tuple[int, float]] = OrderedDict()  # turn id -> (next index, ms so far)

    def speech_stopped(self, end_media_ns: int, end_wall_ns: int) -> None:
        _remember(self._speech_ends, end_media_ns, end_wall_ns)

    def final_words(self, start_media_ns: int, end_media_ns: int, wall_ns: int) -> None:
        self._finals.append((start_media_ns, end_media_ns, wall_ns))

    def stages(self, turn_id: str, stages: Mapping[str, int]) -> None:
        _remember(self._stages, turn_id, {**self._stages.get(turn_id, {}), **stages})

    def stamp(self, turn_id: str, stage: str, wall_ns: int) -> None:
        self.stages(turn_id, {stage: wall_ns})

    def caption(self, turn_id: str, index: int, ms: float, text: str) -> dict[str, Any] | None:
        """A reply chunk of ``ms`` arrived: the ``reply_sentence`` message if it starts a sentence. ``at_ms`` is
        where the sentence starts in the reply's audio, which ``played_ms`` counts in. Chunks come in order and a
        repeated one (a redelivered reply) is not counted again."""
        expected, at_ms = self._audio.get(turn_id, (0, 0.0))
        if index != expected:
            return None
        _remember(self._audio, turn_id, (index + 1, at_ms + ms))
        if not text:
            return None
        return {"type": "reply_sentence", "turn_id": turn_id, "text": text, "at_ms": round(at_ms)}

    def latency(self, turn_id: str, span: tuple[int, int] | None) -> dict[str, Any]:
        """The ``latency`` message for a turn whose reply started playing; ``span`` is the speech it answers."""
        t = dict(self._stages.get(turn_id, {}))
        if span is not None:
            start, end = span
            if end in self._speech_ends:
                t["speech_end"] = self._speech_ends[end]
            finals = [wall for s, e, wall in self._finals if s <= end and e >= start]
            if finals:
                t["asr_final"] = max(finals)  # the words were all there once the last final was made
        parts = segments(t)
        origin = t.get("speech_end")
        v2v = None if origin is None or "reply_first_sent" not in t else round(_ms(t["reply_first_sent"] - origin))
        after = {} if origin is None else {s: _ms(w - origin) for s, w in sorted(t.items(), key=lambda kv: kv[1])}
        return {"type": "latency", "turn_id": turn_id, "ms": v2v, "segments_ms": parts, "stages_ms": after}
