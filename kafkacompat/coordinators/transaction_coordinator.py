"""Kafka's transaction coordinator (KIP-98), without I/O: InitProducerId, AddPartitionsToTxn,
EndTxn and the coordinator's own aborts, over an injected log and marker writer.

Theory of operation. Every request prepares a transition of the id's
:class:`~kafkacompat.coordinators.transaction_metadata.TransactionMetadata`, appends it to
``__transaction_state`` through the :class:`~kafkacompat.coordinators.
transaction_state_manager.TransactionStateManager`, and answers once the append is done.
EndTxn persists PrepareCommit/PrepareAbort and answers; the markers are then written to every
partition of the transaction (:class:`TxnMarkerWriter`, retried while the partitions are
unavailable) and CompleteCommit/CompleteAbort persisted, in a task of its own, as Kafka's
``TransactionMarkerChannelManager`` does after the response.  Until that completes, the id's
Complete state is pending, so the producer's next request is answered CONCURRENT_TRANSACTIONS
and retried.

A new producer instance that finds a transaction Ongoing fences it: the epoch is bumped
(PrepareEpochFence, never persisted), the transaction aborted at the bumped epoch, and the
caller told CONCURRENT_TRANSACTIONS; its retry then bumps the epoch once more, as Kafka's.
Transactions past ``transaction.timeout.ms`` are aborted the same way
(:meth:`TransactionCoordinator.abort_timed_out_transactions`, run every
``transaction.abort.timed.out.transaction.cleanup.interval.ms``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from enum import IntEnum
from typing import Final, NamedTuple, Protocol

from kafkacompat.coordinators.transaction_metadata import (
    MAX_PRODUCER_EPOCH,
    TV_2,
    IllegalTransactionStateError,
    TopicPartition,
    TransactionMetadata,
    TransactionState,
    TxnTransitMetadata,
    is_epoch_exhausted,
)
from kafkacompat.coordinators.transaction_state_manager import (
    CoordinatorEpochAndTxnMetadata,
    TransactionalIdAndProducerIdEpoch,
    TransactionStateManager,
)
from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.records.batch import NO_PRODUCER_EPOCH, NO_PRODUCER_ID

log = logging.getLogger(__name__)

_S = TransactionState
MARKER_RETRY_BACKOFF_MS: Final = 100

# The answers of a marker write (Kafka's TransactionMarkerRequestCompletionHandler).
_MARKER_RETRIABLE: Final = frozenset(
    {
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorCode.REQUEST_TIMED_OUT,
        ErrorCode.KAFKA_STORAGE_ERROR,
    }
)
# The producer or the coordinator moved on: this transaction's markers no longer matter.
_MARKER_ABORT_SENDING: Final = frozenset(
    {ErrorCode.INVALID_PRODUCER_EPOCH, ErrorCode.TRANSACTION_COORDINATOR_FENCED}
)
# Partitions whose log format cannot hold markers are dropped from the transaction.
_MARKER_UNSUPPORTED: Final = frozenset(
    {ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT, ErrorCode.UNSUPPORTED_VERSION}
)


class TransactionResult(IntEnum):
    """EndTxn's ``Committed`` flag, and the marker written (ABORT=0, COMMIT=1 as Kafka's)."""

    ABORT = 0
    COMMIT = 1


class TxnMarkerWriter(Protocol):
    """Writes one transaction's COMMIT/ABORT control batch to each of ``partitions``.

    Answers an error code per partition.  A partition whose topic was deleted counts as
    written (NONE): there is nothing left to mark."""

    async def write_txn_markers(
        self,
        producer_id: int,
        producer_epoch: int,
        coordinator_epoch: int,
        result: TransactionResult,
        partitions: frozenset[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode]: ...


class ProducerIdGenerator(Protocol):
    """:class:`~kafkacompat.coordinators.producer_ids.ProducerIdManager` fits."""

    def next_producer_id(self) -> int: ...


class InitProducerIdResult(NamedTuple):
    producer_id: int
    producer_epoch: int
    error_code: ErrorCode


class DescribedTransaction(NamedTuple):
    """One entry of DescribeTransactions (topics: each topic with its partitions, sorted)."""

    transactional_id: str
    error_code: ErrorCode
    transaction_state: str = ""
    transaction_timeout_ms: int = 0
    transaction_start_time_ms: int = -1
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH
    topics: tuple[tuple[str, tuple[int, ...]], ...] = ()


class ListedTransaction(NamedTuple):
    transactional_id: str
    producer_id: int
    transaction_state: str


class ListTransactionsResult(NamedTuple):
    error_code: ErrorCode
    unknown_state_filters: list[str]
    transaction_states: list[ListedTransaction]


class EndTxnResult(NamedTuple):
    """EndTxn's error, and (v5+, TV2) the producer id and epoch to continue with."""

    error_code: ErrorCode
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH


