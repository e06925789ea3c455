"""The embedded Whisper's pieces that the contract suite does not show: the model is the one measured, the token
decoding, the encoder window."""

from __future__ import annotations

import asyncio
import hashlib

import numpy as np
import pytest

from tests.inference.conftest import shared_whisper
from tests.inference.recordings import load


@pytest.fixture(scope="module")
def engine_module():
    shared_whisper()  # skips without the extra
    from inference.engines import whisper

    return whisper


def test_the_installed_model_is_the_one_measured(engine_module):
    digest = hashlib.sha256()
    with open(engine_module.model_dir() / "model.bin", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    assert digest.hexdigest() == engine_module.MODEL_SHA256


def test_tokens_are_decoded_as_byte_level_bpe(engine_module):
    vocabulary = engine_module.Vocabulary(engine_module.model_dir() / "vocabulary.txt")
    ids = [vocabulary.tokens.index(t) for t in ("Go", "Ġforward", "Ġ10", "Ġmeters", ".")]
    assert vocabulary.text([*vocabulary.prompt, *ids, vocabulary.end_of_text]) == "Go forward 10 meters."
    assert vocabulary.text([vocabulary.tokens.index("Ġcaf"), vocabulary.tokens.index("Ã©")]) == " café"


@pytest.mark.parametrize("seconds, min_window_s, frames", [
    (2.0, 10.0, 1000),  # short utterances get the minimum window
    (9.5, 10.0, 1050),  # the audio and 1 s of silence
    (9.505, 10.0, 1052),  # always even
    (40.0, 10.0, 3000),  # never past Whisper's 30 s
    (2.0, 30.0, 3000),
])
def test_the_encoder_window(engine_module, seconds, min_window_s, frames):
    assert engine_module.window_frames(int(seconds * 16000), min_window_s) == frames


async def test_partial_is_the_prepared_text_once_ready(engine_module, speech_dir):
    engine = shared_whisper()
    stream = await engine.stream(16000)
    try:
        await stream.push(load(speech_dir / "misc" / "goforward.wav"))
        assert await stream.partial() == ""
        await stream.prepare()
        await stream.push(bytes(640 * 5))  # the pause goes on
        await asyncio.wrap_future(engine.submit(np.zeros(0, np.float32)))  # the model's queue runs in order
        assert (await stream.partial()).rstrip(".").lower() == "go forward 10 meters"
    finally:
        await stream.aclose()
