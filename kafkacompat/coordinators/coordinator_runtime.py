"""Kafka's coordinator runtime (KIP-848's group-coordinator module): operations return results.

Theory of operation.  ``__consumer_offsets`` has ``offsets.topic.num.partitions`` partitions
and every group lives in one of them; the runtime holds one *shard* per partition, the
in-memory state of that partition's groups and offsets.  A request becomes an operation on
its group's shard:

* a *write operation* is ``result = op(shard, now)``: it reads and may change the shard and
  returns a :class:`CoordinatorResult`, the records to append to the partition and the
  response to send once they are durable.  The runtime appends the records through the
  :class:`~kafkacompat.coordinators.group_store.GroupStore` seam (one batch), then *replays*
  them into the shard (``shard.replay(record)``, the code that loads the partition at
  start-up), tells the result's ``append_future`` callbacks how the append went and returns
  the response.  If the append fails nothing is replayed, the callbacks hear the error and
  the response is what ``on_error`` makes of it (Kafka answers COORDINATOR_NOT_AVAILABLE or
  NOT_COORDINATOR, depending on the storage's error).  Each record is replayed with its
  offset in the log, which orders transactional and plain offset commits.
* a *transactional write operation* (TxnOffsetCommit) is a write whose batch is a
  transactional producer's: its records replay as that producer's pending records, which a
  marker later decides (``shard.replay_end_transaction_marker``, run as a write with no
  records: the transaction coordinator wrote the marker).
* a *read operation* is ``op(shard)``: no records, no changes.
* a *timer* (:class:`CoordinatorTimer`) runs a write operation later: session expirations,
  rebalance timeouts and the offsets retention check write their records like any request.
* the *load* at start-up reads each partition (:mod:`kafkacompat.coordinators.group_loader`)
  and replays its records into a fresh shard, the transactions still open at the log's end
  as pending records first; requests get COORDINATOR_LOAD_IN_PROGRESS
  meanwhile (the service checks :attr:`CoordinatorRuntime.loading` before it schedules).

As in Kafka, some state is changed by the operation itself rather than by replay: a classic
group's membership is not a record, so the classic group operations change the group
directly, return their records with ``replay_records=False`` and finish (or undo) their
transition in an ``append_future`` callback; committed offsets change only by replay, so a
failed offset commit leaves the shard as it was.  Appends here are synchronous (the store
returns once the batch is in the log), so an operation's records are durable before the next
operation runs and no snapshot of the shard is needed to undo one.

Time comes from the injected scheduler: an operation is handed ``now``, and the managers read
the same clock through their :class:`CoordinatorTimer`; nothing reads the wall clock or
sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from kafkacompat.coordinators.group_loader import load_records_steps
from kafkacompat.coordinators.group_records import (
    CoordinatorRecord,
    decode_record,
    encode_record,
)
from kafkacompat.coordinators.group_store import GroupStore, StoreError
from kafkacompat.coordinators.group_timers import Scheduler, TimerHandle
from kafkacompat.errors import ErrorCode
from kafkacompat.records.batch import NO_PRODUCER_EPOCH, NO_PRODUCER_ID

log = logging.getLogger(__name__)

UNKNOWN_RECORD_OFFSET = -1
"""A record's log offset where nobody needs it: most records of a load (see
:mod:`kafkacompat.coordinators.pending_offsets`)."""
T = TypeVar("T")
U = TypeVar("U")

AppendCallback = Callable[[ErrorCode | None], "CoordinatorResult[None] | None"]
"""Kafka's ``appendFuture``: told the outcome of the append (None once the records are in the
log, else the error); may return a follow-up result, which the runtime writes in turn (a
failed SyncGroup write starts a rebalance, which may write the group again)."""


@dataclass(frozen=True, slots=True)
class CoordinatorResult(Generic[T]):
    """Kafka's ``CoordinatorResult<T, U>``: what a write operation wants written and answered."""

    records: list[CoordinatorRecord]
    response: T
    append_future: tuple[AppendCallback, ...] = ()
    replay_records: bool = True
    """False when the operation already changed the shard itself (classic groups)."""

    def then(self, other: CoordinatorResult[U]) -> CoordinatorResult[U]:
        """This result's records and callbacks followed by ``other``'s; ``other``'s
        response."""
        if not self.records and not self.append_future:
            return other
        if self.records and other.records and self.replay_records != other.replay_records:
            raise ValueError("cannot merge results that replay their records and ones that don't")
        return CoordinatorResult(
            self.records + other.records,
            other.response,
            self.append_future + other.append_future,
            self.replay_records if self.records else other.replay_records,
        )


