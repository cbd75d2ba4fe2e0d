"""Request memory (KIP-72): the pool's bookkeeping, and FrameReader taking large frames from it.

The pool is Kafka's non-strict SimpleMemoryPool: an allocation succeeds while any memory is
left.  Readers here are fed as the server's event loop feeds them (get_buffer/buffer_updated).
"""

from __future__ import annotations

import struct

import pytest

from kafkacompat.protocol.framing import FIRST_OWN_BUFFER, SCRATCH_SIZE, FrameReader
from kafkacompat.protocol.memory_pool import SimpleMemoryPool

INT32 = struct.Struct(">i")
MiB = 1 << 20


def _frame(body: bytes) -> bytes:
    return INT32.pack(len(body)) + body


def _read(reader: FrameReader, data: bytes) -> int:
    """Read ``data`` as the loop would, stopping where the reader waits for memory (as the
    paused transport would); returns how many bytes it took."""
    pos = 0
    while pos < len(data) and not reader.waiting_for_memory:
        target = reader.get_buffer()
        n = min(len(target), len(data) - pos)
        target[:n] = data[pos : pos + n]
        reader.buffer_updated(n)
        pos += n
    return pos


# --- the pool ---------------------------------------------------------------------------


def test_pool_is_non_strict() -> None:
    pool = SimpleMemoryPool(100)
    assert pool.try_allocate(60)
    assert pool.try_allocate(60)  # 40 left: more than that is still granted
    assert pool.available == -20 and pool.is_out_of_memory()
    assert not pool.try_allocate(1)
    pool.release(60)
    assert pool.available == 40 and pool.try_allocate(1000)  # bigger than the whole pool
    assert pool.peak_used == 1060


def test_pool_wakes_waiters_oldest_first_while_memory_lasts() -> None:
    pool = SimpleMemoryPool(100)
    assert pool.try_allocate(100)
    woken: list[str] = []

    def waiter(name: str, size: int) -> None:
        def wake() -> None:
            woken.append(name)
            assert pool.allocate_waited(size)

        pool.wait(wake)

    waiter("a", 50)
    waiter("b", 50)
    waiter("c", 50)
    assert not pool.try_allocate(1)  # a newcomer does not overtake the waiters
    pool.release(100)
    assert woken == ["a", "b"]  # c's turn comes with the next release
    assert pool.waiting == 1
    pool.release(50)
    assert woken == ["a", "b", "c"] and pool.waiting == 0
    assert pool.available == 0


def test_pool_cancelled_waiter_is_not_called() -> None:
    pool = SimpleMemoryPool(10)
    assert pool.try_allocate(10)
    called: list[int] = []

    def wake() -> None:
        called.append(1)

    pool.wait(wake)
    pool.cancel_wait(wake)
    pool.release(10)
    assert called == [] and pool.available == 10


def test_pool_refuses_a_release_of_what_was_never_taken() -> None:
    pool = SimpleMemoryPool(10)
    assert pool.try_allocate(4)
    pool.release(4)
    with pytest.raises(ValueError):
        pool.release(4)
    assert pool.available == 10
    with pytest.raises(ValueError):
        SimpleMemoryPool(0)


# --- FrameReader with a pool ---------------------------------------------------------------


def test_small_frames_never_touch_the_pool() -> None:
    pool = SimpleMemoryPool(MiB)
    assert pool.try_allocate(MiB)  # exhausted by someone else's bulk load
    delivered: list[bytearray] = []
    reader = FrameReader(pool=pool, on_frame=delivered.append)
    small = [b"heartbeat", bytes(SCRATCH_SIZE - 4)]  # the second fills the scratch exactly
    assert _read(reader, b"".join(_frame(b) for b in small)) == sum(4 + len(b) for b in small)
    assert delivered == small and not reader.waiting_for_memory
    for frame in delivered:
        reader.release(frame)  # no share to give back
    assert pool.available == 0


