"""Headless Chromium as a real WebRTC client, with a fake microphone playing a WAV (flags: webrtc-notes.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "") if p and Path(p).exists()),
                None)
MISSING = "chromium is not installed (apt-get install -y chromium)"


def chromium_command(url: str, profile: Path, microphone_wav: Path) -> list[str]:
    """Open ``url`` (the edge's page, started with ?autostart=1&raw=1) with DevTools on a free port."""
    assert CHROMIUM is not None, MISSING
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone_wav}",
            "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
            "--remote-debugging-port=0", url]
