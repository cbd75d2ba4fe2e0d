"""Kafka's checkpoint files (``CheckpointFile``): a version line, an entry count, one entry a line.

Two entry formats, as in Kafka:

* ``OffsetCheckpointFile``, ``topic partition offset`` per line, in the data directory:
  ``recovery-point-offset-checkpoint`` (offset below which all is fsync'd),
  ``log-start-offset-checkpoint`` (first readable offset), ``replication-offset-checkpoint``
  (high watermark) and ``cleaner-offset-checkpoint`` (the log cleaner's first dirty offset);
* ``LeaderEpochCheckpointFile``, ``epoch startOffset`` per line, in each partition directory:
  ``leader-epoch-checkpoint``.

Every write goes through :func:`kafkacompat.storage.atomic_file.atomic_write`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from kafkacompat.storage.atomic_file import CorruptFileError, atomic_write, read_text
from kafkacompat.storage.partition_dir import TopicPartition

RECOVERY_POINT_CHECKPOINT: Final = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT: Final = "log-start-offset-checkpoint"
REPLICATION_OFFSET_CHECKPOINT: Final = "replication-offset-checkpoint"
LEADER_EPOCH_CHECKPOINT: Final = "leader-epoch-checkpoint"
CLEANER_OFFSET_CHECKPOINT: Final = "cleaner-offset-checkpoint"

CHECKPOINT_VERSION: Final = 0


def format_checkpoint(offsets: Mapping[TopicPartition, int]) -> bytes:
    """Kafka's ``CheckpointFile`` format: version, entry count, then ``topic partition offset``."""
    lines = [str(CHECKPOINT_VERSION), str(len(offsets))]
    lines.extend(f"{topic} {partition} {offset}" for (topic, partition), offset in offsets.items())
    return ("\n".join(lines) + "\n").encode("utf-8")


def write_checkpoint(path: Path, offsets: Mapping[TopicPartition, int]) -> None:
    atomic_write(path, format_checkpoint(offsets))


def _checkpoint_entries(path: Path | str, text: str) -> list[str]:
    """The entry lines of a Kafka ``CheckpointFile`` after checking its version and count."""
    lines = text.splitlines()
    if len(lines) < 2:
        raise CorruptFileError(path, "checkpoint needs a version line and a count line")
    if lines[0].strip() != str(CHECKPOINT_VERSION):
        raise CorruptFileError(path, f"unsupported checkpoint version {lines[0]!r}")
    try:
        count = int(lines[1])
    except ValueError:
        raise CorruptFileError(path, f"entry count {lines[1]!r} is not a number") from None
    entries = [line for line in lines[2:] if line.strip()]
    if count != len(entries):
        raise CorruptFileError(path, f"expected {count} entries, found {len(entries)}")
    return entries


def parse_checkpoint(path: Path, text: str) -> dict[TopicPartition, int]:
    offsets: dict[TopicPartition, int] = {}
    for number, line in enumerate(_checkpoint_entries(path, text), 3):
        parts = line.split()
        try:
            topic, partition, offset = parts[0], int(parts[1]), int(parts[2])
        except (ValueError, IndexError):
            raise CorruptFileError(path, f"line {number} is not 'topic partition offset'") from None
        if len(parts) != 3 or partition < 0:
            raise CorruptFileError(path, f"line {number} is not 'topic partition offset'")
        offsets[(topic, partition)] = offset
    return offsets


def read_checkpoint(path: Path) -> dict[TopicPartition, int]:
    """The checkpoint's offsets; an absent file is empty (first start, or never checkpointed)."""
    if not path.exists():
        return {}
    return parse_checkpoint(path, read_text(path))


# -- leader-epoch-checkpoint -----------------------------------------------------------------


def format_leader_epoch_checkpoint(entries: Iterable[tuple[int, int]]) -> bytes:
    """Kafka's ``LeaderEpochCheckpointFile``: version 0, entry count, ``epoch startOffset`` lines."""
    listed = list(entries)
    lines = [str(CHECKPOINT_VERSION), str(len(listed))]
    lines.extend(f"{epoch} {start_offset}" for epoch, start_offset in listed)
    return ("\n".join(lines) + "\n").encode("ascii")


def write_leader_epoch_checkpoint(path: Path | str, entries: Iterable[tuple[int, int]]) -> None:
    atomic_write(Path(path), format_leader_epoch_checkpoint(entries))


def parse_leader_epoch_checkpoint(path: Path | str, text: str) -> list[tuple[int, int]]:
    entries: list[tuple[int, int]] = []
    if not text:
        return entries  # Kafka creates the file empty and reads an empty file as no entries
    for number, line in enumerate(_checkpoint_entries(path, text), 3):
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            epoch, start_offset = int(parts[0]), int(parts[1])
        except ValueError:
            raise CorruptFileError(path, f"line {number} is not 'epoch startOffset'") from None
        entries.append((epoch, start_offset))
    return entries


def read_leader_epoch_checkpoint(path: Path | str) -> list[tuple[int, int]] | None:
    """The entries, oldest first; None when the file is absent (a log older than the file).
    Read by every partition at start-up, hence a plain ``open`` of a ``str`` path."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        return parse_leader_epoch_checkpoint(path, text.decode("ascii"))
    except UnicodeDecodeError:
        raise CorruptFileError(path, "not ASCII") from None