def test_large_frame_takes_its_claimed_size_when_it_leaves_the_scratch_buffer() -> None:
    pool = SimpleMemoryPool(16 * MiB)
    reader = FrameReader(pool=pool)
    body = bytes(4 * MiB)
    wire = _frame(body)
    _read(reader, wire[:1000])
    assert pool.used == 0  # still in the scratch buffer: nothing claimed yet
    _read(reader, wire[1000:SCRATCH_SIZE])
    assert pool.used == len(body)  # all of it, at once, though only 64 KiB arrived
    # Memory still follows bytes: the first buffer of its own, not the 4 MiB claimed.
    assert reader.allocated == SCRATCH_SIZE + FIRST_OWN_BUFFER
    _read(reader, wire[SCRATCH_SIZE:])
    frame = reader.next_frame()
    assert frame == body
    assert pool.used == len(body)  # the frame carries its share until it is handled
    reader.release(frame)
    assert pool.used == 0


def test_a_refused_reader_waits_and_resumes_when_memory_frees() -> None:
    pool = SimpleMemoryPool(4 * MiB)
    resumed: list[str] = []
    a_frames: list[bytearray] = []
    a = FrameReader(pool=pool, on_frame=a_frames.append)
    b = FrameReader(pool=pool, on_memory=lambda: resumed.append("b"))
    body_a, body_b = b"a" * (4 * MiB), b"b" * (2 * MiB)
    wire_a, wire_b = _frame(body_a), _frame(body_b)
    assert _read(a, wire_a[: SCRATCH_SIZE + 10]) == SCRATCH_SIZE + 10
    assert pool.available == 0
    # b fills its scratch buffer and must stop there, costing nothing beyond it.
    assert _read(b, wire_b) == SCRATCH_SIZE
    assert b.waiting_for_memory and b.allocated == SCRATCH_SIZE and pool.waiting == 1
    _read(a, wire_a[SCRATCH_SIZE + 10 :])
    assert a_frames == [body_a]
    assert resumed == []  # a's frame is delivered but not handled: its share is still out
    a.release(a_frames.pop())
    assert resumed == ["b"] and not b.waiting_for_memory
    assert pool.used == len(body_b)
    assert _read(b, wire_b[SCRATCH_SIZE:]) == len(wire_b) - SCRATCH_SIZE
    frame = b.next_frame()
    assert frame == body_b
    b.release(frame)
    assert pool.used == 0 and pool.peak_used == len(body_a)


def test_close_gives_back_a_partial_frame_and_leaves_the_queue() -> None:
    pool = SimpleMemoryPool(MiB)
    holder = FrameReader(pool=pool)
    waiter = FrameReader(pool=pool, on_memory=lambda: pytest.fail("closed, must not resume"))
    _read(holder, _frame(bytes(MiB))[: SCRATCH_SIZE + 1])
    _read(waiter, _frame(bytes(MiB)))
    assert pool.used == MiB and waiter.waiting_for_memory and pool.waiting == 1
    waiter.close()
    assert pool.waiting == 0 and not waiter.waiting_for_memory
    holder.close()  # a connection lost mid-frame
    assert pool.used == 0


def test_get_buffer_while_waiting_never_hands_out_an_empty_buffer() -> None:
    # A loop that asks again although reading should have stopped gets room, over the limit.
    pool = SimpleMemoryPool(MiB)
    assert pool.try_allocate(MiB)
    reader = FrameReader(pool=pool)
    wire = _frame(bytes(2 * MiB))
    assert _read(reader, wire) == SCRATCH_SIZE and reader.waiting_for_memory
    assert len(reader.get_buffer()) > 0
    assert not reader.waiting_for_memory and pool.used == 3 * MiB and pool.waiting == 0
    reader.feed(wire[SCRATCH_SIZE:])
    frame = reader.next_frame()
    assert frame is not None and len(frame) == 2 * MiB
    reader.release(frame)
    assert pool.used == MiB
