"""Bytes <-> events, one codec per topic. Older schema versions are upcast to the current one on decode."""

from __future__ import annotations

import json
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.audio import AudioFrame, FrameError, decode_frame, encode_frame
from schemas.upcast import DecodeError, upcast

T = TypeVar("T")




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
