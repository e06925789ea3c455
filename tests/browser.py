"""Headless Chromium as a real WebRTC client, with a fake microphone playing a WAV (flags: webrtc-notes.md), and
just enough of the DevTools protocol to read the page and photograph it."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "") if p and Path(p).exists()),
                None)
MISSING = "chromium is not installed (apt-get install -y chromium)"


def chromium_command(url: str, profile: Path, microphone_wav: Path | str, microphone_allowed: bool = True,
                     window: tuple[int, int] = (1000, 1200)) -> list[str]:
    """Open ``url`` (the edge's page, started with ?autostart=1) with DevTools on a free port. Without
    ``microphone_allowed`` the page's request for the microphone is refused, as a person refusing it would."""
    assert CHROMIUM is not None, MISSING
    permission = "--use-fake-ui-for-media-stream" if microphone_allowed else "--deny-permission-prompts"
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", permission, "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone_wav}", f"--window-size={window[0]},{window[1]}",
            "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
            "--remote-debugging-port=0", url]


class DevTools:
    """The Chrome DevTools protocol of the browser started with ``profile``: one command per connection."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self._id = 0

    async def call(self, http: aiohttp.ClientSession, method: str, params: dict[str, Any] | None = None) -> Any:
        port = (self.profile / "DevToolsActivePort").read_text().split()[0]
        async with http.get(f"http://127.0.0.1:{port}/json") as resp:
            pages = [t for t in await resp.json() if t["type"] == "page"]
        async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            self._id += 1
            await ws.send_json({"id": self._id, "method": method, "params": params or {}})
            async for msg in ws:
                data = json.loads(msg.data)
                if data.get("id") == self._id:
                    return data.get("result")
        return None

    async def evaluate(self, http: aiohttp.ClientSession, expression: str) -> Any:
        result = await self.call(http, "Runtime.evaluate",
                                 {"expression": expression, "awaitPromise": True, "returnByValue": True})
        return result["result"].get("value") if result else None

    async def screenshot(self, http: aiohttp.ClientSession, path: Path) -> Path:
        """The whole page as a PNG at ``path``."""
        result = await self.call(http, "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path


async def page_value(devtools: DevTools, http: aiohttp.ClientSession, expression: str, timeout: float,
                     until: Callable[[Any], bool] = bool) -> Any:
    """The first value of ``expression`` in the page that satisfies ``until``, polled (the browser may still be
    starting); TimeoutError after ``timeout`` s."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                value = await devtools.evaluate(http, expression)
            except (OSError, aiohttp.ClientError, KeyError, IndexError, TypeError):
                value = None  # no DevTools port or page yet
            if until(value):
                return value
            await asyncio.sleep(0.25)  # polling the page, bounded by the timeout
