"""Coordinators: broker-side state that sits between the storage layer and the handlers.

``producer_ids`` hands out producer ids for InitProducerId (KIP-98) and never repeats one
across restarts. ``producer_state`` is Kafka's ``ProducerStateManager``: per partition, the
last batches each idempotent producer wrote, used to fence zombie epochs, refuse gaps in
sequence numbers and answer retried batches with their original offsets instead of
appending them twice.

The group coordinator is Kafka's coordinator runtime (``coordinator_runtime``): one shard per
``__consumer_offsets`` partition (``group_coordinator_shard``: ``GroupMetadataManager`` for
classic groups, ``OffsetMetadataManager`` for committed offsets), whose operations return a
``CoordinatorResult`` (the records to write, the response to send once they are written);
``group_coordinator`` is the service the handlers call; ``group_store`` is the one place that
reads and writes the log.

Nothing here does network I/O; time is passed in (``now_ms``), never read from the clock.
"""
