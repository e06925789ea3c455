"""The page on its own, in a real browser: it says clearly why a call could not start (a bad token, 401; a full
node, 503; no microphone), and it shows an interrupted reply as heard up to the interruption. A small stand-in
node serves the real page and answers as the edge does (ingest/server.py: JSON ``{"error": ...}``); the
interrupted reply is told to the page as the edge tells it (ingest/peer.py, EdgeSession._tell_page)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ingest.web import STATIC
from tests.browser import CHROMIUM, MISSING, DevTools, chromium_command, page_value
from tests.conftest import REPO, SPEECH, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(CHROMIUM is None, reason=MISSING)]

TOKEN = "right-token"
ERROR = "document.body.dataset.state === 'error' && document.getElementById('error').textContent"


@pytest.fixture
async def full_node() -> AsyncIterator[str]:
    """A node that wants TOKEN and holds all the sessions it can."""
    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def config(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        return web.json_response({"iceServers": []})

    async def sessions(request: web.Request) -> web.Response:
        return web.json_response({"error": "this node holds its limit of 1 sessions"}, status=503)

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/v1/config", config)
    app.router.add_post("/v1/sessions", sessions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def browsing(url: str, profile: Path, microphone_allowed: bool = True) -> AsyncIterator[tuple[DevTools, Any]]:
    args = chromium_command(url, profile, SPEECH / "misc" / "goforward.wav", microphone_allowed)
    browser = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    devtools = DevTools(profile)
    try:
        async with aiohttp.ClientSession() as http:
            await page_value(devtools, http, "!!document.getElementById('start')", 30)  # the page, loaded
            yield devtools, http
    finally:
        browser.terminate()
        browser.wait(timeout=10)


async def error_shown(url: str, profile: Path, microphone_allowed: bool = True, token: str = "") -> str:
    async with browsing(url, profile, microphone_allowed) as (devtools, http):
        if token:  # typed in before Start, as a person would
            await devtools.evaluate(http, f"document.getElementById('token').value = '{token}'; "
                                          "document.getElementById('start').click(); true")
        return str(await page_value(devtools, http, ERROR, 30))


async def test_a_bad_token_is_named(full_node: str, tmp_path: Path) -> None:
    shown = await error_shown(f"{full_node}/?autostart=1", tmp_path / "profile")
    assert "bad or missing token (401)" in shown


async def test_a_full_node_is_named(full_node: str, tmp_path: Path) -> None:
    shown = await error_shown(f"{full_node}/", tmp_path / "profile", token=TOKEN)
    assert "too many sessions" in shown and "(503)" in shown and "limit of 1 sessions" in shown


async def test_a_refused_microphone_is_named(full_node: str, tmp_path: Path) -> None:
    shown = await error_shown(f"{full_node}/", tmp_path / "profile", microphone_allowed=False, token=TOKEN)
    assert "No microphone permission" in shown


TURN = "0123456789abcdef0123456789abcdef-4"
STORY = ["Once upon a time, a small robot lived in a lighthouse by the sea.",
         "Every night it counted the ships that passed.", "One stormy evening the great lamp went dark."]
# A turn as the edge tells it: the person's words (partials, then the final), the reply's sentences with where
# each starts in its audio, the reply paused by the person speaking over it, resumed, and finally cut off
# 4.2 s in: in the middle of the second sentence (3.0 s to 5.5 s), after about half of its words.
TOLD = [
    {"type": "speech", "speaking": True, "speech_start_ms": 1000},
    {"type": "transcript", "final": False, "text": "tell me a", "speech_start_ms": 1000, "speech_end_ms": 1800},
    {"type": "speech", "speaking": False, "speech_start_ms": 1000, "speech_end_ms": 2400},
    {"type": "transcript", "final": True, "text": "tell me a story", "speech_start_ms": 1000, "speech_end_ms": 2400},
    {"type": "transcript", "final": False, "text": "tell me a sto", "speech_start_ms": 1000, "speech_end_ms": 2200},
    *({"type": "reply_sentence", "turn_id": TURN, "text": text, "at_ms": at}
      for text, at in zip(STORY, (0, 3000, 5500), strict=True)),
    {"type": "reply_started", "turn_id": TURN, "media_ms": 3100, "speech_start_ms": 1000, "speech_end_ms": 2400},
    {"type": "latency", "turn_id": TURN, "ms": 640,
     "segments_ms": {"endpointing": 420, "recognition": 0, "model": None, "platform": None, "playout": 12}},
    {"type": "reply_paused", "turn_id": TURN, "played_ms": 1500},
    {"type": "reply_resumed", "turn_id": TURN},
    {"type": "speech", "speaking": True, "speech_start_ms": 7300},
    {"type": "reply_ended", "turn_id": TURN, "played_ms": 4200, "interrupted": True},
]
PAINTED = """(() => {
  const agent = document.querySelector(".msg.agent");
  return {
    state: document.body.dataset.state, states: window.voicebus.states,
    you: [...document.querySelectorAll(".msg.you .text")].map((e) => [e.textContent, e.className]),
    unheard: [...agent.querySelectorAll(".unheard")].map((e) => e.textContent.trim()).join(" "),
    marks: [...agent.querySelectorAll(".cut")].map((e) => e.textContent),
    text: agent.querySelector(".text").textContent,
    latency: agent.querySelector(".latency").textContent,
    segments: [...agent.querySelectorAll("[data-segment]")].map((e) => e.dataset.segment),
  };
})()"""


async def test_an_interrupted_reply_shows_what_was_heard_and_what_was_not(full_node: str, tmp_path: Path) -> None:
    async with browsing(f"{full_node}/", tmp_path / "profile") as (devtools, http):
        for message in TOLD:  # as the data channel hands them to the page
            await devtools.evaluate(http, f"onMessage({json.dumps(message)}); true")
        painted = await devtools.evaluate(http, PAINTED)
        shot = await devtools.screenshot(http, REPO / "test-artifacts" / "page-interrupted.png")
        print(f"\nscreenshot of the page: {shot}")
    # The person's words once: the final, which no later partial replaces; a bubble for the new speech.
    assert painted["you"] == [["tell me a story", "text"], ["…", "text partial"]]
    heard = "Once upon a time, a small robot lived in a lighthouse by the sea. Every night it counted"
    assert painted["text"].startswith(heard) and painted["marks"] == ["✂ interrupted"]
    assert painted["unheard"] == "the ships that passed. One stormy evening the great lamp went dark."
    assert painted["states"][-4:] == ["speaking", "interrupted", "speaking", "interrupted"]
    # The bar shows what is known and says what is not.
    assert painted["segments"] == ["endpointing", "recognition", "playout"]
    assert "640 ms" in painted["latency"] and "not known: model, platform" in painted["latency"]
