#!/usr/bin/env python3
"""Connection limits (issue 16): idle clients against a broker with a low open file limit,
and what the accept loop costs.

    python scripts/bench/bench_connection_limits.py [--repo PATH] [--limit N] [--clients N]

1. Accept cost: 1,000 sequential connect + ApiVersions + close against ``--storage memory``,
   three rounds, and the broker's CPU seconds for all of them (``/proc/<pid>/stat``).
2. Descriptors: a ``--storage disk`` broker whose soft and hard RLIMIT_NOFILE are ``--limit``
   (default 1024), one admin connection, then ``--clients`` (default 2000) idle sockets (each
   connect given 0.3 s: beyond the kernel's backlog a connect waits, as against Kafka); then
   the broker's open descriptors, CreateTopics of 32 partitions and a produce on the admin
   connection, and the EMFILE lines in its log.

``--repo`` runs another checkout's broker (its ``tests/server/helpers.py`` and package), for
a before/after from the same machine.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=ROOT)
    parser.add_argument("--limit", type=int, default=1024)
    parser.add_argument("--clients", type=int, default=2000)
    args = parser.parse_args()
    sys.path.insert(0, str(args.repo))
    from tests.server import helpers

    limit = args.limit

    class LowFdBroker(helpers.BrokerProcess):
        def command(self) -> list[str]:
            cmd = super().command()
            shim = (
                "import os, resource, sys; "
                f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit})); "
                "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
            )
            return [cmd[0], "-c", shim, *cmd[1:]]

    with tempfile.TemporaryDirectory() as work:
        broker = helpers.BrokerProcess(Path(work) / "accept")
        broker.workdir.mkdir()
        broker.start()
        try:
            rounds = []
            for _ in range(3):
                started = time.perf_counter()
                for _ in range(1000):
                    with helpers.Client(broker.address) as client:
                        client.request(helpers.api_versions_request(), 3)
                rounds.append(time.perf_counter() - started)
            stat = Path(f"/proc/{broker.pid}/stat").read_text().split()
            cpu = (int(stat[13]) + int(stat[14])) / os.sysconf("SC_CLK_TCK")
        finally:
            broker.close()
        print(
            "1000 x (connect, ApiVersions, close), seconds per round: "
            + " ".join(f"{r:.2f}" for r in rounds)
            + f"; broker CPU for all {cpu:.2f} s"
        )

        low = LowFdBroker(Path(work) / "fds", storage="disk")
        low.workdir.mkdir()
        low.start()
        idle: list[socket.socket] = []
        try:
            admin = helpers.Client(low.address)
            refused = 0
            for _ in range(args.clients):
                try:
                    idle.append(socket.create_connection(low.address, 0.3))
                except OSError:
                    refused += 1
            time.sleep(2)
            fds = len(os.listdir(f"/proc/{low.pid}/fd"))
            print(
                f"RLIMIT_NOFILE {limit}: {args.clients} idle clients "
                f"({refused} connects timed out beyond the backlog); broker holds {fds} fds"
            )
            from kafkacompat.protocol.messages.create_topics_request import (
                CreatableTopic,
                CreateTopicsRequest,
            )

            try:
                response = admin.request(
                    CreateTopicsRequest(
                        topics=[
                            CreatableTopic(name="wide", num_partitions=32, replication_factor=1)
                        ],
                        timeout_ms=10_000,
                    ),
                    5,
                )
                print(
                    "CreateTopics (32 partitions):",
                    [(t.name, t.error_code, t.error_message) for t in response.topics],
                )
                produced = helpers.produce(admin, "wide", helpers.batch(b"kept"))
                print("Produce error code:", produced.error_code)
            except (OSError, ConnectionError) as exc:
                print("the admin connection failed:", exc)
            time.sleep(2)  # housekeeping ticks
            text = low.log_text()
            print("log lines naming EMFILE:", len(re.findall("Too many open files|EMFILE", text)))
        finally:
            for sock in idle:
                sock.close()
            low.close()


if __name__ == "__main__":
    main()
