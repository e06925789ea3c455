-- One row per turn: the time of every stage of the timeline and the turn's decisions, aggregated by ClickHouse
-- from the raw tables above (never joined in Python). Every column merges with min or max, so a redelivered event
-- (same values again) changes nothing. Read it through the turn_latency_live view (FINAL) or GROUP BY turn_id.
CREATE TABLE IF NOT EXISTS turns
(
    turn_day              Date,
    turn_id               String,
    session_id            SimpleAggregateFunction(any, String),
    node_id               SimpleAggregateFunction(max, LowCardinality(String)),
    turn_time             SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    asr_engine            SimpleAggregateFunction(max, LowCardinality(String)),
    llm_engine            SimpleAggregateFunction(max, LowCardinality(String)),
    tts_engine            SimpleAggregateFunction(max, LowCardinality(String)),
    speech_end            SimpleAggregateFunction(min, Nullable(DateTime64(9, 'UTC'))),
    vad_end               SimpleAggregateFunction(min, Nullable(DateTime64(9, 'UTC'))),
    turn_speculative      SimpleAggregateFunction(min, Nullable(DateTime64(9, 'UTC'))),
    turn_committed        SimpleAggregateFunction(min, Nullable(DateTime64(9, 'UTC'))),
    asr_final             SimpleAggregateFunction(min, Nullable(DateTime64(9, 'UTC'))),
    llm_first_token       SimpleAggregateFunction(min, Nullable(DateTime64(9, 'UTC'))),
    tts_first_audio       SimpleAggregateFunction(min, Nullable(DateTime64(9, 'UTC'))),
    reply_first_at_edge   SimpleAggregateFunction(min, Nullable(DateTime64(9, 'UTC'))),
    reply_first_sent      SimpleAggregateFunction(min, Nullable(DateTime64(9, 'UTC'))),
    reply_last_sent       SimpleAggregateFunction(min, Nullable(DateTime64(9, 'UTC'))),
    barge_in_speech_start SimpleAggregateFunction(min, Nullable(DateTime64(9, 'UTC'))),
    was_speculative       SimpleAggregateFunction(max, UInt8),
    was_committed         SimpleAggregateFunction(max, UInt8),
    withdrawn             SimpleAggregateFunction(max, UInt8),
    barged_in             SimpleAggregateFunction(max, UInt8),
    false_interruption    SimpleAggregateFunction(max, UInt8),
    outcome               SimpleAggregateFunction(max, LowCardinality(String))
)
ENGINE = AggregatingMergeTree
PARTITION BY turn_day
ORDER BY (turn_day, turn_id)
SETTINGS min_age_to_force_merge_seconds = 3600, min_age_to_force_merge_on_partition_only = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS turns_from_stages TO turns AS
SELECT
    turn_day,
    turn_id,
    any(session_id) AS session_id,
    max(node_id) AS node_id,
    min(stage_time) AS turn_time,
    maxIf(engine, stage = 'asr_final') AS asr_engine,
    maxIf(engine, stage = 'llm_first_token') AS llm_engine,
    maxIf(engine, stage = 'tts_first_audio') AS tts_engine,
    minIf(toNullable(stage_time), stage = 'speech_end') AS speech_end,
    minIf(toNullable(stage_time), stage = 'vad_end') AS vad_end,
    minIf(toNullable(stage_time), stage = 'turn_speculative') AS turn_speculative,
    minIf(toNullable(stage_time), stage = 'turn_committed') AS turn_committed,
    minIf(toNullable(stage_time), stage = 'asr_final') AS asr_final,
    minIf(toNullable(stage_time), stage = 'llm_first_token') AS llm_first_token,
    minIf(toNullable(stage_time), stage = 'tts_first_audio') AS tts_first_audio,
    minIf(toNullable(stage_time), stage = 'reply_first_at_edge') AS reply_first_at_edge,
    minIf(toNullable(stage_time), stage = 'reply_first_sent') AS reply_first_sent,
    minIf(toNullable(stage_time), stage = 'reply_last_sent') AS reply_last_sent,
    minIf(toNullable(stage_time), stage = 'barge_in_speech_start') AS barge_in_speech_start
FROM stage_events
GROUP BY turn_day, turn_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS turns_from_decisions TO turns AS
SELECT
    turn_day,
    turn_id,
    any(session_id) AS session_id,
    max(node_id) AS node_id,
    min(event_time) AS turn_time,
    max(kind = 'speculative') AS was_speculative,
    max(kind = 'committed') AS was_committed,
    max(kind = 'cancelled' AND detail = 'withdrawn') AS withdrawn,
    max(kind = 'barge_in') AS barged_in,
    max(kind = 'false_interruption') AS false_interruption,
    maxIf(detail, kind = 'ended') AS outcome
FROM turn_decisions
GROUP BY turn_day, turn_id;
