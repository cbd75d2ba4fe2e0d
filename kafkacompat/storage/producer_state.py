"""Per-partition producer state: Kafka's ``ProducerStateManager`` for idempotent producers.

Theory of operation.

*What is kept.* For every producer id that wrote to the partition: its current producer epoch,
the metadata of its last five batches (``NUM_BATCHES_TO_RETAIN``, the most batches a client
keeps in flight per partition) and the timestamp of its last write. Nothing else: the batches
themselves stay in the log.

*Produce.* A Produce request's ``records`` may hold several batches. :meth:`ProducerStateManager.
prepare_append` walks them all before anything is appended, as Kafka's
``UnifiedLog.analyzeAndValidateProducerState`` does:

1. A batch whose producer, epoch and first/last sequence equal one of the producer's last five
   batches is a retry of a batch already in the log. The whole request is then a duplicate:
   nothing is appended and the Produce response carries the *original* base offset, last offset
   and timestamp with no error, as modern Kafka does (it no longer sends DUPLICATE_SEQUENCE_NUMBER).
2. Otherwise each batch must pass ``ProducerAppendInfo``'s checks, against the producer's state
   as updated by the earlier batches of the same request:

   - an epoch older than the producer's current one: INVALID_PRODUCER_EPOCH;
   - a newer epoch that does not start at sequence 0: OUT_OF_ORDER_SEQUENCE_NUMBER;
   - the same epoch: the first sequence must follow the last one written, wrapping from
     2^31-1 to 0, else OUT_OF_ORDER_SEQUENCE_NUMBER. A retry of a batch older than the last
     five therefore gets OUT_OF_ORDER_SEQUENCE_NUMBER, as in Kafka;
   - a producer the partition does not know (never seen, expired, or written before the
     retained state) is accepted at *any* sequence and epoch. Since KIP-360 (Kafka 2.5) the
     broker no longer answers UNKNOWN_PRODUCER_ID to a produce: ``ProducerAppendInfo.
     checkSequence`` skips the sequence check when the current epoch is NO_PRODUCER_EPOCH.

   After the log append, :meth:`ProducerStateManager.complete_append` records the batches at the
   offsets the log assigned. Prepare and complete must run without an ``await`` in between; a
   plan made stale by another change raises instead of corrupting the state.

*Persistence.* At a clean shutdown the broker calls :meth:`ProducerStateManager.snapshot` with
the log end offset, which writes ``<20-digit offset>.snapshot`` into the partition directory
(Kafka's name and place; the format below is ours) with ``atomic_write``. At most two snapshots
are kept. Loading happens on first use of a partition, so broker start-up does not read them:

1. snapshots above the log end offset describe a truncated log and are deleted, and so are
   snapshots below the log start offset (the batches after them are gone, so the state could
   not be brought forward; Kafka deletes those too);
2. the newest remaining snapshot that parses and passes its CRC is read; a corrupt one is
   deleted and the next older one tried;
3. batch headers are scanned from the snapshot's offset (or, without a snapshot, from the log
   start offset: slower, but correct) to the log end and applied without validation, as Kafka
   replays a follower's fetches (``AppendOrigin.REPLICATION``);
4. producers idle longer than ``producer.id.expiration.ms`` are dropped.

The snapshot file format is described in :mod:`kafkacompat.storage.producer_snapshot`.

*Expiry.* ``producer.id.expiration.ms`` (Kafka's default 86400000) after a producer's last
timestamp, :meth:`ProducerStateManager.remove_expired_producers` forgets it. As in Kafka the
timestamp is the batch's max timestamp (CreateTime from the client unless the topic uses
LogAppendTime), not the broker's receive time.

*Transactions.* A producer's first transactional batch opens a transaction in this partition:
its first offset is the entry's ``current_txn_first_offset`` (Kafka's) and the state keeps it
in the partition's ongoing transactions. A non-transactional batch from a producer in a
transaction is INVALID_TXN_STATE. The coordinator's marker (a control batch, which only the
broker itself appends) closes it: a marker from an older producer epoch is
INVALID_PRODUCER_EPOCH, one from an older coordinator epoch than the producer's last marker
TRANSACTION_COORDINATOR_FENCED; a marker closing a transaction with data gives a
:class:`~kafkacompat.storage.producer_entry.CompletedTxn` (one closing nothing gives none, as in
Kafka: it changes neither the last stable offset nor the aborted-transaction index). The
*first unstable offset* (Kafka's ``firstUnstableOffset``) is the smallest first offset of the
ongoing transactions. Snapshots carry each producer's open transaction and coordinator epoch,
and replaying the log re-opens and closes transactions as the batches and markers come, so a
restart knows which transactions are still undecided. A producer in a transaction never
expires.

Not here yet: KIP-890 verification, and the completed-but-unreplicated transactions Kafka
keeps for followers (with one replica the high watermark reaches the marker at its append).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final, NamedTuple

from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.records.batch import (
    CONTROL_FLAG_MASK,
    FIELD_ATTRIBUTES,
    FIELD_BASE_SEQUENCE,
    FIELD_LAST_OFFSET_DELTA,
    FIELD_MAX_TIMESTAMP,
    FIELD_PRODUCER_EPOCH,
    FIELD_PRODUCER_ID,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    TRANSACTIONAL_FLAG_MASK,
    HeaderFields,
    RecordBatch,
    iter_batches,
)
from kafkacompat.records.compression import BytesLike
from kafkacompat.records.control import (
    ControlRecordType,
    EndTransactionMarker,
    decode_end_transaction_marker,
)
from kafkacompat.records.errors import InvalidRecordError
from kafkacompat.storage.atomic_file import atomic_write, fsync_dir
from kafkacompat.storage.base import FileRegion, PartitionLog
from kafkacompat.storage.partition_dir import TopicPartition
from kafkacompat.storage.producer_entry import (
    NO_TIMESTAMP,
    BatchMetadata,
    CompletedTxn,
    ProducerStateEntry,
    in_sequence,
    increment_sequence,
    last_sequence_of,
)
from kafkacompat.storage.producer_snapshot import (
    CorruptSnapshotError,
    decode_snapshot,
    encode_snapshot,
    list_snapshots,
    snapshot_path,
)

DEFAULT_PRODUCER_ID_EXPIRATION_MS: Final = 86_400_000
MAX_SNAPSHOTS: Final = 2
# Header scans read the log in chunks this size; whole batches come back regardless (KIP-74).
_SCAN_READ_BYTES: Final = 1 << 20


class OutOfOrderSequenceError(KafkaProtocolError):
    """Kafka's OutOfOrderSequenceException: the sequence does not follow the last one written."""

    error_code = ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


