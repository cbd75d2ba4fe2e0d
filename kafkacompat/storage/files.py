"""The small files of a Kafka data directory, written atomically and parsed strictly.

Layout (Kafka's names, so Kafka's tools and engineers recognise it)::

    <data>/meta.properties                    version, node.id, cluster.id, directory.id
    <data>/recovery-point-offset-checkpoint   per partition: offset below which all is fsync'd
    <data>/log-start-offset-checkpoint        per partition: first readable offset
    <data>/replication-offset-checkpoint      per partition: high watermark
    <data>/.kafka_cleanshutdown               present only after a clean shutdown
    <data>/<topic>-<partition>/partition.metadata   the topic id
    <data>/<topic>-<partition>/leader-epoch-checkpoint   per epoch: its first offset
    <data>/__kafkacompat_topics/<topic id>.properties   ours: topic name, partitions, overrides

Kafka keeps topic configs in its KRaft metadata log; a single broker does not need a Raft log,
so each topic is one small properties file, named by topic id because a 249-character topic
name plus a suffix would exceed the 255-byte file name limit.

Every write goes through :func:`atomic_write`: a crash leaves either the old file or the new
one, never a torn one. Every parser raises :class:`CorruptFileError` naming the file and line.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

META_PROPERTIES: Final = "meta.properties"
RECOVERY_POINT_CHECKPOINT: Final = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT: Final = "log-start-offset-checkpoint"
REPLICATION_OFFSET_CHECKPOINT: Final = "replication-offset-checkpoint"
CLEAN_SHUTDOWN_FILE: Final = ".kafka_cleanshutdown"
PARTITION_METADATA: Final = "partition.metadata"
LEADER_EPOCH_CHECKPOINT: Final = "leader-epoch-checkpoint"
CLEANER_OFFSET_CHECKPOINT: Final = "cleaner-offset-checkpoint"
TOPICS_DIR: Final = "__kafkacompat_topics"
TOPIC_FILE_SUFFIX: Final = ".properties"

CHECKPOINT_VERSION: Final = 0
META_PROPERTIES_VERSION: Final = 1  # KRaft-mode meta.properties
PARTITION_METADATA_VERSION: Final = 0
TOPIC_FILE_VERSION: Final = 0

TopicPartition = tuple[str, int]


DYNAMIC_BROKER_CONFIGS = "__kafkacompat_dynamic_broker_configs.properties"
"""Broker configs set with AlterConfigs (Kafka keeps them in its metadata log); written and
read by the DescribeConfigs/AlterConfigs handlers."""


class CorruptFileError(Exception):
    """A data-directory file that cannot be parsed; names the file so an operator can act."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)


class NodeIdMismatchError(Exception):
    """meta.properties belongs to another broker; Kafka refuses to start in this case too."""


class DataDirInUseError(Exception):
    """Another process holds the data directory's ``.lock`` (Kafka's FileLock)."""


LOCK_FILE = ".lock"


_HELD_LOCKS: dict[str, int] = {}


