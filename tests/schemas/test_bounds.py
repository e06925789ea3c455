"""Every field is bounded (schemas.bounds): what a topic's codec accepts, the platform can use. Out of range is a
DecodeError (the consumer dead-letters it); in range, the event survives encode -> decode, and the telemetry
sink's row for it fits its ClickHouse columns (inserted into the real engine)."""

from __future__ import annotations

import base64
import json
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, StringConstraints
from pydantic.fields import FieldInfo

from runtime.clickhouse import connect
from schemas.base import Event
from schemas.bounds import MAX_MEDIA_NS, MAX_WALL_NS
from schemas.codec import DecodeError
from schemas.topics import ALL_SPECS, DLQ, TELEMETRY, VAD, spec_for
from streams.telemetry.rows import COLUMNS, TurnDays, to_row
from streams.telemetry.schema import apply_schema
from tests.schemas.samples import EVENTS

MODELS = [(spec, model) for spec in ALL_SPECS if spec.codec is not None and spec.content_type == "application/json"
          for model in spec.models]
# Values just past what a field of each kind could hold, whatever its bound: the fault probe's among them.
EDGES = [-1, 0, 1, 2**31, 2**32, 10**15, 2**63 - 1, 2**63, 2**64, 10**30]


def _constraints(metadata: list[Any]) -> list[Any]:
    out: list[Any] = []
    for m in metadata:
        out += _constraints(m.metadata) if isinstance(m, FieldInfo) else [m]
    return out


