"""The accept loop when accept() itself fails for want of descriptors (EMFILE): it waits and
retries, backing off, instead of spinning on a listening socket that stays readable."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import Any

import pytest

from kafkacompat.config import Listener
from kafkacompat.connection_quotas import ConnectionQuotas
from kafkacompat.server import Acceptor, Server, install_event_loop_policy


class FailingSocket(socket.socket):
    """A listening socket whose first ``failures`` accept() calls fail with EMFILE."""

    failures = 3
    attempts = 0

    def accept(self) -> tuple[socket.socket, Any]:
        type(self).attempts += 1
        if type(self).attempts <= self.failures:
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


class FakeServer:
    def __init__(self) -> None:
        self.quotas = ConnectionQuotas(["PLAINTEXT"], "PLAINTEXT", {})
        self.reasons: list[str] = []
        self.accepted_from: list[Any] = []
        self.done = asyncio.Event()

    def limit_reached(self, acceptor: Acceptor, why: str) -> None:
        self.reasons.append(why)

    def accepted(self, listener: Listener, conn: socket.socket, address: Any, now: float) -> None:
        self.accepted_from.append(address)
        conn.close()
        self.done.set()


def _run(main: Callable[[], Any], loop_name: str) -> None:
    if loop_name == "uvloop":
        pytest.importorskip("uvloop")
        install_event_loop_policy()
    try:
        asyncio.run(main())
    finally:
        asyncio.set_event_loop_policy(None)


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_accept_failing_with_emfile_backs_off_and_recovers(loop_name: str) -> None:
    FailingSocket.attempts = 0

    async def main() -> None:
        listening = FailingSocket(socket.AF_INET, socket.SOCK_STREAM)
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        listening.setblocking(False)
        server = FakeServer()
        acceptor = Acceptor(
            server,  # type: ignore[arg-type]
            Listener("PLAINTEXT", "127.0.0.1", 0),
            [listening],
        )
        acceptor.resume()
        client = socket.create_connection(listening.getsockname(), 10)
        try:
            await asyncio.wait_for(server.done.wait(), 10)
        finally:
            client.close()
            acceptor.close()
        assert server.accepted_from and server.accepted_from[0][0] == "127.0.0.1"
        # Each failure paused the listener: one attempt per back-off, not a busy loop; then
        # the success, and one more that finds the backlog empty.
        assert FailingSocket.attempts == FailingSocket.failures + 2
        assert server.reasons == ["accept() failed: Too many open files"] * 3

    _run(main, loop_name)


def test_server_is_what_the_acceptor_talks_to() -> None:
    # The fake above stands in for these; keep it honest.
    for name in ("quotas", "limit_reached", "accepted"):
        assert name in Server.__dict__ or name in Server.__init__.__code__.co_names
