"""A faust-streaming application as its users write one: a Table of running totals per key
(kept in memory, rebuilt from its changelog topic on start), and an agent that writes each
new total to an output topic, exactly-once.

    FAUST_BROKER=HOST:PORT FAUST_INPUT=IN FAUST_OUTPUT=OUT FAUST_APP_ID=ID \
        FAUST_DATADIR=DIR python -m interop.apps.faust_totals worker -l info

Input: key a UTF-8 string, value a JSON integer.  Output: the input's key, value
``{"total": running total of the key's values}``.  Faust names one transactional id per
input partition (``{app id}-{group}-{partition}``), so a restarted worker fences the one
killed and aborts its open transactions.
"""

from __future__ import annotations

import os

import faust

app = faust.App(
    os.environ["FAUST_APP_ID"],
    broker=f"kafka://{os.environ['FAUST_BROKER']}",
    processing_guarantee=os.environ.get("FAUST_GUARANTEE", "exactly_once"),
    store="memory://",
    datadir=os.environ["FAUST_DATADIR"],
    web_enabled=False,
    topic_partitions=2,
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=float(os.environ.get("FAUST_COMMIT_INTERVAL", "1.0")),
    # A killed worker's member leaves the group at its session timeout: Kafka's minimum
    # (group.min.session.timeout.ms), so the restarted one is not kept waiting.
    broker_session_timeout=6.0,
    broker_heartbeat_interval=1.0,
)

source = app.topic(os.environ["FAUST_INPUT"], key_serializer="raw", value_serializer="json")
sink = app.topic(os.environ["FAUST_OUTPUT"], key_serializer="raw", value_serializer="json")
totals = app.Table("totals", default=int, partitions=2)


@app.agent(source)
async def add_up(stream: faust.StreamT[int]) -> None:
    async for key, value in stream.items():
        name = key.decode()
        totals[name] += value
        await sink.send(key=key, value={"total": totals[name]})


@app.agent(sink)
async def totals_written(stream: faust.StreamT[dict[str, int]]) -> None:
    """A reader of the output in the same app.  Under exactly_once, faust sends a record
    in a transaction only to a topic its consumer has metadata for (TransactionManager.send
    asks the consumer's key_partition, None for a topic it does not subscribe to, and then
    sends with the plain producer, outside every transaction): without a reader here the
    totals would be written at once, duplicated by a restart.  With it, the output topic is
    co-partitioned with the input and its partition p is written by partition p's
    transaction, with the input offsets and the table's changelog."""
    async for _total in stream:
        pass


if __name__ == "__main__":
    app.main()
