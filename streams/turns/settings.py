"""The turn processor's settings (environment variables VOICEBUS_TURN_*)."""

from __future__ import annotations

from pydantic import Field

from runtime.metrics import metrics_host_field, metrics_port_field
from runtime.settings import CommonSettings

# Words after which a sentence rarely ends: a pause here is more likely a hesitation than the end of a turn.
DEFAULT_CONTINUATION_WORDS = (
    "and,but,or,so,because,if,that,which,whose,the,a,an,of,to,for,with,from,into,my,your,our,their,"
    "um,uh,er,erm,hmm"
)


class TurnSettings(CommonSettings):
    turn_app_id: str = Field(
        "voicebus-turns",
        description="Faust app id of the turn processor (its consumer group), prefixed by the topic prefix.",
    )
    turn_silence_ms: int = Field(
        500, ge=0, description="Silence after speech that ends a turn when the transcript gives no signal."
    )
    turn_complete_silence_ms: int = Field(
        300, ge=0, description="Silence that ends a turn whose text ends a sentence (. ! ?)."
    )
    turn_incomplete_silence_ms: int = Field(
        1200, ge=0, description="Silence that ends a turn whose text ends in a continuation word."
    )
    turn_complete_probability: float = Field(
        0.8, ge=0, le=1, description="P(complete) from the end-of-turn model (EndOfTurnScored) at or above which "
        "the turn is judged finished: it ends after VOICEBUS_TURN_CONFIDENT_SILENCE_MS."
    )
    turn_incomplete_probability: float = Field(
        0.3, ge=0, le=1, description="P(complete) at or below which the person is judged mid-thought: the turn "
        "waits VOICEBUS_TURN_UNFINISHED_SILENCE_MS (no speculative turn). In between, or with no score, the "
        "silence and text rules decide alone."
    )
    turn_confident_silence_ms: int = Field(
        200, ge=0, description="Silence that ends a turn the end-of-turn model is confident is finished "
        "(unless its text ends in a continuation word: then the neutral silence)."
    )
    turn_unfinished_silence_ms: int = Field(
        1500, ge=0, description="Silence a turn waits when the end-of-turn model says mid-thought (unless its text "
        "ends a sentence: then the neutral silence); capped by VOICEBUS_TURN_MAX_SILENCE_MS."
    )
    turn_max_silence_ms: int = Field(
        1500, ge=0, description="Hard cap on the silence any turn waits for, whatever its text."
    )
    turn_speculative_ms: int = Field(
        200, ge=0, description="Pause after which a turn with text is offered speculatively to the responder."
    )
    turn_asr_wait_ms: int = Field(
        8000, ge=0, description="How much longer than its threshold a turn waits for the final transcript "
        "(the ASR sends one for every utterance; a loaded ASR is late, and a turn without it is dropped). "
        "Waiting costs nothing when the ASR is on time; on telephone audio a loaded recogniser was 3-4 s late."
    )
    turn_min_speech_ms: int = Field(
        150, ge=0, description="Speech shorter than this neither opens a turn nor resumes one."
    )
    turn_false_interruption_ms: int = Field(
        1000, ge=0, description="A barge-in with no transcribed words this long after it is a false interruption."
    )
    turn_resume_false_interruption: bool = Field(
        True, description="A barge-in is cancelled only once words make it real; without words the paused "
        "reply resumes (a false interruption). Off: every barge-in cancels the reply at once."
    )
    turn_continuation_words: str = Field(
        DEFAULT_CONTINUATION_WORDS, description="Comma-separated words after which a turn waits longer."
    )
    turn_commit_interval_s: float = Field(
        1.0, gt=0, description="How often the processor commits its consumer offsets (seconds)."
    )

    turn_session_timeout_s: float = Field(
        6.0, ge=6, description="Consumer group session timeout (seconds): how long the partitions of a "
        "worker that died wait before another worker (or the one `voicebus up` restarts) takes them over; no turn "
        "is decided meanwhile (measured 5.7 s at 6, 10.1 s at 10; 2.2 s with VOICEBUS_TURN_GROUP_INSTANCE_ID). "
        "6 is the least a broker accepts by default (group.min.session.timeout.ms).",
    )
    turn_group_instance_id: str = Field(
        "", description="Static group membership (Kafka KIP-345): a name for this turn processor, unique among "
        "the live ones and kept across its restarts (a supervisor sets it: `voicebus up` runs one"
        " of each service); a restarted turn processor then gets its partitions back as soon as "
        "it joins, instead of after the session timeout. Empty: dynamic membership. With a name, "
        "a turn processor stopped for good leaves its partitions idle until its session times "
        "out.")
    metrics_host: str = metrics_host_field()
    turn_metrics_port: int = metrics_port_field(9103, "turn processor")

    def app_id(self) -> str:
        return f"{self.topic_prefix}{self.turn_app_id}"
