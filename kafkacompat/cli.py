"""The ``kafkacompat`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from kafkacompat._version import __version__
from kafkacompat.config import BrokerConfig, parse_listener, read_server_properties
from kafkacompat.errors import KafkaProtocolError
from kafkacompat.storage.atomic_file import CorruptFileError
from kafkacompat.storage.data_dir import DataDirInUseError
from kafkacompat.storage.meta_properties import NodeIdMismatchError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9092
DEFAULT_DATA_DIR = "./data"


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
        "--config, --host/--port/--data-dir, --set. Exits 2 on an invalid setting.",
    )
    serve.add_argument(
        "--host",
        help="address to bind (default 127.0.0.1): the host of the first listener in `listeners`",
    )
    serve.add_argument(
        "--port",
        type=int,
        help="port to bind, 0 for any free one (default 9092): the port of the first listener "
        "in `listeners`",
    )
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


def _listeners_from_flags(args: argparse.Namespace, given: dict[str, str]) -> str:
    """``listeners`` with --host/--port applied to the first broker listener the file or
    --set name (its name and the other listeners kept), else to the default one."""
    controllers = {
        name.strip().upper()
        for name in given.get("controller.listener.names", "CONTROLLER").split(",")
    }
    items = [item.strip() for item in given.get("listeners", "").split(",") if item.strip()]
    index, (name, host, port) = len(items), ("PLAINTEXT", DEFAULT_HOST, DEFAULT_PORT)
    for i, item in enumerate(items):
        parsed = parse_listener(item)
        if parsed is not None and parsed[0].upper() not in controllers:
            index, (name, host, port) = i, parsed
            break
    if args.host is not None:
        host = args.host.strip()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
    if args.port is not None:
        port = args.port
    items[index : index + 1] = [f"{name}://{f'[{host}]' if ':' in host else host}:{port}"]
    return ",".join(items)


def broker_config(args: argparse.Namespace) -> BrokerConfig:
    """Kafka's defaults < our dev defaults < --config < --host/--port/--data-dir < --set."""
    from_file = read_server_properties(args.config) if args.config is not None else {}
    overrides = dict(args.set)
    given = {**from_file, **overrides}
    props = {"listeners": f"PLAINTEXT://{DEFAULT_HOST}:{DEFAULT_PORT}"}
    if "log.dirs" not in given and "log.dir" not in given:
        # Only where nothing names a data directory: log.dirs would beat the file's log.dir.
        props["log.dirs"] = DEFAULT_DATA_DIR
    props.update(from_file)
    if args.host is not None or args.port is not None:
        props["listeners"] = _listeners_from_flags(args, given)
    if args.data_dir is not None:
        props["log.dirs"] = args.data_dir
    props.update(overrides)
    return BrokerConfig(props)


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
    except KafkaProtocolError as exc:
        logger.error("invalid configuration: %s", exc)
        return 2
    for name in config.unknown:
        logger.warning("unknown broker config %s ignored", name)

    from kafkacompat import server
    from kafkacompat.broker_server import serve

    loop_name = server.install_event_loop_policy()
    server.tune_allocator()
    open_files = server.raise_open_file_limit()  # before the storage sizes its descriptor pool
    logger.debug("event loop: %s; open file limit %d", loop_name, open_files)
    try:
        asyncio.run(serve(config, engine=args.storage))
    except (OSError, CorruptFileError, NodeIdMismatchError, DataDirInUseError) as exc:
        # Port in use, data directory unusable or another broker's: say so, no traceback.
        logger.error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
