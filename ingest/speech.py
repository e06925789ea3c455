"""From per-frame speech probability to speech started / stopped / progress decisions. Pure, media time only."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.audio import NS_PER_FRAME as FRAME_NS


@dataclass(frozen=True)
class VadParams:
    threshold: float = 0.5
    min_speech_ms: int = 60  # above threshold this long confirms speech
    # Onsets are moved back to where the probability began to rise. A frame is described by the window holding
    # its centre, so 20 ms centres the onset on the librivox labels (bench.vad_frames: median error 0 ms with
    # 20, -12 ms with 32, the value from before the windows were aligned).
    onset_pad_ms: int = 20
    min_silence_ms: int = 240  # below the lower threshold this long ends it
    hysteresis: float = 0.15  # speech continues while probability >= threshold - hysteresis
    progress_every_ms: int = 200
    progress_after_speech_ms: int = 2000  # after speech stops, progress on every frame this long


@dataclass(frozen=True)
class SpeechStart:
    start_media_ns: int
    start_wall_ns: int
    probability: float


@dataclass(frozen=True)
class SpeechStop:
    start_media_ns: int
    end_media_ns: int  # the last voiced frame
    end_wall_ns: int


@dataclass(frozen=True)
class Progress:
    speaking: bool
    probability: float
    voiced: bool  # the probability reached the threshold


Decision = SpeechStart | SpeechStop | Progress


class Segmenter:
    def __init__(self, params: VadParams = VadParams()) -> None:
        self.params = params
        self.speaking = False
        self._rise: tuple[int, int] | None = None  # first frame of the rise (>= lower threshold): media, wall
        self._run_frames = 0  # consecutive frames above threshold
        self._start_media = 0
        self._last_voiced = (0, 0)  # media, wall
        self._silent_frames = 0
        self._progress_until = -1
        self._last_progress: int | None = None

    def push(self, media_ns: int, wall_ns: int, probability: float) -> list[Decision]:
        p = self.params
        out: list[Decision] = []
        if not self.speaking:
            # The onset is where the probability began to rise, not where it crossed the threshold.
            if probability >= p.threshold - p.hysteresis:
                self._rise = self._rise or (media_ns, wall_ns)
            else:
                self._rise = None
            self._run_frames = self._run_frames + 1 if probability >= p.threshold else 0
            if self._rise and self._run_frames * FRAME_NS >= p.min_speech_ms * 1_000_000:
                pad = p.onset_pad_ms * 1_000_000
                start_media, start_wall = max(0, self._rise[0] - pad), max(0, self._rise[1] - pad)
                self.speaking, self._silent_frames, self._rise = True, 0, None
                self._start_media, self._last_voiced = start_media, (media_ns, wall_ns)
                out.append(SpeechStart(start_media, start_wall, probability))
        elif probability >= p.threshold - p.hysteresis:
            self._last_voiced, self._silent_frames = (media_ns, wall_ns), 0
        else:
            self._silent_frames += 1
            if self._silent_frames * FRAME_NS >= p.min_silence_ms * 1_000_000:
                self.speaking = False
                out.append(SpeechStop(self._start_media, *self._last_voiced))
                self._progress_until = media_ns + p.progress_after_speech_ms * 1_000_000
        if (media_ns <= self._progress_until or self._last_progress is None
                or media_ns - self._last_progress >= p.progress_every_ms * 1_000_000):
            out.append(Progress(self.speaking, probability, probability >= p.threshold))
            self._last_progress = media_ns
        return out
