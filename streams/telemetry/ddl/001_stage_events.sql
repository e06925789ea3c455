-- Raw stage stamps: one row per StageStamped event read from voice.telemetry.
-- turn_day is the UTC day of the first stamp of the turn the sink saw; every table of a turn is partitioned by it,
-- so a turn's rows stay together and days that are over merge into single parts (cheap FINAL).
-- A redelivered event has the same (turn_id, stage): ReplacingMergeTree keeps one of them.
CREATE TABLE IF NOT EXISTS stage_events
(
    turn_day       Date,
    turn_id        String,
    stage          LowCardinality(String),
    session_id     String,
    node_id        LowCardinality(String),
    stage_time     DateTime64(9, 'UTC'),
    stage_media_ns Nullable(Int64),
    service        LowCardinality(String),
    engine         LowCardinality(String),
    event_time     DateTime64(9, 'UTC'),
    seq            UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY turn_day
ORDER BY (turn_day, turn_id, stage)
SETTINGS min_age_to_force_merge_seconds = 3600, min_age_to_force_merge_on_partition_only = 1;

-- Turn decisions read from voice.turns, for the turn-taking rates (`voicebus ops taking`).
-- kind: speculative | committed | cancelled | barge_in | false_interruption | ended;
-- detail: the cancel reason or the end outcome.
CREATE TABLE IF NOT EXISTS turn_decisions
(
    turn_day   Date,
    turn_id    String,
    kind       LowCardinality(String),
    detail     LowCardinality(String),
    session_id String,
    node_id    LowCardinality(String),
    event_time DateTime64(9, 'UTC'),
    played_ms  Nullable(UInt32),
    seq        UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY turn_day
ORDER BY (turn_day, turn_id, kind, detail)
SETTINGS min_age_to_force_merge_seconds = 3600, min_age_to_force_merge_on_partition_only = 1;
