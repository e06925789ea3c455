"""The binary audio frame: round trips, and a clear error for every way the bytes can be wrong."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.audio import (
    FLAG_CONCEALED,
    FLAG_VOICED,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    SAMPLE_RATES,
    VERSION,
    AudioFrame,
    FrameError,
    decode_frame,
    encode_frame,
)
from schemas.bounds import MAX_INT64, MAX_MEDIA_NS, MAX_WALL_NS
from schemas.codec import DecodeError
from schemas.topics import AUDIO
from tests.schemas.samples import FRAME, SESSION

PCM_20MS = np.arange(-160, 160, dtype="<i2").tobytes()  # 320 samples: 20 ms at 16 kHz

GOOD = [
    ("20 ms at 16 kHz", FRAME._replace(pcm=PCM_20MS)),
    ("voiced and concealed", FRAME._replace(flags=FLAG_VOICED | FLAG_CONCEALED)),
    ("one sample", FRAME._replace(pcm=b"\x01\x80")),
    ("largest payload", FRAME._replace(pcm=b"\x00\x01" * 0xFFFF)),
    ("seq and clocks at their limits (schemas.bounds)",
     FRAME._replace(seq=MAX_INT64, capture_wall_ns=MAX_WALL_NS, media_ns=MAX_MEDIA_NS)),
    *[(f"{rate} Hz", FRAME._replace(sample_rate=rate)) for rate in sorted(SAMPLE_RATES)],
]


@pytest.mark.parametrize("frame", [g[1] for g in GOOD], ids=[g[0] for g in GOOD])
def test_round_trip(frame):
    data = encode_frame(frame)
    assert len(data) == HEADER_SIZE + len(frame.pcm)
    back = decode_frame(data)
    assert back == frame
    assert AUDIO.codec.decode(AUDIO.codec.encode(frame)) == frame


def test_frame_properties():
    frame = FRAME._replace(pcm=PCM_20MS, flags=FLAG_VOICED)
    assert frame.sample_count == 320
    assert frame.duration_ns == 20_000_000
    assert frame.voiced
    assert frame.samples()[0] == -160 and frame.samples()[-1] == 159


def _header(**changes):
    fields = {"magic": MAGIC, "version": VERSION, "flags": 0, "sid": bytes.fromhex(SESSION), "seq": 1, "wall": 2,
              "media": 3, "rate": 16000, "count": 4}
    fields.update(changes)
    return HEADER.pack(*fields.values())


GOOD_BYTES = encode_frame(FRAME)
BAD_BYTES = [
    ("empty", b"", "shorter than the 52-byte header"),
    ("garbage", b"\x00garbage", "shorter than the 52-byte header"),
    ("truncated header", GOOD_BYTES[:HEADER_SIZE - 1], "shorter than the 52-byte header"),
    ("truncated samples", GOOD_BYTES[:-2], "but 638 follow"),
    ("odd trailing byte", GOOD_BYTES + b"\x00", "but 641 follow"),
    ("header only, count says 4", _header(), "header says 4 samples (8 bytes) but 0 follow"),
    ("bad magic", b"RIFF" + GOOD_BYTES[4:], "bad magic b'RIFF'"),
    ("JSON instead of a frame", b'{"type": "audio_frame"}' + b" " * 40, "bad magic"),
    ("unknown version", _header(version=2) + b"\x00" * 8, "version 2 is not supported"),
    ("version 0", _header(version=0) + b"\x00" * 8, "version 0 is not supported"),
    ("wrong rate", _header(rate=44100) + b"\x00" * 8, "sample rate 44100"),
    ("zero rate", _header(rate=0) + b"\x00" * 8, "sample rate 0"),
    ("negative wall time", _header(wall=-1) + b"\x00" * 8, "negative timestamp"),
    ("negative media time", _header(media=-5) + b"\x00" * 8, "negative timestamp"),
    ("media time of 11 days", _header(media=10**15) + b"\x00" * 8, "out of range"),
    ("wall time after 2100", _header(wall=MAX_WALL_NS + 1) + b"\x00" * 8, "out of range"),
    ("seq over int64", _header(seq=2**63) + b"\x00" * 8, "out of range"),
]


@pytest.mark.parametrize(("data", "message"), [b[1:] for b in BAD_BYTES], ids=[b[0] for b in BAD_BYTES])
def test_decode_refuses_with_a_clear_error(data, message):
    with pytest.raises(FrameError) as caught:
        decode_frame(data)
    assert message in str(caught.value)
    with pytest.raises(DecodeError):  # what consumers see, through the topic's codec
        AUDIO.codec.decode(data)


BAD_FRAMES = [
    ("wrong rate", FRAME._replace(sample_rate=44100), "sample rate 44100"),
    ("empty pcm", FRAME._replace(pcm=b""), "non-empty even number"),
    ("odd pcm length", FRAME._replace(pcm=b"\x00\x01\x02"), "got 3"),
    ("too long for the count", FRAME._replace(pcm=b"\x00" * 0x20000), "got 131072"),
    ("session id not hex", FRAME._replace(session_id="z" * 32), "32 hex characters"),
    ("session id short", FRAME._replace(session_id="ab" * 8), "32 hex characters"),
]


@pytest.mark.parametrize(("frame", "message"), [b[1:] for b in BAD_FRAMES], ids=[b[0] for b in BAD_FRAMES])
def test_encode_refuses_with_a_clear_error(frame, message):
    with pytest.raises(FrameError) as caught:
        encode_frame(frame)
    assert message in str(caught.value)


OUT_OF_RANGE = [
    ("negative seq", FRAME._replace(seq=-1), "out of range"),
    ("seq over 64 bits", FRAME._replace(seq=2**64), "out of range"),
    ("flags over 8 bits", FRAME._replace(flags=256), "out of range"),
    ("media time over int64", FRAME._replace(media_ns=2**63), "out of range"),
    ("media time of 11 days", FRAME._replace(media_ns=10**15), "out of range"),
    ("seq over int64", FRAME._replace(seq=2**63), "out of range"),
    ("negative wall time", FRAME._replace(capture_wall_ns=-1), "negative timestamp"),
    ("negative media time", FRAME._replace(media_ns=-1), "negative timestamp"),
]


@pytest.mark.parametrize(("frame", "message"), [o[1:] for o in OUT_OF_RANGE], ids=[o[0] for o in OUT_OF_RANGE])
def test_encode_refuses_header_values_out_of_range(frame, message):
    # Never write a frame that decode_frame would refuse, and fail with the module's own error.
    with pytest.raises(FrameError) as caught:
        encode_frame(frame)
    assert message in str(caught.value)


def test_audio_frame_is_immutable():
    with pytest.raises(AttributeError):
        FRAME.seq = 3  # type: ignore[misc]
    assert isinstance(FRAME, AudioFrame)
