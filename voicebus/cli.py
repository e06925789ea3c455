"""`voicebus <command>`: the one entry point. Service commands hand their own argv to the service's main()."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from runtime.log import setup_logging
from runtime.settings import CommonSettings, KafkaBrokerSettings

# Each command takes the remaining argv and returns an exit code. Imported when run: a command loads only its
# own service (aiortc, Faust and the engines are heavy).


def _ingest(argv: list[str]) -> int:
    from ingest.front import main

    return main(argv)


def _streams(argv: list[str]) -> int:
    from streams.app import main

    return main(argv)


def _asr(argv: list[str]) -> int:
    from inference.asr_worker import main

    return main(argv)


def _responder(argv: list[str]) -> int:
    from inference.responder import main

    return main(argv)


def _telemetry(argv: list[str]) -> int:
    from streams.telemetry.sink import main

    return main(argv)


def _ops(argv: list[str]) -> int:
    from streams.telemetry.ops import main

    return main(argv)


def _replay(argv: list[str]) -> int:
    from streams.turns.replay_cli import main

    return main(argv)


def _up(argv: list[str]) -> int:
    from voicebus.supervisor import main

    return main(argv)


def _simulate(argv: list[str]) -> int:
    from bench.simulate import main

    return main(argv)


def _bench(argv: list[str]) -> int:
    from bench.platform import main

    return main(argv)


SERVICES: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "ingest": (_ingest, "run the WebRTC edge (a signaling front, an edge worker per core)"),
    "streams": (_streams, "run the turn processor (Faust)"),
    "asr": (_asr, "run an ASR worker"),
    "responder": (_responder, "run a responder worker (LLM -> TTS)"),
    "telemetry": (_telemetry, "run the telemetry sink (Kafka -> ClickHouse)"),
    "ops": (_ops, "operator analytics over ClickHouse"),
    "replay": (_replay, "re-run the turn policy on recorded sessions under other settings"),
    "up": (_up, "run the whole platform on its embedded defaults"),
    "simulate": (_simulate, "simulated WebRTC conversations with a latency table"),
    "bench": (_bench, "the platform benchmark"),
}


def _kafka(argv: list[str]) -> int:
    from runtime import broker as local

    parser = argparse.ArgumentParser(prog="voicebus kafka", description="the local KRaft broker, or cluster")
    parser.add_argument("action", choices=["fetch", "start", "stop", "status"])
    parser.add_argument("--brokers", type=int, default=None,
                        help="nodes of the local cluster (default VOICEBUS_KAFKA_BROKERS; stop and status find "
                             "whatever runs at VOICEBUS_KAFKA_PORT)")
    args = parser.parse_args(argv)
    settings = KafkaBrokerSettings()
    if args.brokers is not None:
        settings = settings.model_copy(update={"kafka_brokers": args.brokers})
    try:
        if args.action == "fetch":
            fetched = local.fetch_jars(settings.kafka_jar_cache)
            print(f"kafka jars {'fetched into' if fetched else 'already cached in'} {settings.kafka_jar_cache}")
        elif args.action == "start":
            started = local.LocalKafka(settings).start()
            pids = ", ".join(map(str, started.pids))
            print(f"kafka running at {started.bootstrap} (pid {pids}); start took {started.seconds:.1f} s"
                  f"{' including the jar download' if started.downloaded else ''}")
            if started.bootstrap != settings.kafka_bootstrap:
                print(f"clients: export VOICEBUS_KAFKA_BOOTSTRAP={started.bootstrap}")
        else:
            found = [local.LocalKafka(settings)] if args.brokers else local.running(settings)
            if args.action == "stop":
                stopped = [kafka.stop() for kafka in found]
                print("kafka stopped" if any(stopped) else "kafka was not running")
            else:
                statuses = [kafka.status() for kafka in found] or ["stopped"]
                for status in statuses:
                    print(f"kafka {status}")
                return 0 if any(s != "stopped" for s in statuses) else 3
    except local.BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _topics(argv: list[str]) -> int:
    from aiokafka.errors import KafkaConnectionError

    from runtime.provisioning import create_topics

    parser = argparse.ArgumentParser(prog="voicebus topics", description="provision the registry's topics")
    parser.add_argument("action", choices=["create"])
    parser.add_argument("--node", action="append", default=[], help="also create voice.replies.<node> (repeatable)")
    args = parser.parse_args(argv)
    settings = CommonSettings()
    try:
        results = asyncio.run(create_topics(settings, tuple(args.node)))
    except KafkaConnectionError:
        print(f"error: no Kafka broker answers at {settings.kafka_bootstrap} "
              "(start one with `voicebus kafka start`, or set VOICEBUS_KAFKA_BOOTSTRAP)", file=sys.stderr)
        return 1
    for r in results:
        print(f"{r.status:9} {r.name} {r.detail}")
    return 1 if any(r.status == "mismatch" for r in results) else 0


def _schemas(argv: list[str]) -> int:
    from schemas.export import export

    parser = argparse.ArgumentParser(prog="voicebus schemas", description="the event contract for other services")
    parser.add_argument("action", choices=["export"])
    parser.add_argument("dir", help="output directory")
    args = parser.parse_args(argv)
    for path in export(args.dir):
        print(path)
    return 0


def _token(argv: list[str]) -> int:
    from ingest.settings import IngestSettings
    from ingest.tokens import mint, parse_duration, verify

    parser = argparse.ArgumentParser(prog="voicebus token", description="issue a signed session token for the "
                                     "edge (signed with VOICEBUS_SESSION_SECRET); prints the token")
    parser.add_argument("action", choices=["issue"])
    parser.add_argument("--ttl", default="10m", help="how long it may open sessions: 90s, 10m, 2h, 1d (default 10m)")
    parser.add_argument("--max-sessions", type=int, default=1, help="sessions it may hold at once (default 1)")
    parser.add_argument("--user", default="", help="who it is for (logged; the TURN username)")
    parser.add_argument("--json", action="store_true", help="print the token with its claims as JSON")
    args = parser.parse_args(argv)
    secret = IngestSettings().session_secret
    try:
        token = mint(secret, parse_duration(args.ttl), args.max_sessions, args.user)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        import json
        from dataclasses import asdict

        print(json.dumps({"token": token, **asdict(verify(secret, token, 0))}))
    else:
        print(token)
    return 0


BUILTIN = {"kafka": (_kafka, "start / stop / status of the local broker (or cluster: --brokers 3)"),
           "topics": (_topics, "create the registry's topics"),
           "schemas": (_schemas, "export JSON Schemas and an AsyncAPI document"),
           "token": (_token, "issue a signed session token for the edge")}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {**{k: v[1] for k, v in BUILTIN.items()}, **{k: v[1] for k, v in SERVICES.items()}}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        width = max(map(len, commands))
        lines = "\n".join(f"  {name:{width}}  {text}" for name, text in commands.items())
        print(f"usage: voicebus COMMAND [ARGS]\n\ncommands:\n{lines}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    settings = CommonSettings()
    setup_logging(settings.log_level, settings.log_json)
    command, rest = argv[0], argv[1:]
    run = BUILTIN[command][0] if command in BUILTIN else SERVICES[command][0]
    return int(run(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
