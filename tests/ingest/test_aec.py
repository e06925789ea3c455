"""WebRTC AEC3 on real speech: the agent's own voice, delayed and attenuated into the microphone."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.engines.aec import WebRtcAec3
from ingest.engines.vad import SileroVad
from ingest.speech import Segmenter, SpeechStart
from tests.ingest.conftest import SPEECH, load_speech

CONVERGED_S = 2.5  # AEC3 needs about two seconds of far-end speech before its filter holds the echo


def run(aec: WebRtcAec3 | None, delay_ms: int, gain: float) -> tuple[list[float], float]:
    far = load_speech(SPEECH / "misc" / "jfk.wav")
    near = np.concatenate([np.zeros(delay_ms * 16, np.int16), (far * gain).astype(np.int16)])[:len(far)]
    vad, seg = SileroVad().stream(), Segmenter()
    starts, e_in, e_out = [], 0.0, 0.0
    for i in range(len(far) // 320):
        mic = near[i * 320:(i + 1) * 320]
        if aec is not None:
            aec.far_end(far[i * 320:(i + 1) * 320])
            out = aec.near_end(mic)
        else:
            out = mic
        if i * 0.02 >= CONVERGED_S:
            e_in += float(np.sum(mic.astype(np.float64) ** 2))
            e_out += float(np.sum(out.astype(np.float64) ** 2))
        starts += [i * 0.02 for d in seg.push(i * 20_000_000, 0, vad.probability(out)) if isinstance(d, SpeechStart)]
    return starts, 10 * np.log10(e_in / max(e_out, 1.0))


@pytest.mark.parametrize("delay_ms, gain", [(60, 0.3), (150, 0.5), (300, 0.3)])
def test_echo_does_not_reach_the_vad_once_converged(delay_ms: int, gain: float) -> None:
    with_aec, erle = run(WebRtcAec3(noise_suppression=True), delay_ms, gain)
    without, _ = run(None, delay_ms, gain)
    assert len([t for t in without if t >= CONVERGED_S]) >= 2  # the echo alone is heard as speech...
    assert [t for t in with_aec if t >= CONVERGED_S] == []  # ...and not after cancellation
    assert erle > 10
