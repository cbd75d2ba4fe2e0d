"""The transaction coordinator's cache of transactional ids, and its writes to their log.

Kafka's ``TransactionStateManager``: per owned partition of ``__transaction_state``, the
coordinator epoch it was loaded at and the ids it holds.  A lookup for an id whose partition is
being loaded answers COORDINATOR_LOAD_IN_PROGRESS; one whose partition this broker does not own,
NOT_COORDINATOR.  Every state change goes through :meth:`TransactionStateManager.
append_transaction_to_log`, which appends the record, then applies the prepared transition, or
on failure clears the pending state (unless the caller will retry) and maps the log's error to
the one the coordinator's clients understand.

The log itself is injected (:class:`TransactionLogAppender`), so this module does no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Protocol

from kafkacompat.coordinators.transaction_log import (
    Record,
    partition_for,
    tombstone,
    transit_record,
    value_version,
)
from kafkacompat.coordinators.transaction_metadata import (
    TransactionMetadata,
    TransactionState,
    TxnTransitMetadata,
)
from kafkacompat.errors import ErrorCode

log = logging.getLogger(__name__)

DEFAULT_NUM_PARTITIONS: Final = 50
DEFAULT_MAX_TIMEOUT_MS: Final = 900_000
DEFAULT_TRANSACTIONAL_ID_EXPIRATION_MS: Final = 604_800_000
DEFAULT_ABORT_TIMED_OUT_INTERVAL_MS: Final = 10_000
DEFAULT_REMOVE_EXPIRED_INTERVAL_MS: Final = 3_600_000


class TransactionLogAppender(Protocol):
    """Appends records to one partition of ``__transaction_state`` (acks=all, uncompressed, as
    Kafka enforces), answering the produce path's error code."""

    async def append(
        self, partition: int, coordinator_epoch: int, records: list[Record]
    ) -> ErrorCode: ...


@dataclass(frozen=True, slots=True)
class TransactionStateManagerConfig:
    """The broker configs the transaction coordinator reads (Kafka's names in the comments)."""

    num_partitions: int = DEFAULT_NUM_PARTITIONS  # transaction.state.log.num.partitions
    transaction_max_timeout_ms: int = DEFAULT_MAX_TIMEOUT_MS  # transaction.max.timeout.ms
    # transactional.id.expiration.ms
    transactional_id_expiration_ms: int = DEFAULT_TRANSACTIONAL_ID_EXPIRATION_MS
    # transaction.abort.timed.out.transaction.cleanup.interval.ms
    abort_timed_out_transactions_interval_ms: int = DEFAULT_ABORT_TIMED_OUT_INTERVAL_MS
    # transaction.remove.expired.transaction.cleanup.interval.ms
    remove_expired_transactional_ids_interval_ms: int = DEFAULT_REMOVE_EXPIRED_INTERVAL_MS
    # The finalized transaction.version feature level: what the coordinator's own aborts use
    # and which TransactionLogValue version it writes.
    transaction_version_level: int = 0


class CoordinatorEpochAndTxnMetadata(NamedTuple):
    coordinator_epoch: int
    transaction_metadata: TransactionMetadata


class TransactionalIdAndProducerIdEpoch(NamedTuple):
    transactional_id: str
    producer_id: int
    producer_epoch: int


@dataclass(slots=True)
class TxnMetadataCacheEntry:
    coordinator_epoch: int
    metadata_per_transactional_id: dict[str, TransactionMetadata] = field(default_factory=dict)


_APPEND_ERRORS: Final = {
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    # A timed-out append may still land: answering NOT_AVAILABLE makes the client retry.
    ErrorCode.REQUEST_TIMED_OUT: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_LEADER_OR_FOLLOWER: ErrorCode.NOT_COORDINATOR,
    ErrorCode.KAFKA_STORAGE_ERROR: ErrorCode.NOT_COORDINATOR,
    ErrorCode.MESSAGE_TOO_LARGE: ErrorCode.UNKNOWN_SERVER_ERROR,
    ErrorCode.RECORD_LIST_TOO_LARGE: ErrorCode.UNKNOWN_SERVER_ERROR,
}


