"""The batched VAD: one ONNX call for all streams gives each stream what its own calls would, on real speech, with
streams joining and leaving; frames described by the model window holding their centre."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.engines.vad import SileroVad, _silero_session
from ingest.engines.vad_batch import CONTEXT, WINDOW, SileroBatch, window_of
from ingest.near_end import Heard, NearEnd
from ingest.speech import VadParams
from schemas.audio import FRAME_SAMPLES, NS_PER_FRAME, RATE
from tests.ingest.conftest import SPEECH, load_speech

pytestmark = pytest.mark.skipif(not SPEECH.is_dir(), reason="speech data not found")


def _speech() -> np.ndarray:
    clips = [load_speech(p) for p in sorted((SPEECH / "librivox").glob("*.wav"))]
    return np.concatenate(clips + [load_speech(SPEECH / "misc" / "jfk.wav")]) if clips else np.zeros(0, np.int16)


SAMPLES = _speech() if SPEECH.is_dir() else np.zeros(0, np.int16)


def alone(pcm: np.ndarray, scored: list[bool] | None = None) -> list[float]:
    """The model run on one stream by itself, one call per window (NaN where a window is skipped, which also
    starts the model afresh)."""
    session = _silero_session()
    x = np.concatenate([np.zeros(CONTEXT, np.float32), pcm.astype(np.float32) / 32768.0])
    state, out = np.zeros((2, 1, 128), np.float32), []
    for i in range((len(x) - CONTEXT) // WINDOW):
        if scored is not None and not scored[i]:
            state = np.zeros((2, 1, 128), np.float32)
            out.append(float("nan"))
            continue
        p, state = session.run(None, {"input": x[None, i * WINDOW:(i + 1) * WINDOW + CONTEXT], "state": state,
                                      "sr": np.array(RATE, np.int64)})
        out.append(float(p[0, 0]))
    return out


class Recorded:
    """A stream's probabilities as they are scored (a stream remembers only its last few)."""

    def __init__(self, batch: SileroBatch) -> None:
        self.stream = batch.stream(self._scored)
        self.probabilities: list[float] = []

    def _scored(self) -> None:
        self.probabilities += [self.stream.probability(i) for i in range(len(self.probabilities), self.stream.scored)]


@pytest.mark.parametrize("frame_index, window", [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (6, 4), (7, 4),
                                                 (8, 5), (16, 10)])
def test_a_frame_is_described_by_the_window_holding_its_centre(frame_index: int, window: int) -> None:
    assert window_of(frame_index) == window
    centre = frame_index * FRAME_SAMPLES + FRAME_SAMPLES // 2
    assert window * WINDOW <= centre < (window + 1) * WINDOW


# A session: when it joins (loop turn), where its audio starts in the speech, how many frames it sends, and how
# many frames arrive together in each of its loop turns (a burst after a network hiccup).
sessions = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 200_000), st.integers(1, 60), st.integers(1, 2)),
                    min_size=1, max_size=6)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sessions=sessions)
