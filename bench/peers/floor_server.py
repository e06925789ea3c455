"""The floor of ``bench.peers_load``: a plain aiortc two-way audio server with no processing at all.

Each session's incoming audio is read (aiortc's jitter buffer and Opus decoder, nothing else) and a reply is
played back, paced on an absolute 20 ms clock. Whatever a voice server does on top costs more than this.

    python bench/peers/floor_server.py --port 18190 --reply ../shared/data/speech/misc/jfk.wav
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import time
import wave

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from peer_common import CaptureClock, Stats, app, serve

FRAME = 960  # 20 ms at 48 kHz


def reply_pcm48k(path: str) -> np.ndarray:
    with wave.open(path) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        rate = w.getframerate()
    return np.repeat(pcm, 48000 // rate)  # no filter: the floor's reply need not sound good, only be sent


class ReplyTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, pcm: np.ndarray) -> None:
        super().__init__()
        self._pcm, self._n, self._t0 = pcm, 0, 0.0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._n == 0:
            self._t0 = time.time()
        else:
            await asyncio.sleep(max(0.0, self._t0 + self._n * 0.02 - time.time()))
        start = (self._n * FRAME) % (len(self._pcm) - FRAME)
        frame = av.AudioFrame.from_ndarray(self._pcm[start:start + FRAME].reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self._n * FRAME, fractions.Fraction(1, 48000)
        self._n += 1
        return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reply", required=True, help="16 kHz mono WAV played back in a loop")
    args = parser.parse_args()
    reply, stats = reply_pcm48k(args.reply), Stats()

    async def offer(sdp: str, session_id: str):
        pc = RTCPeerConnection()
        tasks: list[asyncio.Task[None]] = []

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind != "audio":
                return
            clock = CaptureClock()
            clock.hook(next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track))
            pc.addTrack(ReplyTrack(reply))

            async def read() -> None:
                try:
                    while True:
                        frame = await track.recv()
                        stats.out(clock.captured(frame.pts))
                except MediaStreamError:
                    return

            tasks.append(asyncio.ensure_future(read()))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())

        async def close() -> None:
            await pc.close()
            for task in tasks:
                task.cancel()

        return pc.localDescription.sdp, close

    serve(app(offer, stats), args.port)


if __name__ == "__main__":
    main()
