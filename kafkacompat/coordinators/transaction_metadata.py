"""A transactional id's state at the transaction coordinator (Kafka's ``TransactionMetadata``).

Theory of operation. Every change of a transactional id's state is first *prepared*: a
``prepare*`` method checks that the move is legal, marks the metadata with a pending state and
returns a :class:`TxnTransitMetadata` describing the state to persist in
``__transaction_state``; the metadata itself is not changed.  Once the record is appended,
:meth:`TransactionMetadata.complete_transition_to` applies it; if the append fails, the
coordinator clears the pending state instead.  While a state is pending, requests that would
move the id again are answered CONCURRENT_TRANSACTIONS by the coordinator, so at most one
record per id is in flight and the cached state is always one the log holds.

A prepare that is illegal for the current state raises :class:`IllegalTransactionStateError`
(Kafka's IllegalStateException): the coordinator checks the state first, so reaching one is a
bug, not a client error.

Transaction versions (KIP-890): with ``client_transaction_version >= 2`` every EndTxn bumps the
producer epoch, and when that would exhaust the epochs a new producer id is chosen in advance
(``next_producer_id``) and taken over when the transaction completes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final, NoReturn

from kafkacompat.records.batch import NO_PRODUCER_EPOCH, NO_PRODUCER_ID

TopicPartition = tuple[str, int]

MAX_PRODUCER_EPOCH: Final = 32767  # Short.MAX_VALUE
TV_2: Final = 2  # the first transaction version that bumps the epoch on every EndTxn


class IllegalTransactionStateError(Exception):
    """A transition the coordinator should never have attempted (a bug, not a client error)."""


class TransactionState(IntEnum):
    """The states of a transactional id; the values are the ``TransactionStatus`` ids of
    ``TransactionLogValue``."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def state_name(self) -> str:
        """The name DescribeTransactions and ListTransactions report (Kafka's ``name``)."""
        return _NAMES[self]

    @property
    def valid_previous_states(self) -> frozenset[TransactionState]:
        return _VALID_PREVIOUS[self]

    @property
    def is_expiration_allowed(self) -> bool:
        """Whether the id may expire after ``transactional.id.expiration.ms`` in this state."""
        return self in _EXPIRABLE

    @classmethod
    def from_name(cls, name: str) -> TransactionState | None:
        return _BY_NAME.get(name)


_S = TransactionState
_NAMES: Final = {
    _S.EMPTY: "Empty",
    _S.ONGOING: "Ongoing",
    _S.PREPARE_COMMIT: "PrepareCommit",
    _S.PREPARE_ABORT: "PrepareAbort",
    _S.COMPLETE_COMMIT: "CompleteCommit",
    _S.COMPLETE_ABORT: "CompleteAbort",
    _S.DEAD: "Dead",
    _S.PREPARE_EPOCH_FENCE: "PrepareEpochFence",
}
_BY_NAME: Final = {name: state for state, name in _NAMES.items()}
_VALID_PREVIOUS: Final = {
    _S.EMPTY: frozenset({_S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT}),
    _S.ONGOING: frozenset({_S.ONGOING, _S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT}),
    _S.PREPARE_COMMIT: frozenset({_S.ONGOING}),
    _S.PREPARE_ABORT: frozenset({_S.ONGOING, _S.PREPARE_EPOCH_FENCE}),
    _S.COMPLETE_COMMIT: frozenset({_S.PREPARE_COMMIT}),
    _S.COMPLETE_ABORT: frozenset({_S.PREPARE_ABORT}),
    _S.DEAD: frozenset({_S.EMPTY, _S.COMPLETE_ABORT, _S.COMPLETE_COMMIT}),
    _S.PREPARE_EPOCH_FENCE: frozenset({_S.ONGOING}),
}
_EXPIRABLE: Final = frozenset({_S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT})


def is_epoch_exhausted(producer_epoch: int) -> bool:
    # The last epoch is kept back so that the coordinator can always fence a producer once more.
    return producer_epoch >= MAX_PRODUCER_EPOCH - 1


@dataclass(frozen=True, slots=True)
class TxnTransitMetadata:
    """The state a prepared transition persists (and then applies)."""

    producer_id: int
    prev_producer_id: int
    next_producer_id: int
    producer_epoch: int
    last_producer_epoch: int
    txn_timeout_ms: int
    txn_state: TransactionState
    topic_partitions: frozenset[TopicPartition]
    txn_start_timestamp: int
    txn_last_update_timestamp: int
    client_transaction_version: int


