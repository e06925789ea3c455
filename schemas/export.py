"""The contract for services that are not Python: one JSON Schema per topic value and an AsyncAPI 3.0 document.

Everything here is derived from the registry (schemas.topics) and the models, so the exports cannot drift from
what the Python services encode and decode. Output is JSON only (AsyncAPI accepts JSON), so no YAML dependency.
"""

from __future__ import annotations

import copy
import json
import re
import struct
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from schemas import audio
from schemas.topics import ALL_SPECS, REPLIES, TopicSpec, spec_for

Schema = dict[str, Any]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION = "3.0.0"
ASYNCAPI_FILE = "asyncapi.json"
KAFKA_BINDING_VERSION = "0.4.0"  # the newest the AsyncAPI 3.0.0 JSON Schema accepts
SCHEMA_REF = "#/components/schemas/{model}"

SESSION_KEY: Schema = {
    "type": "string",
    "pattern": "^[0-9a-f]{32}$",
    "description": "the session id (32 lower-case hex characters), UTF-8; every event of a session has it",
}
SOURCE_KEY: Schema = {
    "type": "string",
    "description": "the key of the undecodable message, unchanged (any bytes, or absent)",
}
BYTES_NOTE = ("Fields of binary data are base64url strings (RFC 4648 section 5, padded); standard base64 is "
              "accepted on input. `schema_version` is the current version of each event; voicebus upcasts "
              "older versions on read, so producers should always write the current one.")

_STRUCT_TYPES = {"s": "bytes", "B": "uint8", "H": "uint16", "I": "uint32", "q": "int64", "Q": "uint64"}
_AUDIO_FIELDS = {
    "magic": f"the ASCII bytes {audio.MAGIC.decode()!r}",
    "version": f"layout version, {audio.VERSION}; a reader rejects versions it does not know",
    "flags": f"bit 0 ({audio.FLAG_VOICED}): voiced by the edge's VAD; bit 1 ({audio.FLAG_CONCEALED}): "
             "concealed (the packet was lost)",
    "session_id": "the 16 bytes of the session's UUID (the Kafka key is their 32-char lower-case hex)",
    "seq": "frame number in the session, from 0, no gaps",
    "capture_wall_ns": "capture wall time, ns since the Unix epoch",
    "media_ns": "session media time, ns, 0 at the session's first frame",
    "sample_rate": f"Hz, one of {sorted(audio.SAMPLE_RATES)}",
    "sample_count": "number of PCM16 samples that follow the header",
}


def schema_file(topic: str) -> str:
    """The file name of a topic's value schema (a per-node reply topic maps to the pattern's file)."""
    return spec_for(topic).name.replace(".{node_id}", "") + ".schema.json"


def _json_models(*specs: TopicSpec) -> list[type[BaseModel]]:
    return [m for spec in specs for m in spec.models if isinstance(m, type) and issubclass(m, BaseModel)]


def _versions(models: list[type[BaseModel]]) -> dict[str, int]:
    """event type -> its current schema_version."""
    return {m.model_fields["type"].default: int(m.model_fields["schema_version"].default) for m in models}


def _pin_versions(node: Any, versions: dict[str, int]) -> None:
    """Make ``type`` and ``schema_version`` required and pin the version: a reader needs both to dispatch
    (voicebus reads a missing ``schema_version`` as 1)."""
    if isinstance(node, dict):
        props = node.get("properties", {})
        event_type = props.get("type", {}).get("const")
        if event_type in versions and "schema_version" in props:
            version = versions[event_type]
            props["schema_version"] = {"const": version, "default": version, "type": "integer",
                                       "title": "Schema Version"}
            node["required"] = ["type", "schema_version",
                                *(r for r in node.get("required", []) if r not in ("type", "schema_version"))]
        for value in node.values():
            _pin_versions(value, versions)
    elif isinstance(node, list):
        for value in node:
            _pin_versions(value, versions)


def audio_layout() -> Schema:
    """The binary layout of voice.audio, read off the struct that encodes it."""
    fields, offset = [], 0
    codes = re.findall(r"(\d*)([a-zA-Z])", audio.HEADER.format.lstrip("<"))
    for name, (count, code) in zip(_AUDIO_FIELDS, codes, strict=True):
        size = struct.calcsize(f"<{count}{code}")
        fields.append({"name": name, "offset": offset, "size": size, "type": _STRUCT_TYPES[code],
                       "description": _AUDIO_FIELDS[name]})
        offset += size
    assert offset == audio.HEADER_SIZE, "the layout table disagrees with schemas.audio.HEADER"
    return {
        "byteOrder": "little-endian",
        "version": audio.VERSION,
        "headerSize": audio.HEADER_SIZE,
        "header": fields,
        "payload": {"offset": audio.HEADER_SIZE, "size": "2 * sample_count",
                    "type": "int16 little-endian PCM, mono"},
    }


def audio_schema() -> Schema:
    layout = audio_layout()
    rows = "\n".join(f"  {f['offset']:>3} {f['size']:>3}  {f['type']:<7} {f['name']}: {f['description']}"
                     for f in layout["header"])
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "voice.audio value: AudioFrame (binary)",
        "description": (
            "NOT JSON: a fixed little-endian binary layout, version "
            f"{audio.VERSION}. A {audio.HEADER_SIZE}-byte header, then sample_count PCM16 samples "
            "(20 ms, mono). A reader rejects a bad magic, an unknown version, a sample rate not listed, or a "
            "length other than header + 2 * sample_count. Header (offset, size, type, field):\n" + rows
        ),
        "type": "string",
        "contentMediaType": "application/octet-stream",
        "x-voicebus-binary-layout": layout,
    }


