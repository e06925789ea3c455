"""A real single-node KRaft Kafka broker for development and tests, started from Maven Central jars.

The jars are fetched once by `mvn dependency:copy-dependencies` (pom: runtime/broker_files/pom.xml) into a cache
outside the repository; each broker gets its own state directory holding its config, data, log and pid.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from runtime.settings import KafkaBrokerSettings

log = logging.getLogger(__name__)

# Shipped with the package (package data), so an installed voicebus runs its broker outside a checkout too.
INFRA_KAFKA = Path(__file__).resolve().parent / "broker_files"
POM = INFRA_KAFKA / "pom.xml"


class BrokerError(RuntimeError):
    pass


def _require_tools() -> None:
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        raise BrokerError(
            f"{' and '.join(missing)} not found: the local broker needs Java 17 and Maven "
            "(apt-get install openjdk-17-jre-headless maven), or run the full stack with "
            "`docker compose -f infra/docker-compose.yml up`."
        )


def fetch_jars(cache: Path) -> bool:
    """Fetch the broker jars unless the cache already holds this pom's set. Returns True if it downloaded."""
    if not POM.exists():
        raise BrokerError(f"{POM} is missing: the voicebus install is incomplete (package data runtime/broker_files)")
    _require_tools()
    stamp = cache / ".pom-sha256"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return False
    cache.mkdir(parents=True, exist_ok=True)
    cmd = ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
           f"-DoutputDirectory={cache}", "-DincludeScope=runtime"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BrokerError(f"mvn could not fetch the Kafka jars:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    stamp.write_text(digest)
    return True


@dataclass(frozen=True)
class BrokerStarted:
    bootstrap: str
    pid: int
    seconds: float
    downloaded: bool
    reused: bool = False  # it was already running: whoever started it stops it


class LocalKafka:
    """One local broker, identified by its state directory."""

    def __init__(self, settings: KafkaBrokerSettings, state_dir: Path | None = None) -> None:
        self.settings = settings
        self.state_dir = state_dir or settings.data_dir / f"kafka-{settings.kafka_port}"
        self.pid_file = self.state_dir / "broker.pid"

    @property
    def bootstrap(self) -> str:
        return f"{self.settings.kafka_host}:{self.settings.kafka_port}"

    def pid(self) -> int | None:
        """The broker's pid if it is running."""
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None
        return pid

    def start(self) -> BrokerStarted:
        t0 = time.monotonic()
        if (pid := self.pid()) is not None:
            self._wait_ready(None)
            return BrokerStarted(self.bootstrap, pid, time.monotonic() - t0, False, reused=True)
        s = self.settings
        downloaded = fetch_jars(s.kafka_jar_cache)
        config = self._write_config()
        classpath = f"{s.kafka_jar_cache}/*"
        if not (self.state_dir / "data" / "meta.properties").exists():
            cluster_id = "-"
            while cluster_id.startswith("-"):  # the storage tool would take it for an option
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            fmt = subprocess.run(
                ["java", "-cp", classpath, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                 "-t", cluster_id, "-c", str(config)],
                capture_output=True, text=True,
            )
            if fmt.returncode != 0:
                raise BrokerError(f"formatting KRaft storage failed:\n{fmt.stdout}{fmt.stderr}")
        out = open(self.state_dir / "broker.out", "ab")
        proc = subprocess.Popen(
            ["java", f"-Xmx{s.kafka_heap}", f"-Xms{s.kafka_heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
             f"-Dlog4j.configuration=file:{INFRA_KAFKA / 'log4j.properties'}",
             f"-Dkafka.logs.dir={self.state_dir}", "-cp", classpath, "kafka.Kafka", str(config)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        out.close()
        self.pid_file.write_text(str(proc.pid))
        try:
            self._wait_ready(proc)
        except BaseException:
            self.stop()
            raise
        seconds = time.monotonic() - t0
        log.info("kafka broker ready at %s in %.1f s (jars downloaded: %s)", self.bootstrap, seconds, downloaded)
        return BrokerStarted(self.bootstrap, proc.pid, seconds, downloaded)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker; returns False if none was running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            if _reap(pid):
                break
            time.sleep(0.1)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return "stopped"
        ok = asyncio.run(_answers(self.bootstrap, 2.0))
        return f"running pid={pid} bootstrap={self.bootstrap} {'ready' if ok else 'not answering'}"

    def _write_config(self) -> Path:
        s = self.settings
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.state_dir / "server.properties"
        config.write_text(
            (INFRA_KAFKA / "server.properties").read_text().format(
                host=s.kafka_host,
                port=s.kafka_port,
                controller_port=s.kafka_controller_port or s.kafka_port + 1000,
                log_dirs=self.state_dir / "data",
            )
        )
        return config

    def _wait_ready(self, proc: subprocess.Popen[bytes] | None) -> None:
        deadline = time.monotonic() + self.settings.kafka_start_timeout_s
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = (self.state_dir / "broker.out").read_text(errors="replace")[-3000:]
                raise BrokerError(f"the broker exited with {proc.returncode}:\n{tail}")
            if asyncio.run(_answers(self.bootstrap, 2.0)):
                return
            time.sleep(0.2)
        raise BrokerError(f"the broker did not answer at {self.bootstrap} within "
                          f"{self.settings.kafka_start_timeout_s} s; see {self.state_dir}/server.log")


def _reap(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return False


async def _answers(bootstrap: str, timeout: float) -> bool:
    """True when a Kafka client can fetch cluster metadata from the broker and a consumer group would find its
    coordinator (until then every service's first join logs GroupCoordinatorNotAvailable as an error)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # "connection refused" is the expected answer while it boots
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.list_topics(), timeout)
        await asyncio.wait_for(admin.describe_consumer_groups(["voicebus-ready"]), timeout)
        return True
    except Exception:
        return False
    finally:
        try:
            await admin.close()
        except Exception:
            pass
        quiet.setLevel(level)
