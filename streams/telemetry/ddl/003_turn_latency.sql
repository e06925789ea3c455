-- Every turn with its stage times and the latencies operators ask for, in milliseconds.
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
CREATE VIEW IF NOT EXISTS turn_latency AS
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
