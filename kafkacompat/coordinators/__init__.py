"""Coordinators: broker-side state that sits between the storage layer and the handlers.

``producer_ids`` hands out producer ids for InitProducerId (KIP-98) and never repeats one
across restarts. ``producer_state`` is Kafka's ``ProducerStateManager``: per partition, the
last batches each idempotent producer wrote, used to fence zombie epochs, refuse gaps in
sequence numbers and answer retried batches with their original offsets instead of
appending them twice.

Nothing here does network I/O; time is passed in (``now_ms``), never read from the clock.
"""
