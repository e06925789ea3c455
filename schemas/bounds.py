"""The range of every field of every event, in one place: what the platform can store and reason about.

A value outside its range fails validation, so the codec refuses it (DecodeError) and the consumer sends the
message to the dead-letter topic: it never reaches a ClickHouse insert, a turn's state or numpy. The ranges
follow the ClickHouse columns (streams/telemetry/ddl: UInt64/Int64 seq and media times, DateTime64(9) wall
times, UInt32 played_ms) and what a conversation is (it lasts hours, its sample rates are a few).

Constraints change no wire format: a value in range is encoded as before, so no schema version moves.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

NS_PER_S = 1_000_000_000
# A session's media clock starts at 0; a week of it is beyond any conversation (hours), and far from the Int64
# that holds it. A media time of 10**15 (11 days) would move a session's clock past every later event.
MAX_MEDIA_NS = 7 * 24 * 3600 * NS_PER_S
MAX_MEDIA_MS = MAX_MEDIA_NS // 1_000_000  # fits UInt32 (played_ms)
# Wall clocks are Unix ns, stored as DateTime64(9) (until 2262) and partitioned by their day, a Date (until
# June 2149): anything before 2100 fits both.
MAX_WALL_NS = 4_102_444_800 * NS_PER_S  # 2100-01-01T00:00:00Z
# Sequence numbers and offsets: UInt64 columns, and Int64 for every reader that is not Python.
MAX_INT64 = 2**63 - 1
MAX_UINT32 = 2**32 - 1
MAX_PARTITION = 2**31 - 1  # Kafka's int32

MAX_TEXT = 100_000  # characters of one transcript or reply text: hours of speech, well inside a Kafka message
MAX_NAME = 256  # an engine's name ("openai:<model>"), a client address
MAX_USER_AGENT = 512
MAX_ERROR = 10_000  # a dead letter's error message (a long validation error is cut to it)
# Reply audio: ten seconds at the highest reply rate, far above a responder's chunk (200 ms), far below a
# Kafka message.
MAX_REPLY_PCM_BYTES = 48_000 * 2 * 10

MediaNs = Annotated[int, Field(ge=0, le=MAX_MEDIA_NS)]
WallNs = Annotated[int, Field(ge=0, le=MAX_WALL_NS)]
MediaMs = Annotated[int, Field(ge=0, le=MAX_MEDIA_MS)]
Seq = Annotated[int, Field(ge=0, le=MAX_INT64)]
Count = Annotated[int, Field(ge=0, le=MAX_UINT32)]
Offset = Annotated[int, Field(ge=0, le=MAX_INT64)]
Partition = Annotated[int, Field(ge=0, le=MAX_PARTITION)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]  # NaN fails both comparisons: refused

SessionId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
NodeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
TurnId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Name = Annotated[str, StringConstraints(max_length=MAX_NAME)]
UserAgent = Annotated[str, StringConstraints(max_length=MAX_USER_AGENT)]
ErrorText = Annotated[str, StringConstraints(max_length=MAX_ERROR)]
TopicName = Annotated[str, StringConstraints(max_length=249)]  # Kafka's limit on a topic name


def _pcm16(pcm: bytes) -> bytes:
    # An odd byte count is not PCM16: refused here, at decode, rather than by numpy in the edge's reply loop.
    if len(pcm) % 2:
        raise ValueError(f"PCM16 must be an even number of bytes, got {len(pcm)}")
    if len(pcm) > MAX_REPLY_PCM_BYTES:
        raise ValueError(f"reply chunk of {len(pcm)} bytes is over {MAX_REPLY_PCM_BYTES}")
    return pcm


# In JSON the PCM is base64: the exported schema states the bound on those characters.
Pcm16 = Annotated[bytes, AfterValidator(_pcm16),
                  Field(json_schema_extra={"maxLength": 4 * -(-MAX_REPLY_PCM_BYTES // 3)})]