class InvalidProducerEpochError(KafkaProtocolError):
    """Kafka's InvalidProducerEpochException: a batch from an epoch older than the current one."""

    error_code = ErrorCode.INVALID_PRODUCER_EPOCH


class InvalidTxnStateError(KafkaProtocolError):
    """Kafka's InvalidTxnStateException: a non-transactional write inside a transaction."""

    error_code = ErrorCode.INVALID_TXN_STATE


class TransactionCoordinatorFencedError(KafkaProtocolError):
    """Kafka's TransactionCoordinatorFencedException: a marker from a coordinator epoch older
    than the one that wrote the producer's last marker (a deposed coordinator)."""

    error_code = ErrorCode.TRANSACTION_COORDINATOR_FENCED


def marker_of(batch: RecordBatch) -> EndTransactionMarker:
    """The end-transaction marker a non-empty control batch holds."""
    for record in batch.iter_records():
        return decode_end_transaction_marker(record)
    raise InvalidRecordError("an empty control batch holds no marker")


class ProducerAppendInfo:
    """Validates one producer's batches within one request (Kafka's ``ProducerAppendInfo``).

    Each batch is checked against the state as the request's earlier batches left it, so a
    request may bump the epoch and then continue in the new one.
    """

    __slots__ = (
        "_coordinator_epoch",
        "_current",
        "_epoch",
        "_from_client",
        "_in_txn",
        "_last_seq",
        "producer_id",
        "topic_partition",
    )

    def __init__(
        self,
        topic_partition: TopicPartition,
        producer_id: int,
        current: ProducerStateEntry,
        *,
        from_client: bool = True,
    ) -> None:
        self.topic_partition = topic_partition
        self.producer_id = producer_id
        self._current = current
        # Kafka's AppendOrigin: the broker's own writers (the group coordinator's transactional
        # offset commits) carry no meaningful sequence numbers, so only a client's are checked.
        self._from_client = from_client
        # The updated entry: the current epoch, and no batches until this request adds some.
        self._epoch = current.producer_epoch
        self._last_seq: int | None = None
        self._in_txn = current.current_txn_first_offset is not None
        self._coordinator_epoch = current.coordinator_epoch

    def _where(self) -> str:
        topic, partition = self.topic_partition
        return f"producer {self.producer_id} in {topic}-{partition}"

    def check_producer_epoch(self, producer_epoch: int) -> None:
        if producer_epoch < self._epoch:
            raise InvalidProducerEpochError(
                f"epoch of {self._where()} is {producer_epoch}, which is smaller than the last "
                f"seen epoch {self._epoch}"
            )

    def _check_sequence(self, producer_epoch: int, first_seq: int) -> None:
        if producer_epoch != self._epoch:
            # A new epoch restarts sequences; an unknown producer may start anywhere.
            if first_seq != 0 and self._epoch != NO_PRODUCER_EPOCH:
                raise OutOfOrderSequenceError(
                    f"invalid sequence number for new epoch of {self._where()}: "
                    f"{producer_epoch} (request epoch), {first_seq} (seq. number), "
                    f"{self._epoch} (current producer epoch)"
                )
            return
        last_seq = self._last_seq if self._last_seq is not None else self._current.last_seq
        # KIP-360: with no known epoch (never seen, expired, or its data deleted by retention)
        # any sequence is accepted instead of answering UNKNOWN_PRODUCER_ID.
        if self._current.producer_epoch != NO_PRODUCER_EPOCH and not in_sequence(
            last_seq, first_seq
        ):
            raise OutOfOrderSequenceError(
                f"out of order sequence number for {self._where()}: {first_seq} (incoming "
                f"seq. number), {last_seq} (current end sequence number)"
            )

    def append_data_batch(
        self, producer_epoch: int, first_seq: int, last_seq: int, is_transactional: bool = False
    ) -> None:
        self.check_producer_epoch(producer_epoch)
        if self._from_client:
            self._check_sequence(producer_epoch, first_seq)
        if self._in_txn and not is_transactional:
            raise InvalidTxnStateError(
                f"expected a transactional write from {self._where()}, which is in a transaction"
            )
        self._epoch = producer_epoch
        self._last_seq = last_seq
        self._in_txn = self._in_txn or is_transactional

    def append_end_txn_marker(self, producer_epoch: int, marker: EndTransactionMarker) -> None:
        """Kafka's ``appendEndTxnMarker`` checks: the producer epoch, then the coordinator's."""
        self.check_producer_epoch(producer_epoch)
        if self._coordinator_epoch > marker.coordinator_epoch:
            raise TransactionCoordinatorFencedError(
                f"invalid coordinator epoch for {self._where()}: {marker.coordinator_epoch} "
                f"(marker) < {self._coordinator_epoch} (last marker)"
            )
        if producer_epoch != self._epoch:
            self._last_seq = NO_SEQUENCE  # the entry's batches are cleared with the old epoch
        self._epoch = producer_epoch
        self._coordinator_epoch = marker.coordinator_epoch
        self._in_txn = False


