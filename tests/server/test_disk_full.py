"""A real full disk: a broker process whose data dir is a small tmpfs (root only; skipped with
the reason otherwise). Produce until the file system is full: the producer gets
KAFKA_STORAGE_ERROR on an open connection, everything acknowledged stays fetchable, and once
a filler file is deleted produce succeeds again, without a restart; after one, everything
acknowledged is still there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafkacompat.errors import ErrorCode
from tests.server.helpers import (
    BrokerProcess,
    Client,
    api_versions_request,
    batch,
    create_topic,
    fetch_values,
    produce,
)

FS_BYTES = 6 << 20
# A fetch answers from one segment at a time: read until a pass brings nothing new.
FILLER_BYTES = 1 << 20
VALUE_BYTES = 48 << 10


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the CI runs as root)")
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=20)


def all_values(client: Client, topic: str) -> list[bytes | None]:
    values: list[bytes | None] = []
    while True:
        more = fetch_values(client, topic, len(values))  # one record per batch, offsets from 0
        if not more:
            return values
        values += more


def test_a_full_disk_answers_storage_errors_and_recovers_when_space_is_freed(
    small_fs: Path,
) -> None:
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * FILLER_BYTES)
    # Small segments, so the disk also fills while rolls create files.
    settings = {"log.segment.bytes": str(1 << 20)}
    broker = BrokerProcess(small_fs, storage="disk", settings=settings).start()
    try:
        acked: list[bytes] = []
        with Client(broker.address) as client:
            create_topic(client, "fill")
            create_topic(client, "other")
            assert produce(client, "other", batch(b"kept")).error_code == ErrorCode.NONE
            refused = None
            for i in range(2 * FS_BYTES // VALUE_BYTES):
                value = b"%06d" % i + os.urandom(VALUE_BYTES)  # incompressible, unique
                answer = produce(client, "fill", batch(value))
                if answer.error_code != ErrorCode.NONE:
                    refused = answer
                    break
                acked.append(value)
            assert refused is not None, "the file system never filled"
            assert refused.error_code == ErrorCode.KAFKA_STORAGE_ERROR
            assert acked, "nothing was acknowledged before the disk filled"
            # Every retry is refused the same way, on the same connection, and logged once.
            for _ in range(3):
                again = produce(client, "fill", batch(b"r" + os.urandom(VALUE_BYTES)))
                assert again.error_code == ErrorCode.KAFKA_STORAGE_ERROR
            assert client.request(api_versions_request(), 3).error_code == 0
            assert all_values(client, "fill") == acked
            assert all_values(client, "other") == [b"kept"]
            assert len(re.findall(r"cannot append to .*fill-0", broker.log_text())) == 1

            filler.unlink()
            assert produce(client, "fill", batch(b"after")).error_code == ErrorCode.NONE
            acked.append(b"after")
            assert all_values(client, "fill") == acked
        broker.wait_for_log(r"append to .*fill-0 succeeds again", what="the recovery line")
        assert shutil.disk_usage(small_fs).free > 0
        broker.signal()
        assert broker.wait() == 0, broker.log_text()
    finally:
        broker.close()

    restarted = BrokerProcess(small_fs, storage="disk", settings=settings).start()
    try:
        with Client(restarted.address) as client:
            assert all_values(client, "fill") == acked
            assert all_values(client, "other") == [b"kept"]
    finally:
        restarted.close()


def test_a_real_producer_waits_out_a_full_disk_and_loses_nothing(small_fs: Path) -> None:
    """What an application sees: librdkafka retries KAFKA_STORAGE_ERROR (retriable), so a full
    disk is a stall, not a failure; once space is freed every record is delivered once, in
    order (the idempotent producer's retries find the producer state as it was)."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    broker = BrokerProcess(small_fs, storage="disk").start()
    try:
        with Client(broker.address) as client:
            create_topic(client, "stall")
        filler = small_fs / "filler"
        filler.write_bytes(b"\0" * (shutil.disk_usage(small_fs).free - (1 << 20)))
        bootstrap = f"{broker.address[0]}:{broker.address[1]}"
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": 60_000,
                "retry.backoff.ms": 100,
            }
        )
        errors: list[object] = []
        delivered: list[bytes] = []

        def on_delivery(error: object, message: object) -> None:
            if error is not None:
                errors.append(error)
            else:
                delivered.append(message.value())  # type: ignore[attr-defined]

        sent = [b"%05d" % i + os.urandom(16 << 10) for i in range(160)]  # 2.5 MiB, 1 MiB free
        for value in sent:
            producer.produce("stall", value=value, partition=0, on_delivery=on_delivery)
            producer.poll(0)
        broker.wait_for_log(r"cannot append to .*stall-0", what="the disk to fill")
        producer.poll(1.0)
        assert len(delivered) < len(sent) and not errors  # stalled, not failed
        filler.unlink()
        assert producer.flush(40) == 0, "records still undelivered after space was freed"
        assert errors == []
        assert delivered == sent
        with Client(broker.address) as client:
            assert all_values(client, "stall") == sent
    finally:
        broker.close()
