"""The local broker's process handling (no broker needed: a stand-in process carries a node's config path on its
command line, as the java process does), and the pure decisions around the cluster: replication, client options."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import SecretStr

from runtime.broker import LocalKafka
from runtime.kafka import client_options, kcat_options
from runtime.provisioning import Replication, replication_for
from runtime.settings import KafkaBrokerSettings
from tests.conftest import REPO, free_port


def _settings(tmp_path: Path, **kw: object) -> KafkaBrokerSettings:
    return KafkaBrokerSettings(data_dir=tmp_path, kafka_port=free_port(), **kw)


def _stand_in(kafka: LocalKafka, node_id: int = 1) -> subprocess.Popen[bytes]:
    """A process that looks like node ``node_id`` (its config path is an argument) and dies of SIGTERM."""
    node = kafka.node(node_id)
    node.state_dir.mkdir(parents=True, exist_ok=True)
    node.config.write_text("# stand-in\n")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", str(node.config)])
    node.pid_file.write_text(str(proc.pid))
    return proc


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_stop_from_another_process_returns_at_once_when_the_broker_is_a_zombie(tmp_path):
    """`voicebus up` starts the broker as its child; `voicebus kafka stop` (another process) signals it. The broker
    exits, but only `up` can reap it: until then it is a zombie, which signal 0 still finds. Stop waited its whole
    timeout (30 s) for it; now it sees the zombie as stopped. Here this test is `up`, and stop is given an hour: a
    stop that waits for the zombie to go away never returns within the subprocess's bound."""
    settings = _settings(tmp_path)
    kafka = LocalKafka(settings)
    child = _stand_in(kafka)
    assert kafka.pid() == child.pid
    stop = textwrap.dedent(f"""
        from pathlib import Path
        from runtime.broker import LocalKafka
        from runtime.settings import KafkaBrokerSettings
        settings = KafkaBrokerSettings(data_dir=Path({str(tmp_path)!r}), kafka_port={settings.kafka_port})
        print(LocalKafka(settings).stop(timeout=3600))
    """)
    try:
        done = subprocess.run([sys.executable, "-c", stop], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "True"
        # It was stopped by the SIGTERM, not killed after a timeout; and it is still our zombie, unreaped.
        assert Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        assert child.wait() == -signal.SIGTERM
        assert not kafka.node(1).pid_file.exists()
    finally:
        child.kill()
        child.wait()


def test_the_cli_finds_a_zombie_stopped(tmp_path):
    settings = _settings(tmp_path)
    kafka = LocalKafka(settings)
    child = _stand_in(kafka)
    env = {**os.environ, "PYTHONPATH": str(REPO), "VOICEBUS_DATA_DIR": str(tmp_path),
           "VOICEBUS_KAFKA_PORT": str(settings.kafka_port)}
    try:
        status = subprocess.run([sys.executable, "-m", "voicebus.cli", "kafka", "status"], capture_output=True,
                                text=True, env=env, timeout=300)
        assert status.stdout.startswith(f"kafka running pid={child.pid}"), status.stdout + status.stderr
        child.send_signal(signal.SIGTERM)
        # Until this process reaps it, the child is a zombie: another process must see it stopped.
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            pass  # the signal is delivered asynchronously; the state changes in a moment
        status = subprocess.run([sys.executable, "-m", "voicebus.cli", "kafka", "status"], capture_output=True,
                                text=True, env=env, timeout=300)
        assert status.stdout.strip() == "kafka stopped"
        assert status.returncode == 3
    finally:
        child.kill()
        child.wait()


def test_a_stale_pid_file_naming_another_process_is_not_the_broker(tmp_path):
    """The broker died without removing its pid file and the number went to another process: stop must neither
    wait for nor kill it."""
    kafka = LocalKafka(_settings(tmp_path))
    node = kafka.node(1)
    node.state_dir.mkdir(parents=True)
    node.config.write_text("")
    node.pid_file.write_text(str(os.getpid()))  # alive, and certainly not a broker
    assert kafka.pid() is None
    assert kafka.status() == "stopped"
    assert kafka.stop(timeout=3600) is False  # and this test is still running
    node.pid_file.write_text("not a number")
    assert kafka.pid() is None


def test_a_cluster_stops_every_node(tmp_path):
    kafka = LocalKafka(_settings(tmp_path), brokers=3)
    assert [n.port - kafka.settings.kafka_port for n in kafka.nodes] == [0, 1, 2]
    assert kafka.bootstrap.count(",") == 2
    children = [_stand_in(kafka, node_id) for node_id in (1, 2, 3)]
    try:
        assert set(kafka.pids().values()) == {c.pid for c in children}
        assert kafka.stop(timeout=3600) is True
        assert kafka.pid() is None
        # Stopped by this process, their parent: reaped too, no zombie left behind.
        assert [_gone(c.pid) for c in children] == [True] * 3
    finally:
        for c in children:
            c.kill()
            c.wait()


def test_kill_node_kills_only_that_node(tmp_path):
    kafka = LocalKafka(_settings(tmp_path), brokers=3)
    children = [_stand_in(kafka, node_id) for node_id in (1, 2, 3)]
    try:
        assert kafka.kill_node(2) == children[1].pid
        assert _gone(children[1].pid)
        assert kafka.pids() == {1: children[0].pid, 2: None, 3: children[2].pid}
    finally:
        for c in children:
            c.kill()
            c.wait()


@pytest.mark.parametrize(("brokers", "expected"), [
    (1, Replication(1, 1)),
    (2, Replication(1, 1)),  # two copies could not both survive a loss and keep taking writes
    (3, Replication(3, 2)),
    (5, Replication(3, 2)),
])
def test_replication_follows_the_cluster_size(brokers, expected):
    assert replication_for(brokers) == expected


def test_plaintext_client_options_carry_no_credentials():
    options = client_options(KafkaBrokerSettings(kafka_bootstrap="a:1,b:2"))
    assert options == {"bootstrap_servers": "a:1,b:2", "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_client_options_and_kcat_arguments(tmp_path):
    from runtime.broker_security import make_certificates

    certs = make_certificates(tmp_path / "certs")
    settings = KafkaBrokerSettings(
        kafka_bootstrap="h:9093", kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc",
        kafka_sasl_password=SecretStr("s3cret"), kafka_ssl_cafile=str(certs.ca),
        kafka_ssl_certfile=str(certs.client_cert), kafka_ssl_keyfile=str(certs.client_key))
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("svc", "s3cret")
    assert options["ssl_context"].check_hostname is True
    args = kcat_options(settings)
    for expected in ("security.protocol=sasl_ssl", "sasl.mechanisms=SCRAM-SHA-512", "sasl.username=svc",
                     "sasl.password=s3cret", f"ssl.ca.location={certs.ca}",
                     f"ssl.certificate.location={certs.client_cert}"):
        assert expected in args
    assert "s3cret" not in repr(settings)  # the password stays out of logs of the settings
