"""Transactions in storage: markers, ongoing transactions in producer state, snapshots, the
aborted-transaction index (Kafka's ``.txnindex`` format), recovery and retention."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.records import RecordBatchBuilder
from kafkacompat.records.control import ControlRecordType, build_end_transaction_marker_batch
from kafkacompat.storage.config import LogConfig
from kafkacompat.storage.log import Log
from kafkacompat.storage.memory import MemoryLog
from kafkacompat.storage.producer_entry import ProducerStateEntry
from kafkacompat.storage.producer_snapshot import decode_snapshot, encode_snapshot
from kafkacompat.storage.transaction_index import (
    AbortedTxn,
    CorruptTxnIndexError,
    TransactionIndex,
    decode_aborted_txns,
)
from kafkacompat.storage.unified_log import UnifiedLog

NOW = 1_700_000_000_000
COMMIT, ABORT = ControlRecordType.COMMIT, ControlRecordType.ABORT


def txn_batch(pid: int, epoch: int, seq: int, count: int = 2, value: bytes = b"v") -> bytearray:
    builder = RecordBatchBuilder(
        producer_id=pid, producer_epoch=epoch, base_sequence=seq, is_transactional=True
    )
    for i in range(count):
        builder.append(value + b"%d" % i, timestamp=NOW + i)
    return bytearray(builder.build())


def idempotent_batch(pid: int, epoch: int, seq: int) -> bytearray:
    builder = RecordBatchBuilder(producer_id=pid, producer_epoch=epoch, base_sequence=seq)
    builder.append(b"x", timestamp=NOW)
    return bytearray(builder.build())


def marker(pid: int, epoch: int, kind: ControlRecordType, coordinator_epoch: int = 0) -> bytearray:
    return bytearray(
        build_end_transaction_marker_batch(
            control_type=kind,
            producer_id=pid,
            producer_epoch=epoch,
            coordinator_epoch=coordinator_epoch,
            timestamp=NOW,
        )
    )


def memory_log() -> UnifiedLog:
    config = LogConfig()
    return UnifiedLog(("t", 0), MemoryLog(config), config)


def disk_log(path: Path, clean_shutdown: bool = True, **props: str) -> UnifiedLog:
    config = LogConfig.from_props(props)
    local = Log(str(path), config, now_ms=NOW, clean_shutdown=clean_shutdown)
    return UnifiedLog(("t", 0), local, config, directory=path)


def append(log: UnifiedLog, blob: bytearray, *, coordinator: bool = False) -> int:
    return log.append_as_leader(
        blob, leader_epoch=0, now_ms=NOW, from_client=not coordinator
    ).base_offset


def end_txn(log: UnifiedLog, pid: int, epoch: int, kind: ControlRecordType, ce: int = 0) -> int:
    return append(log, marker(pid, epoch, kind, ce), coordinator=True)


# -- control batches and the marker append path ---------------------------------------------------


def test_a_client_may_not_append_a_control_batch() -> None:
    log = memory_log()
    with pytest.raises(KafkaProtocolError) as info:
        append(log, marker(1, 0, COMMIT))
    assert info.value.error_code == ErrorCode.INVALID_RECORD
    assert log.log_end_offset == 0


def test_the_coordinator_appends_a_marker_batch() -> None:
    log = memory_log()
    append(log, txn_batch(1, 0, 0))
    offset = end_txn(log, 1, 0, COMMIT, ce=3)
    assert offset == 2 and log.log_end_offset == 3
    entry = log.producer_state(NOW).last_entry(1)
    assert entry is not None
    assert entry.coordinator_epoch == 3 and entry.current_txn_first_offset is None


def test_a_transactional_batch_opens_a_transaction_and_a_marker_closes_it() -> None:
    log = memory_log()
    append(log, idempotent_batch(9, 0, 0))  # offset 0: not transactional, opens nothing
    append(log, txn_batch(1, 0, 0))  # 1-2
    append(log, txn_batch(2, 0, 0))  # 3-4
    append(log, txn_batch(1, 0, 2))  # 5-6: same transaction
    state = log.producer_state(NOW)
    assert dict(state.ongoing_transactions) == {1: 1, 2: 3}
    assert log.first_unstable_offset == 1
    end_txn(log, 1, 0, COMMIT)
    assert dict(state.ongoing_transactions) == {2: 3}
    assert log.first_unstable_offset == 3
    end_txn(log, 2, 0, ABORT)
    assert log.first_unstable_offset is None


def test_marker_epoch_rules() -> None:
    log = memory_log()
    append(log, txn_batch(1, 5, 0))
    end_txn(log, 1, 5, ABORT, ce=2)
    append(log, txn_batch(1, 5, 2))
    with pytest.raises(KafkaProtocolError) as info:
        end_txn(log, 1, 4, COMMIT, ce=2)  # a fenced producer's epoch
    assert info.value.error_code == ErrorCode.INVALID_PRODUCER_EPOCH
    with pytest.raises(KafkaProtocolError) as info:
        end_txn(log, 1, 5, COMMIT, ce=1)  # a deposed coordinator
    assert info.value.error_code == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    assert log.first_unstable_offset == 3  # both refused markers left the transaction open
    end_txn(log, 1, 6, ABORT, ce=2)  # an epoch bump by the coordinator aborts it
    assert log.first_unstable_offset is None
    # The bump restarted sequences: the new epoch begins at 0.
    append(log, txn_batch(1, 6, 0))


def test_a_non_transactional_write_inside_a_transaction_is_invalid_txn_state() -> None:
    log = memory_log()
    append(log, txn_batch(1, 0, 0))
    with pytest.raises(KafkaProtocolError) as info:
        append(log, idempotent_batch(1, 0, 2))
    assert info.value.error_code == ErrorCode.INVALID_TXN_STATE


def test_a_marker_closing_no_data_changes_nothing() -> None:
    log = memory_log()
    end_txn(log, 1, 0, ABORT)
    assert log.first_unstable_offset is None
    assert log.collect_aborted_txns(0, 10) == []


def test_a_producer_in_a_transaction_never_expires() -> None:
    log = memory_log()
    append(log, txn_batch(1, 0, 0))
    append(log, idempotent_batch(2, 0, 0))
    assert log.remove_expired_producers(NOW + 10 * 86_400_000) == 1
    assert set(log.producer_state(NOW).active_producers) == {1}


# -- snapshots -------------------------------------------------------------------------------------


def test_snapshots_carry_the_open_transaction_and_coordinator_epoch() -> None:
    entry = ProducerStateEntry(7, 3, NOW, (), coordinator_epoch=4, current_txn_first_offset=120)
    offset, (decoded,) = decode_snapshot(encode_snapshot(200, [entry]))
    assert offset == 200 and decoded == entry
    closed = ProducerStateEntry(8, 1, NOW)
    assert decode_snapshot(encode_snapshot(5, [closed]))[1][0].current_txn_first_offset is None


def test_a_version_1_snapshot_is_still_read() -> None:
    import crc32c

    body = bytearray(struct.pack(">4sHIqi", b"kcps", 1, 0, 50, 1))
    body += struct.pack(">qhqb", 7, 2, NOW, 0)
    struct.pack_into(">I", body, 6, crc32c.crc32c(bytes(body[10:])))
    offset, (entry,) = decode_snapshot(bytes(body))
    assert (offset, entry.producer_id, entry.producer_epoch) == (50, 7, 2)
    assert entry.current_txn_first_offset is None and entry.coordinator_epoch == -1


# -- the aborted-transaction index -----------------------------------------------------------------


def test_txn_index_entries_are_kafkas_34_byte_format(tmp_path: Path) -> None:
    index = TransactionIndex(str(tmp_path / "00000000000000000000.txnindex"), 0)
    assert not os.path.exists(index.path or "")  # created by the first entry, as Kafka's
    index.append(AbortedTxn(producer_id=5, first_offset=10, last_offset=20, last_stable_offset=21))
    index.append(AbortedTxn(6, 15, 30, 31))
    data = (tmp_path / "00000000000000000000.txnindex").read_bytes()
    assert data == (
        bytes.fromhex("00000000000000000005000000000000000a0000000000000014")
        + bytes.fromhex("0000000000000015")
        + struct.pack(">hqqqq", 0, 6, 15, 30, 31)
    )
    assert len(data) == 68
    reopened = TransactionIndex(index.path, 0)
    assert reopened.entries == [AbortedTxn(5, 10, 20, 21), AbortedTxn(6, 15, 30, 31)]
    with pytest.raises(ValueError):
        reopened.append(AbortedTxn(7, 25, 30, 31))  # last offsets must increase
    reopened.truncate_to(30)
    assert (tmp_path / "00000000000000000000.txnindex").stat().st_size == 34
    with pytest.raises(CorruptTxnIndexError):
        decode_aborted_txns(data[:33])


def test_collect_aborted_txns_follows_kafkas_rules() -> None:
    index = TransactionIndex(None, 0)
    for txn in (AbortedTxn(1, 0, 10, 11), AbortedTxn(2, 5, 20, 12), AbortedTxn(3, 30, 40, 41)):
        index.append(txn)
    found = index.collect_aborted_txns(11, 25)
    # Overlapping [11, 25): txn 2 only (txn 1 ended at 10, txn 3 starts at 30); txn 3's
    # last stable offset reaches the bound, so the answer is complete.
    assert found.aborted == [AbortedTxn(2, 5, 20, 12)] and found.is_complete
    assert not index.collect_aborted_txns(0, 100).is_complete


def test_an_abort_marker_writes_the_index_entry_with_the_last_stable_offset(
    tmp_path: Path,
) -> None:
    log = disk_log(tmp_path)
    append(log, txn_batch(1, 0, 0))  # 0-1
    append(log, txn_batch(2, 0, 0))  # 2-3, still open when 1 aborts
    end_txn(log, 1, 0, ABORT)  # 4
    append(log, txn_batch(3, 0, 0))  # 5-6
    end_txn(log, 3, 0, COMMIT)  # 7: a commit leaves no entry
    end_txn(log, 2, 0, ABORT)  # 8
    assert log.collect_aborted_txns(0, 9) == [AbortedTxn(1, 0, 4, 2), AbortedTxn(2, 2, 8, 9)]
    raw = (tmp_path / "00000000000000000000.txnindex").read_bytes()
    assert decode_aborted_txns(raw) == [AbortedTxn(1, 0, 4, 2), AbortedTxn(2, 2, 8, 9)]
    assert log.collect_aborted_txns(5, 8) == [AbortedTxn(2, 2, 8, 9)]


def test_the_entry_goes_to_the_segment_holding_the_marker(tmp_path: Path) -> None:
    log = disk_log(tmp_path, **{"segment.bytes": "300"})
    append(log, txn_batch(1, 0, 0, count=3, value=b"x" * 40))
    append(log, txn_batch(1, 0, 3, count=3, value=b"x" * 40))  # rolls: a second segment
    end_txn(log, 1, 0, ABORT)
    segments = log.local.segments  # type: ignore[attr-defined]
    assert len(segments) >= 2
    assert segments[0].txn_index.entries == []
    assert segments[-1].txn_index.entries == [AbortedTxn(1, 0, 6, 7)]
    # A fetch from the first segment finds it in a later one.
    assert log.collect_aborted_txns(0, 3) == [AbortedTxn(1, 0, 6, 7)]


# -- recovery and retention ------------------------------------------------------------------------


def test_a_crash_with_an_open_transaction_keeps_it_open_after_restart(tmp_path: Path) -> None:
    log = disk_log(tmp_path)
    append(log, txn_batch(1, 0, 0))  # 0-1
    end_txn(log, 1, 0, ABORT)  # 2
    append(log, txn_batch(2, 0, 0))  # 3-4, open at the crash
    log.local.flush()
    # The crash: no snapshot, and the index file is lost too (written, never fsync'd).
    (tmp_path / "00000000000000000000.txnindex").unlink()
    restarted = disk_log(tmp_path, clean_shutdown=False)
    assert restarted.first_unstable_offset == 3
    assert dict(restarted.producer_state(NOW).ongoing_transactions) == {2: 3}
    assert restarted.collect_aborted_txns(0, 5) == [AbortedTxn(1, 0, 2, 3)]
    # The marker written after the restart closes the recovered transaction.
    end_txn(restarted, 2, 0, COMMIT)
    assert restarted.first_unstable_offset is None


def test_recovery_drops_index_entries_past_the_log_end_and_keeps_no_duplicates(
    tmp_path: Path,
) -> None:
    log = disk_log(tmp_path)
    append(log, txn_batch(1, 0, 0))
    end_txn(log, 1, 0, ABORT)  # 2
    log.local.flush()
    # An entry whose marker never reached the log (lost in the crash).
    (tmp_path / "00000000000000000000.txnindex").open("ab").write(AbortedTxn(9, 3, 6, 7).encode())
    restarted = disk_log(tmp_path, clean_shutdown=False)
    assert restarted.collect_aborted_txns(0, 10) == [AbortedTxn(1, 0, 2, 3)]
    raw = (tmp_path / "00000000000000000000.txnindex").read_bytes()
    assert decode_aborted_txns(raw) == [AbortedTxn(1, 0, 2, 3)]


def test_a_clean_restart_reads_the_snapshot_and_the_index(tmp_path: Path) -> None:
    log = disk_log(tmp_path)
    append(log, txn_batch(1, 0, 0))
    end_txn(log, 1, 0, ABORT)
    append(log, txn_batch(2, 0, 0))  # 3-4 open
    assert log.snapshot_producer_state()
    log.close()
    restarted = disk_log(tmp_path)
    assert restarted.first_unstable_offset == 3
    assert restarted.collect_aborted_txns(0, 5) == [AbortedTxn(1, 0, 2, 3)]


def test_retention_deletes_a_segments_txn_index(tmp_path: Path) -> None:
    log = disk_log(
        tmp_path, **{"segment.bytes": "300", "retention.ms": "1", "file.delete.delay.ms": "0"}
    )
    append(log, txn_batch(1, 0, 0, count=3, value=b"x" * 40))
    end_txn(log, 1, 0, ABORT)
    append(log, txn_batch(2, 0, 0, count=3, value=b"x" * 40))
    append(log, txn_batch(2, 0, 3, count=3, value=b"x" * 40))
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".txnindex"))
    assert names == ["00000000000000000000.txnindex"]
    log.apply_retention(NOW + 10 * 86_400_000)
    log.apply_retention(NOW + 10 * 86_400_000)  # the second pass unlinks the .deleted files
    assert not any(p.name.startswith("00000000000000000000.") for p in tmp_path.iterdir())
    assert log.collect_aborted_txns(log.log_start_offset, log.log_end_offset) == []


def keyed_txn_batch(pid: int, epoch: int, seq: int, keys: list[bytes]) -> bytearray:
    builder = RecordBatchBuilder(
        producer_id=pid, producer_epoch=epoch, base_sequence=seq, is_transactional=True
    )
    for key in keys:
        builder.append(b"v" * 40, key=key, timestamp=NOW)
    return bytearray(builder.build())


def test_compaction_carries_the_aborted_transactions_into_the_cleaned_segment(
    tmp_path: Path,
) -> None:
    from tests.storage.test_cleaner import run_round

    log = disk_log(tmp_path, **{"cleanup.policy": "compact", "segment.bytes": "400"})
    append(log, keyed_txn_batch(1, 0, 0, [b"a", b"b"]))  # 0-1
    end_txn(log, 1, 0, ABORT)  # 2
    append(log, keyed_txn_batch(2, 0, 0, [b"a", b"b"]))  # 3-4
    end_txn(log, 2, 0, COMMIT)  # 5
    for seq in range(0, 12, 2):  # more segments, so the first ones are cleanable
        append(log, keyed_txn_batch(3, 0, seq, [b"c", b"d"]))
    local = log.local
    assert isinstance(local, Log) and len(local.segments) > 2
    before = local.segments[0]
    assert run_round(local, NOW + 1).cleaned
    assert local.segments[0] is not before  # the first segment was swapped
    assert not any(p.name.endswith((".cleaned", ".swap")) for p in tmp_path.iterdir())
    first = local.segments[0]
    assert first.txn_index.entries == [AbortedTxn(1, 0, 2, 3)]
    assert (tmp_path / "00000000000000000000.txnindex").read_bytes() == AbortedTxn(
        1, 0, 2, 3
    ).encode()
    assert log.collect_aborted_txns(0, 6) == [AbortedTxn(1, 0, 2, 3)]


def test_the_first_unstable_offset_never_falls_below_the_log_start() -> None:
    log = memory_log()
    append(log, txn_batch(1, 0, 0))  # 0-1, open
    append(log, txn_batch(2, 0, 0))  # 2-3
    end_txn(log, 2, 0, COMMIT)  # 4
    log.delete_records_before(3)
    assert log.first_unstable_offset == 3
