"""`voicebus bench` argument wiring: which engines, and the levels each mode sweeps by default."""

from __future__ import annotations

import pytest

from bench.platform import parse_args
from bench.reference_stack import platform_env


@pytest.mark.parametrize(("argv", "engines", "sessions"), [
    ([], "embedded", [1, 3, 5]),
    (["--engines", "embedded", "--sessions", "4"], "embedded", [4]),
    (["--engines", "reference"], "reference", [2, 5, 10, 15, 20, 25]),
    (["--engines", "reference", "--sessions", "10,15"], "reference", [10, 15]),
])
def test_engines_and_levels(argv, engines, sessions):
    args = parse_args(argv)
    assert (args.engines, args.sessions) == (engines, sessions)


def test_unknown_engines_are_refused():
    with pytest.raises(SystemExit):
        parse_args(["--engines", "whisper"])


def test_reference_delays_are_options():
    args = parse_args(["--engines", "reference", "--asr-delay-ms", "0", "--llm-first-token-ms", "300"])
    assert (args.asr_delay_ms, args.llm_first_token_ms, args.tts_first_audio_ms) == (0.0, 300.0, 50.0)


def test_the_platform_under_test_uses_the_reference_engines_everywhere(tmp_path):
    env = platform_env("http://127.0.0.1:1/v1", tmp_path, kafka=None)
    assert {env[f"VOICEBUS_{s}_ENGINE"] for s in ("ASR", "LLM", "TTS")} == {"openai"}
    assert {env[f"VOICEBUS_{s}_OPENAI_URL"] for s in ("ASR", "LLM", "TTS")} == {"http://127.0.0.1:1/v1"}
    assert env["VOICEBUS_KAFKA_BOOTSTRAP"] == f"127.0.0.1:{env['VOICEBUS_KAFKA_PORT']}"
    shared = platform_env("http://127.0.0.1:1/v1", tmp_path, kafka="10.0.0.1:9092")
    assert (shared["VOICEBUS_UP_START_KAFKA"], shared["VOICEBUS_KAFKA_BOOTSTRAP"]) == ("false", "10.0.0.1:9092")
