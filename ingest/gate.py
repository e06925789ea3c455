"""Who is speaking: the person, or the agent's own voice coming back? The edge's speech, echo and barge-in
decisions, per 20 ms frame. Pure: numbers in, decisions out, media time only.

While the agent talks, the microphone carries its echo, and WebRTC AEC3 removes it. How much it removed tells
who is talking: with echo alone the residual after cancellation is tens of dB below the raw microphone (the
echo return loss enhancement, ERLE); when the person talks over the agent the residual is their voice and the
ERLE falls to a few dB. AEC3 also suppresses a person who talks over a loud echo, so the cleaned signal's VAD
alone misses double talk, and the raw microphone's VAD hears the person but also the echo. Together: speech on
the raw microphone that the canceller could not explain as echo is the person.

One case looks the same: AEC3 that has not yet converged on this session's echo path lets the echo through, so
its ERLE is low too. Then the microphone is the reply and nothing else, while in double talk it is the reply and
a person: before speech over the agent counts, the residual and the raw microphone are compared with what was
played (``EchoMatch``: normalised correlations over every lag, ``ingest.echo_guard``). Measured: an echo
alone through WebRTC and Opus matched 0.79-0.99 raw with a residual of 0.22-0.66, never both low (sum >= 1.33);
double talk at equal levels in bench/double_talk.py at most 0.73 raw and a sum of 1.12.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ingest.echo_guard import FAR_FLOOR_RMS
from ingest.speech import Decision, Progress, Segmenter, SpeechStart, SpeechStop, VadParams


@dataclass(frozen=True)
class GateParams:
    double_talk_erle_db: float = 10.0  # residual this close to the raw microphone: not echo, the person
    loud_over_floor: float = 4.0  # raw microphone this many times its noise floor (12 dB): the ERLE means something
    # A microphone carrying the echo and an equally loud person matches the reply at most 1/sqrt(2) = 0.71 (the
    # echo's share of its energy, square-rooted); 0.75 means the echo is louder than anyone else in the room.
    raw_echo_match: float = 0.75
    echo_match_sum: float = 1.25  # raw and residual correlations adding up to this: the reply passing AEC3
    raw_alone_match: float = 0.5  # raw microphone less correlated than this: not the reply, whatever AEC3 says
    recheck_ms: int = 400  # after speech over the agent was judged echo, listen afresh this much later
    barge_in_ms: int = 40  # speech this long over the agent stops it (the reply resumes if it was no one)


@dataclass(frozen=True)
class FrameIn:
    media_ns: int
    wall_ns: int
    clean_p: float  # speech probability of the cleaned microphone (after AEC3 and noise suppression)
    raw_p: float | None  # of the raw microphone, while a reply plays (a second VAD run: only then)
    raw_rms: float  # PCM16 RMS of the raw microphone frame
    clean_rms: float  # of the cleaned frame
    far_rms: float  # the loudest frame played within the echo's reach (the last few hundred ms)
    playing: bool  # a reply is playing and can be interrupted


@dataclass(frozen=True)
class EchoMatch:
    residual: float  # the cleaned microphone's highest normalised correlation with what was played
    raw: float  # the raw microphone's


@dataclass(frozen=True)
class GateOut:
    decisions: list[Decision]  # speech started / stopped / progress, to publish
    barge_in: SpeechStart | None = None  # the person talks over the reply: stop it
    echo: bool = False  # this frame belongs to speech taken for the agent's echo (not published)


@dataclass
class Gate:
    vad: VadParams = field(default_factory=VadParams)
    params: GateParams = field(default_factory=GateParams)

    def __post_init__(self) -> None:
        self.speech = Segmenter(self.vad)  # what is published: the cleaned signal's speech
        self._barge: Segmenter | None = None  # speech over the agent, while a reply plays
        self._raw: Segmenter | None = None  # speech on the raw microphone, while a reply plays
        self._vetoed_ns: int | None = None  # when the barge-in segmenter's speech was judged to be echo
        self._echo_speech = False  # the published segmenter is in speech that is the agent's echo
        self._raw_floor = 0.0  # slow noise floor of the raw microphone

    @property
    def speaking(self) -> bool:
        return self.speech.speaking and not self._echo_speech

    def push(self, f: FrameIn, echo_match: Callable[[], EchoMatch]) -> GateOut:
        """One frame. ``echo_match`` is called only when a decision needs it: it costs two FFTs."""
        p = self.params
        self._track_floor(f.raw_rms)
        erle_db = _db(f.raw_rms, f.clean_rms)
        loud = f.raw_rms >= p.loud_over_floor * max(self._raw_floor, 1.0)
        echo_possible = f.far_rms >= FAR_FLOOR_RMS
        double_talk = loud and erle_db <= p.double_talk_erle_db
        barge_in = None
        if not f.playing:
            self._barge = self._raw = self._vetoed_ns = None
        elif self._barge is None:  # a reply started: listen for the person over it
            self._barge, self._raw = self._segmenter(), self._segmenter()
        if self._barge is not None and self._raw is not None:
            heard = max(f.clean_p, f.raw_p if f.raw_p is not None and double_talk else 0.0)
            for d in self._barge.push(f.media_ns, f.wall_ns, heard):
                if isinstance(d, SpeechStart) and not (echo_possible and self._is_echo(echo_match())):
                    barge_in = d
                elif isinstance(d, SpeechStart):
                    self._vetoed_ns = f.media_ns
            # A vetoed echo keeps the segmenter in speech; it listens afresh only a while later, so a leak is not
            # re-checked every few frames (each check is another chance to mistake it), yet a person speaking
            # over a long leak is still heard.
            if self._vetoed_ns is not None and f.media_ns - self._vetoed_ns >= p.recheck_ms * 1_000_000:
                self._barge, self._vetoed_ns = self._segmenter(), None
            # AEC3 that has had no echo to learn from (a headset, a browser that cancels its own) suppresses the
            # person along with the echo it expects: speech on the raw microphone that is not the reply counts.
            for d in self._raw.push(f.media_ns, f.wall_ns, f.raw_p or 0.0):
                if (isinstance(d, SpeechStart) and barge_in is None
                        and (not echo_possible or echo_match().raw < p.raw_alone_match)):
                    barge_in = d
        decisions = []
        for d in self.speech.push(f.media_ns, f.wall_ns, f.clean_p):
            if isinstance(d, SpeechStart):
                # Speech on the cleaned signal while the agent may be heard: the echo AEC3 let through if it
                # matches what was played.
                self._echo_speech = echo_possible and barge_in is None and self._is_echo(echo_match())
                if self._echo_speech:
                    continue
            elif self._echo_speech:
                if isinstance(d, SpeechStop):
                    self._echo_speech = False
                else:
                    decisions.append(Progress(False, 0.0, False))
                continue
            decisions.append(d)
        if barge_in is not None and self._echo_speech and self.speech.speaking:
            # The person talks over an echo that was passing AEC3: from here the speech is theirs.
            self._echo_speech = False
            decisions.append(barge_in)
        return GateOut(decisions, barge_in, self._echo_speech)

    def _segmenter(self) -> Segmenter:
        return Segmenter(VadParams(threshold=self.vad.threshold, hysteresis=self.vad.hysteresis, onset_pad_ms=0,
                                   min_speech_ms=self.params.barge_in_ms, min_silence_ms=self.vad.min_silence_ms))

    def _is_echo(self, match: EchoMatch) -> bool:
        return match.raw >= self.params.raw_echo_match or match.raw + match.residual >= self.params.echo_match_sum

    def _track_floor(self, rms: float) -> None:
        # Down fast, up slowly (about 1 dB a second): the floor follows the room's noise, not the speech in it.
        if self._raw_floor == 0.0 or rms < self._raw_floor:
            self._raw_floor = rms if self._raw_floor == 0.0 else 0.8 * self._raw_floor + 0.2 * rms
        else:
            self._raw_floor *= 1.0023


def _db(raw_rms: float, clean_rms: float) -> float:
    return 20 * math.log10((raw_rms + 1.0) / (clean_rms + 1.0))
