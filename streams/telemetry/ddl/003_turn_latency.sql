-- Every turn with its stage times and the latencies operators ask for, in milliseconds: computed by
-- turn_latency_live from `turns`, stored in turn_latencies when a turn gets news (below), read as turn_latency.
-- A latency is NULL unless every stage it is made of was stamped (a turn still running, or one with no reply).
--
--   endpointing_ms       = turn_committed - speech_end
--                          how long we waited to be sure the person had finished.
--   voice_to_voice_ms    = reply_first_sent - speech_end
--                          server side: from the last voiced frame to the first reply frame handed to WebRTC.
--   asr_ms               = max(0, asr_final - turn_committed)
--                          the transcript's lag behind the commit (0 when it was ready first).
--   llm_ms               = max(0, llm_first_token - max(turn_committed, asr_final))
--                          time to first token once both the commit and the text existed.
--   tts_ms               = max(0, tts_first_audio - max(turn_committed, asr_final, llm_first_token))
--                          time to first audio once the first token existed.
--   model_ms             = asr_ms + llm_ms + tts_ms: model work on the critical path after the commit. Each part
--                          starts where the previous one ended, so ASR lag is counted once, and work done ahead
--                          during a speculative turn counts 0 (it was off the critical path).
--   platform_overhead_ms = voice_to_voice_ms - endpointing_ms - model_ms: our transport, Kafka hops and
--                          processing. Until the responder stamps when it started, the hop from the turn
--                          processor to the responder is inside llm_ms.
--   barge_in_reaction_ms = reply_last_sent - barge_in_speech_start
--                          how long the agent kept talking once the person spoke over it.
--   <stage>_offset_ms    = <stage> - speech_end: the turn's waterfall.
-- OR REPLACE: a view holds no data, so an upgrade brings its current definition.
CREATE OR REPLACE VIEW turn_latency_live AS
SELECT
    turn_day,
    turn_id,
    session_id,
    node_id,
    turn_time,
    concat(if(asr_engine = '', '-', asr_engine), '/', if(llm_engine = '', '-', llm_engine), '/',
           if(tts_engine = '', '-', tts_engine)) AS engine,
    asr_engine, llm_engine, tts_engine,
    speech_end, vad_end, turn_speculative, turn_committed, asr_final, llm_first_token, tts_first_audio,
    reply_first_at_edge, reply_first_sent, reply_last_sent, barge_in_speech_start,
    was_speculative, was_committed, withdrawn, barged_in, false_interruption, outcome,
    dateDiff('ns', speech_end, turn_committed) / 1e6 AS endpointing_ms,
    dateDiff('ns', speech_end, reply_first_sent) / 1e6 AS voice_to_voice_ms,
    if(asr_final IS NULL OR turn_committed IS NULL, NULL,
       greatest(0, dateDiff('ns', turn_committed, asr_final)) / 1e6) AS asr_ms,
    if(llm_first_token IS NULL OR asr_final IS NULL OR turn_committed IS NULL, NULL,
       greatest(0, dateDiff('ns', greatest(turn_committed, asr_final), llm_first_token)) / 1e6) AS llm_ms,
    if(tts_first_audio IS NULL OR llm_first_token IS NULL OR asr_final IS NULL OR turn_committed IS NULL, NULL,
       greatest(0, dateDiff('ns', greatest(turn_committed, asr_final, llm_first_token), tts_first_audio)) / 1e6)
        AS tts_ms,
    asr_ms + llm_ms + tts_ms AS model_ms,
    voice_to_voice_ms - endpointing_ms - model_ms AS platform_overhead_ms,
    dateDiff('ns', barge_in_speech_start, reply_last_sent) / 1e6 AS barge_in_reaction_ms,
    dateDiff('ns', speech_end, vad_end) / 1e6 AS vad_end_offset_ms,
    dateDiff('ns', speech_end, turn_speculative) / 1e6 AS turn_speculative_offset_ms,
    dateDiff('ns', speech_end, turn_committed) / 1e6 AS turn_committed_offset_ms,
    dateDiff('ns', speech_end, asr_final) / 1e6 AS asr_final_offset_ms,
    dateDiff('ns', speech_end, llm_first_token) / 1e6 AS llm_first_token_offset_ms,
    dateDiff('ns', speech_end, tts_first_audio) / 1e6 AS tts_first_audio_offset_ms,
    dateDiff('ns', speech_end, reply_first_at_edge) / 1e6 AS reply_first_at_edge_offset_ms,
    dateDiff('ns', speech_end, reply_first_sent) / 1e6 AS reply_first_sent_offset_ms,
    dateDiff('ns', speech_end, reply_last_sent) / 1e6 AS reply_last_sent_offset_ms,
    dateDiff('ns', speech_end, barge_in_speech_start) / 1e6 AS barge_in_speech_start_offset_ms
