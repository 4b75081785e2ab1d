"""Pool, producer and consumer API: creation, opening, errors, context managers, stats, close,
timeouts, iteration."""

from __future__ import annotations

import time

import pytest

import shmpool


def test_create_open_roundtrip_bytes(make_pool, pool_dir):
    pool = make_pool("rt", slots=3, slot_size=5000, meta_bytes=64)
    assert (pool.name, pool.slots, pool.slot_size, pool.meta_bytes) == ("rt", 3, 8192, 64)
    assert (pool.mode, pool.overflow, pool.closed) == ("broadcast", "block", False)
    assert pool.path.parent == pool_dir
    other = shmpool.Pool.open("rt", directory=pool_dir)
    consumer = other.consumer()
    wb = pool.producer().acquire(timeout=5)
    memoryview(wb)[:5] = b"hello"
    wb.user_meta = b"caps"
    wb.timestamp = 1234
    assert wb.publish(5) == 0
    buf = consumer.recv(timeout=5)
    assert (bytes(buf), buf.user_meta, buf.timestamp, buf.seq, buf.nbytes) == (b"hello", b"caps", 1234, 0, 5)
    assert (buf.dtype, buf.shape) == ("bytes", ())
    other.close()  # an opened handle only lets go of itself
    assert not pool.closed


def test_open_uses_shmpool_dir_env(make_pool):
    make_pool("envdir")
    with shmpool.Pool.open("envdir") as pool:  # $SHMPOOL_DIR is the test's directory
        assert pool.name == "envdir"


def test_errors_are_typed_and_carry_the_core_message(make_pool, pool_dir):
    with pytest.raises(shmpool.PoolNotFound, match="not found") as e:
        shmpool.Pool.open("missing", directory=pool_dir)
    assert isinstance(e.value, shmpool.Error) and isinstance(e.value, FileNotFoundError)
    make_pool("dup")
    with pytest.raises(shmpool.PoolExists, match="already exists"):
        shmpool.Pool.create("dup", directory=pool_dir)
    with pytest.raises(shmpool.InvalidArgument, match="not one of") as e:
        shmpool.Pool.create("m", mode="fanout", directory=pool_dir)
    assert isinstance(e.value, ValueError)
    with pytest.raises(shmpool.InvalidArgument):
        shmpool.Pool.create("m", overflow="never", directory=pool_dir)
    with pytest.raises(shmpool.InvalidArgument):
        shmpool.Pool.create("m", slots=0, directory=pool_dir)
    with pytest.raises(shmpool.InvalidArgument):
        shmpool.Pool.create("bad/name", directory=pool_dir)


def test_timeouts(make_pool):
    pool = make_pool(slots=1)
    consumer, producer = pool.consumer(), pool.producer()
    for timeout in (0, 0.05):
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            consumer.recv(timeout=timeout)
        assert time.monotonic() - start < 2
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        consumer.recv(timeout=0.3)  # longer than one 100 ms slice
    assert 0.29 <= time.monotonic() - start < 3
    held = producer.acquire(timeout=1)
    with pytest.raises(TimeoutError):
        producer.acquire(timeout=0.15)  # the only slot is taken
    with pytest.raises(shmpool.InvalidArgument):
        producer.acquire(timeout=-1)
    held.discard()
    producer.acquire(timeout=0).discard()


def test_close_for_everyone_drains_then_stops(make_pool, pool_dir):
    pool = make_pool()
    consumer, producer = pool.consumer(), pool.producer()
    for i in range(2):
        wb = producer.acquire(timeout=5)
        wb.user_meta = b"%d" % i
        wb.publish()
    pool.close()
    assert pool.closed
    assert list(pool_dir.iterdir()) == []  # the creator's close removes the name
    with pytest.raises(shmpool.Closed):
        producer.acquire(timeout=1)
    assert [b.user_meta for b in consumer] == [b"0", b"1"]  # iteration drains, then ends
    with pytest.raises(shmpool.Closed):
        consumer.recv(timeout=1)
    with pytest.raises(shmpool.Closed):
        pool.consumer()


def test_context_managers(pool_dir):
    with shmpool.Pool.create("ctx", slots=2, slot_size=4096, directory=pool_dir) as pool:
        with pool.consumer() as consumer, pool.producer() as producer:
            with producer.acquire(timeout=5) as wb:
                wb.publish(1)
            with consumer.recv(timeout=5) as buf:
                assert buf.nbytes == 1
            assert buf.released
            with producer.acquire(timeout=5) as wb:
                pass  # not published: discarded on exit
            assert pool.stats()["free"] == 2
        with pytest.raises(shmpool.Closed):
            consumer.recv(timeout=0)
        with pytest.raises(shmpool.Closed):
            producer.acquire(timeout=0)
    assert pool.closed
    assert list(pool_dir.iterdir()) == []