def test_one_call_for_all_streams_gives_each_what_it_would_get_alone(sessions: list[tuple[int, int, int, int]]) -> None:
    async def run() -> tuple[SileroBatch, list[Recorded], list[np.ndarray]]:
        batch = SileroBatch(_silero_session())
        recorded = [Recorded(batch) for _ in sessions]
        streams = [r.stream for r in recorded]
        audio = [SAMPLES[start:start + frames * FRAME_SAMPLES] for _, start, frames, _ in sessions]
        sent = [0] * len(sessions)
        turn = 0
        expected_calls = 0
        while any(sent[i] < len(audio[i]) // FRAME_SAMPLES for i in range(len(sessions))):
            before = [s.windows for s in streams]
            for i, (join, _, _, burst) in enumerate(sessions):
                for _ in range(burst if turn >= join else 0):
                    if sent[i] < len(audio[i]) // FRAME_SAMPLES:
                        streams[i].push(audio[i][sent[i] * FRAME_SAMPLES:(sent[i] + 1) * FRAME_SAMPLES])
                        sent[i] += 1
            # one call per round: a round takes one window of every stream that completed one this turn
            expected_calls += max(s.windows - b for s, b in zip(streams, before, strict=True))
            await asyncio.sleep(0)  # one loop turn: the batch scheduled by this turn's pushes runs before we resume
            turn += 1
            assert all(s.scored == s.windows for s in streams)  # nothing waits past its loop turn
        assert batch.calls == expected_calls  # the streams of a turn share its calls
        return batch, recorded, audio

    batch, recorded, audio = asyncio.run(run())
    streams = [r.stream for r in recorded]
    for r, pcm in zip(recorded, audio, strict=True):
        assert np.allclose(r.probabilities, alone(pcm), atol=1e-5)
    assert batch.windows == sum(s.scored for s in streams)


def test_skipped_windows_start_the_model_afresh() -> None:
    pcm = SAMPLES[16_000:16_000 + 60 * FRAME_SAMPLES]
    score_upto = [5, 5, 5, 5, 5, 5, 5, 5, 5, 5] + [-1] * 20 + [100] * 30  # per frame: score windows up to
    batch = SileroBatch(_silero_session())
    recorded = Recorded(batch)
    stream = recorded.stream
    for k, upto in enumerate(score_upto):
        stream.push(pcm[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES], upto)
    # which windows got scored: each completes during one push, scored if its index <= that push's limit
    scored = []
    for i in range(stream.windows):
        k = ((i + 1) * WINDOW - 1) // FRAME_SAMPLES  # the push that completed window i
        scored.append(i <= score_upto[k])
    assert np.allclose(recorded.probabilities, alone(pcm, scored), atol=1e-5, equal_nan=True)
    assert not all(scored) and any(scored[12:])


async def test_a_window_is_scored_within_the_loop_turn_that_completed_it() -> None:
    batch = SileroBatch(_silero_session())
    heard: list[int] = []
    a, b = batch.stream(lambda: heard.append(1)), batch.stream(lambda: heard.append(2))
    for k in range(2):  # two frames: 640 samples, one window each
        a.push(SAMPLES[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES])
        b.push(SAMPLES[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES])
    assert (a.scored, b.scored) == (0, 0)  # queued for this turn's batch
    await asyncio.sleep(0)
    assert (a.scored, b.scored, batch.calls) == (1, 1, 1)
    assert sorted(heard) == [1, 2]
    assert a.probability(0) == pytest.approx(b.probability(0))


def test_without_an_event_loop_a_window_is_scored_at_once() -> None:
    batch = SileroBatch(_silero_session())
    stream = batch.stream()
    stream.push(SAMPLES[:FRAME_SAMPLES])
    assert stream.scored == 0
    stream.push(SAMPLES[FRAME_SAMPLES:2 * FRAME_SAMPLES])
    assert stream.scored == 1


def test_the_near_end_hands_each_frame_on_in_order_with_its_centre_window() -> None:
    pcm = SAMPLES[:200 * FRAME_SAMPLES]
    reference = alone(pcm)
    heard: list[Heard] = []
    near_end = NearEnd(SileroVad(), VadParams(), sink=heard.append)
    for k in range(200):
        near_end.process(pcm[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES], k * NS_PER_FRAME, 0, k)
        assert [h.tag for h in heard] == list(range(len(heard)))  # in order
        assert len(heard) >= k  # each frame waits at most for the next one (the rest of its window)
    assert len(heard) == 200 and near_end.waiting == 0  # 200 frames end on a window boundary
    for h in heard:
        assert h.probability == pytest.approx(reference[window_of(h.tag)], abs=1e-5)
        assert h.media_ns == h.tag * NS_PER_FRAME


def test_at_the_end_frames_still_waiting_are_handed_on() -> None:
    heard: list[Heard] = []
    near_end = NearEnd(SileroVad(), VadParams(), sink=heard.append)
    for k in range(3):  # 960 samples: window 0 scored; frame 2's centre (800) is in window 1, not complete
        near_end.process(SAMPLES[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES], k * NS_PER_FRAME, 0, k)
    assert [h.tag for h in heard] == [0, 1]
    near_end.flush()
    assert [h.tag for h in heard] == [0, 1, 2]
    assert heard[2].probability == heard[1].probability  # the last probability scored


def _opus_packets(pcm16k: np.ndarray) -> list[bytes]:
    import av

    from runtime.pcm import Resampler

    pcm = Resampler(RATE, 48_000)(pcm16k)
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format, encoder.bit_rate = 48_000, "mono", "s16", 32_000
    packets = []
    for i in range(0, len(pcm) - 960 + 1, 960):
        frame = av.AudioFrame.from_ndarray(pcm[i:i + 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48_000, i
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets


async def test_inbound_frames_reach_the_session_in_order_within_a_loop_turn_of_their_window() -> None:
    import time

    from ingest.inbound import Inbound, ProcessedFrame

    got: list[ProcessedFrame] = []
    inbound = Inbound(NearEnd(SileroVad(), VadParams()), lambda frame, decisions, barge_in: got.append(frame))
    packets = _opus_packets(SAMPLES[:100 * FRAME_SAMPLES])
    for seq, payload in enumerate(packets):
        inbound.on_packet(seq, seq * 960, payload, time.time_ns())
        await asyncio.sleep(0)  # one loop turn: this packet's window, if it completed one, is scored
        assert inbound.frames - len(got) == inbound.near_end.waiting <= 1
    assert [f.index for f in got] == list(range(len(got)))
    assert not any(f.concealed for f in got)
    inbound.close()  # the frame still waiting goes out too
    assert [f.index for f in got] == list(range(inbound.frames)) and inbound.frames >= len(packets) - 1


async def test_a_burst_of_frames_in_one_loop_turn_is_heard_in_full() -> None:
    # After a stall of the event loop the receive buffer releases many frames at once: their windows are scored in
    # one run, and every frame must still find its own window's probability.
    pcm = SAMPLES[:120 * FRAME_SAMPLES]
    reference = alone(pcm)
    heard: list[Heard] = []
    near_end = NearEnd(SileroVad(), VadParams(), sink=heard.append)
    for burst in (range(0, 100), range(100, 120)):  # 100 frames: 62 windows in one turn
        for k in burst:
            near_end.process(pcm[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES], k * NS_PER_FRAME, 0, k)
        assert len(heard) < burst[-1]
        await asyncio.sleep(0)
    assert [h.tag for h in heard] == list(range(120))
    assert all(h.probability == pytest.approx(reference[window_of(h.tag)], abs=1e-5) for h in heard)
