"""The ``kafkacompat`` command."""

from __future__ import annotations

import argparse
import sys

from kafkacompat import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kafkacompat", description="A broker that speaks Apache Kafka's wire protocol."
    )
    parser.add_argument("--version", action="version", version=f"kafkacompat {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the broker")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=9092)
    serve.add_argument("--data-dir", default="./data")
    serve.add_argument("--config", help="a server.properties file")
    serve.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    serve.add_argument("--storage", choices=("disk", "memory"), default="disk")
    serve.add_argument("--log-level", default="info")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        # The network server is the broker issue's work; until it lands, say so plainly
        # rather than pretend to listen.
        print(
            f"kafkacompat {__version__}: the network server is not built yet; "
            f"nothing listens on {args.host}:{args.port}",
            file=sys.stderr,
        )
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
