"""Settings of one edge node (``voicebus ingest``), read from ``VOICEBUS_*`` environment variables."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from ingest.speech import VadParams
from runtime.settings import CommonSettings


class IceServer(BaseModel):
    """One STUN or TURN server, as both aiortc and the browser's RTCPeerConnection take it."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class IngestSettings(CommonSettings):
    node_id: str = Field("edge-1", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                         description="This edge's id. Its edge workers are the nodes <node_id>-w1, -w2, ..., each "
                         "consuming voice.replies.<its id>; with `voicebus ingest --single` the one node is "
                         "<node_id> itself.")
    ingest_host: str = Field("127.0.0.1", description="Address the edge's signaling HTTP server listens on.")
    ingest_port: int = Field(8080, description="Port of the edge's signaling HTTP server.")
    max_sessions: int = Field(50, ge=1, description="Sessions this node (each edge worker) holds at most; more "
                              "get 503.")
    ingest_workers: int = Field(0, ge=0, description="Edge worker processes behind the signaling front, each its "
                                "own node <node_id>-w<i> with its own reply topic (0: one per core). `voicebus "
                                "ingest --single` runs one node in the front's process instead.")
    worker_cpu_limit: float = Field(0.9, gt=0, description="An edge worker using this much of a core (over its last "
                                    "half-second report) takes no new session; when every worker is full or at "
                                    "its session limit, offers get 503 with Retry-After.")
    max_body_bytes: int = Field(64 * 1024, description="Largest signaling request body; larger gets 413.")
    auth_token: str = Field("", description="If set, signaling requests must carry 'Authorization: Bearer <it>' "
                            "(the simple mode; with VOICEBUS_SESSION_SECRET also set, either is accepted).")
    session_secret: str = Field("", description="If set, an offer needs a session token signed with it (HMAC-SHA256; "
                                "`voicebus token issue`): valid, unexpired, within its session limit.")
    operator_secret: str = Field("", description="If set (with VOICEBUS_SESSION_SECRET), POST /v1/tokens with "
                                 "'Authorization: Bearer <it>' issues session tokens.")
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins of pages allowed to use signaling, e.g. https://app.example.org "
        "(empty: the edge's own origin only; * allows any). Requests without an Origin header are not checked.")
    offers_per_minute: int = Field(60, ge=0, description="Offers (and token requests) one client address may make "
                                   "per minute (a bucket of that many); more get 429 with Retry-After. 0: no limit.")
    request_timeout_s: float = Field(10.0, gt=0, description="A client must send a request's headers, and its body, "
                                     "within this long (a slow client is cut off).")
    connect_timeout_s: float = Field(5.0, gt=0, description="A new session that has not connected (ICE + DTLS) "
                                     "this long after its answer is closed, freeing its slot.")
    turn_secret: str = Field("", description="The TURN server's shared secret (coturn static-auth-secret): the page "
                             "and the edge get short-lived credentials (TURN REST API) for the turn: servers in "
                             "VOICEBUS_ICE_SERVERS instead of their static password.")
    turn_ttl_s: int = Field(86400, gt=0, description="How long the TURN credentials handed out stay valid (a relay's "
                            "refreshes use them too: longer than any conversation).")
    ice_servers: Annotated[list[IceServer], NoDecode] = Field(
        default_factory=list,
        description='STUN/TURN servers as JSON, e.g. [{"urls":["stun:stun.example.org:3478"]}] '
        '(used by the edge and handed to the page).')
    ice_host_addresses: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Local addresses to gather ICE host candidates on (empty: every interface but loopback).")
    ice_public_address: str = Field(
        "", description="Address to advertise in place of host candidates (a 1:1 NAT's public address).")
    aec: bool = Field(True, description="Echo cancellation (WebRTC AEC3) with the played audio as reference.")
    noise_suppression: bool = Field(True, description="WebRTC noise suppression before the VAD.")
    # The segmenter's defaults are the one source of these values (ingest.speech.VadParams).
    vad_threshold: float = Field(VadParams.threshold, ge=0.0, le=1.0,
                                 description="Silero probability that starts speech.")
    vad_min_speech_ms: int = Field(VadParams.min_speech_ms,
                                   description="Speech this long (above threshold) starts an utterance.")
    vad_min_silence_ms: int = Field(VadParams.min_silence_ms, description="Silence this long ends an utterance.")
    jitter_max_wait_ms: int = Field(120, description="Longest the receive buffer waits for a missing packet.")
    audio_queue_frames: int = Field(15_000, gt=0, description="Frames kept for Kafka while it is slow or away "
                                    "(about 10 MB; 5 minutes of one session): beyond it the oldest is dropped.")
    event_queue_size: int = Field(50_000, gt=0, description="Events kept for Kafka while it is slow or away "
                                  "(about 25 MB): beyond it VAD heartbeats are dropped (the oldest first), then "
                                  "new events.")
    opus_bitrate: int = Field(32000, description="Bit rate of the agent audio sent to peers (mono Opus).")
    reply_resume_window_ms: int = Field(
        3000, ge=20, description="A reply paused by a barge-in is kept this long for a resume (the barge-in was "
        "a cough, a door); then dropped. Covers the turn processor's false-interruption window plus the "
        "recogniser's lag. The responder keeps the paused reply's generation as long.")
    drain_timeout_s: float = Field(5.0, description="On SIGTERM, how long to wait for sessions and Kafka to flush.")

    @field_validator("ice_servers", "ice_host_addresses", "allowed_origins", mode="before")
    @classmethod
    def _parse_list(cls, value: Any) -> Any:
        # Environment variables carry JSON; a plain comma-separated list is also accepted for addresses.
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return []
            if value.startswith("["):
                return json.loads(value)
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    def worker_node_ids(self) -> tuple[str, ...]:
        """The node ids of the edge workers behind this front."""
        count = self.ingest_workers or os.cpu_count() or 1
        return tuple(f"{self.node_id}-w{i}" for i in range(1, count + 1))

    @property
    def replies_topic(self) -> str:
        from schemas.topics import replies_topic

        return self.topic(replies_topic(self.node_id))
