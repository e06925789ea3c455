"""When the ASR worker starts an utterance's final before the edge's VAD has said speech stopped, and whether
that early final is the utterance's. Pure: the audio frames' VAD flags and media times only.

The VAD decides speech stopped after ``vad_min_silence_ms`` (240 ms) without speech; a recogniser whose final takes
~100 ms (Whisper) would add that on top. So at the first pause of ``after_ns`` in the frames the edge marked
voiced, the worker asks the stream to ``prepare`` its final of the audio so far. If the person goes on (a voiced
frame), that preparation is stale and the next pause prepares again. At the SpeechStopped, the preparation
stands when it covered the VAD's speech end: what came after it is the silence that ended the utterance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Speculation:
    voiced_end_ns: int = 0  # media time at the end of the last frame the edge's VAD called voiced (0: none yet)
    silent_ns: int = 0  # audio since then
    prepared_ns: int | None = None  # media time at the end of the audio the current preparation covers


def on_frame(spec: Speculation, frame_end_ns: int, duration_ns: int, voiced: bool,
             after_ns: int) -> tuple[Speculation, bool]:
    """The state after one frame fed to the utterance, and whether to prepare the final now (``after_ns`` of
    unvoiced audio after speech, not prepared since that speech; ``after_ns`` 0: never)."""
    if voiced:
        return replace(spec, voiced_end_ns=frame_end_ns, silent_ns=0), False
    silent = spec.silent_ns + duration_ns
    due = (after_ns > 0 and spec.voiced_end_ns > 0 and silent >= after_ns
           and (spec.prepared_ns is None or spec.prepared_ns < spec.voiced_end_ns))
    return replace(spec, silent_ns=silent, prepared_ns=frame_end_ns if due else spec.prepared_ns), due


def stands(spec: Speculation, speech_end_ns: int) -> bool:
    """Whether the prepared final is the utterance's final: it heard the speech up to the VAD's speech end (the
    last speech frame's media time), and no voiced frame came after it."""
    return (spec.prepared_ns is not None and spec.prepared_ns > speech_end_ns
            and spec.voiced_end_ns <= spec.prepared_ns)