def coordinator_error(append_error: ErrorCode) -> ErrorCode:
    """The error a client is told for a failed append to ``__transaction_state``."""
    return _APPEND_ERRORS.get(append_error, append_error)


class TransactionStateManager:
    def __init__(
        self,
        appender: TransactionLogAppender,
        config: TransactionStateManagerConfig,
        time_ms: Callable[[], int],
    ) -> None:
        self._appender = appender
        self.config = config
        self._time_ms = time_ms
        self._cache: dict[int, TxnMetadataCacheEntry] = {}
        self._loading: dict[int, int] = {}  # partition -> coordinator epoch being loaded

    def partition_for(self, transactional_id: str) -> int:
        return partition_for(transactional_id, self.config.num_partitions)

    def validate_transaction_timeout_ms(self, txn_timeout_ms: int) -> bool:
        return 0 < txn_timeout_ms <= self.config.transaction_max_timeout_ms

    # -- ownership ----------------------------------------------------------------------------

    def add_loading_partition(self, partition: int, coordinator_epoch: int) -> None:
        self._loading[partition] = coordinator_epoch

    def add_loaded_transactions_to_cache(
        self, partition: int, coordinator_epoch: int, loaded: dict[str, TransactionMetadata]
    ) -> bool:
        """Install a loaded partition; False if it was unloaded or re-elected meanwhile."""
        if self._loading.get(partition) != coordinator_epoch:
            return False
        del self._loading[partition]
        self._cache[partition] = TxnMetadataCacheEntry(coordinator_epoch, dict(loaded))
        return True

    def remove_transactions_for_partition(
        self, partition: int, coordinator_epoch: int | None = None
    ) -> None:
        """Forget a partition on resignation (only at ``coordinator_epoch``, when given)."""
        if coordinator_epoch is None or self._loading.get(partition) == coordinator_epoch:
            self._loading.pop(partition, None)
        entry = self._cache.get(partition)
        if entry is not None and (
            coordinator_epoch is None or entry.coordinator_epoch <= coordinator_epoch
        ):
            del self._cache[partition]

    def is_loading(self) -> bool:
        return bool(self._loading)

    def owned_partitions(self) -> dict[int, int]:
        return {p: e.coordinator_epoch for p, e in self._cache.items()}

    # -- lookups ------------------------------------------------------------------------------

    def get_transaction_state(
        self, transactional_id: str
    ) -> ErrorCode | CoordinatorEpochAndTxnMetadata | None:
        """The cached state of an id, None if unknown, or the error to answer."""
        partition = self.partition_for(transactional_id)
        if partition in self._loading:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        entry = self._cache.get(partition)
        if entry is None:
            return ErrorCode.NOT_COORDINATOR
        metadata = entry.metadata_per_transactional_id.get(transactional_id)
        if metadata is None:
            return None
        return CoordinatorEpochAndTxnMetadata(entry.coordinator_epoch, metadata)

    def put_transaction_state_if_not_exists(
        self, metadata: TransactionMetadata
    ) -> ErrorCode | CoordinatorEpochAndTxnMetadata:
        partition = self.partition_for(metadata.transactional_id)
        if partition in self._loading:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        entry = self._cache.get(partition)
        if entry is None:
            return ErrorCode.NOT_COORDINATOR
        existing = entry.metadata_per_transactional_id.setdefault(
            metadata.transactional_id, metadata
        )
        return CoordinatorEpochAndTxnMetadata(entry.coordinator_epoch, existing)

    def all_transactions(self) -> Iterator[TransactionMetadata]:
        for entry in self._cache.values():
            yield from entry.metadata_per_transactional_id.values()

    def timed_out_transactions(self) -> list[TransactionalIdAndProducerIdEpoch]:
        """Ongoing transactions past their timeout, best effort (re-checked when aborting)."""
        now = self._time_ms()
        return [
            TransactionalIdAndProducerIdEpoch(m.transactional_id, m.producer_id, m.producer_epoch)
            for m in self.all_transactions()
            if not m.pending_transition_in_progress
            and m.state == TransactionState.ONGOING
            and m.txn_start_timestamp + m.txn_timeout_ms < now
        ]

    # -- writes -------------------------------------------------------------------------------

    async def append_transaction_to_log(
        self,
        transactional_id: str,
        coordinator_epoch: int,
        new_metadata: TxnTransitMetadata,
        retry_on_error: Callable[[ErrorCode], bool] = lambda _error: False,
    ) -> ErrorCode:
        """Persist a prepared transition and apply it; the error for the caller otherwise."""
        partition = self.partition_for(transactional_id)
        record = transit_record(
            transactional_id,
            new_metadata,
            value_version(self.config.transaction_version_level),
        )
        error = coordinator_error(
            await self._appender.append(partition, coordinator_epoch, [record])
        )
        current = self.get_transaction_state(transactional_id)
        if error == ErrorCode.NONE:
            if isinstance(current, ErrorCode):
                return current
            if current is None or current.coordinator_epoch != coordinator_epoch:
                # The partition moved away (and maybe back) during the append: the client must
                # find the coordinator again.
                return ErrorCode.NOT_COORDINATOR
            current.transaction_metadata.complete_transition_to(new_metadata)
            return ErrorCode.NONE
        if (
            isinstance(current, CoordinatorEpochAndTxnMetadata)
            and current.coordinator_epoch == coordinator_epoch
            and not retry_on_error(error)
        ):
            current.transaction_metadata.pending_state = None
        log.info(
            "appending %s's transition to %s failed: %s",
            transactional_id,
            new_metadata.txn_state.name,
            error.name,
        )
        return error

    async def remove_expired_transactional_ids(self) -> list[str]:
        """Tombstone the ids idle for ``transactional.id.expiration.ms`` (in an expirable
        state, nothing pending) and drop them from the cache; the ids removed."""
        now = self._time_ms()
        removed: list[str] = []
        for partition, entry in list(self._cache.items()):
            expired: list[tuple[TransactionMetadata, TxnTransitMetadata]] = []
            for metadata in entry.metadata_per_transactional_id.values():
                if metadata.pending_state is None and self._should_expire(metadata, now):
                    expired.append((metadata, metadata.prepare_dead()))
            if not expired:
                continue
            records = [tombstone(m.transactional_id) for m, _ in expired]
            error = await self._appender.append(partition, entry.coordinator_epoch, records)
            removed.extend(self._finish_expiration(partition, entry, expired, error))
        return removed

    def _should_expire(self, metadata: TransactionMetadata, now: int) -> bool:
        return (
            metadata.state.is_expiration_allowed
            and metadata.txn_last_update_timestamp
            <= now - self.config.transactional_id_expiration_ms
        )

    def _finish_expiration(
        self,
        partition: int,
        entry: TxnMetadataCacheEntry,
        expired: list[tuple[TransactionMetadata, TxnTransitMetadata]],
        error: ErrorCode,
    ) -> list[str]:
        removed: list[str] = []
        still_owned = self._cache.get(partition) is entry
        for metadata, transit in expired:
            ids = entry.metadata_per_transactional_id
            if (
                error == ErrorCode.NONE
                and still_owned
                and ids.get(metadata.transactional_id) is metadata
                and metadata.pending_state == TransactionState.DEAD
                and metadata.producer_epoch == transit.producer_epoch
            ):
                del ids[metadata.transactional_id]
                removed.append(metadata.transactional_id)
            else:
                if error != ErrorCode.NONE:
                    log.warning(
                        "tombstoning expired transactional id %s failed: %s",
                        metadata.transactional_id,
                        error.name,
                    )
                metadata.pending_state = None
        return removed