def values(annotation: Any, metadata: list[Any]) -> st.SearchStrategy[Any]:
    """Values for a field: inside its bounds (its edges included) and outside them."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        return values(base, metadata + _constraints(extra))
    if origin in (Union, types.UnionType):
        return st.one_of(*(values(a, metadata) for a in get_args(annotation)))
    if annotation is type(None):
        return st.none()
    if origin is Literal:
        return st.sampled_from(get_args(annotation)) | st.sampled_from([12345, "other"])
    if origin is list:
        return st.lists(values(get_args(annotation)[0], []), max_size=3)
    if origin is tuple and get_args(annotation)[-1] is Ellipsis:
        return st.lists(values(get_args(annotation)[0], []), max_size=3).map(tuple)
    if origin is tuple:
        return st.tuples(*(values(a, []) for a in get_args(annotation)))
    if origin is dict:  # keys of a Literal: bounded by its values
        key, value = get_args(annotation)
        return st.dictionaries(values(key, []).filter(lambda k: isinstance(k, str)), values(value, []), max_size=4)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return payloads(annotation)  # a record inside an event (schemas.history)
    low = next((m.ge for m in metadata if isinstance(m, at.Ge)), None)
    high = next((m.le for m in metadata if isinstance(m, at.Le)), None)
    if annotation is int:
        inside = st.integers(low or 0, high if high is not None else 2**70)
        edges = [v for v in (low, high) if v is not None]
        return inside | st.sampled_from(EDGES + edges + [v + 1 for v in edges] + [v - 1 for v in edges])
    if annotation is float:
        return st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, 1.0, 1.0000001, -0.0])
    if annotation is bool:
        return st.booleans()
    if annotation is bytes:
        return st.binary(max_size=64)
    if annotation is str:
        strings = [m for m in metadata if isinstance(m, StringConstraints)]
        pattern = next((m.pattern for m in strings if m.pattern), None)
        if pattern:
            return st.from_regex(pattern, fullmatch=True) | st.text(max_size=70)
        longest = next((m.max_length for m in strings if m.max_length), None)
        short = st.text(max_size=40)
        return short if longest is None else short | st.sampled_from(["x" * longest, "x" * (longest + 1)])
    raise AssertionError(f"no strategy for {annotation!r}")


@st.composite
def payloads(draw: st.DrawFn, model: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        if name in ("type", "schema_version"):
            out[name] = f.default  # the current version of this event
        elif f.is_required() or draw(st.booleans()):
            out[name] = draw(values(f.annotation, list(f.metadata)))
    return out


def to_json(payload: dict[str, Any]) -> bytes:
    def default(value: Any) -> Any:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        raise TypeError(value)

    return json.dumps(payload, default=default).encode()


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Any:
    client = connect(f"chdb://{tmp_path_factory.mktemp('bounds') / 'clickhouse'}")
    apply_schema(client)
    yield client
    client.close()


@pytest.mark.parametrize(("spec", "model"), MODELS, ids=[f"{s.name}:{m.__name__}" for s, m in MODELS])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_what_a_codec_accepts_is_usable(spec: Any, model: type[BaseModel], clickhouse: Any,
                                        data: st.DataObject) -> None:
    raw = to_json(data.draw(payloads(model)))
    try:
        event = spec.codec.decode(raw)
    except DecodeError:
        return  # refused: the consumer dead-letters it
    assert spec.codec.decode(spec.codec.encode(event)) == event
    stored = to_row(event, TurnDays())
    if stored is not None:
        table, row = stored
        clickhouse.insert(table, [row], column_names=COLUMNS[table])  # fits the columns, or raises


def _changed(event: Event, **changes: Any) -> bytes:
    return json.dumps({**json.loads(spec_for(topic_name(event)).codec.encode(event)), **changes}).encode()


def topic_name(event: Any) -> str:
    return next(spec.name for spec in ALL_SPECS if type(event) in spec.models)


STAMP = next(e for e in EVENTS if e.type == "stage_stamped")
PROGRESS = next(e for e in EVENTS if e.type == "vad_progress")
CHUNK = next(e for e in EVENTS if e.type == "reply_audio_chunk")

# The fault probe's values (issue 18) and their neighbours: each refused at decode, with the field named.
REFUSED = [
    ("telemetry seq 2**64: the sink retried its batch forever", STAMP, {"seq": 2**64}, "seq"),
    ("stage_wall_ns 10**30: crashed the sink on every restart", STAMP, {"stage_wall_ns": 10**30}, "stage_wall_ns"),
    ("stage wall time after 2100", STAMP, {"stage_wall_ns": MAX_WALL_NS + 1}, "stage_wall_ns"),
    ("VAD media_ns 10**15: silenced the session for good", PROGRESS, {"media_ns": 10**15}, "media_ns"),
    ("media time one ns over a week", PROGRESS, {"media_ns": MAX_MEDIA_NS + 1}, "media_ns"),
    ("probability over 1", PROGRESS, {"probability": 1.5}, "probability"),
    ("reply PCM of odd length", CHUNK, {"pcm": base64.b64encode(b"\x00" * 3).decode()}, "even"),
    ("reply PCM over ten seconds", CHUNK, {"pcm": base64.b64encode(b"\x00" * 960_002).decode()}, "over"),
    ("reply sample rate not in the set", CHUNK, {"sample_rate": 44100}, "sample_rate"),
    ("played_ms over UInt32", next(e for e in EVENTS if e.type == "barge_in"), {"played_ms": 2**32}, "played_ms"),
    ("a transcript of a megabyte", next(e for e in EVENTS if e.type == "transcript_final"),
     {"text": "x" * 1_000_000}, "text"),
]


@pytest.mark.parametrize(("event", "changes", "field"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_out_of_range_is_a_decode_error(event: Event, changes: dict[str, Any], field: str) -> None:
    with pytest.raises(DecodeError, match=field):
        spec_for(topic_name(event)).codec.decode(_changed(event, **changes))


def test_in_range_at_the_bounds_decodes() -> None:
    stamp = _changed(STAMP, seq=2**63 - 1, stage_wall_ns=MAX_WALL_NS, wall_ns=MAX_WALL_NS,
                     stage_media_ns=MAX_MEDIA_NS, media_ns=MAX_MEDIA_NS)
    assert TELEMETRY.codec.decode(stamp).stage_wall_ns == MAX_WALL_NS
    assert VAD.codec.decode(_changed(PROGRESS, media_ns=MAX_MEDIA_NS)).media_ns == MAX_MEDIA_NS


def test_a_dead_letter_is_made_whatever_the_error_length() -> None:
    from schemas.dlq import dead_letter_for

    class Record:
        topic, partition, offset, key, value, headers = "voice.vad", 0, 1, None, b"x", []

    letter = dead_letter_for(Record(), "e" * 1_000_000)
    assert DLQ.codec.decode(DLQ.codec.encode(letter)).error.endswith("(cut)")

