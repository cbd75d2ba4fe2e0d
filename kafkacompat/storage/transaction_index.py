"""The aborted-transaction index of a segment: ``<20-digit base offset>.txnindex`` (Kafka's
``TransactionIndex`` and ``AbortedTxn``, in Kafka's file format).

Theory of operation.  When an ABORT marker closes a transaction that wrote data here, the
segment the marker is appended to gets one entry; a read_committed fetch asks the segments from
the one holding its fetch offset onwards which aborted transactions overlap the records it
returns (:meth:`TransactionIndex.collect_aborted_txns`), and the consumer drops their records.

Each entry is 34 bytes, big-endian, the file nothing but entries::

    version             int16   0
    producer id         int64
    first offset        int64   the transaction's first offset in this partition
    last offset         int64   the ABORT marker's offset
    last stable offset  int64   the last stable offset once the marker was written

Entries are in increasing last offset (markers are appended in offset order).  The file is
created by the first entry, as Kafka's is: most segments never see an aborted transaction and
have none.  The entries are read once and kept; they are few.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, NamedTuple

from kafkacompat.storage import disk_io

TXN_INDEX_SUFFIX: Final = ".txnindex"
ABORTED_TXN: Final = struct.Struct(">hqqqq")
ABORTED_TXN_SIZE: Final = ABORTED_TXN.size  # 34
CURRENT_ABORTED_TXN_VERSION: Final = 0


class CorruptTxnIndexError(Exception):
    """A ``.txnindex`` that cannot be trusted (Kafka's CorruptIndexException); it is rebuilt."""


class AbortedTxn(NamedTuple):
    """One entry (Kafka's ``AbortedTxn``)."""

    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int

    def encode(self) -> bytes:
        return ABORTED_TXN.pack(CURRENT_ABORTED_TXN_VERSION, *self)


def _last_offset(entry: AbortedTxn) -> int:
    return entry.last_offset


def decode_aborted_txns(data: bytes) -> list[AbortedTxn]:
    if len(data) % ABORTED_TXN_SIZE:
        raise CorruptTxnIndexError(
            f"{len(data)} bytes is not a whole number of {ABORTED_TXN_SIZE}-byte entries"
        )
    found = []
    for version, *fields in ABORTED_TXN.iter_unpack(data):
        if version != CURRENT_ABORTED_TXN_VERSION:
            raise CorruptTxnIndexError(f"unknown aborted transaction version {version}")
        found.append(AbortedTxn(*fields))
    return found


@dataclass(frozen=True, slots=True)
class TxnIndexSearchResult:
    """Kafka's ``TxnIndexSearchResult``: ``is_complete`` when an entry's last stable offset
    reaches the upper bound, so no later segment can hold a transaction overlapping it."""

    aborted: list[AbortedTxn]
    is_complete: bool


class TransactionIndex:
    """One segment's aborted transactions; ``path`` None keeps them in memory (memory engine)."""

    def __init__(self, path: str | None, start_offset: int) -> None:
        self.path = path
        self.start_offset = start_offset
        self._entries: list[AbortedTxn] | None = None if path is not None else []
        self.dirty = False

    def _loaded(self) -> list[AbortedTxn]:
        entries = self._entries
        if entries is None:
            assert self.path is not None
            try:
                with open(self.path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                data = b""
            entries = self._entries = decode_aborted_txns(data)
        return entries

    @property
    def entries(self) -> list[AbortedTxn]:
        return list(self._loaded())

    @property
    def last_offset(self) -> int | None:
        entries = self._loaded()
        return entries[-1].last_offset if entries else None

    def append(self, aborted: AbortedTxn) -> None:
        entries = self._loaded()
        if entries and entries[-1].last_offset >= aborted.last_offset:
            raise ValueError(
                f"the last offset of appended transactions must increase: {aborted.last_offset} "
                f"is not above {entries[-1].last_offset} in {self.path}"
            )
        if self.path is not None:
            with open(self.path, "ab") as f:
                f.write(aborted.encode())
            self.dirty = True
        entries.append(aborted)

    def _rewrite(self, entries: list[AbortedTxn]) -> None:
        if self.path is not None:
            if entries:
                with open(self.path, "r+b") as f:
                    f.truncate(len(entries) * ABORTED_TXN_SIZE)
                self.dirty = True
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        self._entries = entries

    def truncate_to(self, offset: int) -> None:
        """Drop the entries whose marker is at or after ``offset`` (Kafka's ``truncateTo``)."""
        entries = self._loaded()
        kept = [e for e in entries if e.last_offset < offset]
        if len(kept) != len(entries):
            self._rewrite(kept)

    def reset(self) -> None:
        self._rewrite([])

    def collect_aborted_txns(
        self, fetch_offset: int, upper_bound_offset: int
    ) -> TxnIndexSearchResult:
        """Entries overlapping [fetch_offset, upper_bound_offset) (Kafka's ``collectAbortedTxns``)."""
        found = []
        entries = self._loaded()
        # Entries before the first ending at or after the fetch offset cannot overlap it, nor
        # can any entry after one whose last stable offset reaches the bound; skipping them
        # keeps a read_committed fetch from walking the whole segment's history.
        first = bisect.bisect_left(entries, fetch_offset, key=_last_offset)
        for aborted in itertools.islice(entries, first, None):
            if aborted.last_offset >= fetch_offset and aborted.first_offset < upper_bound_offset:
                found.append(aborted)
            if aborted.last_stable_offset >= upper_bound_offset:
                return TxnIndexSearchResult(found, True)
        return TxnIndexSearchResult(found, False)

    def flush(self) -> None:
        if self.dirty and self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    disk_io.fsync(fd)
                finally:
                    os.close(fd)
            self.dirty = False

    def delete(self) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self._entries = [] if self.path is None else None

    def renamed(self, suffix: str) -> str | None:
        """Give the file ``suffix`` (a deferred delete); its new path, None with no file."""
        if self.path is None:
            return None
        target = self.path + suffix
        try:
            os.replace(self.path, target)
        except FileNotFoundError:
            return None
        self._entries = []
        return target


def write_txn_index(path: str, entries: Iterable[AbortedTxn]) -> None:
    """A whole index file, fsync'd (a cleaned segment's, before its swap)."""
    with open(path, "wb") as f:
        f.write(b"".join(entry.encode() for entry in entries))
        f.flush()
        disk_io.fsync(f.fileno())


def collect_aborted_txns(
    indexes: Iterable[TransactionIndex], fetch_offset: int, upper_bound_offset: int
) -> list[AbortedTxn]:
    """Across consecutive segments from the one holding ``fetch_offset`` (Kafka's
    ``UnifiedLog.collectAbortedTransactions``): stop at the first complete answer."""
    found: list[AbortedTxn] = []
    for index in indexes:
        result = index.collect_aborted_txns(fetch_offset, upper_bound_offset)
        found += result.aborted
        if result.is_complete:
            break
    return found
