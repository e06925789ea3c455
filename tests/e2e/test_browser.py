"""A real browser holds a conversation: headless Chromium opens the edge's page with a fake microphone playing
real speech, talks to the whole platform, and the page receives the agent's voice."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.browser import CHROMIUM, MISSING, chromium_command
from tests.conftest import SPEECH
from tests.e2e.conftest import Platform
from tests.e2e.test_conversation import turns_in_clickhouse

pytestmark = pytest.mark.e2e

# The energy of the agent audio the page has received, from the browser's own WebRTC statistics.
RECEIVED_ENERGY = """(async () => {
  if (typeof pc === "undefined" || !pc) return {state: "none", energy: 0};
  let energy = 0;
  (await pc.getStats()).forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "audio") energy = r.totalAudioEnergy || 0; });
  return {state: pc.connectionState, energy, session: sessionId};
})()"""


class DevTools:
    """Just enough of the Chrome DevTools protocol to evaluate an expression in the page."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self._id = 0

    async def evaluate(self, http: aiohttp.ClientSession, expression: str) -> Any:
        port = (self.profile / "DevToolsActivePort").read_text().split()[0]
        async with http.get(f"http://127.0.0.1:{port}/json") as resp:
            pages = [t for t in await resp.json() if t["type"] == "page"]
        async with http.ws_connect(pages[0]["webSocketDebuggerUrl"]) as ws:
            self._id += 1
            await ws.send_json({"id": self._id, "method": "Runtime.evaluate",
                                "params": {"expression": expression, "awaitPromise": True, "returnByValue": True}})
            async for msg in ws:
                data = json.loads(msg.data)
                if data.get("id") == self._id:
                    return data["result"]["result"].get("value")
        return None


@pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
async def test_a_browser_talks_to_the_agent_and_hears_it(platform: Platform, tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    args = chromium_command(f"{platform.url}/?autostart=1&raw=1", profile, SPEECH / "misc" / "goforward.wav")
    browser = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    devtools = DevTools(profile)
    stats: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(60):
            while not (stats.get("state") == "connected" and stats.get("energy", 0) > 0.01):
                await asyncio.sleep(0.5)  # polling the page's statistics, bounded by the timeout
                try:
                    stats = await devtools.evaluate(http, RECEIVED_ENERGY) or {}
                except (OSError, aiohttp.ClientError, KeyError, IndexError):
                    stats = {}  # the browser is still starting
    finally:
        browser.terminate()
        browser.wait(timeout=10)
    # The page heard the agent, and that turn went through every service: it is in ClickHouse, complete.
    rows = await turns_in_clickhouse(stats["session"], expected=1)
    assert rows[0]["voice_to_voice_ms"] > 0
