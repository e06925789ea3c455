"""A real browser holds a conversation: headless Chromium opens the edge's page with the browser's own echo
cancellation on (the product default) and a fake microphone saying two things with pauses, talks to the whole
platform, and the page shows it: the person's words, each reply's words once, a latency bar per turn, the level
meters moving. A screenshot of the page is kept in test-artifacts/ (ignored by git)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from runtime.pcm import read_wav, wav_bytes
from tests.browser import CHROMIUM, MISSING, DevTools, chromium_command, page_value
from tests.conftest import REPO, SPEECH
from tests.e2e.conftest import Platform
from tests.e2e.test_conversation import turns_in_clickhouse

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(CHROMIUM is None, reason=MISSING)]

ARTIFACTS = REPO / "test-artifacts"
RATE = 16000
# What the microphone says: silence, then two things with pauses long enough for each reply to play out.
SCRIPT: list[Path | float] = [1.0, SPEECH / "misc" / "goforward.wav", 7.0,
                              SPEECH / "librivox" / "sense_and_sensibility_01_austen_64kb-0880.wav", 9.0]

# What the page shows, read from its DOM (and what it was told, to compare with).
SHOWN = """(() => {
  const level = (id) => +(document.getElementById(id).dataset.peak || 0);
  const latency = (el) => el && {ms: +el.dataset.ms,
                                 segments: [...el.querySelectorAll("[data-segment]")].map((s) => s.dataset.segment)};
  return {
    session: sessionId,
    you: [...document.querySelectorAll(".msg.you")].map((e) => ({
      text: e.querySelector(".text").textContent, final: e.dataset.final === "1"})),
    agent: [...document.querySelectorAll(".msg.agent")].map((e) => ({
      turn: e.dataset.turnId, text: e.querySelector(".text").textContent.replace(/\\s+/g, " ").trim(),
      latency: latency(e.querySelector(".latency"))})),
    told: window.voicebus.told, states: window.voicebus.states,
    peaks: {mic: level("mic-level"), agent: level("agent-level")},
  };
})()"""


def conversation_wav(path: Path) -> Path:
    parts = [np.zeros(int(p * RATE), np.int16) if isinstance(p, float) else read_wav(p)[0] for p in SCRIPT]
    path.write_bytes(wav_bytes(np.concatenate(parts).tobytes(), RATE))
    return path


def done(shown: dict[str, Any]) -> bool:
    """Both things said were recognised and answered (latency bars shown), and every reply that started ended."""
    told = shown["told"]
    started = {m["turn_id"] for m in told if m["type"] == "reply_started"}
    ended = {m["turn_id"] for m in told if m["type"] == "reply_ended"}
    bars = {a["turn"] for a in shown["agent"] if a["latency"]}
    return sum(u["final"] for u in shown["you"]) >= 2 and len(started) >= 2 and started <= ended and started <= bars


async def test_the_page_shows_the_conversation(platform: Platform, tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    microphone = f"{conversation_wav(tmp_path / 'conversation.wav')}%noloop"
    browser = subprocess.Popen(chromium_command(f"{platform.url}/?autostart=1", profile, microphone),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    devtools = DevTools(profile)
    try:
        async with aiohttp.ClientSession() as http:
            try:
                shown = await page_value(devtools, http, SHOWN, 120, until=lambda s: bool(s) and done(s))
            finally:
                shot = await devtools.screenshot(http, ARTIFACTS / "page-conversation.png")
                print(f"\nscreenshot of the page: {shot}")
    finally:
        browser.terminate()
        browser.wait(timeout=10)

    # The person's words: each utterance once, its final replacing its partials.
    finals = [u["text"] for u in shown["you"] if u["final"]]
    assert len(finals) == 2 and "forward" in finals[0], shown["you"]
    # The agent's words once per reply, as the whole reply text the edge sent, in the order spoken.
    whole = {m["turn_id"]: m["text"] for m in shown["told"] if m["type"] == "reply_text"}
    answered = [a for a in shown["agent"] if a["turn"] in whole]
    assert len(answered) >= 2, shown["agent"]
    for reply in answered:
        assert reply["text"] == " ".join(whole[reply["turn"]].split()), reply
    # A latency bar for each turn, with every segment known, and the same voice to voice as ClickHouse has
    # (both from the turn's stage times).
    rows = {r["turn_id"]: r for r in await turns_in_clickhouse(shown["session"], expected=2)}
    for reply in answered:
        bar = reply["latency"]
        assert bar["segments"] == ["endpointing", "recognition", "model", "platform", "playout"], reply
        assert bar["ms"] > 0 and abs(bar["ms"] - rows[reply["turn"]]["voice_to_voice_ms"]) <= 1, (bar, rows)
    # States a person can follow, and both level meters moved.
    assert {"connecting", "listening", "thinking", "speaking"} <= set(shown["states"]), shown["states"]
    assert shown["peaks"]["mic"] > 0.3 and shown["peaks"]["agent"] > 0.3, shown["peaks"]
