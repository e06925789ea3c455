"""Real KRaft Kafka brokers for development and tests, started from Maven Central jars: one node, or a local
cluster of several on consecutive ports.

The jars are fetched once by `mvn dependency:copy-dependencies` (pom: runtime/broker_files/pom.xml) into a cache
outside the repository; each node gets its own state directory holding its config, data, log and pid.

Every node of a cluster is a broker and a controller in one process (combined mode). Separate controllers would be
three more JVMs on a two-core machine for no fault tolerance this cluster needs: three voters survive the loss of
any one node, the same one loss the data survives (replication factor 3, min.insync.replicas 2). Killing a node
kills a voter too, possibly the active controller: a harsher fault than a lone broker's, which is what the chaos
tests want.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime import broker_security as security
from runtime.kafka import make_admin
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
    pid: int  # the first node's
    seconds: float
    downloaded: bool
    reused: bool = False  # it was already running: whoever started it stops it
    pids: tuple[int, ...] = ()  # every node's


@dataclass(frozen=True)
class Node:
    """One KRaft process (a broker and a controller) of a local broker or cluster."""

    node_id: int
    port: int
    controller_port: int
    state_dir: Path

    @property
    def config(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    def pid(self) -> int | None:
        """The node's pid if it is running."""
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_running(pid, str(self.config)) else None


def default_state_dir(settings: KafkaBrokerSettings, brokers: int) -> Path:
    port = settings.kafka_port
    return settings.data_dir / (f"kafka-{port}" if brokers == 1 else f"kafka-{port}-x{brokers}")


