"""The exports for services that are not Python: valid JSON Schemas that accept what voicebus writes and refuse
what it refuses, an AsyncAPI 3.0 document covering the registry, and a binary layout that matches the bytes."""

from __future__ import annotations

import json
import struct

import pytest
from jsonschema import Draft7Validator, Draft202012Validator, ValidationError

from schemas.audio import HEADER_SIZE, encode_frame
from schemas.export import ASYNCAPI_FILE, asyncapi_document, audio_layout, export, schema_file, topic_schema
from schemas.topics import ALL_SPECS, AUDIO, REGISTRY, REPLIES, TURNS, VAD
from tests.schemas.samples import EVENTS, FRAME, spec_of
from voicebus.cli import main as voicebus

JSON_SPECS = [s for s in ALL_SPECS if s.codec is not None]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    paths = export(out)
    return out, paths


def test_export_writes_one_schema_per_topic_value_and_the_asyncapi_document(exported):
    out, paths = exported
    assert sorted(p.name for p in paths) == sorted([schema_file(s.name) for s in JSON_SPECS] + [ASYNCAPI_FILE])
    assert all(p.parent == out and p.stat().st_size > 0 for p in paths)


def test_the_cli_exports_the_same_files(tmp_path, capsys):
    assert voicebus(["schemas", "export", str(tmp_path / "contract")]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(printed) == sorted(str(p) for p in (tmp_path / "contract").iterdir())


@pytest.mark.parametrize("spec", JSON_SPECS, ids=lambda s: s.name)
def test_each_schema_is_valid_draft_2020_12(exported, spec):
    schema = json.loads((exported[0] / schema_file(spec.name)).read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_what_voicebus_writes_validates_against_the_exported_schema(exported, event):
    spec = spec_of(event)
    schema = json.loads((exported[0] / schema_file(spec.name)).read_text())
    Draft202012Validator(schema).validate(json.loads(spec.codec.encode(event)))


STOPPED = next(e for e in EVENTS if e.type == "speech_stopped")
COMMITTED = next(e for e in EVENTS if e.type == "turn_committed")


def _with(event, **changes):
    return {**json.loads(event.model_dump_json()), **changes}


REFUSED = [
    ("unknown type", VAD, _with(STOPPED, type="speech_paused")),
    ("type of another topic", VAD, _with(COMMITTED)),
    ("future version", VAD, _with(STOPPED, schema_version=3)),
    ("no schema_version", VAD, {k: v for k, v in _with(STOPPED).items() if k != "schema_version"}),
    ("extra field", TURNS, _with(COMMITTED, colour="red")),
    ("bad session id", TURNS, _with(COMMITTED, session_id="ABC")),
    ("negative time", TURNS, _with(COMMITTED, media_ns=-1)),
]


@pytest.mark.parametrize(("spec", "value"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_the_exported_schema_refuses_what_the_codec_refuses(spec, value):
    with pytest.raises(ValidationError):
        Draft202012Validator(topic_schema(spec)).validate(value)


def test_audio_schema_says_it_is_binary_and_its_layout_matches_the_bytes():
    schema = topic_schema(AUDIO)
    assert schema["contentMediaType"] == "application/octet-stream"
    assert "NOT JSON" in schema["description"] and "52-byte header" in schema["description"]
    data = encode_frame(FRAME)
    formats = {"bytes": "s", "uint8": "B", "uint16": "H", "uint32": "I", "int64": "q", "uint64": "Q"}
    fields = {}
    for f in audio_layout()["header"]:
        fmt = f"<{f['size']}s" if f["type"] == "bytes" else f"<{formats[f['type']]}"
        (fields[f["name"]],) = struct.unpack_from(fmt, data, f["offset"])
    assert fields == {"magic": b"VBAF", "version": 1, "flags": FRAME.flags,
                      "session_id": bytes.fromhex(FRAME.session_id), "seq": FRAME.seq,
                      "capture_wall_ns": FRAME.capture_wall_ns, "media_ns": FRAME.media_ns,
                      "sample_rate": FRAME.sample_rate, "sample_count": len(FRAME.pcm) // 2}
    assert data[audio_layout()["payload"]["offset"]:] == FRAME.pcm
    assert audio_layout()["headerSize"] == HEADER_SIZE


# --- AsyncAPI -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def doc(exported):
    return json.loads((exported[0] / ASYNCAPI_FILE).read_text())


def _resolve(doc, ref):
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_asyncapi_is_3_0_and_matches_what_export_wrote(doc):
    assert doc == json.loads(json.dumps(asyncapi_document()))
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["servers"]["local"]["protocol"] == "kafka"


def test_every_reference_resolves(doc):
    refs = list(_refs(doc))
    assert len(refs) > 50
    for ref in refs:
        _resolve(doc, ref)


def test_every_registry_topic_and_the_reply_pattern_has_a_channel(doc):
    addresses = {c["address"]: c for c in doc["channels"].values()}
    assert set(addresses) == {s.name for s in (*REGISTRY, REPLIES)}
    replies = addresses["voice.replies.{node_id}"]
    assert set(replies["parameters"]) == {"node_id"}


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
def test_channel_kafka_binding_follows_the_registry(doc, spec):
    (channel,) = [c for c in doc["channels"].values() if c["address"] == spec.name]
    kafka = channel["bindings"]["kafka"]
    assert kafka["partitions"] == spec.partitions
    assert kafka["topicConfiguration"]["cleanup.policy"] == spec.cleanup_policy.split(",")
    config = spec.config()
    assert kafka["topicConfiguration"].get("retention.ms") == (int(config["retention.ms"])
                                                               if "retention.ms" in config else None)
    messages = [_resolve(doc, ref["$ref"]) for ref in channel["messages"].values()]
    assert sorted(m["title"] for m in messages) == sorted(m.__name__ for m in spec.models)


def test_changelog_is_compact_only(doc):
    kafka = doc["channels"]["voice.turn-state-changelog"]["bindings"]["kafka"]
    assert kafka["topicConfiguration"] == {"cleanup.policy": ["compact"]}


@pytest.mark.parametrize("model", [m for s in ALL_SPECS for m in s.models], ids=lambda m: m.__name__)
def test_every_model_is_a_message_with_a_payload_and_a_key(doc, model):
    (message,) = [m for m in doc["components"]["messages"].values() if m["title"] == model.__name__]
    payload = _resolve(doc, message["payload"]["$ref"])
    assert message["bindings"]["kafka"]["key"]["type"] == "string"
    if message["contentType"] == "application/json":
        assert payload["properties"]["type"]["const"] == message["name"]
        assert set(payload["required"]) >= {"type", "schema_version"}
    else:
        assert message["name"] == "audio_frame" and payload["contentMediaType"] == "application/octet-stream"


def test_session_keyed_messages_say_the_key_is_the_session_id(doc):
    vad = doc["components"]["messages"]["speech_started"]["bindings"]["kafka"]["key"]
    assert vad["pattern"] == "^[0-9a-f]{32}$"


def test_operations_send_every_channel_and_reference_its_own_messages(doc):
    sends = {op["channel"]["$ref"] for op in doc["operations"].values() if op["action"] == "send"}
    assert sends == {f"#/channels/{cid}" for cid in doc["channels"]}
    for op in doc["operations"].values():
        assert op["action"] in ("send", "receive")
        for ref in op["messages"]:
            assert ref["$ref"].startswith(op["channel"]["$ref"] + "/messages/")


@pytest.mark.parametrize("name", sorted(asyncapi_document()["components"]["schemas"]))
def test_component_schemas_are_draft_07_and_validate_what_voicebus_writes(doc, name):
    # AsyncAPI's default schema format is a draft-07 superset; the components are self-contained (no $ref).
    schema = doc["components"]["schemas"][name]
    Draft7Validator.check_schema(schema)
    assert "prefixItems" not in json.dumps(schema) and "$ref" not in json.dumps(schema)
    for event in [e for e in EVENTS if type(e).__name__ == name]:
        Draft7Validator(schema).validate(json.loads(event.model_dump_json()))
