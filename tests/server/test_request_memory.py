"""Request memory over real sockets: what a length prefix claims costs nothing until it is sent,
and ``queued.max.request.bytes`` (KIP-72) bounds the large requests held at once while small
ones still get through.

The broker's RSS is read from ``/proc/<pid>/status``; the bounds are generous (tens of MiB)
because an interpreter's RSS moves by a few MiB on its own, while what they guard against
moves it by hundreds.
"""

from __future__ import annotations

import re
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafkacompat.protocol.messages.heartbeat_request import HeartbeatRequest
from kafkacompat.protocol.messages.join_group_request import (
    JoinGroupRequest,
    JoinGroupRequestProtocol,
)
from kafkacompat.protocol.messages.metadata_request import MetadataRequest
from kafkacompat.protocol.messages.sync_group_request import (
    SyncGroupRequest,
    SyncGroupRequestAssignment,
)
from tests.server.conftest import StartBroker
from tests.server.helpers import (
    PRODUCE_VERSION,
    TIMEOUT,
    BrokerProcess,
    Client,
    api_versions_request,
    batch,
    create_topic,
    produce,
    produce_request,
    request_frame,
)

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads the broker's RSS from /proc"
)

MiB = 1 << 20
_SIZE = struct.Struct(">i")


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None, status
    return int(match.group(1)) * 1024


class PeakRss:
    """Samples a process's RSS in a thread until stopped; keeps the largest."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            try:
                self.peak = max(self.peak, rss(self.pid))
            except (FileNotFoundError, AssertionError):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)


def peer_of(client: Client) -> str:
    host, port = client.sock.getsockname()[:2]
    return f"{host}:{port}"


def test_claimed_sizes_cost_only_what_is_sent(start_broker: StartBroker) -> None:
    # Before: a prefix claiming 100 MiB got a zero-filled 100 MiB buffer at once; 8 such
    # connections (8 bytes each) took the broker from 37 MiB to 836 MiB.
    broker = start_broker(storage="null")
    broker.assert_healthy()  # the modules its first requests load are not what is measured
    base = rss(broker.pid)
    clients = [Client(broker.address) for _ in range(16)]
    try:
        for client in clients:
            client.send_raw(_SIZE.pack(100 * MiB) + b"\x00\x00\x00\x01" + b"x" * 10)  # 18 bytes
        # Every connection's bytes have been read once a request after them is answered.
        broker.assert_healthy()
        after_claims = rss(broker.pid)
        assert after_claims - base < 16 * MiB, (base, after_claims)
        # Half a MiB more on each: memory follows those bytes (within the growth factor).
        for client in clients:
            client.send_raw(bytes(MiB // 2))
        broker.assert_healthy()
        after_bytes = rss(broker.pid)
        assert after_bytes - base < 64 * MiB, (base, after_bytes)
    finally:
        for client in clients:
            client.close()
    broker.assert_healthy()


QUEUED_MAX = 8 * MiB
LARGE = 4 * MiB
SENDERS = 14


@pytest.fixture
def pooled_broker(start_broker: StartBroker) -> Iterator[BrokerProcess]:
    yield start_broker(
        storage="null",
        settings={
            "queued.max.request.bytes": str(QUEUED_MAX),
            # Kafka requires queued.max.request.bytes >= socket.request.max.bytes.
            "socket.request.max.bytes": str(QUEUED_MAX),
            "message.max.bytes": str(LARGE + MiB),
            "group.initial.rebalance.delay.ms": "0",
        },
    )


_COORDINATOR_LOAD_IN_PROGRESS = 14


def join_group(client: Client, group: str) -> tuple[int, str]:
    """A one-member classic group, joined and synced: (generation id, member id)."""
    join = JoinGroupRequest(
        group_id=group,
        session_timeout_ms=30_000,
        rebalance_timeout_ms=30_000,
        protocol_type="consumer",
        protocols=[JoinGroupRequestProtocol(name="range", metadata=b"")],
    )
    for _ in range(100):  # __consumer_offsets may still be loading just after start-up
        joined = client.request(join, 3)
        if joined.error_code != _COORDINATOR_LOAD_IN_PROGRESS:
            break
        time.sleep(0.05)
    assert joined.error_code == 0
    synced = client.request(
        SyncGroupRequest(
            group_id=group,
            generation_id=joined.generation_id,
            member_id=joined.member_id,
            assignments=[SyncGroupRequestAssignment(member_id=joined.member_id)],
        ),
        3,
    )
    assert synced.error_code == 0
    return joined.generation_id, joined.member_id


def large_produce(topic: str, correlation_id: int) -> bytes:
    frame = request_frame(
        produce_request(topic, batch(bytes(LARGE - 100))), PRODUCE_VERSION, correlation_id
    )
    assert len(frame) > LARGE - 100
    return frame


def answered(sock: socket.socket) -> bool:
    """Whether anything (a response, or EOF) is waiting to be read, without waiting."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


