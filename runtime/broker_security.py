"""TLS and SASL/SCRAM for the local broker: its listener properties, the SCRAM users written at format time, and a
throwaway certificate authority for tests and development.

The client listener speaks what the clients are told to speak (VOICEBUS_KAFKA_SECURITY_PROTOCOL), so one set of
settings configures both ends. The brokers talk to each other over that same listener as their own SCRAM user.
The controller listener has no SASL (KRaft keeps SCRAM credentials in the metadata log, which the controllers must
read before they could check one): with TLS it takes only peers whose certificate the CA signed (mutual TLS), so
nothing without the nodes' key reaches the quorum; without TLS it is plaintext and should stay on loopback.
Certificates are PEM files throughout: Kafka reads PEM keystores and truststores itself (ssl.keystore.type=PEM), so
the operator's files are used as they are, without a keytool conversion.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runtime.settings import KafkaBrokerSettings

BROKER_USER = "voicebus-broker"  # the nodes' own SCRAM user, for their connections to each other


class SecurityConfigError(ValueError):
    pass


def uses_tls(settings: KafkaBrokerSettings) -> bool:
    return "SSL" in settings.kafka_security_protocol


def uses_sasl(settings: KafkaBrokerSettings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL")


def protocols(settings: KafkaBrokerSettings) -> tuple[str, str]:
    """(client listener protocol, controller listener protocol)."""
    return settings.kafka_security_protocol, "SSL" if uses_tls(settings) else "PLAINTEXT"


def check(settings: KafkaBrokerSettings) -> None:
    """Refuse a security setup the local broker cannot run, before anything is written."""
    missing = []
    if uses_tls(settings):
        for name in ("kafka_broker_ssl_certfile", "kafka_broker_ssl_keyfile", "kafka_ssl_cafile"):
            if not getattr(settings, name):
                missing.append(f"VOICEBUS_{name.upper()}")
    if uses_sasl(settings):
        if not settings.kafka_sasl_mechanism.startswith("SCRAM"):
            raise SecurityConfigError("the local broker creates SCRAM users only: set VOICEBUS_KAFKA_SASL_MECHANISM "
                                      "to SCRAM-SHA-512 or SCRAM-SHA-256")
        if not settings.kafka_sasl_username or not settings.kafka_sasl_password.get_secret_value():
            missing.append("VOICEBUS_KAFKA_SASL_USERNAME and VOICEBUS_KAFKA_SASL_PASSWORD")
    if missing:
        raise SecurityConfigError(f"{settings.kafka_security_protocol} needs {', '.join(missing)}")


def broker_password(cluster_dir: Path) -> str:
    """The nodes' SCRAM password: made once per cluster, kept beside its state, readable by its owner only."""
    path = cluster_dir / "broker.secret"
    if not path.exists():
        cluster_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(24))
    return path.read_text().strip()


def _jaas(user: str, password: str) -> str:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return f"org.apache.kafka.common.security.scram.ScramLoginModule required username={quoted(user)} " \
           f"password={quoted(password)};"


def listener_properties(settings: KafkaBrokerSettings, node_dir: Path, password: str) -> str:
    """server.properties lines for the TLS and SASL parts of one node's listeners ('' for PLAINTEXT)."""
    lines = []
    if uses_tls(settings):
        # A PEM keystore is one file: the private key, then the certificate chain.
        keystore = node_dir / "keystore.pem"
        fd = os.open(keystore, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(Path(settings.kafka_broker_ssl_keyfile).read_text().strip() + "\n")
            f.write(Path(settings.kafka_broker_ssl_certfile).read_text().strip() + "\n")
        lines += ["ssl.keystore.type=PEM", f"ssl.keystore.location={keystore}",
                  "ssl.truststore.type=PEM", f"ssl.truststore.location={settings.kafka_ssl_cafile}",
                  f"listener.name.client.ssl.client.auth={settings.kafka_ssl_client_auth}",
                  "listener.name.controller.ssl.client.auth=required"]
    if uses_sasl(settings):
        mechanism = settings.kafka_sasl_mechanism
        lines += [f"sasl.enabled.mechanisms={mechanism}", f"sasl.mechanism.inter.broker.protocol={mechanism}",
                  f"listener.name.client.{mechanism.lower()}.sasl.jaas.config={_jaas(BROKER_USER, password)}"]
    return "\n".join(lines) + "\n" if lines else ""


def scram_format_args(settings: KafkaBrokerSettings, password: str) -> list[str]:
    """`kafka-storage format` arguments that put the SCRAM users into the cluster's first metadata."""
    if not uses_sasl(settings):
        return []
    mechanism = settings.kafka_sasl_mechanism
    users = [(BROKER_USER, password), (settings.kafka_sasl_username, settings.kafka_sasl_password.get_secret_value())]
    args = []
    for user, secret in users:
        args += ["--add-scram", f'{mechanism}=[name="{user}",password="{secret}"]']
    return args


@dataclass(frozen=True)
class Certificates:
    """PEM files of a throwaway CA, a broker certificate and a client certificate it signed."""

    ca: Path
    broker_cert: Path
    broker_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr[-2000:]}")


def make_certificates(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
                      days: int = 2) -> Certificates:
    """A CA and two certificates it signs, for tests and development: the broker's names ``hosts`` (IP
    addresses and DNS names), the client's is a client certificate for mutual TLS. Keys are unencrypted PKCS#8."""
    directory.mkdir(parents=True, exist_ok=True)
    d = directory
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
             "-days", str(days), "-subj", "/CN=voicebus test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    names = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts)
    for who, usage, alt in (("broker", "serverAuth,clientAuth", names), ("client", "clientAuth", "")):
        ext = d / f"{who}.ext"
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                       f"extendedKeyUsage={usage}\n" + (f"subjectAltName={alt}\n" if alt else ""))
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / f"{who}.key"),
                 "-out", str(d / f"{who}.csr"), "-subj", f"/CN=voicebus {who}")
        _openssl("x509", "-req", "-in", str(d / f"{who}.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
                 "-CAcreateserial", "-out", str(d / f"{who}.pem"), "-days", str(days), "-extfile", str(ext))
    return Certificates(d / "ca.pem", d / "broker.pem", d / "broker.key", d / "client.pem", d / "client.key")
