-- Per-minute latency quantiles by node and engine, for dashboards. Quantile states, so minutes, nodes and
-- engines merge (quantilesMerge). Refreshed every minute from turn_latency over the last two hours: a turn's
-- latencies exist only once its last stage is in, which no insert-triggered view can know; recomputing a window
-- (and keeping the newest row per key) never double counts a turn.
CREATE TABLE IF NOT EXISTS latency_by_minute
(
    minute               DateTime('UTC'),
    node_id              LowCardinality(String),
    engine               LowCardinality(String),
    refreshed_at         DateTime64(3, 'UTC'),
    turns                UInt64,
    endpointing          AggregateFunction(quantiles(0.5, 0.95, 0.99), Nullable(Float64)),
    voice_to_voice       AggregateFunction(quantiles(0.5, 0.95, 0.99), Nullable(Float64)),
    model                AggregateFunction(quantiles(0.5, 0.95, 0.99), Nullable(Float64)),
    platform_overhead    AggregateFunction(quantiles(0.5, 0.95, 0.99), Nullable(Float64)),
    barge_in_reaction    AggregateFunction(quantiles(0.5, 0.95, 0.99), Nullable(Float64))
)
ENGINE = ReplacingMergeTree(refreshed_at)
PARTITION BY toDate(minute)
ORDER BY (minute, node_id, engine);

CREATE MATERIALIZED VIEW IF NOT EXISTS latency_by_minute_refresh
REFRESH EVERY 1 MINUTE APPEND TO latency_by_minute AS
SELECT
    toStartOfMinute(turn_time) AS minute,
    node_id,
    engine,
    now64(3) AS refreshed_at,
    count() AS turns,
    quantilesState(0.5, 0.95, 0.99)(endpointing_ms) AS endpointing,
    quantilesState(0.5, 0.95, 0.99)(voice_to_voice_ms) AS voice_to_voice,
    quantilesState(0.5, 0.95, 0.99)(model_ms) AS model,
    quantilesState(0.5, 0.95, 0.99)(platform_overhead_ms) AS platform_overhead,
    quantilesState(0.5, 0.95, 0.99)(barge_in_reaction_ms) AS barge_in_reaction
FROM turn_latency
WHERE turn_day >= yesterday() AND turn_time >= now() - INTERVAL 2 HOUR
GROUP BY minute, node_id, engine;