FROM turns FINAL
SETTINGS do_not_merge_across_partitions_select_final = 1;

-- The rows of turn_latency_live, stored: reads at scale (10 M turns) then do no per-turn arithmetic and read only
-- the columns they use. The telemetry sink stores a turn's row again after every batch that brought news of it
-- (streams/telemetry/stored.py), so the row is complete once the turn's last stage is in; the newest row of a turn
-- (computed_at) is the one kept. A database made before this table existed is filled from `turns` once.
CREATE TABLE IF NOT EXISTS turn_latencies
(
    turn_day                        Date,
    turn_id                         String,
    session_id                      String,
    node_id                         LowCardinality(String),
    turn_time                       DateTime64(9, 'UTC'),
    engine                          LowCardinality(String),
    asr_engine                      LowCardinality(String),
    llm_engine                      LowCardinality(String),
    tts_engine                      LowCardinality(String),
    speech_end                      Nullable(DateTime64(9, 'UTC')),
    vad_end                         Nullable(DateTime64(9, 'UTC')),
    turn_speculative                Nullable(DateTime64(9, 'UTC')),
    turn_committed                  Nullable(DateTime64(9, 'UTC')),
    asr_final                       Nullable(DateTime64(9, 'UTC')),
    llm_first_token                 Nullable(DateTime64(9, 'UTC')),
    tts_first_audio                 Nullable(DateTime64(9, 'UTC')),
    reply_first_at_edge             Nullable(DateTime64(9, 'UTC')),
    reply_first_sent                Nullable(DateTime64(9, 'UTC')),
    reply_last_sent                 Nullable(DateTime64(9, 'UTC')),
    barge_in_speech_start           Nullable(DateTime64(9, 'UTC')),
    was_speculative                 UInt8,
    was_committed                   UInt8,
    withdrawn                       UInt8,
    barged_in                       UInt8,
    false_interruption              UInt8,
    outcome                         LowCardinality(String),
    endpointing_ms                  Nullable(Float64),
    voice_to_voice_ms               Nullable(Float64),
    asr_ms                          Nullable(Float64),
    llm_ms                          Nullable(Float64),
    tts_ms                          Nullable(Float64),
    model_ms                        Nullable(Float64),
    platform_overhead_ms            Nullable(Float64),
    barge_in_reaction_ms            Nullable(Float64),
    vad_end_offset_ms               Nullable(Float64),
    turn_speculative_offset_ms      Nullable(Float64),
    turn_committed_offset_ms        Nullable(Float64),
    asr_final_offset_ms             Nullable(Float64),
    llm_first_token_offset_ms       Nullable(Float64),
    tts_first_audio_offset_ms       Nullable(Float64),
    reply_first_at_edge_offset_ms   Nullable(Float64),
    reply_first_sent_offset_ms      Nullable(Float64),
    reply_last_sent_offset_ms       Nullable(Float64),
    barge_in_speech_start_offset_ms Nullable(Float64),
    computed_at                     DateTime64(9, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY turn_day
ORDER BY (turn_day, turn_id)
SETTINGS min_age_to_force_merge_seconds = 3600, min_age_to_force_merge_on_partition_only = 1;

-- What operators and dashboards read: one row per turn. It replaces the view of that name that computed the rows
-- on every read (voicebus before turn_latencies).
CREATE OR REPLACE VIEW turn_latency AS
SELECT * EXCEPT computed_at
FROM turn_latencies FINAL
SETTINGS do_not_merge_across_partitions_select_final = 1;

-- Data migrations done (name, when): what streams/telemetry/stored.py has run once on this database.
CREATE TABLE IF NOT EXISTS migrations
(
    name    String,
    applied DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY name;
