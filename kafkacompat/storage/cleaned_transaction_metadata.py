"""What the log cleaner knows about transactions as it walks a log (Kafka's
``CleanedTransactionMetadata`` in ``LogCleaner.scala``).

The cleaner reads batches in offset order. Before the walk it is given the aborted transactions
(from the ``.txnindex`` files) that overlap the range it walks; each becomes *ongoing* once the
walk reaches its first offset, and stops being so at its ABORT marker. Meanwhile:

- a transactional data batch of a producer with an ongoing aborted transaction belongs to it
  and is discarded; any other transactional batch belongs to a committed transaction (the
  range walked is below the last stable offset, so every transaction in it is complete);
- an ABORT marker is kept while the walk met data of its transaction (that data goes in this
  round, but a reader of the segments written before the swap may still need the marker), and
  then its transaction goes into the cleaned segment's aborted-transaction index; once a
  round meets none, the marker may be discarded;
- a COMMIT marker may be discarded once a round meets no batch of its transaction;
- a control batch with no records was emptied by an earlier round and may be discarded.

"May be discarded" is not "is discarded": the cleaner first stamps the marker's batch with a
delete horizon, and drops it only in a round after that (KIP-534, as for tombstones), so a
consumer that read the transaction's data before it was cleaned still sees its marker.
"""

from __future__ import annotations

import heapq

from kafkacompat.records.control import ControlRecordType
from kafkacompat.storage.transaction_index import AbortedTxn


class CleanedTransactionMetadata:
    """One walk's transaction state (Kafka's ``CleanedTransactionMetadata``)."""

    __slots__ = ("_aborted", "_ongoing_aborted", "_ongoing_committed", "cleaned_index")

    def __init__(self, aborted_txns: list[AbortedTxn] | None = None) -> None:
        # A min-heap by first offset: entries become ongoing in the order the walk reaches them.
        self._aborted: list[tuple[int, int, AbortedTxn]] = []
        # producer id -> (its ongoing aborted transaction, whether the walk met its data)
        self._ongoing_aborted: dict[int, tuple[AbortedTxn, bool]] = {}
        self._ongoing_committed: set[int] = set()
        self.cleaned_index: list[AbortedTxn] | None = None
        """Where kept ABORT markers' transactions go: the cleaned segment being written."""
        if aborted_txns:
            self.add_aborted_transactions(aborted_txns)

    def add_aborted_transactions(self, aborted_txns: list[AbortedTxn]) -> None:
        for i, aborted in enumerate(aborted_txns, len(self._aborted)):
            heapq.heappush(self._aborted, (aborted.first_offset, i, aborted))

    def _consume_aborted_txns_up_to(self, offset: int) -> None:
        pending = self._aborted
        while pending and pending[0][0] <= offset:
            aborted = heapq.heappop(pending)[2]
            # The same transaction may be listed twice (once per segment it spans): the
            # first listing, which may already have met data, stands.
            self._ongoing_aborted.setdefault(aborted.producer_id, (aborted, False))

    def on_batch_read(self, producer_id: int, last_offset: int, is_transactional: bool) -> bool:
        """A data batch read; True when it belongs to an aborted transaction (discard it)."""
        self._consume_aborted_txns_up_to(last_offset)
        if not is_transactional:
            return False
        ongoing = self._ongoing_aborted.get(producer_id)
        if ongoing is not None:
            self._ongoing_aborted[producer_id] = (ongoing[0], True)
            return True
        self._ongoing_committed.add(producer_id)
        return False

    def on_control_batch_read(
        self, producer_id: int, last_offset: int, control_type: ControlRecordType | None
    ) -> bool:
        """A control batch read (``control_type`` None: it has no records left); True when
        it may be discarded."""
        self._consume_aborted_txns_up_to(last_offset)
        if control_type is None:
            return True  # emptied by an earlier round
        if control_type == ControlRecordType.ABORT:
            ongoing = self._ongoing_aborted.pop(producer_id, None)
            if ongoing is not None and ongoing[1]:
                if self.cleaned_index is not None:
                    self.cleaned_index.append(ongoing[0])
                return False
            return True
        if control_type == ControlRecordType.COMMIT:
            if producer_id in self._ongoing_committed:
                self._ongoing_committed.discard(producer_id)
                return False
            return True
        return False
