-- Session lifecycle from voice.sessions, one row per session (min/max merges make redelivery harmless).
CREATE TABLE IF NOT EXISTS sessions
(
    session_id     String,
    node_id        SimpleAggregateFunction(max, LowCardinality(String)),
    started        SimpleAggregateFunction(min, Nullable(DateTime64(9, 'UTC'))),
    ended          SimpleAggregateFunction(max, Nullable(DateTime64(9, 'UTC'))),
    end_reason     SimpleAggregateFunction(max, LowCardinality(String)),
    remote         SimpleAggregateFunction(max, String),
    user_agent     SimpleAggregateFunction(max, String),
    frames_in      SimpleAggregateFunction(max, UInt64),
    frames_dropped SimpleAggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY session_id;