class LoadResult(NamedTuple):
    """What :meth:`ProducerStateManager.load` replayed: from which offset, and the
    transactions the replayed markers closed (with their index entries' last stable offset)."""

    replay_start: int
    completed: list[tuple[CompletedTxn, int]]


class _PendingBatch(NamedTuple):
    producer_id: int
    producer_epoch: int
    first_seq: int
    last_seq: int
    relative_offset: int  # offset of the batch's first record minus the blob's base offset
    last_offset_delta: int
    max_timestamp: int
    is_transactional: bool = False
    marker: EndTransactionMarker | None = None


class ProducerAppendPlan:
    """The outcome of :meth:`ProducerStateManager.prepare_append`.

    ``duplicate`` set: the request retries a batch already in the log; append nothing and answer
    with ``duplicate.first_offset`` / ``duplicate.last_offset`` (Kafka also reports
    ``duplicate.max_timestamp`` as the log append time). Otherwise append the records, then pass
    this plan to :meth:`ProducerStateManager.complete_append`.
    """

    __slots__ = ("_pending", "_state_version", "duplicate")

    def __init__(
        self,
        duplicate: BatchMetadata | None,
        pending: tuple[_PendingBatch, ...],
        state_version: int,
    ) -> None:
        self.duplicate = duplicate
        self._pending = pending
        self._state_version = state_version

    @property
    def has_producer_batches(self) -> bool:
        return bool(self._pending)

    def __repr__(self) -> str:
        return f"ProducerAppendPlan(duplicate={self.duplicate}, batches={len(self._pending)})"


