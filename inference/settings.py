"""Settings of the inference workers (``voicebus asr``, ``voicebus responder``), from VOICEBUS_* variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from inference.engines.openai_http import Endpoint
from runtime.metrics import metrics_host_field, metrics_port_field
from runtime.settings import CommonSettings


class HttpEngineSettings(CommonSettings):
    """What every OpenAI-compatible adapter shares."""

    http_timeout_s: float = Field(30.0, gt=0, description="Connect and read timeout of engine HTTP requests "
                                  "(for a stream: the longest gap between two chunks).")
    http_retries: int = Field(2, ge=0, description="Retries of an engine HTTP request after a retryable failure "
                              "(timeout, 408/409/429/5xx), before any of its output was used.")
    http_backoff_s: float = Field(0.2, gt=0, description="First wait between engine HTTP retries (doubles each "
                                  "time; a Retry-After header wins).")

    def endpoint(self, url: str, model: str, key: SecretStr) -> Endpoint:
        return Endpoint(url, model, key.get_secret_value(), self.http_timeout_s, self.http_retries,
                        self.http_backoff_s)


class AsrSettings(HttpEngineSettings):
    asr_engine: Literal["whisper", "pocketsphinx", "openai"] = Field(
        "whisper", description="ASR engine: whisper (Whisper tiny.en embedded, extra `asr-whisper`; punctuated "
        "finals, partials only at pauses), pocketsphinx (embedded, extra `asr`; word-by-word partials, a smaller "
        "install, but three times Whisper's word errors on clean speech, six times on telephone audio, and three "
        "times its CPU) or openai (a Whisper server). Measured with python -m bench.asr.")
    asr_whisper_threads: int = Field(1, ge=1, description="CPU threads of the embedded Whisper model (utterances "
                                     "of all sessions queue for it).")
    asr_whisper_min_window_s: float = Field(
        10.0, ge=1, le=30, description="Shortest encoder window of the embedded Whisper (the utterance plus 1 s "
        "of silence, at least this). Measured (python -m bench.asr): 10 s keeps the word errors of 30 s "
        "(within two words on the librivox clips) at a quarter of the CPU; 6-8 s lose words, windows ending "
        "right after the speech make the decoder repeat itself.")
    asr_speculate_after_ms: int = Field(
        100, ge=0, description="Unvoiced audio after speech (by the edge VAD's per-frame flag) at which a "
        "recogniser with a slow final (whisper) starts it, before the VAD decides speech stopped; if the person "
        "goes on it is started again at the next pause. 0: only at the speech stop.")
    asr_openai_url: str = Field("http://127.0.0.1:8000/v1", description="Base URL of the OpenAI-compatible "
                                "transcription server (…/v1; the worker posts to /audio/transcriptions).")
    asr_openai_model: str = Field("whisper-1", description="Model name sent to the transcription server.")
    asr_openai_key: SecretStr = Field(SecretStr(""), description="API key for the transcription server.")
    asr_language: str = Field("", description="Language hint for the transcription server (ISO 639-1, or empty).")
    asr_group_id: str = Field("voicebus-asr", description="Consumer group of the ASR workers.")
    asr_group_instance_id: str = Field(
        "", description="Static group membership (Kafka KIP-345): a name for this ASR worker, unique among the "
        "live ones and kept across its restarts (a supervisor sets it: `voicebus up` runs one of "
        "each service); a restarted ASR worker then gets its partitions back as soon as it joins,"
        " instead of after the session timeout. Empty: dynamic membership. With a name, an ASR "
        "worker stopped for good leaves its partitions idle until its session times out.")
    asr_preroll_ms: int = Field(200, ge=0, description="Audio before the VAD's speech start also fed to the "
                                "recogniser (onsets are soft).")
    asr_partial_interval_ms: int = Field(300, ge=20, description="Speech between two partial transcripts.")
    asr_max_utterance_s: float = Field(30.0, gt=0, description="An utterance this long is finalised even "
                                       "without a speech-stopped event.")
    asr_turn_scorer: Literal["smart-turn", "off"] = Field(
        "smart-turn", description="End-of-turn scorer run at every speech stop: smart-turn (Smart Turn v3.2, "
        "embedded; the model comes with scripts/install.sh, onnxruntime with extra `vad`) or off (the turn "
        "processor then decides by silence and text alone).")
    asr_turn_max_batch: int = Field(
        1, ge=1, description="Sessions scored in one model call when they stop speaking together. Measured on "
        "2 cores: batching saves nothing per item (about 60 ms each) and every session of a batch waits for "
        "the whole batch, so one at a time answers the first ones soonest.")
    asr_turn_gap_ms: int = Field(
        1500, ge=0, description="A pause this long before an utterance starts a new turn's audio for the "
        "scorer (audio before it is not scored); keep it at the turn processor's VOICEBUS_TURN_MAX_SILENCE_MS.")
    asr_turn_score_wait_ms: int = Field(
        250, ge=0, description="How long a final transcript waits for its utterance's end-of-turn score (the "
        "score goes out first); after that the final goes alone and the turn processor uses silence and text.")
    asr_idle_session_s: float = Field(60.0, gt=0, description="A session with no audio for this long is "
                                      "forgotten (its SessionEnded may have been lost).")
    asr_session_timeout_ms: int = Field(
        6000, ge=6000, description="Kafka group session timeout: how soon a crashed ASR worker's sessions move to "
        "another worker (or the one `voicebus up` restarts): measured 6.0 s at 6000, 9.5 s at 10000, 2.1 s with "
        "VOICEBUS_ASR_GROUP_INSTANCE_ID. Keep it well under the turn processor's "
        "VOICEBUS_TURN_ASR_WAIT_MS, so that the turns spoken meanwhile still get their words. 6000 is the least a "
        "broker accepts by default (group.min.session.timeout.ms).")
    metrics_host: str = metrics_host_field()
    asr_metrics_port: int = metrics_port_field(9101, "ASR worker")


class ResponderSettings(HttpEngineSettings):
    llm_engine: Literal["embedded", "openai"] = Field(
        "embedded", description="LLM engine: embedded (deterministic rules) or openai (/chat/completions).")
    llm_openai_url: str = Field("http://127.0.0.1:8000/v1", description="Base URL of the OpenAI-compatible chat "
                                "server (vLLM, llama.cpp server, a hosted API).")
    llm_openai_model: str = Field("gpt-4o-mini", description="Model name sent to the chat server.")
    llm_openai_key: SecretStr = Field(SecretStr(""), description="API key for the chat server.")
    llm_temperature: float = Field(0.7, ge=0, description="Sampling temperature sent to the chat server.")
    llm_max_tokens: int = Field(300, gt=0, description="Longest reply the chat server may generate.")
    llm_system_prompt: str = Field(
        "You are a friendly voice assistant. Answer in one to three short spoken sentences, no lists or markup.",
        description="System message put before the conversation.")
    tts_engine: Literal["espeak", "openai"] = Field(
        "espeak", description="TTS engine: espeak (embedded espeak-ng, extra `tts-espeak`, GPL-3.0) or openai "
        "(/audio/speech).")
    tts_espeak_voice: str = Field("en-us", description="espeak-ng voice name.")
    tts_espeak_rate_wpm: int = Field(175, gt=0, description="espeak-ng speaking rate, words per minute.")
    tts_openai_url: str = Field("http://127.0.0.1:8000/v1", description="Base URL of the OpenAI-compatible "
                                "speech server.")
    tts_openai_model: str = Field("tts-1", description="Model name sent to the speech server.")
    tts_openai_key: SecretStr = Field(SecretStr(""), description="API key for the speech server.")
    tts_openai_voice: str = Field("alloy", description="Voice name sent to the speech server.")
    tts_openai_sample_rate: int = Field(24000, description="Sample rate of the speech server's raw PCM output.")
    responder_group_id: str = Field("voicebus-responder", description="Consumer group of the responders.")
    responder_group_instance_id: str = Field(
        "", description="Static group membership (Kafka KIP-345): a name for this responder, unique among the "
        "live ones and kept across its restarts (a supervisor sets it: `voicebus up` runs one of "
        "each service); a restarted responder then gets its partitions back as soon as it joins, "
        "instead of after the session timeout. Empty: dynamic membership. With a name, a "
        "responder stopped for good leaves its partitions idle until its session times out.")
    responder_chunk_ms: int = Field(200, ge=20, le=2000, description="Audio per reply chunk event.")
    responder_max_lead_ms: int = Field(
        2000, ge=0, description="Reply audio sent ahead of real time at most (bounds the work a barge-in "
        "wastes; also what a speculative turn prepares before its commit). 0: no limit.")
    reply_resume_window_ms: int = Field(
        3000, ge=20, description="How long a reply paused by a barge-in is kept (its generation goes on) waiting "
        "for the barge-in to prove false; then it is cancelled. The edge reads the same variable.")
    responder_history_turns: int = Field(20, ge=0, description="Past turns of a session kept for the LLM.")
    responder_max_sessions: int = Field(10000, ge=1, description="Sessions whose history a responder keeps "
                                        "(least recently used forgotten first).")
    responder_max_turn_age_s: float = Field(
        30.0, gt=0, description="A turn event older than this (a replay after a crash) gets no reply.")
    responder_node_timeout_s: float = Field(
        3.0, gt=0, description="How long to wait for a node's reply topic to show up before the turn is "
        "dead-lettered as for an unknown node.")
    responder_session_timeout_ms: int = Field(
        6000, ge=6000, description="Kafka group session timeout: how soon a crashed responder's turns move to "
        "another responder (or the one `voicebus up` restarts); failover takes about this long (measured 5.5 s "
        "at 6000, 9.4 s at 10000; 1 s with VOICEBUS_RESPONDER_GROUP_INSTANCE_ID). 6000 is the least a broker accepts by default (group.min.session.timeout.ms).")
    metrics_host: str = metrics_host_field()
    responder_metrics_port: int = metrics_port_field(9102, "responder")
