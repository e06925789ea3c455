"""The reference engines over real HTTP, through the platform's own OpenAI adapters: a registered recording is
answered with its known words, even after Opus both ways and cut in two at a pause as the VAD would; every chat
gets the fixed reply and every speech request its pre-rendered audio."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bench.reference_server import SPEECH_RATE, Behaviour, OpenAiProtocolServer, ReferenceAnswers, serving
from inference.engines.base import Message
from inference.engines.openai_compat import OpenAiAsr, OpenAiLlm, OpenAiTts
from inference.engines.openai_http import Endpoint
from ingest.audio import OpusDecoder
from ingest.playout import OpusPacketizer
from runtime.pcm import Resampler, read_wav, resample
from tests.conftest import SPEECH

LIBRIVOX = sorted((SPEECH / "librivox").glob("*.wav"))
AUDIO = [SPEECH / "misc" / "goforward.wav", SPEECH / "misc" / "jfk.wav", *LIBRIVOX]
REPLY = SPEECH / "misc" / "goforward.wav"


def through_opus(pcm: np.ndarray) -> np.ndarray:
    """What reaches the recogniser after the caller's Opus encoder and the edge's decoder (16 -> 48 -> 16 kHz)."""
    encoder, decoder, down = OpusPacketizer(32000), OpusDecoder(), Resampler(48_000, 16_000)
    out = []
    for i in range(0, len(pcm) - 319, 320):
        packet = encoder.encode(pcm[i:i + 320])
        out.append(down(decoder.decode(packet)) if packet else np.zeros(320, dtype=np.int16))
    return np.concatenate(out)


@pytest.fixture(scope="module")
def answers() -> ReferenceAnswers:
    return ReferenceAnswers.from_files(AUDIO, REPLY)


@pytest.fixture
async def reference(answers):
    answers.matched = answers.unmatched = 0
    async with serving(OpenAiProtocolServer(answers)) as server:
        yield server


def endpoint(server: OpenAiProtocolServer, model: str) -> Endpoint:
    return Endpoint(server.url, model, timeout_s=10.0, retries=0)


@pytest.mark.parametrize("path", AUDIO, ids=lambda p: p.stem[-8:])
async def test_a_registered_recording_gets_its_transcript(reference, path):
    pcm, rate = read_wav(path)
    asr = OpenAiAsr(endpoint(reference, "whisper-1"))
    try:
        text = await asr.transcribe(through_opus(pcm).tobytes(), rate)
    finally:
        await asr.aclose()
    transcript = path.with_suffix(".txt").read_text().split()
    assert text.split() == transcript[:-1] + [transcript[-1].rstrip(".") + "."]
    assert reference.answers.matched == 1 and reference.answers.unmatched == 0


async def test_a_recording_cut_at_a_pause_gets_the_words_of_each_part(reference):
    path = LIBRIVOX[1]  # "he was not an ill disposed young man"
    pcm, rate = read_wav(path)
    heard = through_opus(pcm)
    asr = OpenAiAsr(endpoint(reference, "whisper-1"))
    try:
        first = await asr.transcribe(heard[:len(heard) // 2].tobytes(), rate)
        second = await asr.transcribe(heard[len(heard) // 2:].tobytes(), rate)
    finally:
        await asr.aclose()
    words = path.with_suffix(".txt").read_text().split()
    assert second.endswith(".") and not first.endswith(".")
    assert (first + " " + second).rstrip(".").split() == words


async def test_audio_that_is_no_registered_recording_gets_no_words(reference):
    noise = np.random.default_rng(7).normal(0, 3000, 16000 * 2).astype(np.int16)
    asr = OpenAiAsr(endpoint(reference, "whisper-1"))
    try:
        assert await asr.transcribe(noise.tobytes(), 16000) == ""
    finally:
        await asr.aclose()
    assert reference.answers.unmatched == 1


async def test_chat_and_speech_give_the_fixed_reply_and_its_audio(reference):
    reference.behaviour = Behaviour(first_token_delay_s=0.05, first_audio_delay_s=0.05)
    llm, tts = OpenAiLlm(endpoint(reference, "gpt")), OpenAiTts(endpoint(reference, "tts-1"), sample_rate=SPEECH_RATE)
    try:
        t0 = time.monotonic()
        text = "".join([t async for t in llm.stream([Message("user", "what is the time")])])
        assert time.monotonic() - t0 >= 0.05
        audio = b"".join([piece async for piece in tts.stream(text)])
    finally:
        await llm.aclose()
        await tts.aclose()
    assert text == "Go forward ten meters."
    pcm, rate = read_wav(REPLY)
    assert audio == resample(pcm.tobytes(), rate, SPEECH_RATE)