EMPTY_RESULT: CoordinatorResult[None] = CoordinatorResult([], None)
"""Nothing to write, nothing to answer."""


def no_records(response: T) -> CoordinatorResult[T]:
    """A result that writes nothing: read-like writes, and refusals."""
    return CoordinatorResult([], response)


class CoordinatorShard(Protocol):
    """One ``__consumer_offsets`` partition's state, as the runtime drives it."""

    def replay(
        self,
        record: CoordinatorRecord,
        producer_id: int = NO_PRODUCER_ID,
        record_offset: int = UNKNOWN_RECORD_OFFSET,
    ) -> None:
        """Apply one record: after a write's append, and for every record at load.
        ``producer_id``: the transactional producer whose batch holds it (TxnOffsetCommit);
        ``record_offset``: where the log has it (unknown for most records of a load)."""

    def on_loaded(self) -> CoordinatorResult[None]:
        """The partition is loaded: arm its timers (Kafka's ``onLoaded``)."""

    def on_unloaded(self) -> None:
        """The partition is no longer served: answer parked requests, cancel timers."""


ShardT = TypeVar("ShardT", bound=CoordinatorShard)


class CoordinatorTimer:
    """Kafka's ``CoordinatorTimer``: write operations that run later on one shard."""

    def __init__(self, runtime: CoordinatorRuntime[ShardT], partition: int) -> None:
        self._runtime: CoordinatorRuntime[ShardT] = runtime
        self.partition = partition

    def now_ms(self) -> int:
        return self._runtime.scheduler.now_ms()

    def schedule(
        self, delay_ms: int, operation: Callable[[], CoordinatorResult[None]]
    ) -> TimerHandle:
        runtime, partition = self._runtime, self.partition
        return runtime.scheduler.call_later(
            delay_ms,
            lambda: runtime.schedule_write_operation(partition, lambda _shard, _now: operation()),
        )


