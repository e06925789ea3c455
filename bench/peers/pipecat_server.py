"""Pipecat 1.14 as a peer of ``bench.peers_load``: ``SmallWebRTCTransport`` with Silero VAD, one pipeline per
session (transport in -> VADProcessor(Silero) -> probe; a reply stream of OutputAudioRawFrames -> transport out),
as a Pipecat voice app is built before its STT/LLM/TTS. Run with Pipecat's own virtualenv, never voicebus's:

    PY=$(bash bench/peers/setup.sh | tail -1)
    $PY bench/peers/pipecat_server.py --port 18191 --reply ../shared/data/speech/misc/jfk.wav

The probe stands where a Pipecat app's STT would: each input frame that reaches it is one "capture -> pipeline"
sample (the frame's capture time from its RTP timestamp, see ``peer_common``; the timestamp is taken where
Pipecat reads the aiortc track and matched to the frame by sample count, as Pipecat resamples 48 -> 16 kHz).
"""

from __future__ import annotations

import argparse
import asyncio
import wave

import numpy as np
from peer_common import CaptureClock, Stats, app, serve
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame, VADUserStartedSpeakingFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection, SmallWebRTCTrack
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

RATE = 16000
CHUNK_MS = 200  # reply audio per frame queued, as voicebus's responder sends it

_recv = SmallWebRTCTrack.recv


async def _recv_noting_pts(self: SmallWebRTCTrack):  # type: ignore[no-untyped-def]
    """Pipecat reads the aiortc track here; the RTP timestamp of each audio frame is kept for the probe."""
    frame = await _recv(self)
    if frame is not None and getattr(frame, "sample_rate", None):
        self.__dict__.setdefault("bench_pts", []).append(frame.pts)
    return frame


SmallWebRTCTrack.recv = _recv_noting_pts  # type: ignore[method-assign]


class Probe(FrameProcessor):
    def __init__(self, connection: SmallWebRTCConnection, clock: CaptureClock, stats: Stats) -> None:
        super().__init__()
        self._connection, self._clock, self._stats = connection, clock, stats
        self._samples = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self._samples += len(frame.audio) // 2
            track = self._connection.audio_input_track()
            pts = getattr(track, "bench_pts", []) if track is not None else []
            k = (self._samples - 1) // (frame.sample_rate // 50)  # the 20 ms input frame this one ends in
            self._stats.out(self._clock.captured(pts[k]) if k < len(pts) else None)
            return  # an app's STT would take it here
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._stats.speech_starts += 1
        await self.push_frame(frame, direction)


def reply_chunks(path: str, seconds: float) -> list[bytes]:
    with wave.open(path) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    pcm = np.tile(pcm, int(seconds * RATE // len(pcm)) + 1)[:int(seconds * RATE)]
    step = RATE * CHUNK_MS // 1000
    return [pcm[i:i + step].tobytes() for i in range(0, len(pcm) - step + 1, step)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reply", required=True, help="16 kHz mono WAV played back in a loop")
    parser.add_argument("--reply-seconds", type=float, default=120.0, help="reply length per session")
    args = parser.parse_args()
    chunks, stats = reply_chunks(args.reply, args.reply_seconds), Stats()

    async def offer(sdp: str, session_id: str):
        connection = SmallWebRTCConnection()
        await connection.initialize(sdp=sdp, type="offer")
        clock = CaptureClock()
        clock.hook(connection.pc.getTransceivers()[0].receiver)
        transport = SmallWebRTCTransport(webrtc_connection=connection, params=TransportParams(
            audio_in_enabled=True, audio_out_enabled=True, audio_in_sample_rate=RATE, audio_out_sample_rate=RATE))
        pipeline = Pipeline([transport.input(), VADProcessor(vad_analyzer=SileroVADAnalyzer()),
                             Probe(connection, clock, stats), transport.output()])
        # PipelineTask / PipelineRunner are deprecated since 1.3 (PipelineWorker / WorkerRunner) but still run the
        # same transport and VAD, which is what is measured.
        task = PipelineTask(pipeline, params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE))

        @transport.event_handler("on_client_connected")
        async def on_connected(transport, client) -> None:  # type: ignore[no-untyped-def]
            await task.queue_frames([OutputAudioRawFrame(audio=c, sample_rate=RATE, num_channels=1) for c in chunks])

        runner = PipelineRunner(handle_sigint=False)
        running = asyncio.ensure_future(runner.run(task))

        async def close() -> None:
            await task.cancel()
            await connection.disconnect()
            running.cancel()

        return connection.get_answer()["sdp"], close

    serve(app(offer, stats), args.port)


if __name__ == "__main__":
    main()
