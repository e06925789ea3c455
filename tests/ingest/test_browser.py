"""A real browser: headless Chromium opens the edge's page, connects, and its fake microphone (a WAV of real
speech) arrives on voice.audio as frames with speech."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import numpy as np
import pytest

import tests.conftest as root
from ingest.server import EdgeNode
from tests.browser import CHROMIUM, MISSING, chromium_command
from tests.ingest.conftest import SPEECH, TopicReader

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

@pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
async def test_browser_page_connects_and_its_speech_reaches_kafka(edge: tuple[EdgeNode, str], topics: root.TestTopics,
                                                                  tmp_path: Path) -> None:
    node, url = edge
    args = chromium_command(f"{url}/?autostart=1&raw=1", tmp_path / "profile", SPEECH / "misc" / "jfk.wav")
    browser = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with asyncio.timeout(20):
            while not node.sessions:  # polled: the session appears when the page's offer is answered
                await asyncio.sleep(0.05)
        session_id = next(iter(node.sessions))
        async with TopicReader(topics, "voice.audio", session_id) as audio:
            frames = await audio.until(lambda items: sum(f.voiced for f in items) >= 50, timeout=20)
    finally:
        browser.terminate()
        browser.wait(timeout=10)
    assert [f.seq for f in frames] == list(range(len(frames)))
    loud = [f for f in frames if np.sqrt(np.mean(f.samples().astype(np.float32) ** 2)) > 500]
    assert len(loud) >= 25
