"""The ``kafkacompat`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from kafkacompat import __version__
from kafkacompat.config import BrokerConfig
from kafkacompat.errors import KafkaProtocolError


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kafkacompat", description="A broker that speaks Apache Kafka's wire protocol."
    )
    parser.add_argument("--version", action="version", version=f"kafkacompat {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the broker",
        description="Run the broker. Settings, lowest precedence first: Kafka's defaults, "
        "--config, --host/--port/--data-dir, --set.",
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind, 0 for any free one (default 9092)")
    serve.add_argument("--data-dir", help="the data directory, Kafka's log.dirs (default ./data)")
    serve.add_argument("--config", help="a server.properties file")
    serve.add_argument(
        "--set",
        action="append",
        default=[],
        type=_key_value,
        metavar="KEY=VALUE",
        help="a broker config, by Kafka's name (repeatable)",
    )
    serve.add_argument("--storage", choices=("disk", "memory", "null"), default="disk")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser


def broker_config(args: argparse.Namespace) -> BrokerConfig:
    base = {"listeners": "PLAINTEXT://127.0.0.1:9092", "log.dirs": "./data"}
    explicit: dict[str, str] = {}
    if args.host is not None or args.port is not None:
        host = args.host if args.host is not None else "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        explicit["listeners"] = f"PLAINTEXT://{host}:{args.port if args.port is not None else 9092}"
    if args.data_dir is not None:
        explicit["log.dirs"] = args.data_dir
    return BrokerConfig.load(args.config, {**explicit, **dict(args.set)}, base)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "serve":
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logger = logging.getLogger("kafkacompat")
    try:
        config = broker_config(args)
        config.log_dir  # noqa: B018  (validates log.dirs before anything is written)
    except KafkaProtocolError as exc:
        logger.error("invalid configuration: %s", exc)
        return 2
    for name in config.unknown:
        logger.warning("unknown broker config %s ignored", name)

    from kafkacompat import server

    loop_name = server.install_event_loop_policy()
    server.tune_allocator()
    logger.debug("event loop: %s", loop_name)
    try:
        asyncio.run(server.serve(config, engine=args.storage))
    except OSError as exc:
        logger.error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