def _iter_log_batches(log: PartitionLog, start: int, end: int) -> Iterator[RecordBatch]:
    """Batch headers of ``log`` covering offsets [start, end), read in bounded chunks."""
    offset = start
    while offset < end:
        records = log.read(offset, _SCAN_READ_BYTES).records
        data = records.read() if isinstance(records, FileRegion) else bytes(records)
        if not data:
            return  # the null engine keeps nothing to scan
        # The log checked every CRC on append and after an unclean shutdown.
        for batch in iter_batches(data, verify_crc=False):
            if batch.last_offset >= offset and batch.base_offset < end:
                yield batch
            offset = max(offset, batch.next_offset)


class ProducerStateManager:
    """One partition's producer state; ``directory`` None keeps it in memory only."""

    def __init__(
        self,
        topic_partition: TopicPartition,
        directory: Path | None,
        *,
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ) -> None:
        self.topic_partition = topic_partition
        self.directory = None if directory is None else Path(directory)
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self._producers: dict[int, ProducerStateEntry] = {}
        self._ongoing: dict[int, int] = {}  # producer id -> first offset of its open transaction
        self._first_unstable: int | None = None  # min of _ongoing, kept: fetches read it
        self._map_end_offset = 0
        self._last_snapshot_offset: int | None = None
        # Bumped on every change, so a plan prepared against older state is refused.
        self._version = 0

    # -- reading the state -----------------------------------------------------------------------

    @property
    def active_producers(self) -> Mapping[int, ProducerStateEntry]:
        return MappingProxyType(self._producers)

    def last_entry(self, producer_id: int) -> ProducerStateEntry | None:
        return self._producers.get(producer_id)

    @property
    def map_end_offset(self) -> int:
        """The offset after the last batch this state has seen."""
        return self._map_end_offset

    # -- produce ---------------------------------------------------------------------------------

    def prepare_append(self, records: BytesLike | Iterable[RecordBatch]) -> ProducerAppendPlan:
        """Validate every batch of a produce blob before it is appended (see the module doc).

        ``records`` is the blob (each frame and CRC is checked) or batches already walked.
        Raises InvalidProducerEpochError, OutOfOrderSequenceError, or the records layer's
        errors for a batch the log would refuse anyway; the request is then refused whole.
        Batches without a producer id get only the records layer's checks.
        """
        batches = (
            iter_batches(records)
            if isinstance(records, bytes | bytearray | memoryview)
            else records
        )
        headers: list[HeaderFields] = []
        for batch in batches:
            # Kafka's LogValidator runs before the producer checks: INVALID_RECORD (a missing
            # sequence, a control batch from a client) wins over a sequence error.
            batch.ensure_valid_from_client()
            headers.append(batch.header_fields())
        return self.analyze(headers)

    def analyze(
        self,
        batches: Iterable[HeaderFields],
        markers: Mapping[int, EndTransactionMarker] | None = None,
        *,
        from_client: bool = True,
    ) -> ProducerAppendPlan:
        """:meth:`prepare_append` on the headers of batches the log's validator already
        checked (Kafka's ``UnifiedLog.analyzeAndValidateProducerState``): no second CRC pass.
        ``markers``: the marker of each control batch, by its index among ``batches``.
        ``from_client=False`` (Kafka's ``AppendOrigin.COORDINATOR``): neither duplicates nor
        sequences are checked, only epochs, as the coordinator writes no sequences."""
        infos: dict[int, ProducerAppendInfo] = {}
        pending: list[_PendingBatch] = []
        relative_offset = 0
        for index, fields in enumerate(batches):
            producer_id = fields[FIELD_PRODUCER_ID]
            last_offset_delta = fields[FIELD_LAST_OFFSET_DELTA]
            if producer_id != NO_PRODUCER_ID:
                producer_epoch = fields[FIELD_PRODUCER_EPOCH]
                first_seq = fields[FIELD_BASE_SEQUENCE]
                last_seq = increment_sequence(first_seq, last_offset_delta)
                attributes = fields[FIELD_ATTRIBUTES]
                is_control = attributes & CONTROL_FLAG_MASK
                current = self._producers.get(producer_id)
                if current is not None and not is_control and from_client:
                    duplicate = current.find_duplicate(producer_epoch, first_seq, last_seq)
                    if duplicate is not None:
                        return ProducerAppendPlan(duplicate, (), self._version)
                info = infos.get(producer_id)
                if info is None:
                    info = ProducerAppendInfo(
                        self.topic_partition,
                        producer_id,
                        current if current is not None else ProducerStateEntry(producer_id),
                        from_client=from_client,
                    )
                    infos[producer_id] = info
                marker = None
                is_transactional = attributes & TRANSACTIONAL_FLAG_MASK != 0
                if is_control:
                    marker = None if markers is None else markers.get(index)
                    if marker is None:
                        raise InvalidRecordError("a control batch without its marker")
                    info.append_end_txn_marker(producer_epoch, marker)
                else:
                    info.append_data_batch(producer_epoch, first_seq, last_seq, is_transactional)
                pending.append(
                    _PendingBatch(
                        producer_id,
                        producer_epoch,
                        first_seq,
                        last_seq,
                        relative_offset,
                        last_offset_delta,
                        fields[FIELD_MAX_TIMESTAMP],
                        is_transactional,
                        marker,
                    )
                )
            relative_offset += last_offset_delta + 1
        return ProducerAppendPlan(None, tuple(pending), self._version)

    def complete_append(
        self, plan: ProducerAppendPlan, base_offset: int, log_append_time: int = NO_TIMESTAMP
    ) -> list[tuple[CompletedTxn, int]]:
        """Record a prepared blob at the offsets the log gave it (``AppendInfo.base_offset``).

        ``log_append_time`` is ``AppendInfo.log_append_time``: for LogAppendTime topics the
        broker's stamp replaces the client's timestamps, in the state as in the log.
        Returns the transactions the blob's markers closed, each with the last stable offset
        its aborted-transaction index entry records (:meth:`_complete_txn`).
        """
        if plan.duplicate is not None:
            raise ValueError("a duplicate was not appended; there is nothing to record")
        if not plan._pending:
            return []
        if plan._state_version != self._version:
            raise RuntimeError("producer state changed between prepare_append and complete_append")
        completed: list[tuple[CompletedTxn, int]] = []
        for p in plan._pending:
            timestamp = p.max_timestamp if log_append_time == NO_TIMESTAMP else log_append_time
            done = self._apply(
                p.producer_id,
                p.producer_epoch,
                p.marker,
                BatchMetadata(
                    p.first_seq,
                    p.last_seq,
                    base_offset + p.relative_offset,
                    p.last_offset_delta,
                    timestamp,
                ),
                p.is_transactional,
            )
            if done is not None:
                completed.append(done)
        return completed

    def check(self, batch: RecordBatch) -> BatchMetadata | None:
        """One batch: None to append it, or the original batch's metadata if it is a retry."""
        return self.prepare_append((batch,)).duplicate

    def update(
        self, batch: RecordBatch, base_offset: int, log_append_time: int = NO_TIMESTAMP
    ) -> tuple[CompletedTxn, int] | None:
        """Record one batch that :meth:`check` accepted, at the base offset the log gave it."""
        if not batch.has_producer_id:
            return None
        timestamp = batch.max_timestamp if log_append_time == NO_TIMESTAMP else log_append_time
        return self._apply_batch(batch, base_offset, timestamp)

    def _apply_batch(
        self, batch: RecordBatch, base_offset: int, timestamp: int
    ) -> tuple[CompletedTxn, int] | None:
        """A batch replayed from the log, unchecked (Kafka's ``AppendOrigin.REPLICATION``)."""
        marker = None
        if batch.is_control:
            try:
                marker = marker_of(batch)
            except InvalidRecordError:
                # Not a transaction marker (a newer control type): it only sets the epoch.
                marker = EndTransactionMarker(ControlRecordType.UNKNOWN, -1)
        return self._apply(
            batch.producer_id,
            batch.producer_epoch,
            marker,
            BatchMetadata(
                batch.base_sequence,
                last_sequence_of(batch),
                base_offset,
                batch.last_offset_delta,
                timestamp,
            ),
            batch.is_transactional,
        )

    def _apply(
        self,
        producer_id: int,
        producer_epoch: int,
        marker: EndTransactionMarker | None,
        metadata: BatchMetadata,
        is_transactional: bool,
    ) -> tuple[CompletedTxn, int] | None:
        entry = self._producers.get(producer_id)
        if entry is None:
            entry = self._producers[producer_id] = ProducerStateEntry(producer_id)
        self._map_end_offset = max(self._map_end_offset, metadata.last_offset + 1)
        self._version += 1
        if marker is not None:
            entry.maybe_update_producer_epoch(producer_epoch)
            entry.last_timestamp = metadata.max_timestamp
            first_offset = entry.current_txn_first_offset
            if marker.control_type == ControlRecordType.UNKNOWN:
                return None
            entry.coordinator_epoch = marker.coordinator_epoch
            if first_offset is None:
                return None
            return self._complete_txn(
                CompletedTxn(
                    producer_id,
                    first_offset,
                    metadata.first_offset,
                    marker.control_type == ControlRecordType.ABORT,
                )
            )
        entry.add_batch(producer_epoch, metadata)
        if is_transactional and entry.current_txn_first_offset is None:
            entry.current_txn_first_offset = metadata.first_offset
            self._ongoing[producer_id] = metadata.first_offset
            if self._first_unstable is None:
                self._first_unstable = metadata.first_offset  # later offsets never lower it
        return None

    def _complete_txn(self, completed: CompletedTxn) -> tuple[CompletedTxn, int]:
        """Close a transaction; also returns the last stable offset its index entry records:
        the first offset of the earliest transaction still open (another producer's), else
        the offset after the marker (Kafka's ``ProducerStateManager.lastStableOffset``)."""
        entry = self._producers[completed.producer_id]
        entry.current_txn_first_offset = None
        del self._ongoing[completed.producer_id]
        ongoing = self._ongoing
        first_unstable = self._first_unstable = min(ongoing.values()) if ongoing else None
        return completed, completed.last_offset + 1 if first_unstable is None else first_unstable

    @property
    def first_unstable_offset(self) -> int | None:
        """The first offset of the earliest open transaction, None with none open."""
        return self._first_unstable

    @property
    def ongoing_transactions(self) -> Mapping[int, int]:
        """Producer id -> first offset of each open transaction."""
        return MappingProxyType(self._ongoing)

    # -- expiry ----------------------------------------------------------------------------------

    def is_expired(self, entry: ProducerStateEntry, now_ms: int) -> bool:
        # An open transaction pins its producer: the coordinator will still write its marker.
        return (
            entry.current_txn_first_offset is None
            and now_ms - entry.last_timestamp >= self.producer_id_expiration_ms
        )

    def remove_expired_producers(self, now_ms: int) -> int:
        """Forget producers idle for ``producer.id.expiration.ms``; returns how many."""
        expired = [pid for pid, e in self._producers.items() if self.is_expired(e, now_ms)]
        for producer_id in expired:
            del self._producers[producer_id]
        if expired:
            self._version += 1
        return len(expired)

    def on_log_start_offset_incremented(self, log_start_offset: int) -> None:
        """Retention or DeleteRecords moved the log start: snapshots below it can never be
        used again (the batches after them are gone) and are deleted.  Producers stay: since
        KIP-360 a producer whose data was deleted keeps its epoch and sequence, as in Kafka."""
        self._map_end_offset = max(self._map_end_offset, log_start_offset)
        if self.directory is None:
            return
        stale = [
            path for offset, path in list_snapshots(self.directory) if offset < log_start_offset
        ]
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if stale:
            fsync_dir(self.directory)

    # -- snapshots and loading -------------------------------------------------------------------

    def snapshot_offsets(self) -> list[int]:
        if self.directory is None:
            return []
        return [offset for offset, _ in list_snapshots(self.directory)]

    def snapshot(self, log_end_offset: int) -> Path | None:
        """Write the state at ``log_end_offset`` (the broker calls this at clean shutdown).

        Returns the file, or None with no directory or when that snapshot already exists.
        """
        if log_end_offset < self._map_end_offset:
            raise ValueError(
                f"log end offset {log_end_offset} is below the state's end {self._map_end_offset}"
            )
        if self.directory is None or self._last_snapshot_offset == log_end_offset:
            return None
        if not self.directory.is_dir():
            return None  # the partition was deleted; its state went with it
        path = snapshot_path(self.directory, log_end_offset)
        atomic_write(path, encode_snapshot(log_end_offset, self._producers.values()))
        self._last_snapshot_offset = log_end_offset
        self._map_end_offset = log_end_offset
        self._delete_old_snapshots()
        return path

    def _delete_old_snapshots(self) -> None:
        assert self.directory is not None
        snapshots = list_snapshots(self.directory)
        stale = snapshots[: max(len(snapshots) - MAX_SNAPSHOTS, 0)]
        for _, path in stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if stale:
            fsync_dir(self.directory)

    def _load_newest_snapshot(self, log_start_offset: int, log_end_offset: int) -> int | None:
        """Load the newest usable snapshot, deleting unusable ones; returns its offset."""
        assert self.directory is not None
        deleted = False
        loaded: int | None = None
        for offset, path in reversed(list_snapshots(self.directory)):
            if loaded is None and log_start_offset <= offset <= log_end_offset:
                try:
                    stored_offset, producers = decode_snapshot(path.read_bytes())
                    if stored_offset != offset:
                        raise CorruptSnapshotError(
                            f"holds offset {stored_offset}, its name says {offset}"
                        )
                except CorruptSnapshotError:
                    pass  # deleted below; the next older one may do
                else:
                    self._producers = {entry.producer_id: entry for entry in producers}
                    self._ongoing = {
                        entry.producer_id: entry.current_txn_first_offset
                        for entry in producers
                        if entry.current_txn_first_offset is not None
                    }
                    self._first_unstable = min(self._ongoing.values(), default=None)
                    loaded = offset
                    continue
            elif loaded is not None and log_start_offset <= offset:
                continue  # an older valid snapshot: kept, pruned by count later
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            deleted = True
        if deleted:
            fsync_dir(self.directory)
        return loaded

    def load(self, log: PartitionLog, now_ms: int | None) -> LoadResult:
        """Rebuild the state from the newest usable snapshot and the log after it; returns
        the transactions the replayed markers closed (for the aborted-transaction index).
        ``now_ms`` None (a read needing the last stable offset) leaves expiry to the next
        retention pass."""
        self._producers = {}
        self._ongoing = {}
        self._first_unstable = None
        completed: list[tuple[CompletedTxn, int]] = []
        log_start_offset, log_end_offset = log.log_start_offset, log.log_end_offset
        snapshot_offset = None
        if self.directory is not None:
            snapshot_offset = self._load_newest_snapshot(log_start_offset, log_end_offset)
        start = log_start_offset if snapshot_offset is None else snapshot_offset
        self._map_end_offset = start
        for batch in _iter_log_batches(log, start, log_end_offset):
            if batch.has_producer_id and not (batch.is_control and batch.records_count == 0):
                done = self._apply_batch(batch, batch.base_offset, batch.max_timestamp)
                if done is not None:
                    completed.append(done)
        self._map_end_offset = log_end_offset
        self._last_snapshot_offset = snapshot_offset
        if now_ms is not None:
            self.remove_expired_producers(now_ms)
        self._version += 1
        return LoadResult(start, completed)