class LocalKafka:
    """A local broker, or a cluster of ``brokers`` nodes (default VOICEBUS_KAFKA_BROKERS), identified by its state
    directory. Node i (from 1) listens on the i-th of ``ports`` (client port, controller port): by default
    consecutive ports from VOICEBUS_KAFKA_PORT and the controller port."""

    def __init__(self, settings: KafkaBrokerSettings, state_dir: Path | None = None, brokers: int | None = None,
                 ports: Sequence[tuple[int, int]] | None = None) -> None:
        self.settings = settings
        count = brokers or (len(ports) if ports else settings.kafka_brokers)
        if ports is None:
            controller = settings.kafka_controller_port or settings.kafka_port + 1000
            ports = [(settings.kafka_port + i, controller + i) for i in range(count)]
        if len(ports) != count:
            raise ValueError(f"{count} brokers need {count} port pairs, got {len(ports)}")
        self.state_dir = state_dir or default_state_dir(settings, count)
        self.nodes = [Node(i + 1, port, controller_port, self.state_dir if count == 1 else self.state_dir / f"node-{i + 1}")
                      for i, (port, controller_port) in enumerate(ports)]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.settings.kafka_host}:{node.port}" for node in self.nodes)

    def client_settings(self) -> KafkaBrokerSettings:
        """The settings with this broker's bootstrap: what a client of it uses."""
        return self.settings.model_copy(update={"kafka_bootstrap": self.bootstrap})

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id - 1]

    def pids(self) -> dict[int, int | None]:
        return {node.node_id: node.pid() for node in self.nodes}

    def pid(self) -> int | None:
        """The pid of the first node that is running, if any is."""
        return next((pid for pid in self.pids().values() if pid is not None), None)

    def start(self) -> BrokerStarted:
        """Start every node that is not running (all of them, or one that was killed) and wait until the cluster
        answers with all its brokers."""
        t0 = time.monotonic()
        running = self.pids()
        if all(pid is not None for pid in running.values()):
            self._wait_ready([])
            pids = tuple(p for p in running.values() if p is not None)
            return BrokerStarted(self.bootstrap, pids[0], time.monotonic() - t0, False, reused=True, pids=pids)
        try:
            security.check(self.settings)
        except security.SecurityConfigError as exc:
            raise BrokerError(str(exc)) from None
        downloaded = fetch_jars(self.settings.kafka_jar_cache)
        password = security.broker_password(self.state_dir) if security.uses_sasl(self.settings) else ""
        cluster_id = self._cluster_id()
        procs = [self._launch(node, cluster_id, password) for node in self.nodes if running[node.node_id] is None]
        try:
            self._wait_ready(procs)
        except BaseException:
            for proc, _ in procs:
                proc.kill()
                proc.wait()
            raise
        seconds = time.monotonic() - t0
        pids = tuple(p for p in self.pids().values() if p is not None)
        log.info("kafka (%d node%s) ready at %s in %.1f s (jars downloaded: %s)", len(self.nodes),
                 "s" if len(self.nodes) > 1 else "", self.bootstrap, seconds, downloaded)
        return BrokerStarted(self.bootstrap, pids[0], seconds, downloaded, pids=pids)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop every node (SIGTERM, then SIGKILL after ``timeout``); returns False if none was running. A node
        that exited but was not reaped (a zombie child of `voicebus up`) counts as stopped at once."""
        running = {node: pid for node in self.nodes if (pid := node.pid()) is not None}
        for pid in running.values():
            _signal(pid, signal.SIGTERM)
        _wait_gone(running, timeout)
        for node, pid in running.items():
            if node.pid() is not None:
                log.warning("kafka node %d (pid %d) did not stop in %.0f s: killing it", node.node_id, pid, timeout)
                _signal(pid, signal.SIGKILL)
        _wait_gone(running, 10.0)
        for node in self.nodes:
            node.pid_file.unlink(missing_ok=True)
        return bool(running)

    def kill_node(self, node_id: int, sig: signal.Signals = signal.SIGKILL) -> int:
        """Send ``sig`` to one node and wait until its process is gone (a fault for the chaos tests; `start()`
        brings it back). Returns its pid."""
        node = self.node(node_id)
        pid = node.pid()
        if pid is None:
            raise BrokerError(f"kafka node {node_id} is not running")
        _signal(pid, sig)
        if not _wait_gone({node: pid}, 30.0):
            raise BrokerError(f"kafka node {node_id} (pid {pid}) is still running after {sig.name}")
        return pid

    async def leader_of(self, topic: str, partition: int = 0) -> int:
        """The node id leading this partition (from the cluster metadata)."""
        admin = make_admin(self.client_settings())
        await admin.start()
        try:
            for described in await admin.describe_topics([topic]):
                for p in described["partitions"]:
                    if p["partition"] == partition and p["leader"] >= 0:
                        return int(p["leader"])
        finally:
            await admin.close()
        raise BrokerError(f"{topic}[{partition}] has no leader")

    async def kill_leader(self, topic: str, partition: int = 0, sig: signal.Signals = signal.SIGKILL) -> int:
        """SIGKILL the node leading this partition; returns its node id."""
        node_id = await self.leader_of(topic, partition)
        await asyncio.to_thread(self.kill_node, node_id, sig)
        log.info("killed kafka node %d, leader of %s[%d], with %s", node_id, topic, partition, sig.name)
        return node_id

    def status(self) -> str:
        pids = self.pids()
        if all(pid is None for pid in pids.values()):
            return "stopped"
        ok = asyncio.run(_answers(self.client_settings(), 2.0, len(self.nodes)))
        state = "ready" if ok else "not answering"
        if len(self.nodes) == 1:
            return f"running pid={pids[1]} bootstrap={self.bootstrap} {state}"
        lines = [f"cluster of {len(self.nodes)} at {self.bootstrap}: {state if ok else 'not all brokers answer'}"]
        for node in self.nodes:
            pid = pids[node.node_id]
            lines.append(f"  node {node.node_id} :{node.port} " + (f"running pid={pid}" if pid else "stopped"))
        return "\n".join(lines)

    def _cluster_id(self) -> str:
        path = self.state_dir / "cluster.id"
        if path.exists():
            return path.read_text().strip()
        cluster_id = "-"
        while cluster_id.startswith("-"):  # the storage tool would take it for an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(cluster_id)
        return cluster_id

    def _write_config(self, node: Node, password: str) -> Path:
        s = self.settings
        node.state_dir.mkdir(parents=True, exist_ok=True)
        replication = 3 if len(self.nodes) >= 3 else 1
        client_protocol, controller_protocol = security.protocols(s)
        node.config.write_text(
            (INFRA_KAFKA / "server.properties").read_text().format(
                node_id=node.node_id,
                voters=",".join(f"{n.node_id}@{s.kafka_host}:{n.controller_port}" for n in self.nodes),
                host=s.kafka_host,
                port=node.port,
                controller_port=node.controller_port,
                client_protocol=client_protocol,
                controller_protocol=controller_protocol,
                log_dirs=node.state_dir / "data",
                replication=replication,
                min_insync=2 if replication == 3 else 1,
            ) + security.listener_properties(s, node.state_dir, password)
        )
        return node.config

    def _launch(self, node: Node, cluster_id: str, password: str) -> tuple[subprocess.Popen[bytes], Node]:
        s = self.settings
        config = self._write_config(node, password)
        classpath = f"{s.kafka_jar_cache}/*"
        if not (node.state_dir / "data" / "meta.properties").exists():
            fmt = subprocess.run(
                ["java", "-cp", classpath, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                 "-t", cluster_id, "-c", str(config), *security.scram_format_args(s, password)],
                capture_output=True, text=True,
            )
            if fmt.returncode != 0:
                raise BrokerError(f"formatting KRaft storage failed:\n{fmt.stdout}{fmt.stderr}")
        out = open(node.state_dir / "broker.out", "ab")
        proc = subprocess.Popen(
            ["java", f"-Xmx{s.kafka_heap}", f"-Xms{s.kafka_heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
             f"-Dlog4j.configuration=file:{INFRA_KAFKA / 'log4j.properties'}",
             f"-Dkafka.logs.dir={node.state_dir}", "-cp", classpath, "kafka.Kafka", str(config)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        out.close()
        node.pid_file.write_text(str(proc.pid))
        return proc, node

    def _wait_ready(self, procs: list[tuple[subprocess.Popen[bytes], Node]]) -> None:
        deadline = time.monotonic() + self.settings.kafka_start_timeout_s
        while time.monotonic() < deadline:
            for proc, node in procs:
                if proc.poll() is not None:
                    tail = (node.state_dir / "broker.out").read_text(errors="replace")[-3000:]
                    raise BrokerError(f"kafka node {node.node_id} exited with {proc.returncode}:\n{tail}")
            if asyncio.run(_answers(self.client_settings(), 2.0, len(self.nodes))):
                return
            time.sleep(0.2)
        raise BrokerError(f"the broker did not answer at {self.bootstrap} within "
                          f"{self.settings.kafka_start_timeout_s} s; see {self.state_dir}/**/server.log")


def running(settings: KafkaBrokerSettings) -> list[LocalKafka]:
    """The local brokers and clusters at VOICEBUS_KAFKA_PORT that have a node running, whatever size they were
    started with (`voicebus kafka stop|status` without --brokers)."""
    found = []
    for brokers in range(1, 10):
        kafka = LocalKafka(settings, brokers=brokers)
        if kafka.state_dir.is_dir() and kafka.pid() is not None:
            found.append(kafka)
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(nodes: dict[Node, int], timeout: float) -> bool:
    """Wait (polling) until none of these nodes runs; True if none does."""
    deadline = time.monotonic() + timeout
    while any(node.pid() is not None for node in nodes):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _is_running(pid: int, marker: str) -> bool:
    """Whether ``pid`` is a live process with ``marker`` (its node's config path) on its command line. Neither a
    zombie (exited, not yet reaped by its parent: `voicebus up` when another process stopped the broker it
    started) nor a process that inherited the number of a pid file left behind is."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if not Path("/proc/self").exists():
        return not _reap(pid)  # no procfs (macOS): the pid is all there is to go on
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        _reap(pid)  # our own child: collect it, so it leaves no zombie (another's parent must)
        return False
    return marker.encode() in cmdline.split(b"\0")


def _reap(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return False


async def _answers(settings: KafkaBrokerSettings, timeout: float, brokers: int = 1) -> bool:
    """True when a Kafka client can fetch cluster metadata listing all ``brokers`` and a consumer group would find
    its coordinator (until then every service's first join logs GroupCoordinatorNotAvailable as an error)."""
    admin = make_admin(settings, request_timeout_ms=int(timeout * 1000))
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # "connection refused" is the expected answer while it boots
    try:
        await asyncio.wait_for(admin.start(), timeout)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout)
        if len(cluster["brokers"]) < brokers:
            return False
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
