"""Bytes <-> events, one codec per topic. Older schema versions are upcast to the current one on decode."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.audio import AudioFrame, FrameError, decode_frame, encode_frame

T = TypeVar("T")
Payload = dict[str, Any]


class DecodeError(ValueError):
    """A message that cannot be read as the topic's value type."""


# (event type, from version) -> function giving the payload at version + 1.
UPCASTERS: dict[tuple[str, int], Callable[[Payload], Payload]] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Callable[[Payload], Payload]], Callable[[Payload], Payload]]:
    def register(fn: Callable[[Payload], Payload]) -> Callable[[Payload], Payload]:
        UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


def upcast(payload: Payload, current: int) -> Payload:
    event_type, version = payload.get("type"), payload.get("schema_version", 1)
    if not isinstance(version, int) or version < 1:
        raise DecodeError(f"schema_version must be a positive integer, got {version!r}")
    if version > current:
        raise DecodeError(f"{event_type} schema_version {version} is newer than this build reads ({current})")
    while version < current:
        step = UPCASTERS.get((str(event_type), version))
        if step is None:
            raise DecodeError(f"no upcaster for {event_type} from schema_version {version}")
        payload = {**step(payload), "schema_version": version + 1}
        version += 1
    return payload


@upcaster("speech_stopped", 1)
def _speech_stopped_v1(p: Payload) -> Payload:
    # v1 had no wall time for the speech end: derive it from the decision's wall and media times.
    lag = p["media_ns"] - p["speech_end_media_ns"]
    return {**p, "speech_end_wall_ns": max(0, p["wall_ns"] - lag)}


@upcaster("transcript_final", 1)
def _transcript_final_v1(p: Payload) -> Payload:
    # v1 carried the span in milliseconds.
    out = {k: v for k, v in p.items() if k not in ("start_ms", "end_ms")}
    return {**out, "start_media_ns": p["start_ms"] * 1_000_000, "end_media_ns": p["end_ms"] * 1_000_000}


@upcaster("turn_speculative", 1)
@upcaster("turn_committed", 1)
def _turn_v1(p: Payload) -> Payload:
    # v1 had no start of the turn's speech: an empty span at its end.
    return {**p, "speech_start_media_ns": p["speech_end_media_ns"]}


@upcaster("reply_audio_chunk", 1)
def _reply_audio_chunk_v1(p: Payload) -> Payload:
    # v1 did not say which speech the reply answers.
    return {**p, "speech_start_media_ns": 0, "speech_end_media_ns": 0}


class JsonCodec(Generic[T]):
    """JSON for one topic's discriminated union of event models."""

    def __init__(self, value_type: Any, versions: dict[str, int]) -> None:
        self.value_type = value_type
        self.adapter: TypeAdapter[T] = TypeAdapter(value_type)
        self._versions = versions  # event type -> current schema_version

    def encode(self, event: T) -> bytes:
        assert isinstance(event, BaseModel)
        return event.model_dump_json().encode()

    def decode(self, data: bytes | None) -> T:
        if not data:
            raise DecodeError("empty message")
        try:
            payload = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise DecodeError(f"not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise DecodeError(f"expected a JSON object, got {type(payload).__name__}")
        event_type = payload.get("type")
        # A non-string "type" (a list, an object) must be a DecodeError, not a TypeError from the dict lookup.
        current = self._versions.get(event_type) if isinstance(event_type, str) else None
        if current is None:
            raise DecodeError(f"unknown event type {payload.get('type')!r} for this topic")
        try:
            return self.adapter.validate_python(upcast(payload, current))
        except ValidationError as exc:
            raise DecodeError(str(exc)) from None
        except (KeyError, TypeError) as exc:
            raise DecodeError(f"cannot upcast: missing or bad field {exc}") from None


class AudioCodec:
    value_type = AudioFrame

    def encode(self, frame: AudioFrame) -> bytes:
        return encode_frame(frame)

    def decode(self, data: bytes | None) -> AudioFrame:
        try:
            return decode_frame(data or b"")
        except FrameError as exc:
            raise DecodeError(str(exc)) from None