class Sender(threading.Thread):
    """Sends one whole large produce and waits for its answer (the send itself blocks while
    the broker does not read)."""

    def __init__(self, address: tuple[str, int], frame: bytes, correlation_id: int) -> None:
        super().__init__(daemon=True)
        self.client = Client(address, timeout=3 * TIMEOUT)
        self.frame = frame
        self.correlation_id = correlation_id
        self.error_code: int | None = None
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self.client.send_raw(self.frame)
            got, response = self.client.receive(0, PRODUCE_VERSION)
            assert got == self.correlation_id
            [topic] = response.responses
            [partition] = topic.partition_responses
            self.error_code = partition.error_code
        except BaseException as exc:  # reported by the test
            self.failure = exc


def test_the_pool_bounds_large_requests_and_small_ones_still_get_through(
    pooled_broker: BrokerProcess,
) -> None:
    broker = pooled_broker
    with Client(broker.address) as client:
        create_topic(client, "bulk")
        # Warm up: one large produce through every code path it takes.
        assert produce(client, "bulk", batch(bytes(LARGE - 100))).error_code == 0
    member = Client(broker.address, timeout=10)
    generation, member_id = join_group(member, "behind-the-bulk-load")
    base = rss(broker.pid)
    holders: list[Client] = []
    senders: list[Sender] = []
    with PeakRss(broker.pid) as peak:
        try:
            # Two connections take the whole pool with frames that stay one byte short.
            for i in range(2):
                holder = Client(broker.address)
                holders.append(holder)
                frame = large_produce("bulk", 1000 + i)
                holder.send_raw(frame[:-1])
            # A sentinel: once a third large frame is refused, the two holders hold the pool
            # (their bytes were read first; if the sentinel was read first it is answered
            # instead, and another one tries).
            for attempt in range(20):
                cid = 2000 + attempt
                sentinel = Sender(broker.address, large_produce("bulk", cid), cid)
                mark = broker.mark()
                sentinel.start()
                senders.append(sentinel)
                candidates = [sentinel.client, *holders]
                waited = broker.wait_for_log(
                    "|".join(
                        f"{re.escape(peer_of(c))} waits for request memory" for c in candidates
                    ),
                    since=mark,
                    what="a large frame refused by the pool",
                )
                if peer_of(sentinel.client) in waited:
                    break
                sentinel.join(TIMEOUT)  # a holder was refused: the sentinel gets through
                assert sentinel.error_code == 0, sentinel.failure
            else:
                pytest.fail("the holders' frames were never read")
            blocked = [s for s in senders if s.error_code is None]
            assert len(blocked) == 1
            for i in range(SENDERS - 1):
                sender = Sender(broker.address, large_produce("bulk", 3000 + i), 3000 + i)
                sender.start()
                senders.append(sender)
                blocked.append(sender)
            # Meanwhile small requests are answered, on a new connection.
            with Client(broker.address, timeout=10) as small:
                versions = small.request(api_versions_request(), 3)
                assert versions.error_code == 0
                metadata = small.request(MetadataRequest(topics=None), 12)
                assert "bulk" in [t.name for t in metadata.topics]
            # ... and a group member's heartbeats keep its session, on its own connection.
            for _ in range(3):
                beat = member.request(
                    HeartbeatRequest(
                        group_id="behind-the-bulk-load",
                        generation_id=generation,
                        member_id=member_id,
                    ),
                    3,
                )
                assert beat.error_code == 0
            # ... while every large one waits: the pool is held by frames that cannot finish.
            assert not any(answered(s.client.sock) for s in blocked)
            assert not any(answered(h.sock) for h in holders)
            held = rss(broker.pid) - base
            assert held < 40 * MiB, f"{held / MiB:.1f} MiB over the baseline while blocked"
            # The holders go away mid-frame: their shares come back (if they did not, the
            # pool would stay empty and nothing below would be answered), and every waiting
            # produce is answered in turn.
            for holder in holders:
                holder.close()
            for sender in senders:
                sender.join(3 * TIMEOUT)
                assert not sender.is_alive()
                assert sender.failure is None, sender.failure
                assert sender.error_code == 0
        finally:
            member.close()
            for holder in holders:
                holder.close()
            for sender in senders:
                sender.client.close()
    grown = peak.peak - base
    # 16 x 4 MiB arrived at once; the pool holds about 8 MiB of them (plus one overdraft).
    assert grown < 48 * MiB, f"peak RSS {grown / MiB:.1f} MiB over the baseline"
    with Client(broker.address) as client:  # the whole pool is back
        assert produce(client, "bulk", batch(bytes(LARGE - 100))).error_code == 0
    broker.assert_healthy()
    assert "waits for request memory" in broker.log_text()