def topic_schema(spec: TopicSpec) -> Schema:
    """The JSON Schema (draft 2020-12) of one topic's value."""
    if spec.codec is None:
        raise ValueError(f"{spec.name} has no value type in schemas (it is internal to its service)")
    if audio.AudioFrame in spec.models:
        return audio_schema()
    body = TypeAdapter(spec.codec.value_type).json_schema(mode="validation")
    _pin_versions(body, _versions(_json_models(spec)))
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        **body,
        "title": f"{spec.name} value",
        "description": f"{spec.description}. {BYTES_NOTE}",
    }


def _draft07(node: Any) -> Any:
    """AsyncAPI's default schema format is a draft-07 superset: tuples are ``items`` arrays there."""
    if isinstance(node, dict):
        out = {k: _draft07(v) for k, v in node.items() if k != "$schema"}
        if "prefixItems" in out:
            out["items"] = out.pop("prefixItems")
            out["additionalItems"] = False
        return out
    if isinstance(node, list):
        return [_draft07(v) for v in node]
    return node


def _channel_id(spec: TopicSpec) -> str:
    return spec.name.replace(".{node_id}", "")


def _message_id(model: Any) -> str:
    return "audio_frame" if model is audio.AudioFrame else str(model.model_fields["type"].default)


def _channel(spec: TopicSpec) -> Schema:
    config: Schema = {"cleanup.policy": spec.cleanup_policy.split(",")}
    if "retention.ms" in spec.config():
        config["retention.ms"] = spec.retention_ms
    kafka: Schema = {"partitions": spec.partitions, "topicConfiguration": config,
                     "bindingVersion": KAFKA_BINDING_VERSION}
    channel: Schema = {
        "address": spec.name,
        "description": f"{spec.description}. Key: {spec.key}. Written by {spec.producer}. The physical topic is "
                       "VOICEBUS_TOPIC_PREFIX + this address.",
        "messages": {_message_id(m): {"$ref": f"#/components/messages/{_message_id(m)}"} for m in spec.models},
        "bindings": {"kafka": kafka},
    }
    if spec is REPLIES:
        channel["parameters"] = {"node_id": {
            "description": "the id of the ingest node holding the session's peer (^[A-Za-z0-9_-]{1,64}$): one "
                           "return topic per node"}}
    else:
        kafka["topic"] = spec.name
    if spec.codec is None:
        channel["description"] += " Its values are internal to that service (no schema here)."
    return channel


def _message(spec: TopicSpec, model: Any) -> Schema:
    doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    key = SOURCE_KEY if spec.key == "source key" else SESSION_KEY
    message: Schema = {
        "name": _message_id(model),
        "title": model.__name__,
        "contentType": spec.content_type,
        "payload": {"$ref": SCHEMA_REF.format(model=model.__name__)},
        "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}},
    }
    if doc:
        message["summary"] = doc
    return message


def _component_schemas() -> Schema:
    models = _json_models(*ALL_SPECS)
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template=SCHEMA_REF)
    schemas: Schema = copy.deepcopy(defs["$defs"])
    _pin_versions(schemas, _versions(models))
    # A record inside an event (schemas.history) is inlined: every component stands alone.
    schemas = {m.__name__: _inline(schemas[m.__name__], schemas) for m in models}
    schemas["AudioFrame"] = audio_schema()
    return {name: _draft07(schema) for name, schema in schemas.items()}


def _inline(node: Any, defs: Schema) -> Any:
    if isinstance(node, dict):
        if set(node) == {"$ref"} and node["$ref"].startswith(SCHEMA_REF.format(model="")):
            return _inline(defs[node["$ref"].removeprefix(SCHEMA_REF.format(model=""))], defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _operations() -> Schema:
    operations: Schema = {}
    for spec in ALL_SPECS:
        cid = _channel_id(spec)
        refs = [{"$ref": f"#/channels/{cid}/messages/{_message_id(m)}"} for m in spec.models]
        base = {"channel": {"$ref": f"#/channels/{cid}"}, "messages": refs}
        operations[f"send-{cid}"] = {"action": "send", **base, "summary": f"{spec.producer} writes {spec.name}"}
        for consumer in spec.readers:
            operations[f"receive-{cid}-{consumer}"] = {"action": "receive", **base,
                                                       "summary": f"{consumer} reads {spec.name}"}
    return operations


def _version() -> str:
    try:
        return metadata.version("voicebus")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def asyncapi_document() -> Schema:
    """AsyncAPI 3.0: channels are the registry's topics (plus the per-node reply pattern), messages the events."""
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "voicebus event stream",
            "version": _version(),
            "description": "Every topic of a voicebus deployment and every event on it. Values are JSON except "
                           f"voice.audio (a binary layout, see the AudioFrame schema). {BYTES_NOTE}",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka",
                              "description": "the development broker started by `voicebus kafka start`"}},
        "channels": {_channel_id(spec): _channel(spec) for spec in ALL_SPECS},
        "operations": _operations(),
        "components": {
            "messages": {_message_id(m): _message(spec, m) for spec in ALL_SPECS for m in spec.models},
            "schemas": _component_schemas(),
        },
    }


def export(directory: str | Path) -> list[Path]:
    """Write ``<topic>.schema.json`` for every topic with a value type, and ``asyncapi.json``; return the paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in ALL_SPECS:
        if spec.codec is None:
            continue
        path = out / schema_file(spec.name)
        path.write_text(json.dumps(topic_schema(spec), indent=2) + "\n")
        written.append(path)
    path = out / ASYNCAPI_FILE
    path.write_text(json.dumps(asyncapi_document(), indent=2) + "\n")
    written.append(path)
    return written
