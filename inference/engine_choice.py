"""The engine a worker's settings ask for (the engine package itself knows no settings). Vendor modules are
imported only when chosen."""

from __future__ import annotations

from inference.engines.base import AsrEngine, LlmEngine, TtsEngine, TurnEndEngine
from inference.settings import AsrSettings, ResponderSettings


def make_asr(s: AsrSettings) -> AsrEngine:
    if s.asr_engine == "openai":
        from inference.engines.openai_compat import OpenAiAsr

        return OpenAiAsr(s.endpoint(s.asr_openai_url, s.asr_openai_model, s.asr_openai_key), s.asr_language)
    if s.asr_engine == "whisper":
        from inference.engines.whisper import WhisperAsr

        return WhisperAsr(threads=s.asr_whisper_threads, min_window_s=s.asr_whisper_min_window_s)
    from inference.engines.sphinx import PocketSphinxAsr

    return PocketSphinxAsr()


def make_turn_scorer(s: AsrSettings) -> TurnEndEngine | None:
    if s.asr_turn_scorer == "off":
        return None
    from inference.engines.smart_turn import SmartTurn

    return SmartTurn(max_batch=s.asr_turn_max_batch)


def make_llm(s: ResponderSettings) -> LlmEngine:
    if s.llm_engine == "openai":
        from inference.engines.openai_compat import OpenAiLlm

        return OpenAiLlm(s.endpoint(s.llm_openai_url, s.llm_openai_model, s.llm_openai_key),
                         s.llm_temperature, s.llm_max_tokens)
    from inference.engines.rules_llm import RulesLlm

    return RulesLlm()


def make_tts(s: ResponderSettings) -> TtsEngine:
    if s.tts_engine == "openai":
        from inference.engines.openai_compat import OpenAiTts

        return OpenAiTts(s.endpoint(s.tts_openai_url, s.tts_openai_model, s.tts_openai_key),
                         s.tts_openai_voice, s.tts_openai_sample_rate)
    from inference.engines.espeak import EspeakTts

    return EspeakTts(s.tts_espeak_voice, s.tts_espeak_rate_wpm)