@dataclass(slots=True, eq=False)
class TransactionMetadata:
    """One transactional id's cached state, and its pending transition if any."""

    transactional_id: str
    producer_id: int
    previous_producer_id: int = NO_PRODUCER_ID
    next_producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH
    last_producer_epoch: int = NO_PRODUCER_EPOCH
    txn_timeout_ms: int = 60_000
    state: TransactionState = TransactionState.EMPTY
    topic_partitions: set[TopicPartition] = field(default_factory=set)
    txn_start_timestamp: int = -1
    txn_last_update_timestamp: int = -1
    client_transaction_version: int = 0
    pending_state: TransactionState | None = None
    # A fence whose record failed to append already bumped the epoch once; fencing again
    # reuses that epoch, which was never returned to any client.
    has_failed_epoch_fence: bool = False

    @property
    def pending_transition_in_progress(self) -> bool:
        return self.pending_state is not None

    @property
    def is_producer_epoch_exhausted(self) -> bool:
        return is_epoch_exhausted(self.producer_epoch)

    @property
    def supports_epoch_bump(self) -> bool:
        return self.client_transaction_version >= TV_2

    def has_pending_transaction(self) -> bool:
        return self.state in (_S.ONGOING, _S.PREPARE_ABORT, _S.PREPARE_COMMIT)

    def remove_partition(self, topic_partition: TopicPartition) -> None:
        """Drop a partition whose marker is written (only while preparing to commit/abort)."""
        if self.state not in (_S.PREPARE_COMMIT, _S.PREPARE_ABORT):
            raise IllegalTransactionStateError(
                f"removing a marked partition of {self.transactional_id!r} in state {self.state.name}"
            )
        self.topic_partitions.discard(topic_partition)

    # -- prepare ------------------------------------------------------------------------------

    def prepare_no_transit(self) -> TxnTransitMetadata:
        """The current state as a transit, without marking anything pending."""
        return self._transit(
            self.state,
            self.producer_id,
            self.producer_epoch,
            self.last_producer_epoch,
            self.txn_timeout_ms,
            frozenset(self.topic_partitions),
            self.txn_start_timestamp,
            self.txn_last_update_timestamp,
        )

    def prepare_fence_producer_epoch(self) -> TxnTransitMetadata:
        if self.producer_epoch == MAX_PRODUCER_EPOCH:
            raise IllegalTransactionStateError("cannot fence a producer at the maximum epoch")
        bumped = self.producer_epoch if self.has_failed_epoch_fence else self.producer_epoch + 1
        return self.prepare_transition_to(
            _S.PREPARE_EPOCH_FENCE,
            self.producer_id,
            bumped,
            NO_PRODUCER_EPOCH,
            self.txn_timeout_ms,
            frozenset(self.topic_partitions),
            self.txn_start_timestamp,
            self.txn_last_update_timestamp,
        )

    def prepare_increment_producer_epoch(
        self, new_txn_timeout_ms: int, expected_producer_epoch: int | None, update_timestamp: int
    ) -> TxnTransitMetadata | None:
        """The epoch bump of InitProducerId; None means the caller is fenced (PRODUCER_FENCED)."""
        if self.is_producer_epoch_exhausted:
            raise IllegalTransactionStateError(
                f"no producer epochs left for producer id {self.producer_id}"
            )
        bumped = self.producer_epoch + 1
        if expected_producer_epoch is None:
            # A new producer instance: nothing to recover, so no last epoch to remember.
            epoch, last_epoch = bumped, NO_PRODUCER_EPOCH
        elif (
            self.producer_epoch == NO_PRODUCER_EPOCH
            or expected_producer_epoch == self.producer_epoch
        ):
            # KIP-360: the current producer recovers after an error.
            epoch, last_epoch = bumped, self.producer_epoch
        elif expected_producer_epoch == self.last_producer_epoch:
            # A retry of a bump that succeeded but whose response was lost: answer it again.
            epoch, last_epoch = self.producer_epoch, self.last_producer_epoch
        else:
            return None
        return self.prepare_transition_to(
            _S.EMPTY,
            self.producer_id,
            epoch,
            last_epoch,
            new_txn_timeout_ms,
            frozenset(),
            -1,
            update_timestamp,
        )

    def prepare_producer_id_rotation(
        self,
        new_producer_id: int,
        new_txn_timeout_ms: int,
        update_timestamp: int,
        record_last_epoch: bool,
    ) -> TxnTransitMetadata:
        if self.has_pending_transaction():
            raise IllegalTransactionStateError(
                "cannot rotate the producer id while a transaction is open"
            )
        return self.prepare_transition_to(
            _S.EMPTY,
            new_producer_id,
            0,
            self.producer_epoch if record_last_epoch else NO_PRODUCER_EPOCH,
            new_txn_timeout_ms,
            frozenset(),
            -1,
            update_timestamp,
        )

    def prepare_add_partitions(
        self, added: frozenset[TopicPartition] | set[TopicPartition], update_timestamp: int
    ) -> TxnTransitMetadata:
        # The transaction starts with its first partition.
        start = (
            update_timestamp
            if self.state in (_S.EMPTY, _S.COMPLETE_ABORT, _S.COMPLETE_COMMIT)
            else self.txn_start_timestamp
        )
        return self.prepare_transition_to(
            _S.ONGOING,
            self.producer_id,
            self.producer_epoch,
            self.last_producer_epoch,
            self.txn_timeout_ms,
            frozenset(self.topic_partitions | set(added)),
            start,
            update_timestamp,
        )

    def prepare_abort_or_commit(
        self,
        new_state: TransactionState,
        client_transaction_version: int,
        next_producer_id: int,
        update_timestamp: int,
    ) -> TxnTransitMetadata:
        if client_transaction_version >= TV_2:
            # The caller made sure the epoch cannot overflow (a new producer id otherwise).
            epoch, last_epoch = self.producer_epoch + 1, self.producer_epoch
        else:
            epoch, last_epoch = self.producer_epoch, self.last_producer_epoch
        return self.prepare_transition_to(
            new_state,
            self.producer_id,
            epoch,
            last_epoch,
            self.txn_timeout_ms,
            frozenset(self.topic_partitions),
            self.txn_start_timestamp,
            update_timestamp,
            next_producer_id=next_producer_id,
            client_transaction_version=client_transaction_version,
        )

    def prepare_complete(self, update_timestamp: int) -> TxnTransitMetadata:
        new_state = _S.COMPLETE_COMMIT if self.state == _S.PREPARE_COMMIT else _S.COMPLETE_ABORT
        # The Prepare record was appended, so a failed fence before it no longer matters.
        self.has_failed_epoch_fence = False
        if self.supports_epoch_bump and self.next_producer_id != NO_PRODUCER_ID:
            # The epoch overflowed at EndTxn: the markers are written, so switch ids now.
            producer_id, epoch = self.next_producer_id, 0
        else:
            producer_id, epoch = self.producer_id, self.producer_epoch
        return self.prepare_transition_to(
            new_state,
            producer_id,
            epoch,
            self.producer_epoch,
            self.txn_timeout_ms,
            frozenset(),
            self.txn_start_timestamp,
            update_timestamp,
            client_transaction_version=self.client_transaction_version,
        )

    def prepare_dead(self) -> TxnTransitMetadata:
        return self.prepare_transition_to(
            _S.DEAD,
            self.producer_id,
            self.producer_epoch,
            self.last_producer_epoch,
            self.txn_timeout_ms,
            frozenset(),
            self.txn_start_timestamp,
            self.txn_last_update_timestamp,
        )

    def prepare_transition_to(
        self,
        new_state: TransactionState,
        producer_id: int,
        producer_epoch: int,
        last_producer_epoch: int,
        txn_timeout_ms: int,
        topic_partitions: frozenset[TopicPartition],
        txn_start_timestamp: int,
        update_timestamp: int,
        *,
        next_producer_id: int = NO_PRODUCER_ID,
        client_transaction_version: int = 0,
    ) -> TxnTransitMetadata:
        if self.pending_state is not None:
            raise IllegalTransactionStateError(
                f"{self.transactional_id!r}: preparing {new_state.name} while "
                f"{self.pending_state.name} is pending"
            )
        if producer_id < 0:
            raise ValueError(f"illegal producer id {producer_id}")
        # A new id's epoch stays -1 until its first bump, which may never come before Dead.
        if new_state != _S.DEAD and producer_epoch < 0:
            raise ValueError(f"illegal producer epoch {producer_epoch}")
        if self.state not in new_state.valid_previous_states:
            raise IllegalTransactionStateError(
                f"{self.transactional_id!r}: {new_state.name} cannot follow {self.state.name}"
            )
        transit = self._transit(
            new_state,
            producer_id,
            producer_epoch,
            last_producer_epoch,
            txn_timeout_ms,
            topic_partitions,
            txn_start_timestamp,
            update_timestamp,
            next_producer_id=next_producer_id,
            client_transaction_version=client_transaction_version,
        )
        self.pending_state = new_state
        return transit

    def _transit(
        self,
        state: TransactionState,
        producer_id: int,
        producer_epoch: int,
        last_producer_epoch: int,
        txn_timeout_ms: int,
        topic_partitions: frozenset[TopicPartition],
        txn_start_timestamp: int,
        update_timestamp: int,
        *,
        next_producer_id: int = NO_PRODUCER_ID,
        client_transaction_version: int = 0,
    ) -> TxnTransitMetadata:
        return TxnTransitMetadata(
            producer_id=producer_id,
            prev_producer_id=self.producer_id,
            next_producer_id=next_producer_id,
            producer_epoch=producer_epoch,
            last_producer_epoch=last_producer_epoch,
            txn_timeout_ms=txn_timeout_ms,
            txn_state=state,
            topic_partitions=topic_partitions,
            txn_start_timestamp=txn_start_timestamp,
            txn_last_update_timestamp=update_timestamp,
            client_transaction_version=client_transaction_version,
        )

    # -- complete -----------------------------------------------------------------------------

    def complete_transition_to(self, transit: TxnTransitMetadata) -> None:
        """Apply a transit whose record is in the log; checks it is the one prepared."""
        to_state = self.pending_state
        if to_state is None:
            raise IllegalTransactionStateError(
                f"{self.transactional_id!r}: completing a transition that was never prepared"
            )
        if to_state != transit.txn_state:
            self._fail(transit)
        if to_state == _S.EMPTY:  # InitProducerId
            if (
                (
                    self.producer_epoch != transit.producer_epoch
                    and not self._valid_epoch_bump(transit)
                )
                or transit.topic_partitions
                or transit.txn_start_timestamp != -1
            ):
                self._fail(transit)
            self.txn_timeout_ms = transit.txn_timeout_ms
            self.producer_epoch = transit.producer_epoch
            self.last_producer_epoch = transit.last_producer_epoch
            self.producer_id = transit.producer_id
            self.previous_producer_id = transit.prev_producer_id
        elif to_state == _S.ONGOING:  # AddPartitionsToTxn
            if (
                not self._valid_producer_epoch(transit)
                or not self.topic_partitions <= transit.topic_partitions
                or self.txn_timeout_ms != transit.txn_timeout_ms
            ):
                self._fail(transit)
            self.txn_start_timestamp = transit.txn_start_timestamp
            self.topic_partitions |= transit.topic_partitions
        elif to_state in (_S.PREPARE_ABORT, _S.PREPARE_COMMIT):  # EndTxn
            if (
                not self._valid_producer_epoch(transit)
                or self.topic_partitions != transit.topic_partitions
                or self.txn_timeout_ms != transit.txn_timeout_ms
                or self.txn_start_timestamp != transit.txn_start_timestamp
            ):
                self._fail(transit)
            if transit.client_transaction_version >= TV_2:
                self.producer_epoch = transit.producer_epoch
                self.last_producer_epoch = transit.last_producer_epoch
                self.next_producer_id = transit.next_producer_id
        elif to_state in (_S.COMPLETE_ABORT, _S.COMPLETE_COMMIT):  # markers written
            if (
                not self._valid_producer_epoch(transit)
                or self.txn_timeout_ms != transit.txn_timeout_ms
                or transit.txn_start_timestamp == -1
            ):
                self._fail(transit)
            self.txn_start_timestamp = transit.txn_start_timestamp
            self.topic_partitions.clear()
            if transit.client_transaction_version >= TV_2:
                self.producer_epoch = transit.producer_epoch
                self.last_producer_epoch = transit.last_producer_epoch
                self.previous_producer_id = transit.prev_producer_id
                self.producer_id = transit.producer_id
                self.next_producer_id = transit.next_producer_id
        elif to_state == _S.PREPARE_EPOCH_FENCE:
            # A fence is always turned into PrepareAbort before anything is appended.
            self._fail(transit)
        else:
            # Dead ends in removal from the cache, never in a cached Dead state.
            raise IllegalTransactionStateError(
                f"{self.transactional_id!r}: a Dead transition is completed by removal"
            )
        self.client_transaction_version = transit.client_transaction_version
        self.txn_last_update_timestamp = transit.txn_last_update_timestamp
        self.pending_state = None
        self.state = to_state

    def _valid_producer_epoch(self, transit: TxnTransitMetadata) -> bool:
        tv2 = transit.client_transaction_version >= TV_2
        completing = transit.txn_state in (_S.COMPLETE_COMMIT, _S.COMPLETE_ABORT)
        overflow_complete = tv2 and completing and transit.producer_epoch == 0
        preparing = transit.txn_state in (_S.PREPARE_COMMIT, _S.PREPARE_ABORT)
        # Under TV2 the Prepare and an overflowing Complete carry the *next* epoch (and id):
        # what must match the cache is the epoch they started from.
        epoch = (
            transit.last_producer_epoch
            if overflow_complete or (tv2 and preparing)
            else transit.producer_epoch
        )
        producer_id = transit.prev_producer_id if overflow_complete else transit.producer_id
        return epoch == self.producer_epoch and producer_id == self.producer_id

    def _valid_epoch_bump(self, transit: TxnTransitMetadata) -> bool:
        return transit.producer_epoch == self.producer_epoch + 1 or (
            transit.producer_epoch == 0 and transit.producer_id != self.producer_id
        )

    def _fail(self, transit: TxnTransitMetadata) -> NoReturn:
        raise IllegalTransactionStateError(
            f"{self.transactional_id!r} in {self.state.name} cannot complete {transit}"
        )
