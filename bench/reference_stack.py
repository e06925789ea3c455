"""The platform under test with reference engines: the reference server and `voicebus up`, each its own process.

Everything the run owns is its own: a temporary data directory (chDB, the broker's state), a topic prefix, free
ports for the broker, the edge, the telemetry sink's query endpoint and the reference server; the per-service
metrics endpoints are off (they would collide with a platform already running here). The ASR worker, the
responder's LLM and TTS point at the reference server. The end-of-turn scorer (Smart Turn, about 60 ms of CPU per
pause in the ASR worker) stays on: it is part of the turn decisions measured, and without it read speech's
comma pauses end turns mid-sentence, so replies start over the caller (set VOICEBUS_ASR_TURN_SCORER=off in the
environment to leave it out). This process's environment gets the same settings, so the Kafka floor and the
ClickHouse read-back talk to the same broker and sink.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

NODE = "bench-edge"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Delays:
    asr_ms: float = 50.0
    llm_first_token_ms: float = 100.0
    llm_token_ms: float = 5.0
    tts_first_audio_ms: float = 50.0

    def argv(self) -> list[str]:
        return ["--asr-delay-ms", str(self.asr_ms), "--llm-first-token-ms", str(self.llm_first_token_ms),
                "--llm-token-ms", str(self.llm_token_ms), "--tts-first-audio-ms", str(self.tts_first_audio_ms)]


@dataclass(frozen=True)
class Stack:
    url: str  # the edge's signaling URL
    reference_url: str  # the reference server's base URL (…/v1)
    workdir: Path  # logs and data

    def reference_stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.reference_url.removesuffix("/v1") + "/healthz", timeout=5) as resp:
            return json.loads(resp.read())


def platform_env(reference_url: str, workdir: Path, kafka: str | None) -> dict[str, str]:
    """The settings of every service of the run (and of the bench process itself)."""
    env = {
        "VOICEBUS_DATA_DIR": str(workdir / "data"),
        "VOICEBUS_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}.",
        "VOICEBUS_NODE_ID": NODE,
        "VOICEBUS_INGEST_PORT": str(free_port()),
        "VOICEBUS_ICE_HOST_ADDRESSES": '["127.0.0.1"]',
        "VOICEBUS_MAX_SESSIONS": "200",
        "VOICEBUS_OFFERS_PER_MINUTE": "0",  # every caller of the sweep comes from this one address
        "VOICEBUS_TELEMETRY_QUERY_PORT": str(free_port()),
        "VOICEBUS_ASR_METRICS_PORT": "0",
        "VOICEBUS_RESPONDER_METRICS_PORT": "0",
        "VOICEBUS_TURN_METRICS_PORT": "0",
        "VOICEBUS_ASR_ENGINE": "openai",
        "VOICEBUS_ASR_OPENAI_URL": reference_url,
        "VOICEBUS_LLM_ENGINE": "openai",
        "VOICEBUS_LLM_OPENAI_URL": reference_url,
        "VOICEBUS_TTS_ENGINE": "openai",
        "VOICEBUS_TTS_OPENAI_URL": reference_url,
        "VOICEBUS_TTS_OPENAI_SAMPLE_RATE": "24000",
    }
    if kafka:
        env |= {"VOICEBUS_UP_START_KAFKA": "false", "VOICEBUS_KAFKA_BOOTSTRAP": kafka}
    else:
        port = free_port()
        env |= {"VOICEBUS_KAFKA_PORT": str(port), "VOICEBUS_KAFKA_CONTROLLER_PORT": str(free_port()),
                "VOICEBUS_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}
    return env


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {log}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer at {url} within {timeout_s:.0f} s; see {log}")


def _stop(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def reference_stack(audio: Sequence[Path], delays: Delays, kafka: str | None = None,
                    keep: bool = False) -> Iterator[Stack]:
    """Starts the reference server and `voicebus up` on it; stops both (and the broker `up` started) at exit."""
    workdir = Path(tempfile.mkdtemp(prefix="voicebus-bench-"))
    ref_port = free_port()
    reference_url = f"http://127.0.0.1:{ref_port}/v1"
    env = platform_env(reference_url, workdir, kafka)
    os.environ.update(env)  # the bench's own Kafka floor and ClickHouse read-back use the same platform
    children: list[subprocess.Popen[bytes]] = []
    ref_log, up_log = workdir / "reference.log", workdir / "up.log"
    try:
        with ref_log.open("wb") as out:
            children.append(subprocess.Popen(
                [sys.executable, "-m", "bench.reference_server", "--port", str(ref_port), *delays.argv(),
                 "--audio", *map(str, audio)], stdout=out, stderr=subprocess.STDOUT, env={**os.environ}))
        _wait_http(f"http://127.0.0.1:{ref_port}/healthz", children[0], 30, "the reference server", ref_log)
        with up_log.open("wb") as out:
            children.append(subprocess.Popen([sys.executable, "-m", "voicebus.cli", "up"], stdout=out,
                                             stderr=subprocess.STDOUT, env={**os.environ}))
        url = f"http://127.0.0.1:{env['VOICEBUS_INGEST_PORT']}"
        _wait_http(f"{url}/healthz", children[1], 180, "voicebus up", up_log)
        yield Stack(url, reference_url, workdir)
    except BaseException:
        keep = True  # the logs say why
        print(f"the run's logs and data are kept in {workdir}", file=sys.stderr)
        raise
    finally:
        for child in reversed(children):
            _stop(child, 60)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
