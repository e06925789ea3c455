"""Interoperability: events written by voicebus, read by a Kafka client that is not ours (kcat, librdkafka),
validate against the exported JSON Schemas; the binary audio frame is read with the exported layout alone."""

from __future__ import annotations

import asyncio
import json
import shutil
import struct

import pytest
from jsonschema import Draft202012Validator

from runtime.kafka import make_producer
from schemas.export import audio_layout, export, schema_file
from schemas.topics import AUDIO, REPLIES, replies_topic
from tests.schemas.samples import EVENTS, FRAME, NODE, spec_of

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kcat") is None,
                       reason="kcat is not installed (Debian package `kcat`; scripts/install.sh installs it)"),
]


def _physical(topics, spec) -> str:
    return topics.name(replies_topic(NODE) if spec is REPLIES else spec.name)


async def _kcat(bootstrap: str, topic: str, *fmt: str, timeout_s: float = 30.0) -> bytes:
    """Everything on ``topic`` from the beginning; kcat exits at the end of every partition (-e)."""
    proc = await asyncio.create_subprocess_exec(
        "kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", *fmt,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    return out


async def test_kcat_reads_every_event_type_and_each_validates_against_the_exported_schema(topics, tmp_path):
    await topics.create_all(node_ids=(NODE,))
    export(tmp_path)
    bootstrap = topics.settings.kafka_bootstrap
    producer = make_producer(topics.settings)
    await producer.start()
    try:
        sent: dict[str, list] = {}
        for event in EVENTS:
            spec = spec_of(event)
            key = event.key if spec.key == "source key" else event.session_id.encode()
            if key is None:
                key = b"no-key"  # aiokafka needs a key or a value; the value is there, keep the key visible
            await producer.send_and_wait(_physical(topics, spec), spec.codec.encode(event), key=key)
            sent.setdefault(spec.name, []).append((key, event))
        await producer.send_and_wait(_physical(topics, AUDIO), AUDIO.codec.encode(FRAME),
                                     key=FRAME.session_id.encode())
    finally:
        await producer.stop()

    specs = {spec_of(e).name: spec_of(e) for e in EVENTS}
    outputs = await asyncio.gather(*(_kcat(bootstrap, _physical(topics, s), "-J") for s in specs.values()))
    for (name, spec), out in zip(specs.items(), outputs, strict=True):
        schema = json.loads((tmp_path / schema_file(name)).read_text())
        validator = Draft202012Validator(schema)
        messages = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        assert len(messages) == len(sent[name]), (name, out[:500])
        for message in messages:
            assert message["topic"] == _physical(topics, spec)
            value = json.loads(message["payload"])
            validator.validate(value)
            key = message["key"].encode()
            assert (key, spec.codec.decode(message["payload"].encode())) in sent[name]

    # The audio frame, read by kcat as raw bytes and parsed with nothing but the exported layout.
    raw = await _kcat(bootstrap, _physical(topics, AUDIO), "-f", "%s")
    layout = audio_layout()
    assert layout == json.loads((tmp_path / schema_file(AUDIO.name)).read_text())["x-voicebus-binary-layout"]
    formats = {"uint8": "B", "uint16": "H", "uint32": "I", "int64": "q", "uint64": "Q"}
    header = {f["name"]: struct.unpack_from(f"<{f['size']}s" if f["type"] == "bytes" else f"<{formats[f['type']]}",
                                            raw, f["offset"])[0] for f in layout["header"]}
    assert header["magic"] == b"VBAF" and header["version"] == layout["version"]
    assert header["session_id"].hex() == FRAME.session_id and header["seq"] == FRAME.seq
    assert len(raw) == layout["headerSize"] + 2 * header["sample_count"]
    assert raw[layout["payload"]["offset"]:] == FRAME.pcm
