"""Producer ids for InitProducerId, never repeated across restarts (KIP-98).

Theory of operation. In Kafka the controller hands each broker blocks of 1000 producer ids
(``ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE``) and makes each hand-out durable, as a
``ProducerIdsRecord`` holding the next free id, in its metadata log before the broker uses
the block. A single broker does the same with one small file: before the first id of a block
is returned, the start of the *next* block is written with ``atomic_write``. A crash can
therefore skip the unused rest of a block, never reuse an id.

The file, ``<data>/__kafkacompat_producer_ids.properties``, is a Java properties file::

    #kafkacompat producer id blocks
    version=0
    next.producer.id.block.start=2000

``next.producer.id.block.start`` is the lowest id that has never been handed out: every id
below it may have been. A missing file means no id was ever handed out. A file that cannot be
parsed stops the broker (``CorruptFileError``) instead of being guessed at, because guessing
low would hand out ids that producers may still hold.

InitProducerId for a producer without a transactional id follows Kafka's
``TransactionCoordinator.handleInitProducerId``: always a fresh producer id with epoch 0,
whatever producer id and epoch the request carries (KIP-360, v3+). Idempotent producers bump
their epoch on their own (``TransactionManager.bumpIdempotentProducerEpoch`` in the Java client)
and come back here only when the epoch is exhausted (Short.MAX_VALUE), so a fresh id is the
right answer in that case too. Before that, ``KafkaApis.handleInitProducerIdRequest`` refuses a
request that sets only one of producer id and epoch with INVALID_REQUEST.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, NamedTuple

from kafkacompat.errors import ErrorCode, KafkaProtocolError
from kafkacompat.records.batch import NO_PRODUCER_EPOCH, NO_PRODUCER_ID
from kafkacompat.storage.atomic_file import CorruptFileError, atomic_write
from kafkacompat.storage.properties_file import format_properties, read_properties

PRODUCER_IDS_FILE: Final = "__kafkacompat_producer_ids.properties"
PRODUCER_IDS_FILE_VERSION: Final = 0
PRODUCER_ID_BLOCK_SIZE: Final = 1000
_NEXT_BLOCK_KEY: Final = "next.producer.id.block.start"
_MAX_PRODUCER_ID: Final = (1 << 63) - 1


class ProducerIdsExhaustedError(KafkaProtocolError):
    """Every int64 id is used up; Kafka's controller answers UNKNOWN_SERVER_ERROR too."""

    error_code = ErrorCode.UNKNOWN_SERVER_ERROR


class InitProducerIdResult(NamedTuple):
    """The three fields of an InitProducerId response that the coordinator decides."""

    producer_id: int
    producer_epoch: int
    error_code: ErrorCode


class ProducerIdManager:
    """Allocates producer ids in durable blocks; ``data_dir=None`` keeps everything in memory."""

    def __init__(self, data_dir: Path | None, *, block_size: int = PRODUCER_ID_BLOCK_SIZE) -> None:
        if block_size <= 0:
            raise ValueError(f"block size must be positive, got {block_size}")
        self._path = None if data_dir is None else Path(data_dir) / PRODUCER_IDS_FILE
        self._block_size = block_size
        start = self._read_next_block_start()
        # The block in hand is empty until the first request reserves one.
        self._next_id = start
        self._block_end = start

    @property
    def path(self) -> Path | None:
        return self._path

    def _read_next_block_start(self) -> int:
        if self._path is None or not self._path.exists():
            return 0
        props = read_properties(self._path)
        if props.get("version") != str(PRODUCER_IDS_FILE_VERSION):
            raise CorruptFileError(self._path, f"unsupported version {props.get('version')!r}")
        try:
            start = int(props[_NEXT_BLOCK_KEY])
        except KeyError:
            raise CorruptFileError(self._path, f"missing {_NEXT_BLOCK_KEY}") from None
        except ValueError:
            raise CorruptFileError(
                self._path, f"{_NEXT_BLOCK_KEY} {props[_NEXT_BLOCK_KEY]!r} is not a number"
            ) from None
        # One past the largest id means every id has been handed out.
        if not 0 <= start <= _MAX_PRODUCER_ID + 1:
            raise CorruptFileError(self._path, f"{_NEXT_BLOCK_KEY} {start} is out of range")
        return start

    def _reserve_block(self) -> None:
        start = self._block_end
        if start > _MAX_PRODUCER_ID:
            raise ProducerIdsExhaustedError("all producer ids have been handed out")
        end = min(start + self._block_size, _MAX_PRODUCER_ID + 1)
        if self._path is not None:
            # Durable before use: after a crash the file must already point past every id
            # a producer could hold.
            props = {"version": str(PRODUCER_IDS_FILE_VERSION), _NEXT_BLOCK_KEY: str(end)}
            atomic_write(self._path, format_properties(props, "kafkacompat producer id blocks"))
        self._next_id = start
        self._block_end = end

    def next_producer_id(self) -> int:
        """A producer id no producer of this data directory has ever been given."""
        if self._next_id >= self._block_end:
            self._reserve_block()
        producer_id = self._next_id
        self._next_id += 1
        return producer_id


def init_producer_id(
    manager: ProducerIdManager,
    *,
    transactional_id: str | None,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
) -> InitProducerIdResult:
    """InitProducerId for producers without a transactional id (idempotent producers).

    ``producer_id``/``producer_epoch`` are the v3+ request fields (-1 before v3). A non-empty
    ``transactional_id`` belongs to the transaction coordinator, which does not exist yet;
    passing one is a caller bug and raises ValueError.
    """
    failed = InitProducerIdResult(NO_PRODUCER_ID, NO_PRODUCER_EPOCH, ErrorCode.INVALID_REQUEST)
    if (producer_id == NO_PRODUCER_ID) != (producer_epoch == NO_PRODUCER_EPOCH):
        return failed
    if transactional_id is not None:
        if transactional_id == "":
            # Kafka: "consistent with producer client", which refuses an empty id itself.
            return failed
        raise ValueError("transactional ids are the transaction coordinator's to handle")
    try:
        return InitProducerIdResult(manager.next_producer_id(), 0, ErrorCode.NONE)
    except KafkaProtocolError as exc:
        return InitProducerIdResult(NO_PRODUCER_ID, NO_PRODUCER_EPOCH, exc.error_code)
