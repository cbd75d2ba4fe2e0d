"""A Quix Streams application as its users write one: per-key sums over tumbling windows of
event time, kept in a RocksDB state store backed by a changelog topic, each closed window
written once to an output topic, exactly-once.

    python -m interop.apps.quix_windows --broker HOST:PORT --input IN --output OUT \
        --group GROUP --state-dir DIR --window-ms 1000

Input: key a UTF-8 string, value a JSON number, the record's timestamp its event time.
Output: the window's key, value ``{"start": ms, "end": ms, "value": sum}``.  A window is
final (``.final()``, Quix's default "key" closing strategy) once a record of the same key
arrives at or after its end.

The transactional id is given rather than Quix's default (a random one per start): a
restarted instance then fences the one killed and aborts its open transaction at once, as
Kafka Streams' stable ids do, instead of leaving it to the transaction timeout.
"""

from __future__ import annotations

import argparse
import logging

from quixstreams import Application


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--window-ms", type=int, default=1000)
    parser.add_argument("--commit-interval", type=float, default=1.0)
    parser.add_argument("--guarantee", default="exactly-once")
    parser.add_argument("--transactional-id", default=None)
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args()

    producer_config: dict[str, object] = {"transaction.timeout.ms": 20000}
    if args.transactional_id:
        producer_config["transactional.id"] = args.transactional_id
    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee=args.guarantee,
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        producer_extra_config=producer_config,
        # A killed instance's member leaves the group at its session timeout: Kafka's
        # minimum (group.min.session.timeout.ms), so the restarted one is not kept waiting.
        consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
        loglevel=args.loglevel,
    )
    source = app.topic(args.input, key_deserializer="str", value_deserializer="json")
    sink = app.topic(args.output, key_serializer="str", value_serializer="json")

    sdf = app.dataframe(source)
    sdf = sdf.tumbling_window(duration_ms=args.window_ms).sum().final()
    sdf = sdf.apply(lambda window: {k: window[k] for k in ("start", "end", "value")})
    sdf.to_topic(sink)
    logging.getLogger("quix_windows").info("running")
    app.run()


if __name__ == "__main__":
    main()
