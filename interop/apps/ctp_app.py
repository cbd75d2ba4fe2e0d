"""A consume-transform-produce application with exactly-once semantics (confluent-kafka),
run as a child process by ``interop/test_transactions.py`` so that tests can SIGKILL it, or
the broker under it, mid-run:

    python -m interop.apps.ctp_app SPEC_JSON

    SPEC: {"bootstrap": "host:port", "input": "t", "output": "t", "partitions": n,
           "group": "g", "transactional_id": "x", "expected": n, "batch": 10,
           "pause_ms": 0, "hold_after": null, "subscribe": false}

It reads the input topic under read_committed, by manual assignment of every partition
(positions from the group's committed offsets), or with ``subscribe`` as the group's one
member, and for each batch, in one transaction,
produces ``out:<value>`` to the same partition of the output topic and sends the batch's
next offsets to the transaction (``send_offsets_to_transaction``), then commits.  When the
committed positions add up to ``expected`` it exits 0.

``init_transactions`` comes before the committed offsets are read: it fences a previous
instance with the same transactional id and aborts (or completes) that instance's open
transaction, whose offsets would otherwise still be pending.  An abortable error aborts the
transaction and rewinds to the last committed positions (10 in a row exit 3); a fatal one
(fenced, say) exits 2, and the supervisor, here the test, starts a new instance.

``pause_ms`` sleeps inside each transaction once its records are flushed, so that a kill
most likely lands while a transaction is open.  ``hold_after`` n: after n committed
transactions, the next one is flushed and then held open for ever (the process prints
``holding`` and waits to be killed), so that a test kills it with a transaction open for
certain.

Progress goes to stdout, one JSON object per line: ``{"event": "started"}``,
``{"event": "committed", "inputs": n}`` (inputs committed so far by all instances),
``{"event": "aborted", "error": "..."}``, ``{"event": "fatal", "error": "..."}``,
``{"event": "holding", "records": n}`` (the held transaction's records), ``{"event": "done"}``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

TIMEOUT_S = 30.0
MAX_ABORTS_IN_A_ROW = 10


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def committed_positions(consumer: Consumer, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets; 0 where nothing is committed yet."""
    asked = [TopicPartition(topic, p) for p in range(partitions)]
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            found = consumer.committed(asked, timeout=10)
            break
        except KafkaException as exc:
            # Offsets still pending in a transaction being completed (UNSTABLE_OFFSET_COMMIT),
            # or a coordinator not up yet after a broker restart: ask again.
            if time.monotonic() > deadline or not exc.args[0].retriable():
                raise
            time.sleep(0.2)
    return {tp.partition: (0 if tp.offset == OFFSET_INVALID else tp.offset) for tp in found}


def run(spec: dict[str, Any]) -> int:
    topic_in, topic_out = spec["input"], spec["output"]
    partitions = int(spec["partitions"])
    producer = Producer(
        {
            "bootstrap.servers": spec["bootstrap"],
            "transactional.id": spec["transactional_id"],
            "linger.ms": 5,
            "transaction.timeout.ms": 60000,
            **_debug(spec),
        }
    )
    producer.init_transactions(TIMEOUT_S)
    consumer = Consumer(
        {
            "bootstrap.servers": spec["bootstrap"],
            "group.id": spec["group"],
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            **_debug(spec),
        }
    )
    committed = committed_positions(consumer, topic_in, partitions)
    subscribe = bool(spec.get("subscribe"))
    if subscribe:
        # A group member: librdkafka starts each assigned partition at the committed offset,
        # and the transaction's offsets carry the member's generation (KIP-447).
        consumer.subscribe([topic_in])
    else:
        consumer.assign([TopicPartition(topic_in, p, o) for p, o in committed.items()])
    emit("started", committed=sum(committed.values()))
    transactions = 0
    aborts_in_a_row = 0
    try:
        while sum(committed.values()) < int(spec["expected"]):
            messages = consumer.consume(int(spec["batch"]), 0.5)
            records = [m for m in messages if _record(m)]
            if not records:
                continue
            positions = dict(committed)
            try:
                producer.begin_transaction()
                for message in records:
                    partition, offset = message.partition(), message.offset()
                    assert partition is not None and offset is not None  # a record's
                    positions[partition] = offset + 1
                    producer.produce(
                        topic_out,
                        key=message.key(),
                        value=b"out:" + (message.value() or b""),
                        partition=partition,
                    )
                if spec.get("hold_after") is not None and transactions >= spec["hold_after"]:
                    producer.flush(TIMEOUT_S)
                    emit("holding", records=len(records))
                    time.sleep(3600)
                if spec.get("pause_ms"):
                    producer.flush(TIMEOUT_S)
                    time.sleep(spec["pause_ms"] / 1000)
                offsets = [TopicPartition(topic_in, p, o) for p, o in positions.items()]
                producer.send_offsets_to_transaction(
                    offsets, consumer.consumer_group_metadata(), TIMEOUT_S
                )
                _commit(producer)
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.fatal() or not error.txn_requires_abort():
                    emit("fatal", error=str(error))
                    return 2
                emit("aborted", error=str(error))
                producer.abort_transaction(TIMEOUT_S)
                aborts_in_a_row += 1
                if aborts_in_a_row >= MAX_ABORTS_IN_A_ROW:
                    # An error that every retry meets (a broker without TxnOffsetCommit,
                    # say) is not transient: give up rather than spin.
                    emit("fatal", error=f"{aborts_in_a_row} aborts in a row: {error}")
                    return 3
                # Back to what is committed: the aborted batch is read again.
                rewind = [TopicPartition(topic_in, p, o) for p, o in committed.items()]
                if subscribe:
                    for tp in rewind:
                        consumer.seek(tp)
                else:
                    consumer.assign(rewind)
                continue
            committed = positions
            transactions += 1
            aborts_in_a_row = 0
            emit("committed", inputs=sum(committed.values()))
    finally:
        consumer.close()
    emit("done")
    return 0


def _debug(spec: dict[str, Any]) -> dict[str, str]:
    """librdkafka's debug contexts (``"debug": "eos,protocol,broker"``), to stderr, and
    any other librdkafka settings the spec adds (``"librdkafka": {...}``)."""
    extra = dict(spec.get("librdkafka") or {})
    return {"debug": spec["debug"], **extra} if spec.get("debug") else extra


def _record(message: Message) -> bool:
    error = message.error()
    if error is None:
        return True
    if error.code() == KafkaError._PARTITION_EOF:
        return False
    raise KafkaException(error)


def _commit(producer: Producer) -> None:
    """commit_transaction, again after a retriable error (librdkafka's documented loop)."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            producer.commit_transaction(TIMEOUT_S)
            return
        except KafkaException as exc:
            if not exc.args[0].retriable() or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(run(json.loads(sys.argv[1])))
