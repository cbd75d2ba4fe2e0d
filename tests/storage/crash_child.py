"""Appends batches to a Log until killed, printing each acknowledged append.

Usage: python -m tests.storage.crash_child <directory> <trial> <recovery point>

Each line ``<base offset> <last offset> <trial> <i>`` is printed (and flushed) only after
``Log.append`` returned, i.e. after the bytes reached the kernel with ``os.write``; the parent
SIGKILLs this process at a random moment and checks every printed append survived exactly once.
Batch ``i`` of trial ``t`` holds ``1 + i % 5`` records valued ``b"t:i:j"``.
"""

from __future__ import annotations

import sys

from kafkacompat.records import RecordBatchBuilder
from kafkacompat.storage.log import DefaultLogSettings, Log

SETTINGS = DefaultLogSettings(segment_bytes=16_384, index_interval_bytes=512)
NOW = 1_700_000_000_000


def values(trial: int, i: int) -> list[bytes]:
    return [b"%d:%d:%d" % (trial, i, j) + b"." * (i % 97) for j in range(1 + i % 5)]


def main() -> None:
    directory, trial, recovery_point = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    log = Log(directory, SETTINGS, now_ms=NOW, recovery_point=recovery_point, clean_shutdown=False)
    out = sys.stdout
    out.write(f"ready {log.log_end_offset}\n")
    out.flush()
    i = 0
    while True:
        builder = RecordBatchBuilder()
        for value in values(trial, i):
            builder.append(value, timestamp=NOW + i)
        info = log.append(bytearray(builder.build()), leader_epoch=trial, now_ms=NOW + i)
        out.write(f"{info.base_offset} {info.last_offset} {trial} {i}\n")
        out.flush()
        i += 1


if __name__ == "__main__":
    main()