class CoordinatorRuntime(Generic[ShardT]):
    """The shards of ``__consumer_offsets`` and the one path their operations take to the log."""

    def __init__(
        self,
        scheduler: Scheduler,
        store: GroupStore | None,
        new_shard: Callable[[CoordinatorRuntime[ShardT], int], ShardT],
    ) -> None:
        self.scheduler = scheduler
        self.store = store
        self._new_shard = new_shard
        self._shards: dict[int, ShardT] = {}
        # Without a store (unit tests) records still get increasing offsets, for the order
        # of transactional and plain commits.
        self._next_offset = 0
        self.active = False
        """Serving: loaded (or loading) and not shut down."""
        self.loading = False

    # -- shards -----------------------------------------------------------------------------------

    @property
    def num_partitions(self) -> int:
        # Without a store (unit tests) every group lives in one shard.
        return self.store.num_partitions if self.store is not None else 1

    def partition_for(self, group_id: str) -> int:
        return self.store.partition_for(group_id) if self.store is not None else 0

    def shard(self, partition: int) -> ShardT:
        shard = self._shards.get(partition)
        if shard is None:
            shard = self._shards[partition] = self._new_shard(self, partition)
            if self.active and not self.loading:
                # A partition first needed after the load (the topic grew): nothing to
                # replay, but its timers must run like the others'.
                self.schedule_write_operation(partition, lambda s, _now: s.on_loaded())
        return shard

    def shards(self) -> list[ShardT]:
        return [self._shards[p] for p in sorted(self._shards)]

    def timer(self, partition: int) -> CoordinatorTimer:
        return CoordinatorTimer(self, partition)

    # -- operations -------------------------------------------------------------------------------

    def schedule_write_operation(
        self,
        partition: int,
        op: Callable[[ShardT, int], CoordinatorResult[T]],
        on_error: Callable[[ErrorCode, T], T] | None = None,
    ) -> T:
        """Run ``op`` on the partition's shard, append its records, replay them, answer.

        ``on_error(error, response)`` makes the response when the append fails (given the
        response the operation would have sent); without it, that response is sent."""
        shard = self.shard(partition)
        result = op(shard, self.scheduler.now_ms())
        error = self._write(partition, shard, result)
        if error is not None and on_error is not None:
            return on_error(error, result.response)
        return result.response

    def schedule_transactional_write_operation(
        self,
        partition: int,
        producer_id: int,
        producer_epoch: int,
        op: Callable[[ShardT, int], CoordinatorResult[T]],
        on_error: Callable[[ErrorCode, T], T] | None = None,
    ) -> T:
        """:meth:`schedule_write_operation` whose records go in one transactional batch of
        ``producer_id`` (Kafka's ``scheduleTransactionalWriteOperation``): they replay as
        that producer's pending records until its marker decides them."""
        shard = self.shard(partition)
        result = op(shard, self.scheduler.now_ms())
        error = self._write(partition, shard, result, producer_id, producer_epoch)
        if error is not None and on_error is not None:
            return on_error(error, result.response)
        return result.response

    def _write(
        self,
        partition: int,
        shard: ShardT,
        result: CoordinatorResult[T],
        producer_id: int = NO_PRODUCER_ID,
        producer_epoch: int = NO_PRODUCER_EPOCH,
    ) -> ErrorCode | None:
        """Append, replay, complete the append futures, then write their follow-ups."""
        error, base_offset = self._append(partition, result.records, producer_id, producer_epoch)
        if error is None and result.replay_records:
            for index, record in enumerate(result.records):
                shard.replay(record, producer_id, base_offset + index)
        follow_ups = [callback(error) for callback in result.append_future]
        for follow_up in follow_ups:
            if follow_up is not None:
                self._write(partition, shard, follow_up)
        return error

    def schedule_read_operation(self, partition: int, op: Callable[[ShardT], T]) -> T:
        return op(self.shard(partition))

    def _append(
        self,
        partition: int,
        records: list[CoordinatorRecord],
        producer_id: int = NO_PRODUCER_ID,
        producer_epoch: int = NO_PRODUCER_EPOCH,
    ) -> tuple[ErrorCode | None, int]:
        """The append's error, and the base offset of its batch."""
        if not records:
            return None, UNKNOWN_RECORD_OFFSET
        if self.store is None:
            base_offset = self._next_offset
            self._next_offset += len(records)
            return None, base_offset
        try:
            base_offset = self.store.append(
                partition,
                [encode_record(r) for r in records],
                producer_id=producer_id,
                producer_epoch=producer_epoch,
            )
        except StoreError as exc:
            log.warning(
                "cannot append %d records to partition %d: %s", len(records), partition, exc
            )
            return exc.error_code, UNKNOWN_RECORD_OFFSET
        return None, base_offset

    # -- lifecycle --------------------------------------------------------------------------------

    def load_steps(self) -> Generator[None, None, int]:
        """Replay every partition into a fresh shard, then start the shards' timers; returns
        how many records were read.  Stepwise, so that a broker loads on its event loop."""
        self.loading = True
        self.active = True
        records = 0
        for partition in range(self.num_partitions):
            shard = self.shard(partition)
            if self.store is None:
                continue
            loaded = yield from load_records_steps(self.store, partition)
            records += loaded.records_read
            # Transactions still open at the log's end first: their offsets stay pending
            # until a marker written after this load decides them; the committed offsets
            # written after such a transaction's records carry their record offsets, for
            # the marker to compare (see :mod:`kafkacompat.coordinators.pending_offsets`).
            for producer_id, pending in loaded.pending.items():
                for key, (record_offset, value) in pending.items():
                    record = decode_record(key, value)
                    if record is not None:
                        shard.replay(record, producer_id, record_offset)
            record_offsets = loaded.record_offsets
            for key, value in loaded.latest.items():
                record = decode_record(key, value)
                if record is not None:
                    shard.replay(
                        record,
                        NO_PRODUCER_ID,
                        record_offsets.get(key, UNKNOWN_RECORD_OFFSET),
                    )
        self.loading = False
        for partition in sorted(self._shards):
            self.schedule_write_operation(partition, lambda shard, _now: shard.on_loaded())
        return records

    def shutdown(self) -> None:
        """Stop serving every shard (Kafka's unload)."""
        self.active = False
        for shard in self.shards():
            shard.on_unloaded()
        self._shards.clear()