def test_stats_and_peers(make_pool):
    pool = make_pool(slots=3, mode="workqueue", overflow="drop-oldest")
    assert (pool.mode, pool.overflow) == ("workqueue", "drop-oldest")
    consumer, producer = pool.consumer(), pool.producer()
    producer.acquire(timeout=5).publish()
    stats = pool.stats()
    assert {k: stats[k] for k in ("slots", "free", "ready", "producers", "consumers", "published")} == {
        "slots": 3,
        "free": 2,
        "ready": 1,
        "producers": 1,
        "consumers": 1,
        "published": 1,
    }
    assert sorted(p["role"] for p in stats["peers"]) == ["consumer", "producer"]
    assert all(p["alive"] for p in stats["peers"])
    buf = consumer.recv(timeout=5)
    assert pool.stats()["reading"] == 1
    buf.release()
    assert pool.stats()["free"] == 3
    assert consumer.received == 1 and producer.published == 1


def test_broadcast_without_consumer_discards(make_pool):
    pool = make_pool()
    assert pool.producer().acquire(timeout=5).publish() is None
    assert pool.stats()["free"] == 4


def test_meta_too_long_is_rejected(make_pool):
    pool = make_pool(meta_bytes=8)
    wb = pool.producer().acquire(timeout=5)
    with pytest.raises(shmpool.InvalidArgument, match="metadata"):
        wb.user_meta = b"x" * 9
    wb.user_meta = b"x" * 8
    assert wb.user_meta == b"x" * 8
    with pytest.raises(shmpool.InvalidArgument, match="exceeds"):
        wb.publish(wb.capacity + 1)
    wb.discard()


def test_module_surface():
    assert shmpool.__version__
    assert shmpool.MAX_DIMS == 8
    assert set(shmpool.DTYPES) == {"u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "f16", "bf16", "f32", "f64"}
    assert abs(shmpool.monotonic_ns() - time.monotonic_ns()) < 1_000_000_000


def test_blocking_calls_release_the_gil(make_pool):
    import threading

    pool = make_pool(slots=1)
    consumer, producer = pool.consumer(), pool.producer()
    got = []
    # If recv() kept the GIL, this thread could not publish and recv() would time out.
    receiver = threading.Thread(target=lambda: got.append(consumer.recv(timeout=10).user_meta))
    receiver.start()
    time.sleep(0.05)  # let it block in recv(); were the GIL held there, this sleep would last 10 s
    wb = producer.acquire(timeout=5)
    wb.user_meta = b"from the main thread"
    wb.publish()
    receiver.join(timeout=15)
    assert got == [b"from the main thread"]
    # And acquire(): a full pool, freed by another thread.
    held = producer.acquire(timeout=5)
    releaser = threading.Timer(0.1, held.discard)
    releaser.start()
    producer.acquire(timeout=10).discard()
    releaser.join()


def test_set_spin_makes_a_waiting_consumer_spin_within_the_bound(make_pool):
    import os
    import threading

    pool = make_pool(slots=1)
    consumer, producer = pool.consumer(), pool.producer()
    consumer.set_spin(30)
    producer.set_spin(0.001)
    got = []
    receiver = threading.Thread(target=lambda: got.append(consumer.recv(timeout=30).seq))
    receiver.start()
    # Spinning needs a CPU to spare for the peer: with one CPU the consumer sleeps at once.
    want = "spinners" if len(os.sched_getaffinity(0)) > 1 else "waiters"
    deadline = time.monotonic() + 20
    while pool.stats()[want] != 1:
        assert time.monotonic() < deadline, pool.stats()
        time.sleep(0.002)
    seq = producer.acquire(timeout=5).publish()
    receiver.join(timeout=25)
    assert got == [seq] and pool.stats()["spinners"] == 0
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(shmpool.InvalidArgument, match="spin"):
            consumer.set_spin(bad)
        with pytest.raises(shmpool.InvalidArgument, match="spin"):
            producer.set_spin(bad)
    consumer.close()
    producer.close()
    with pytest.raises(shmpool.Closed):
        consumer.set_spin(0)
    with pytest.raises(shmpool.Closed):
        producer.set_spin(0)


def test_workqueue_gives_each_buffer_to_one_consumer(make_pool):
    pool = make_pool(slots=4, mode="workqueue")
    first, second = pool.consumer(), pool.consumer()
    producer = pool.producer()
    seqs = []
    for round_ in range(5):
        for _ in range(2):
            producer.acquire(timeout=5).publish(1)
        a, b = first.recv(timeout=5), second.recv(timeout=5)
        seqs += [a.seq, b.seq]
        for consumer in (first, second):
            with pytest.raises(TimeoutError):
                consumer.recv(timeout=0)
        del a, b
    assert sorted(seqs) == list(range(10))


def test_drop_oldest_never_waits(make_pool):
    pool = make_pool(slots=2, overflow="drop-oldest")
    consumer, producer = pool.consumer(), pool.producer()
    for i in range(5):
        wb = producer.acquire(timeout=0)  # never blocks: reclaims the oldest unread buffer
        wb.user_meta = b"%d" % i
        wb.publish()
    got = [consumer.recv(timeout=1).user_meta for _ in range(2)]
    assert got == [b"3", b"4"] and consumer.dropped == 3