def _init_error(error: ErrorCode) -> InitProducerIdResult:
    return InitProducerIdResult(NO_PRODUCER_ID, NO_PRODUCER_EPOCH, error)


class TransactionCoordinator:
    def __init__(
        self,
        txn_manager: TransactionStateManager,
        producer_id_manager: ProducerIdGenerator,
        marker_writer: TxnMarkerWriter,
        time_ms: Callable[[], int],
        *,
        marker_retry_backoff_ms: int = MARKER_RETRY_BACKOFF_MS,
    ) -> None:
        self.txn_manager = txn_manager
        self._producer_ids = producer_id_manager
        self._markers = marker_writer
        self._time_ms = time_ms
        self._marker_retry_backoff_s = marker_retry_backoff_ms / 1000
        # Strong references: the event loop keeps only weak ones to its tasks.
        self._marker_tasks: set[asyncio.Task[None]] = set()
        # Kafka's isActive: the admin APIs answer COORDINATOR_NOT_AVAILABLE outside it.
        self.is_active = False

    def startup(self) -> None:
        self.is_active = True

    async def shutdown(self) -> None:
        """Stop answering admin requests and drop the completions still in flight: their
        Prepare records are in the log, so the next election finishes them."""
        self.is_active = False
        tasks = list(self._marker_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _generate_producer_id(self) -> int | ErrorCode:
        try:
            return self._producer_ids.next_producer_id()
        except KafkaProtocolError as exc:
            return exc.error_code

    # -- InitProducerId -----------------------------------------------------------------------

    async def handle_init_producer_id(
        self,
        transactional_id: str | None,
        transaction_timeout_ms: int,
        expected_producer_id_and_epoch: tuple[int, int] | None = None,
    ) -> InitProducerIdResult:
        """InitProducerId; ``expected_producer_id_and_epoch`` is the v3+ pair when both set."""
        if transactional_id is None:
            # Idempotent producers: always a fresh id.
            producer_id = self._generate_producer_id()
            if isinstance(producer_id, ErrorCode):
                return _init_error(producer_id)
            return InitProducerIdResult(producer_id, 0, ErrorCode.NONE)
        if transactional_id == "":
            return _init_error(ErrorCode.INVALID_REQUEST)
        if not self.txn_manager.validate_transaction_timeout_ms(transaction_timeout_ms):
            return _init_error(ErrorCode.INVALID_TRANSACTION_TIMEOUT)

        found = self.txn_manager.get_transaction_state(transactional_id)
        if found is None:
            producer_id = self._generate_producer_id()
            if isinstance(producer_id, ErrorCode):
                return _init_error(producer_id)
            found = self.txn_manager.put_transaction_state_if_not_exists(
                TransactionMetadata(
                    transactional_id=transactional_id,
                    producer_id=producer_id,
                    txn_timeout_ms=transaction_timeout_ms,
                    txn_last_update_timestamp=self._time_ms(),
                )
            )
        if isinstance(found, ErrorCode):
            return _init_error(found)
        coordinator_epoch, metadata = found
        prepared = self._prepare_init_producer_id_transit(
            transaction_timeout_ms, metadata, expected_producer_id_and_epoch
        )
        if isinstance(prepared, ErrorCode):
            return _init_error(prepared)
        if prepared.txn_state == _S.PREPARE_EPOCH_FENCE:
            # The fencing abort's epoch is never returned: the client retries and bumps again.
            ended = await self._end_transaction(
                transactional_id,
                prepared.producer_id,
                prepared.producer_epoch,
                TransactionResult.ABORT,
                is_from_client=False,
                client_transaction_version=self.txn_manager.config.transaction_version_level,
            )
            error = ended.error_code
            return _init_error(
                ErrorCode.CONCURRENT_TRANSACTIONS if error == ErrorCode.NONE else error
            )
        error = await self.txn_manager.append_transaction_to_log(
            transactional_id, coordinator_epoch, prepared
        )
        if error != ErrorCode.NONE:
            return _init_error(error)
        return InitProducerIdResult(prepared.producer_id, prepared.producer_epoch, ErrorCode.NONE)

    def _prepare_init_producer_id_transit(
        self,
        transaction_timeout_ms: int,
        metadata: TransactionMetadata,
        expected: tuple[int, int] | None,
    ) -> TxnTransitMetadata | ErrorCode:
        if metadata.pending_transition_in_progress:
            return ErrorCode.CONCURRENT_TRANSACTIONS
        if expected is not None and not (
            # A just-created id (epoch -1): a producer recovering from UNKNOWN_PRODUCER_ID.
            metadata.producer_epoch == NO_PRODUCER_EPOCH
            or expected[0] == metadata.producer_id
            # A retry of a rotation to a new id whose response was lost.
            or (expected[0] == metadata.previous_producer_id and is_epoch_exhausted(expected[1]))
        ):
            return ErrorCode.PRODUCER_FENCED
        state = metadata.state
        if state in (_S.PREPARE_ABORT, _S.PREPARE_COMMIT):
            return ErrorCode.CONCURRENT_TRANSACTIONS
        if state in (_S.COMPLETE_ABORT, _S.COMPLETE_COMMIT, _S.EMPTY):
            if metadata.is_producer_epoch_exhausted and (
                expected is None or expected[1] == metadata.producer_epoch
            ):
                producer_id = self._generate_producer_id()
                if isinstance(producer_id, ErrorCode):
                    return producer_id
                return metadata.prepare_producer_id_rotation(
                    producer_id, transaction_timeout_ms, self._time_ms(), expected is not None
                )
            transit = metadata.prepare_increment_producer_epoch(
                transaction_timeout_ms,
                None if expected is None else expected[1],
                self._time_ms(),
            )
            return ErrorCode.PRODUCER_FENCED if transit is None else transit
        if state == _S.ONGOING:
            return metadata.prepare_fence_producer_epoch()
        raise IllegalTransactionStateError(
            f"{metadata.transactional_id!r} found in {state.name}, which is never cached"
        )

    # -- AddPartitionsToTxn -------------------------------------------------------------------

    async def handle_add_partitions_to_transaction(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> ErrorCode:
        """AddPartitionsToTxn (and AddOffsetsToTxn, with the offsets partition): one error for
        all the partitions, as Kafka answers."""
        wanted = frozenset(partitions)
        if not transactional_id:
            return ErrorCode.INVALID_REQUEST
        found = self.txn_manager.get_transaction_state(transactional_id)
        if found is None:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        if isinstance(found, ErrorCode):
            return found
        coordinator_epoch, metadata = found
        if metadata.producer_id != producer_id:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        if metadata.producer_epoch != producer_epoch:
            return ErrorCode.PRODUCER_FENCED
        if metadata.pending_transition_in_progress or metadata.state in (
            _S.PREPARE_COMMIT,
            _S.PREPARE_ABORT,
        ):
            return ErrorCode.CONCURRENT_TRANSACTIONS
        if metadata.state == _S.ONGOING and wanted <= metadata.topic_partitions:
            return ErrorCode.NONE  # nothing new to persist
        try:
            transit = metadata.prepare_add_partitions(wanted, self._time_ms())
        except ValueError:
            # Epoch -1 of an id whose first InitProducerId never persisted: Kafka's request
            # handler turns the IllegalArgumentException into UNKNOWN_SERVER_ERROR.
            return ErrorCode.UNKNOWN_SERVER_ERROR
        return await self.txn_manager.append_transaction_to_log(
            transactional_id, coordinator_epoch, transit
        )

    def handle_verify_partitions_in_transaction(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode]:
        """AddPartitionsToTxn v4+ with VerifyOnly (KIP-890): an error per partition, nothing
        written.  A partition not in the transaction is TRANSACTION_ABORTABLE."""
        wanted = frozenset(partitions)
        if not transactional_id:
            return dict.fromkeys(wanted, ErrorCode.INVALID_REQUEST)
        found = self.txn_manager.get_transaction_state(transactional_id)
        error: ErrorCode
        if found is None:
            error = ErrorCode.INVALID_PRODUCER_ID_MAPPING
        elif isinstance(found, ErrorCode):
            error = found
        else:
            metadata = found.transaction_metadata
            # No pending-state check: the partition's own append is checked once more.
            if metadata.producer_id != producer_id:
                error = ErrorCode.INVALID_PRODUCER_ID_MAPPING
            elif metadata.producer_epoch != producer_epoch:
                error = ErrorCode.PRODUCER_FENCED
            elif metadata.state in (_S.PREPARE_COMMIT, _S.PREPARE_ABORT):
                error = ErrorCode.CONCURRENT_TRANSACTIONS
            else:
                return {
                    tp: ErrorCode.NONE
                    if tp in metadata.topic_partitions
                    else ErrorCode.TRANSACTION_ABORTABLE
                    for tp in wanted
                }
        return dict.fromkeys(wanted, error)

    # -- EndTxn -------------------------------------------------------------------------------

    async def handle_end_transaction(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        result: TransactionResult,
        client_transaction_version: int = 0,
    ) -> EndTxnResult:
        return await self._end_transaction(
            transactional_id,
            producer_id,
            producer_epoch,
            result,
            is_from_client=True,
            client_transaction_version=client_transaction_version,
        )

    async def _end_transaction(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        result: TransactionResult,
        *,
        is_from_client: bool,
        client_transaction_version: int,
    ) -> EndTxnResult:
        if not transactional_id:
            return EndTxnResult(ErrorCode.INVALID_REQUEST)
        found = self.txn_manager.get_transaction_state(transactional_id)
        if found is None:
            return EndTxnResult(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
        if isinstance(found, ErrorCode):
            return EndTxnResult(found)
        coordinator_epoch, metadata = found
        current_producer_id, current_epoch = metadata.producer_id, metadata.producer_epoch
        is_epoch_fence = False
        prepared = self._prepare_end_transaction(
            metadata,
            producer_id,
            producer_epoch,
            result,
            is_from_client,
            client_transaction_version,
        )
        if isinstance(prepared, ErrorCode):
            if prepared == ErrorCode.NONE:
                # A retry of an end that already completed: the same answer again.
                return EndTxnResult(ErrorCode.NONE, current_producer_id, current_epoch)
            return EndTxnResult(prepared)
        transit, is_epoch_fence = prepared
        error = await self.txn_manager.append_transaction_to_log(
            transactional_id, coordinator_epoch, transit
        )
        if error != ErrorCode.NONE:
            if is_epoch_fence:
                current = self.txn_manager.get_transaction_state(transactional_id)
                if (
                    isinstance(current, CoordinatorEpochAndTxnMetadata)
                    and current.coordinator_epoch == coordinator_epoch
                ):
                    # The bumped epoch stays in the cache unpersisted; the next fence reuses it.
                    current.transaction_metadata.has_failed_epoch_fence = True
            return EndTxnResult(error)
        return self._start_completion(
            transactional_id, coordinator_epoch, producer_id, producer_epoch, result
        )

    def _prepare_end_transaction(
        self,
        metadata: TransactionMetadata,
        producer_id: int,
        producer_epoch: int,
        result: TransactionResult,
        is_from_client: bool,
        client_transaction_version: int,
    ) -> ErrorCode | tuple[TxnTransitMetadata, bool]:
        fencing = metadata.pending_state == _S.PREPARE_EPOCH_FENCE
        tv2 = not fencing and metadata.supports_epoch_bump
        # TV2 retries: the epoch was bumped by the end being retried, or it overflowed into a
        # new producer id.
        retry_on_overflow = (
            tv2
            and metadata.previous_producer_id == producer_id
            and producer_epoch == MAX_PRODUCER_EPOCH - 1
            and metadata.producer_epoch == 0
        )
        retry_on_epoch_bump = self._end_txn_epoch_bumped(metadata, producer_epoch)
        state = metadata.state
        if tv2:
            if state in (_S.PREPARE_COMMIT, _S.PREPARE_ABORT):
                valid_epoch = retry_on_epoch_bump
            elif state in (_S.COMPLETE_COMMIT, _S.COMPLETE_ABORT):
                valid_epoch = retry_on_epoch_bump or retry_on_overflow
            else:
                valid_epoch = producer_epoch == metadata.producer_epoch
        else:
            # Before TV2 a client never bumps the epoch itself, so it must match exactly; the
            # coordinator's own aborts carry the fencing epoch, one higher.
            valid_epoch = (
                not is_from_client or producer_epoch == metadata.producer_epoch
            ) and producer_epoch >= metadata.producer_epoch

        if metadata.producer_id != producer_id and not retry_on_overflow:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        if not valid_epoch:
            return ErrorCode.PRODUCER_FENCED
        if metadata.pending_transition_in_progress and not fencing:
            return ErrorCode.CONCURRENT_TRANSACTIONS
        commit = result == TransactionResult.COMMIT
        if state == _S.ONGOING:
            next_state = _S.PREPARE_COMMIT if commit else _S.PREPARE_ABORT
            next_producer_id = NO_PRODUCER_ID
            if (
                client_transaction_version >= TV_2
                and not fencing
                and metadata.is_producer_epoch_exhausted
            ):
                generated = self._generate_producer_id()
                if isinstance(generated, ErrorCode):
                    return generated
                next_producer_id = generated
            is_epoch_fence = False
            if next_state == _S.PREPARE_ABORT and fencing:
                # The fence turns into the abort: clear it and adopt the fencing epoch.
                is_epoch_fence = True
                metadata.pending_state = None
                metadata.producer_epoch = producer_epoch
                metadata.last_producer_epoch = NO_PRODUCER_EPOCH
            transit = metadata.prepare_abort_or_commit(
                next_state, client_transaction_version, next_producer_id, self._time_ms()
            )
            return transit, is_epoch_fence
        if state == _S.COMPLETE_COMMIT:
            return ErrorCode.NONE if commit else ErrorCode.INVALID_TXN_STATE
        if state == _S.COMPLETE_ABORT:
            return ErrorCode.INVALID_TXN_STATE if commit else ErrorCode.NONE
        if state == _S.PREPARE_COMMIT:
            return ErrorCode.CONCURRENT_TRANSACTIONS if commit else ErrorCode.INVALID_TXN_STATE
        if state == _S.PREPARE_ABORT:
            return ErrorCode.INVALID_TXN_STATE if commit else ErrorCode.CONCURRENT_TRANSACTIONS
        if state == _S.EMPTY:
            return ErrorCode.INVALID_TXN_STATE
        raise IllegalTransactionStateError(
            f"{metadata.transactional_id!r} found in {state.name}, which is never cached"
        )

    @staticmethod
    def _end_txn_epoch_bumped(metadata: TransactionMetadata, producer_epoch: int) -> bool:
        return (
            metadata.pending_state != _S.PREPARE_EPOCH_FENCE
            and metadata.supports_epoch_bump
            and metadata.producer_epoch == producer_epoch + 1
        )

    def _start_completion(
        self,
        transactional_id: str,
        coordinator_epoch: int,
        producer_id: int,
        producer_epoch: int,
        result: TransactionResult,
    ) -> EndTxnResult:
        """After Prepare* is persisted: prepare Complete* and hand it to the marker task."""
        found = self.txn_manager.get_transaction_state(transactional_id)
        if isinstance(found, ErrorCode):
            return EndTxnResult(found)
        if found is None or found.coordinator_epoch != coordinator_epoch:
            return EndTxnResult(ErrorCode.NOT_COORDINATOR)
        metadata = found.transaction_metadata
        if metadata.producer_id != producer_id:
            return EndTxnResult(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
        if metadata.producer_epoch != producer_epoch and not self._end_txn_epoch_bumped(
            metadata, producer_epoch
        ):
            return EndTxnResult(ErrorCode.PRODUCER_FENCED)
        if metadata.pending_transition_in_progress:
            return EndTxnResult(ErrorCode.CONCURRENT_TRANSACTIONS)
        expected = _S.PREPARE_COMMIT if result == TransactionResult.COMMIT else _S.PREPARE_ABORT
        if metadata.state != expected:
            return EndTxnResult(ErrorCode.INVALID_TXN_STATE)
        complete = metadata.prepare_complete(self._time_ms())
        self._add_txn_markers_to_send(coordinator_epoch, result, metadata, complete)
        return EndTxnResult(ErrorCode.NONE, metadata.producer_id, metadata.producer_epoch)

    # -- markers ------------------------------------------------------------------------------

    def _add_txn_markers_to_send(
        self,
        coordinator_epoch: int,
        result: TransactionResult,
        metadata: TransactionMetadata,
        complete: TxnTransitMetadata,
    ) -> None:
        task = asyncio.get_running_loop().create_task(
            self._send_markers_and_complete(coordinator_epoch, result, metadata, complete),
            name=f"txn-markers-{metadata.transactional_id}",
        )
        self._marker_tasks.add(task)
        task.add_done_callback(self._marker_tasks.discard)

    async def _send_markers_and_complete(
        self,
        coordinator_epoch: int,
        result: TransactionResult,
        metadata: TransactionMetadata,
        complete: TxnTransitMetadata,
    ) -> None:
        transactional_id = metadata.transactional_id
        # The markers carry the epoch of the transaction being ended (the Prepare record's).
        producer_id, producer_epoch = metadata.producer_id, metadata.producer_epoch
        try:
            while metadata.topic_partitions:
                if not self._still_current(transactional_id, coordinator_epoch, metadata):
                    return
                errors = await self._markers.write_txn_markers(
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    result,
                    frozenset(metadata.topic_partitions),
                )
                retry = False
                for tp, error in errors.items():
                    if error == ErrorCode.NONE or error in _MARKER_UNSUPPORTED:
                        metadata.remove_partition(tp)
                    elif error in _MARKER_RETRIABLE:
                        retry = True
                    elif error in _MARKER_ABORT_SENDING:
                        log.info(
                            "stopping the markers of %s: %s from %s",
                            transactional_id,
                            error.name,
                            tp,
                        )
                        return
                    else:
                        raise IllegalTransactionStateError(
                            f"unexpected {error.name} writing a marker of {transactional_id!r} to {tp}"
                        )
                if retry:
                    await asyncio.sleep(self._marker_retry_backoff_s)
            while True:
                if not self._still_current(transactional_id, coordinator_epoch, metadata):
                    return
                error = await self.txn_manager.append_transaction_to_log(
                    transactional_id,
                    coordinator_epoch,
                    complete,
                    retry_on_error=lambda e: e == ErrorCode.COORDINATOR_NOT_AVAILABLE,
                )
                if error != ErrorCode.COORDINATOR_NOT_AVAILABLE:
                    break
                await asyncio.sleep(self._marker_retry_backoff_s)
            if error not in (
                ErrorCode.NONE,
                ErrorCode.NOT_COORDINATOR,
                ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
            ):
                raise IllegalTransactionStateError(
                    f"unexpected {error.name} completing the transaction of {transactional_id!r}"
                )
        except Exception:
            log.exception("completing the transaction of %s failed", transactional_id)

    def _still_current(
        self, transactional_id: str, coordinator_epoch: int, metadata: TransactionMetadata
    ) -> bool:
        found = self.txn_manager.get_transaction_state(transactional_id)
        return (
            isinstance(found, CoordinatorEpochAndTxnMetadata)
            and found.coordinator_epoch == coordinator_epoch
            and found.transaction_metadata is metadata
        )

    async def wait_for_markers(self) -> None:
        """Until every started completion has finished (tests; a clean shutdown)."""
        while self._marker_tasks:
            await asyncio.gather(*list(self._marker_tasks))

    # -- partition ownership ------------------------------------------------------------------

    def on_election(
        self,
        partition: int,
        coordinator_epoch: int,
        loaded: dict[str, TransactionMetadata],
    ) -> bool:
        """Install a loaded partition of ``__transaction_state`` (``add_loading_partition``
        was called when its load began) and finish every transaction it left half-ended:
        a Prepare* state's markers are written and its Complete* persisted again, which is
        harmless where they already were.  False if the partition was resigned meanwhile."""
        if not self.txn_manager.add_loaded_transactions_to_cache(
            partition, coordinator_epoch, loaded
        ):
            return False
        for metadata in loaded.values():
            if metadata.pending_state is None and metadata.state in (
                _S.PREPARE_COMMIT,
                _S.PREPARE_ABORT,
            ):
                result = (
                    TransactionResult.COMMIT
                    if metadata.state == _S.PREPARE_COMMIT
                    else TransactionResult.ABORT
                )
                complete = metadata.prepare_complete(self._time_ms())
                self._add_txn_markers_to_send(coordinator_epoch, result, metadata, complete)
        return True

    def on_resignation(self, partition: int, coordinator_epoch: int | None = None) -> None:
        self.txn_manager.remove_transactions_for_partition(partition, coordinator_epoch)

    # -- admin --------------------------------------------------------------------------------

    def handle_describe_transactions(self, transactional_id: str) -> DescribedTransaction:
        if not self.is_active:
            return DescribedTransaction(transactional_id, ErrorCode.COORDINATOR_NOT_AVAILABLE)
        if transactional_id == "":
            return DescribedTransaction(transactional_id, ErrorCode.INVALID_REQUEST)
        found = self.txn_manager.get_transaction_state(transactional_id)
        if isinstance(found, ErrorCode):
            return DescribedTransaction(transactional_id, found)
        # A Dead id is being expired: as good as gone.
        if found is None or found.transaction_metadata.state == _S.DEAD:
            return DescribedTransaction(transactional_id, ErrorCode.TRANSACTIONAL_ID_NOT_FOUND)
        metadata = found.transaction_metadata
        topics: dict[str, list[int]] = {}
        for topic, partition in sorted(metadata.topic_partitions):
            topics.setdefault(topic, []).append(partition)
        return DescribedTransaction(
            transactional_id,
            ErrorCode.NONE,
            metadata.state.state_name,
            metadata.txn_timeout_ms,
            metadata.txn_start_timestamp,
            metadata.producer_id,
            metadata.producer_epoch,
            tuple((topic, tuple(partitions)) for topic, partitions in topics.items()),
        )

    def handle_list_transactions(
        self,
        filtered_producer_ids: Iterable[int] = (),
        filtered_states: Iterable[str] = (),
        filtered_duration_ms: int = -1,
    ) -> ListTransactionsResult:
        """ListTransactions: ids by state name, producer id and (KIP-994) open for longer than
        ``filtered_duration_ms``; state names Kafka does not know come back as unknown."""
        if not self.is_active:
            return ListTransactionsResult(ErrorCode.COORDINATOR_NOT_AVAILABLE, [], [])
        if self.txn_manager.is_loading():
            return ListTransactionsResult(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, [], [])
        producer_ids = set(filtered_producer_ids)
        state_names = list(filtered_states)
        states: set[TransactionState] = set()
        unknown: list[str] = []
        for name in state_names:
            state = TransactionState.from_name(name)
            if state is None:
                unknown.append(name)
            else:
                states.add(state)
        now = self._time_ms()
        listed = [
            ListedTransaction(m.transactional_id, m.producer_id, m.state.state_name)
            for m in self.txn_manager.all_transactions()
            if m.state != _S.DEAD
            and (not producer_ids or m.producer_id in producer_ids)
            and (not state_names or m.state in states)
            and (filtered_duration_ms < 0 or now - m.txn_start_timestamp > filtered_duration_ms)
        ]
        return ListTransactionsResult(ErrorCode.NONE, unknown, listed)

    # -- background work ----------------------------------------------------------------------

    async def abort_timed_out_transactions(
        self,
    ) -> list[tuple[TransactionalIdAndProducerIdEpoch, ErrorCode]]:
        """Abort every Ongoing transaction past its timeout, fencing its producer; what was
        attempted, with the outcome of each."""
        outcomes: list[tuple[TransactionalIdAndProducerIdEpoch, ErrorCode]] = []
        for txn in self.txn_manager.timed_out_transactions():
            found = self.txn_manager.get_transaction_state(txn.transactional_id)
            if not isinstance(found, CoordinatorEpochAndTxnMetadata):
                continue
            metadata = found.transaction_metadata
            if metadata.producer_id != txn.producer_id:
                log.error("producer id of %s changed while timing out", txn.transactional_id)
                continue
            if metadata.pending_transition_in_progress:
                continue
            fence = metadata.prepare_fence_producer_epoch()
            ended = await self._end_transaction(
                txn.transactional_id,
                fence.producer_id,
                fence.producer_epoch,
                TransactionResult.ABORT,
                is_from_client=False,
                client_transaction_version=self.txn_manager.config.transaction_version_level,
            )
            if ended.error_code == ErrorCode.NONE:
                log.info("aborted the timed-out transaction of %s", txn.transactional_id)
            outcomes.append((txn, ended.error_code))
        return outcomes

    async def remove_expired_transactional_ids(self) -> list[str]:
        return await self.txn_manager.remove_expired_transactional_ids()
