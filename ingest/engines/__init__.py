"""Audio engines of the edge, each behind a small ABC: VAD (vad.py), echo cancellation (aec.py), noise
suppression (ns.py). Vendors are optional extras imported on first use (``runtime.optional``)."""

from __future__ import annotations

from ingest.engines.aec import EchoCanceller
from ingest.engines.ns import NoiseSuppressor


def build_audio_processing(aec: bool, ns: bool) -> tuple[EchoCanceller | None, NoiseSuppressor | None]:
    """One session's echo canceller and noise suppressor. With both on, WebRTC's APM does both in one pass,
    so the canceller carries the suppression and no separate suppressor is returned."""
    if aec:
        from ingest.engines.aec import WebRtcAec3

        return WebRtcAec3(noise_suppression=ns), None
    if ns:
        from ingest.engines.ns import WebRtcNoiseSuppressor

        return None, WebRtcNoiseSuppressor()
    return None, None