def lock_data_dir(directory: Path) -> None:
    """Take Kafka's exclusive lock on ``<dir>/.lock`` so two brokers never share a data dir.

    The lock is per process: the kernel drops it when the process exits, however it exits.
    A second LogManager in the same process (tests that simulate a crash by abandoning one)
    shares the lock already held."""
    key = os.path.realpath(directory)
    if key in _HELD_LOCKS:
        return
    fd = os.open(os.path.join(key, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUseError(
            f"{directory} is in use by another process (it holds {directory / LOCK_FILE})"
        ) from None
    _HELD_LOCKS[key] = fd


def unlock_data_dir(directory: Path) -> None:
    fd = _HELD_LOCKS.pop(os.path.realpath(directory), None)
    if fd is not None:
        os.close(fd)


# -- atomic writes ---------------------------------------------------------------------------


def fsync_dir(directory: Path | str) -> None:
    """Make a create/rename/unlink in ``directory`` durable (the entry lives in the directory)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old content or the new, never half.

    Write a temp file in the same directory (rename is atomic only within a filesystem), fsync
    it so the data is on disk before the name points at it, rename over, fsync the directory
    so the rename itself survives a power cut. Kafka's checkpoint files do the same.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(path, f"not UTF-8 ({exc})") from None


# -- Kafka uuids -----------------------------------------------------------------------------


def uuid_to_base64(value: uuid.UUID) -> str:
    """Kafka's ``Uuid.toString``: URL-safe base64 of the 16 bytes, no padding (22 chars)."""
    return base64.urlsafe_b64encode(value.bytes).rstrip(b"=").decode("ascii")


def uuid_from_base64(text: str) -> uuid.UUID:
    """Kafka's ``Uuid.fromString``; raises ValueError for anything but 22 base64url chars."""
    if len(text) != 22:
        raise ValueError(f"a Kafka uuid is 22 base64url characters, got {text!r}")
    try:
        raw = base64.urlsafe_b64decode(text + "==")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid Kafka uuid {text!r}: {exc}") from None
    if len(raw) != 16 or uuid_to_base64(uuid.UUID(bytes=raw)) != text:
        raise ValueError(f"invalid Kafka uuid {text!r}")
    return uuid.UUID(bytes=raw)


def random_kafka_uuid() -> uuid.UUID:
    """A random id as Kafka's ``Uuid.randomUuid`` makes them.

    Kafka skips ids whose string starts with '-' (command-line tools would read it as a flag)
    and the low reserved values (the zero id, the metadata topic id, and the directory ids
    below 100 that KIP-858 reserves).
    """
    while True:
        candidate = uuid.uuid4()
        if candidate.int >= 100 and not uuid_to_base64(candidate).startswith("-"):
            return candidate


# -- Java properties -------------------------------------------------------------------------


def _escape(text: str) -> str:
    out = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return "\\" + out if out.startswith((" ", "#", "!")) else out


def _unescape(text: str) -> str:
    out = []
    chars = iter(text)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(chars, "")
        out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
    return "".join(out)


def format_properties(props: Mapping[str, str], comment: str | None = None) -> bytes:
    """A Java properties file. No timestamp comment (Java adds one): it would need the clock."""
    lines = [f"#{comment}"] if comment else []
    for key, value in props.items():
        if any(c in key for c in "=: \n\r\\#!"):
            raise ValueError(f"property name {key!r} needs escaping this writer does not do")
        lines.append(f"{key}={_escape(value)}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def parse_properties(path: Path, text: str) -> dict[str, str]:
    """The subset of Java properties syntax Kafka's files use: ``key=value``/``key: value``,
    ``#``/``!`` comments, backslash escapes; no line continuations."""
    props: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        positions = [p for p in (line.find("="), line.find(":")) if p > 0]
        if not positions:
            raise CorruptFileError(path, f"line {number} is not key=value: {raw!r}")
        split = min(positions)
        props[line[:split].strip()] = _unescape(line[split + 1 :].strip())
    return props


def read_properties(path: Path) -> dict[str, str]:
    return parse_properties(path, _read_text(path))


# -- checkpoint files ------------------------------------------------------------------------


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
    return parse_checkpoint(path, _read_text(path))


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


# -- meta.properties -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetaProperties:
    """Identity of a data directory (KRaft ``meta.properties`` version 1)."""

    node_id: int
    cluster_id: str
    directory_id: str

    def to_props(self) -> dict[str, str]:
        return {
            "version": str(META_PROPERTIES_VERSION),
            "node.id": str(self.node_id),
            "cluster.id": self.cluster_id,
            "directory.id": self.directory_id,
        }


def write_meta_properties(directory: Path, meta: MetaProperties) -> None:
    atomic_write(directory / META_PROPERTIES, format_properties(meta.to_props(), "kafkacompat"))


def read_meta_properties(directory: Path) -> MetaProperties | None:
    """The directory's identity, or None for a fresh directory."""
    path = directory / META_PROPERTIES
    if not path.exists():
        return None
    props = read_properties(path)
    if props.get("version") != str(META_PROPERTIES_VERSION):
        raise CorruptFileError(path, f"unsupported version {props.get('version')!r}, expected 1")
    for required in ("node.id", "cluster.id"):
        if required not in props:
            raise CorruptFileError(path, f"missing {required}")
    try:
        node_id = int(props["node.id"])
    except ValueError:
        raise CorruptFileError(path, f"node.id {props['node.id']!r} is not a number") from None
    # directory.id arrived with KIP-858 (3.7); older directories get one on first start.
    directory_id = props.get("directory.id") or uuid_to_base64(random_kafka_uuid())
    return MetaProperties(node_id, props["cluster.id"], directory_id)


def ensure_meta_properties(
    directory: Path, node_id: int, cluster_id: str | None = None
) -> MetaProperties:
    """Create meta.properties on first start; afterwards keep it and check it is ours.

    Kafka refuses to start when the directory's node.id differs from the configured one: the
    data belongs to another broker. The same goes for a cluster.id the caller insists on.
    """
    existing = read_meta_properties(directory)
    if existing is None:
        meta = MetaProperties(
            node_id,
            cluster_id or uuid_to_base64(random_kafka_uuid()),
            uuid_to_base64(random_kafka_uuid()),
        )
        write_meta_properties(directory, meta)
        return meta
    if existing.node_id != node_id:
        raise NodeIdMismatchError(
            f"{directory / META_PROPERTIES} has node.id={existing.node_id} but this broker is "
            f"node.id={node_id}; point it at its own data directory"
        )
    if cluster_id is not None and existing.cluster_id != cluster_id:
        raise NodeIdMismatchError(
            f"{directory / META_PROPERTIES} has cluster.id={existing.cluster_id}, "
            f"expected {cluster_id}"
        )
    if read_properties(directory / META_PROPERTIES).get("directory.id") is None:
        write_meta_properties(directory, existing)
    return existing


# -- partition.metadata ----------------------------------------------------------------------


def write_partition_metadata(partition_dir: Path, topic_id: uuid.UUID) -> None:
    """Kafka's ``PartitionMetadataFile``: ties the folder to a topic id, not just a name."""
    text = f"version: {PARTITION_METADATA_VERSION}\ntopic_id: {uuid_to_base64(topic_id)}\n"
    atomic_write(partition_dir / PARTITION_METADATA, text.encode("ascii"))


def read_partition_metadata(partition_dir: Path) -> uuid.UUID | None:
    path = partition_dir / PARTITION_METADATA
    if not path.exists():
        return None
    lines = [line for line in _read_text(path).splitlines() if line.strip()]
    if len(lines) != 2:
        raise CorruptFileError(path, f"expected 2 lines, found {len(lines)}")
    version_key, _, version = lines[0].partition(":")
    if version_key.strip() != "version" or version.strip() != str(PARTITION_METADATA_VERSION):
        raise CorruptFileError(path, f"unsupported version line {lines[0]!r}")
    id_key, _, topic_id = lines[1].partition(":")
    if id_key.strip() != "topic_id":
        raise CorruptFileError(path, f"expected a topic_id line, got {lines[1]!r}")
    try:
        return uuid_from_base64(topic_id.strip())
    except ValueError as exc:
        raise CorruptFileError(path, str(exc)) from None


# -- our topic metadata ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """What is persisted per topic: identity, partition count and config overrides."""

    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)


_CONFIG_PREFIX: Final = "config."


def topic_file(directory: Path, topic_id: uuid.UUID) -> Path:
    return directory / TOPICS_DIR / (uuid_to_base64(topic_id) + TOPIC_FILE_SUFFIX)


def write_topic(directory: Path, record: TopicRecord) -> None:
    props = {
        "version": str(TOPIC_FILE_VERSION),
        "topic.name": record.name,
        "topic.id": uuid_to_base64(record.topic_id),
        "partitions": str(record.partitions),
    }
    props.update({_CONFIG_PREFIX + k: v for k, v in sorted(record.configs.items())})
    (directory / TOPICS_DIR).mkdir(exist_ok=True)
    atomic_write(topic_file(directory, record.topic_id), format_properties(props))


def read_topic(path: Path) -> TopicRecord:
    props = read_properties(path)
    if props.get("version") != str(TOPIC_FILE_VERSION):
        raise CorruptFileError(path, f"unsupported version {props.get('version')!r}")
    try:
        name = props["topic.name"]
        topic_id = uuid_from_base64(props["topic.id"])
        partitions = int(props["partitions"])
    except KeyError as exc:
        raise CorruptFileError(path, f"missing {exc.args[0]}") from None
    except ValueError as exc:
        raise CorruptFileError(path, str(exc)) from None
    if partitions <= 0:
        raise CorruptFileError(path, f"partition count {partitions} must be positive")
    configs = {
        k[len(_CONFIG_PREFIX) :]: v for k, v in props.items() if k.startswith(_CONFIG_PREFIX)
    }
    return TopicRecord(name, topic_id, partitions, configs)


def read_topics(directory: Path) -> list[TopicRecord]:
    folder = directory / TOPICS_DIR
    if not folder.is_dir():
        return []
    return [
        read_topic(path)
        for path in sorted(folder.iterdir())
        if path.name.endswith(TOPIC_FILE_SUFFIX)
    ]


def delete_topic_file(directory: Path, topic_id: uuid.UUID) -> None:
    path = topic_file(directory, topic_id)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fsync_dir(path.parent)


# -- clean shutdown marker -------------------------------------------------------------------


def write_clean_shutdown(directory: Path, broker_epoch: int = -1) -> None:
    """Kafka 3.7+ writes a small JSON body; older versions an empty file. Presence is what counts."""
    atomic_write(
        directory / CLEAN_SHUTDOWN_FILE,
        b'{"version":0,"brokerEpoch":' + str(broker_epoch).encode() + b"}",
    )


def consume_clean_shutdown(directory: Path) -> bool:
    """Whether the last shutdown was clean; removes the marker so a crash from now on leaves none."""
    path = directory / CLEAN_SHUTDOWN_FILE
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(directory)
    return True


# -- partition folders -----------------------------------------------------------------------

DELETE_SUFFIX: Final = "-delete"
_MAX_FILE_NAME: Final = 255


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def parse_partition_dir_name(name: str) -> TopicPartition | None:
    """``<topic>-<partition>`` back to its parts; None for anything else (e.g. our topic store)."""
    topic, dash, partition = name.rpartition("-")
    if not dash or not topic or not partition.isdigit():
        return None
    return topic, int(partition)


def delete_dir_name(topic: str, partition: int, unique: uuid.UUID) -> str:
    """Kafka's ``<topic>-<partition>.<uuid>-delete``, truncating the topic so it fits 255 bytes."""
    suffix = f"-{partition}.{unique.hex}{DELETE_SUFFIX}"
    return topic[: _MAX_FILE_NAME - len(suffix)] + suffix
