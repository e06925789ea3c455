"""One WebRTC session's life at the edge: offer -> answer, media in and out, events, barge-in, close."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from ingest.engines import build_audio_processing
from ingest.engines.vad import VadEngine
from ingest.ice import ice_config
from ingest.inbound import Inbound, ProcessedFrame
from ingest.metrics import Metrics
from ingest.near_end import NearEnd
from ingest.page import PageNotes
from ingest.playout import PlayoutTrack
from ingest.publisher import Publisher
from ingest.rtp_tap import drain, tap_receiver
from ingest.settings import IngestSettings
from ingest.speech import Decision, Progress, SpeechStart, SpeechStop, VadParams
from schemas.audio import FLAG_CONCEALED, FLAG_VOICED, RATE, AudioFrame
from schemas.base import Envelope, Event, Stamper
from schemas.conversation import (
    ReplyAudioChunk,
    ReplyCancelled,
    ReplyEnded,
    ReplyResumed,
    ReplyStages,
    ReplyText,
    SpeechRecognised,
)
from schemas.edge import (
    PlayoutFinished,
    PlayoutInterrupted,
    PlayoutStarted,
    SessionEnded,
    SessionStarted,
    SpeechStarted,
    SpeechStopped,
    VadProgress,
)
from schemas.telemetry import Stage, StageStamped

log = logging.getLogger(__name__)


REPLY_SPANS_KEPT = 64  # replies per session whose speech span is remembered until they play


def _ms(media_ns: int) -> int:
    return media_ns // 1_000_000


def _span_ms(span: tuple[int, int]) -> dict[str, int]:
    return {"speech_start_ms": _ms(span[0]), "speech_end_ms": _ms(span[1])}


class BadOffer(ValueError):
    """The offer cannot start a session (malformed, or no audio)."""


class EdgeSession:
    def __init__(self, session_id: str, settings: IngestSettings, vad: VadEngine, publisher: Publisher,
                 metrics: Metrics, on_closed: Callable[[EdgeSession], None], remote: str = "",
                 user_agent: str = "") -> None:
        self.id, self.settings, self.metrics = session_id, settings, metrics
        self._publisher, self._on_closed = publisher, on_closed
        self._remote, self._user_agent = remote, user_agent
        self._stamper = Stamper(session_id)
        self._node = settings.node_id
        self.frames_dropped = 0
        self.closed = asyncio.Event()
        self.end_reason = ""  # SessionEnded's reason, once closing
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._channel: Any = None
        self._reply_seen: set[str] = set()
        # turn id -> (start, end) media ns of the speech its reply answers, from the reply's first chunk: the
        # client is told it when the reply starts playing, so it can pair the reply with what it said.
        self._reply_spans: dict[str, tuple[int, int]] = {}
        self._notes = PageNotes()  # sentence offsets and stage times, for what the page is told
        echo, ns = build_audio_processing(settings.aec, settings.noise_suppression)
        params = VadParams(threshold=settings.vad_threshold, min_speech_ms=settings.vad_min_speech_ms,
                           min_silence_ms=settings.vad_min_silence_ms)
        near_end = NearEnd(vad, params, echo, ns)
        self.inbound = Inbound(near_end, self._on_frame, settings.jitter_max_wait_ms)
        self.playout = PlayoutTrack(self, near_end.far, settings.opus_bitrate, on_sent=self._frame_sent,
                                    resume_window_ms=settings.reply_resume_window_ms)
        servers = [RTCIceServer(**s) for s in ice_config(settings.ice_servers, settings.turn_secret, settings.node_id,
                                                          time.time(), settings.turn_ttl_s)]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers or None))
        self._audio_tracks = 0

    @property
    def seq(self) -> int:
        """The seq the session's next event gets (its worker reports it to the signaling front)."""
        return self._stamper.seq

    # -- signaling --

    async def accept(self, offer_sdp: str) -> str:
        """Apply the offer, return the answer SDP (candidates included: no trickle)."""
        if not re.search(r"^m=audio ", offer_sdp, re.MULTILINE):
            raise BadOffer("the offer has no audio section (m=audio)")
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # aiortc raises whatever a malformed line makes it raise
            raise BadOffer(f"malformed SDP: {type(exc).__name__}: {exc}") from None
        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise BadOffer("the offer has no usable audio section")
        audio[0].setCodecPreferences(opus)
        self.pc.addTrack(self.playout)
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:  # no codec in common; an offer aiortc parsed but cannot answer (no a=mid, ...)
            raise BadOffer(f"cannot answer this offer: {type(exc).__name__}: {exc}") from None
        self._publish(SessionStarted(**self._envelope(), node_id=self._node, remote=self._remote,
                                     user_agent=self._user_agent[:200]))
        self.metrics.sessions_started.inc()
        log.info("session started", extra={"session_id": self.id})
        return self._advertise(self.pc.localDescription.sdp)

    def _advertise(self, sdp: str) -> str:
        # Behind a 1:1 NAT the host candidates carry the private address; advertise the public one instead.
        public = self.settings.ice_public_address
        if not public:
            return sdp
        return re.sub(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host)", rf"\g<1>{public}\g<3>", sdp,
                      flags=re.MULTILINE)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio":
            self._spawn(drain(track))  # never leave a remote track unread: its queue grows forever
            return
        self._audio_tracks += 1
        if self._audio_tracks == 1:
            receiver = next(t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track)
            tap_receiver(receiver, self.inbound.on_packet, self.inbound.on_sender_report)
        # The tapped track gets no frames (they go through our buffer); a second microphone track is read and
        # dropped. Either way reading it also tells us when it ends.
        self._spawn(drain(track))

    def _on_datachannel(self, channel: Any) -> None:
        self._channel = channel

    def _tell_page(self, message: dict[str, Any]) -> None:
        """A JSON message on the data channel the client opened (none opened: nothing is sent). Times ending
        in ``_ms`` are edge media time: 0 at the session's first audio frame, 20 ms per frame.

        - ``speech``: ``speaking`` true (with ``speech_start_ms``) or false (with the utterance's
          ``speech_start_ms`` and ``speech_end_ms``), as the edge's VAD heard it;
        - ``reply_started``: the first audio of turn ``turn_id``'s reply is being sent now; ``speech_start_ms``
          .. ``speech_end_ms`` is the speech it answers, ``media_ms`` the edge's media clock;
        - ``reply_paused``: the person spoke over turn ``turn_id``'s reply: it is silent from now on, after
          ``played_ms``; it is kept for a while in case the barge-in was a cough or a door;
        - ``reply_resumed``: it was (no words came): the paused reply plays on from where it stopped;
        - ``reply_ended``: that reply is over after ``played_ms``; ``interrupted``: a paused reply was finally
          dropped (the person's words made the barge-in real, a newer reply came, or no resume came in time);
        - ``reply_cancelled``: the turn's reply was withdrawn (if it was playing or paused, ``reply_ended`` came
          first);
        - ``transcript``: the person's words as recognised, ``final`` or not (a later one replaces a partial of
          the same ``speech_start_ms``), with ``speech_start_ms`` and ``speech_end_ms``;
        - ``reply_sentence``: a sentence of turn ``turn_id``'s reply, in the order spoken, starting ``at_ms``
          into the reply's audio (``played_ms`` counts on the same audio: what lies beyond it was not heard);
        - ``reply_text``: the whole reply's text, once it has all been made;
        - ``latency``, when the reply starts playing: ``ms`` from the end of the person's speech to the reply's
          first audio sent (server side, null if the edge did not hear that speech end), ``segments_ms``
          (endpointing, recognition, model, platform, playout; ingest/page.py defines them; null when a stage is
          missing) and ``stages_ms`` (each stage known, ms after the speech end).
        """
        if self._channel is not None and self._channel.readyState == "open":
            self._channel.send(json.dumps(message))

    async def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "failed":
            dtls = any(t.sender.transport and t.sender.transport.state == "failed" for t in self.pc.getTransceivers())
            await self.close("dtls_failed" if dtls else "ice_failed")
        elif state == "closed":
            await self.close("client_closed")

    # -- inbound media --

    def _on_frame(self, frame: ProcessedFrame, decisions: list[Decision], barge_in: SpeechStart | None) -> None:
        self.metrics.frames_in.inc()
        self.metrics.frames_concealed.inc(frame.concealed)
        if self.inbound.clock.synced and not frame.concealed:
            self.metrics.arrival_delay.observe((frame.arrival_ns - frame.capture_ns) / 1e6)
        flags = (FLAG_VOICED if frame.voiced else 0) | (FLAG_CONCEALED if frame.concealed else 0)
        audio = AudioFrame(self.id, frame.index, frame.capture_ns, frame.media_ns, RATE, frame.pcm.tobytes(), flags)
        if not self._publisher.audio(audio):
            self.frames_dropped += 1
        if barge_in is not None:
            self._barge_in(barge_in)
        for decision in decisions:
            if isinstance(decision, SpeechStart):
                self._publish(SpeechStarted(**self._envelope(), node_id=self._node,
                                            speech_start_media_ns=decision.start_media_ns,
                                            speech_start_wall_ns=decision.start_wall_ns,
                                            probability=min(1.0, max(0.0, decision.probability))))
                self._tell_page({"type": "speech", "speaking": True, "speech_start_ms": _ms(decision.start_media_ns)})
            elif isinstance(decision, SpeechStop):
                self._publish(SpeechStopped(**self._envelope(frame.media_ns), node_id=self._node,
                                            speech_start_media_ns=decision.start_media_ns,
                                            speech_end_media_ns=decision.end_media_ns,
                                            speech_end_wall_ns=decision.end_wall_ns))
                self._tell_page({"type": "speech", "speaking": False, "speech_start_ms": _ms(decision.start_media_ns),
                                 "speech_end_ms": _ms(decision.end_media_ns)})
            elif isinstance(decision, Progress):
                self._publish(VadProgress(**self._envelope(frame.media_ns), node_id=self._node,
                                          speaking=decision.speaking, voiced=decision.voiced,
                                          probability=min(1.0, max(0.0, decision.probability))))

    def _barge_in(self, decision: SpeechStart) -> None:
        # Barge-in happens here, before anything goes to Kafka: the agent is quiet from the next frame on. The gate
        # (ingest/gate.py) decided it is the person and not the reply's echo.
        interrupted = self.playout.interrupt()
        if interrupted:
            turn_id, played_ms = interrupted
            self.metrics.barge_ins.inc()
            self._stamp(turn_id, "barge_in_speech_start", decision.start_wall_ns, decision.start_media_ns)
            self._publish(PlayoutInterrupted(**self._envelope(), node_id=self._node, turn_id=turn_id,
                                             played_ms=played_ms, barge_in_media_ns=decision.start_media_ns))
            log.info("barge-in: reply stopped after %d ms", played_ms,
                     extra={"session_id": self.id, "turn_id": turn_id})

    # -- replies and playout (PlayoutListener) --

    def _frame_sent(self, lateness_ms: float) -> None:
        self.metrics.frames_out.inc()
        self.metrics.playout_lateness.observe(lateness_ms)

    def on_reply(self, event: Any) -> None:
        if isinstance(event, ReplyAudioChunk):
            if event.turn_id not in self._reply_seen:
                self._reply_seen.add(event.turn_id)
                self._stamp(event.turn_id, "reply_first_at_edge", time.time_ns())
            if event.turn_id not in self._reply_spans:
                if len(self._reply_spans) >= REPLY_SPANS_KEPT:  # replies that never played: forget the oldest
                    del self._reply_spans[next(iter(self._reply_spans))]
                self._reply_spans[event.turn_id] = (event.speech_start_media_ns, event.speech_end_media_ns)
            self.playout.enqueue(event.turn_id, event.index, np.frombuffer(event.pcm, dtype="<i2"), event.sample_rate)
            sentence = self._notes.caption(event.turn_id, event.index, len(event.pcm) / 2 / event.sample_rate * 1000,
                                           event.text)
            if sentence is not None:
                self._tell_page(sentence)
        elif isinstance(event, SpeechRecognised):
            if event.final:
                self._notes.final_words(event.start_media_ns, event.end_media_ns, event.wall_ns)
            self._tell_page({"type": "transcript", "final": event.final, "text": event.text,
                             "speech_start_ms": _ms(event.start_media_ns), "speech_end_ms": _ms(event.end_media_ns)})
        elif isinstance(event, ReplyStages):
            self._notes.stages(event.turn_id, event.stages)
        elif isinstance(event, ReplyText):
            self._tell_page({"type": "reply_text", "turn_id": event.turn_id, "text": event.text})
        elif isinstance(event, ReplyEnded):
            self.playout.end(event.turn_id)
        elif isinstance(event, ReplyResumed):
            if not self.playout.resume(event.turn_id):
                log.info("resume of a reply not paused here: ignored",
                         extra={"session_id": self.id, "turn_id": event.turn_id})
        elif isinstance(event, ReplyCancelled):
            span = self._reply_spans.pop(event.turn_id, None)  # before cancel(): its playout_finished drops it
            self.playout.cancel(event.turn_id)
            self._tell_page({"type": "reply_cancelled", "turn_id": event.turn_id,
                             **(_span_ms(span) if span else {})})

    def playout_started(self, turn_id: str) -> None:
        now = time.time_ns()
        self._stamp(turn_id, "reply_first_sent", now)
        self._publish(PlayoutStarted(**self._envelope(), node_id=self._node, turn_id=turn_id))
        self.inbound.near_end.playing(True)
        span = self._reply_spans.get(turn_id)
        self._tell_page({"type": "reply_started", "turn_id": turn_id, "media_ms": _ms(self.inbound.media_ns),
                         **(_span_ms(span) if span else {})})
        self._tell_page(self._notes.latency(turn_id, span))

    def playout_finished(self, turn_id: str, played_ms: int) -> None:
        self._stamp(turn_id, "reply_last_sent", time.time_ns())
        self._publish(PlayoutFinished(**self._envelope(), node_id=self._node, turn_id=turn_id, played_ms=played_ms))
        self.inbound.near_end.playing(False)
        self._reply_spans.pop(turn_id, None)
        self._tell_page({"type": "reply_ended", "turn_id": turn_id, "played_ms": played_ms, "interrupted": False})

    def playout_paused(self, turn_id: str, played_ms: int) -> None:
        self._stamp(turn_id, "reply_last_sent", time.time_ns())  # the barge-in's reaction ends here
        self.inbound.near_end.playing(False)
        self._tell_page({"type": "reply_paused", "turn_id": turn_id, "played_ms": played_ms})

    def playout_resumed(self, turn_id: str, played_ms: int) -> None:
        self.inbound.near_end.playing(True)
        self._tell_page({"type": "reply_resumed", "turn_id": turn_id, "played_ms": played_ms})
        log.info("false interruption: reply resumed after %d ms", played_ms,
                 extra={"session_id": self.id, "turn_id": turn_id})

    def playout_dropped(self, turn_id: str, played_ms: int) -> None:
        self._reply_spans.pop(turn_id, None)
        self._tell_page({"type": "reply_ended", "turn_id": turn_id, "played_ms": played_ms, "interrupted": True})

    # -- events --

    def _envelope(self, media_ns: int | None = None) -> Envelope:
        """The next event's envelope, at the media clock now unless a frame's time is given."""
        return self._stamper(self.inbound.media_ns if media_ns is None else media_ns)

    def _publish(self, event: Event) -> None:
        if isinstance(event, SpeechStopped):  # the turn processor stamps a turn's speech_end from this one
            self._notes.speech_stopped(event.speech_end_media_ns, event.speech_end_wall_ns)
        self._publisher.event(event)

    def _stamp(self, turn_id: str, stage: Stage, wall_ns: int, media_ns: int | None = None) -> None:
        self._notes.stamp(turn_id, stage, wall_ns)
        self._publish(StageStamped(**self._envelope(), node_id=self._node, turn_id=turn_id, stage=stage,
                                   stage_wall_ns=wall_ns,
                                   stage_media_ns=self.inbound.media_ns if media_ns is None else media_ns,
                                   service="ingest"))

    # -- life --

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def abandon(self) -> None:
        """Undo a session whose offer was refused: nothing was announced, nothing is published."""
        self._closing = True
        self.inbound.close()
        try:
            await self._close_pc()
        finally:
            for task in list(self._tasks):
                task.cancel()
            self.closed.set()

    async def _close_pc(self) -> None:
        try:
            await self.pc.close()
            return
        except Exception as exc:  # aiortc cannot close some connections made from odd offers: stop what it started
            log.info("closing the peer connection failed (%r): stopping its transports", exc,
                     extra={"session_id": self.id})
        transports: list[Any] = []
        for transceiver in self.pc.getTransceivers():
            dtls = transceiver.receiver.transport
            transports += [transceiver, dtls, dtls.transport if dtls else None]
        if self.pc.sctp is not None:
            dtls = self.pc.sctp.transport
            transports += [dtls, dtls.transport if dtls else None]
        for transport in transports:
            if transport is not None:
                try:
                    await transport.stop()
                except Exception:  # already stopped, or never started: nothing of it is left running
                    pass

    async def close(self, reason: str) -> None:
        if self._closing:
            await self.closed.wait()
            return
        self._closing = True
        self.end_reason = reason
        self.inbound.close()
        turn = self.playout.playing_turn or self.playout.paused_turn
        if turn is not None:
            self.playout.cancel(turn)
        # The VAD's last word on the media clock, at the session end's media time: the turn processor holds a
        # SessionEnded read ahead of voice.vad until the VAD reaches it (streams/turns/core.py).
        self._publish(VadProgress(**self._envelope(), node_id=self._node, speaking=False, probability=0.0,
                                  voiced=False))
        self.frames_dropped += self._publisher.take_frames_dropped(self.id)  # its oldest frames, in an outage
        self._publish(SessionEnded(**self._envelope(), node_id=self._node, reason=reason,
                                   frames_in=self.inbound.frames, frames_dropped=self.frames_dropped))
        await self._close_pc()
        for task in list(self._tasks):
            task.cancel()
        log.info("session ended (%s): %d frames in, %d dropped", reason, self.inbound.frames, self.frames_dropped,
                 extra={"session_id": self.id})
        self._on_closed(self)
        self.closed.set()
