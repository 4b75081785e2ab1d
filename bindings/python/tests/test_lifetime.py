"""A slot stays held while any view of it exists and returns to the pool when the last one goes;
release()/publish() refuse while views live; no view ever sees a recycled slot."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import shmpool


def one_slot(make_pool):
    pool = make_pool(slots=1, slot_size=4096)
    return pool, pool.consumer(), pool.producer()


def publish(producer, value: int) -> None:
    wb = producer.acquire(timeout=5)
    wb.array(np.int64, (8,))[...] = value
    wb.publish()


def slot_is_free(pool) -> bool:
    return pool.stats()["free"] == pool.slots


@pytest.mark.parametrize("make_view", ["array", "memoryview", "asarray", "slice", "dlpack"])  # see VIEWS
def test_view_outliving_its_buffer_keeps_the_slot(make_pool, make_view):
    pool, consumer, producer = one_slot(make_pool)
    publish(producer, 11)
    buf = consumer.recv(timeout=5)
    view = VIEWS[make_view](buf)
    del buf
    gc.collect()
    assert pool.stats()["reading"] == 1
    with pytest.raises(TimeoutError):
        producer.acquire(timeout=0.05)  # the only slot is still held by the view
    assert bytes(view)[:8] == (11).to_bytes(8, "little")
    del view
    gc.collect()
    assert slot_is_free(pool)
    producer.acquire(timeout=0).discard()


VIEWS = {
    "array": lambda b: b.array(),
    "memoryview": lambda b: memoryview(b),
    "asarray": lambda b: np.asarray(b),
    "slice": lambda b: b.array()[2:5],
    "dlpack": lambda b: np.from_dlpack(b),
}


@pytest.mark.parametrize("make_view", sorted(VIEWS))
def test_release_with_a_live_view_raises_and_keeps_the_slot(make_pool, make_view):
    pool, consumer, producer = one_slot(make_pool)
    publish(producer, 5)
    buf = consumer.recv(timeout=5)
    view = VIEWS[make_view](buf)
    with pytest.raises(BufferError, match="alive"):
        buf.release()
    assert not buf.released and pool.stats()["reading"] == 1
    assert bytes(view)[:1] == b"\x05"
    del view
    gc.collect()
    buf.release()
    assert buf.released and slot_is_free(pool)
    buf.release()  # twice is fine
    with pytest.raises(BufferError, match="released"):
        buf.array()
    with pytest.raises(BufferError, match="released"):
        np.from_dlpack(buf)
    with pytest.raises(BufferError, match="released"):
        memoryview(buf)


def test_release_waits_for_every_view(make_pool):
    pool, consumer, producer = one_slot(make_pool)
    publish(producer, 5)
    buf = consumer.recv(timeout=5)
    views = [f(buf) for f in VIEWS.values()]
    while views:
        with pytest.raises(BufferError, match="alive"):
            buf.release()
        views.pop()
    buf.release()
    assert slot_is_free(pool)


def test_recycled_slot_is_never_visible_through_an_old_view(make_pool):
    pool, consumer, producer = one_slot(make_pool)
    publish(producer, 1)
    old = consumer.recv(timeout=5).array()  # the Buffer object lives on as old.base's owner
    with pytest.raises(TimeoutError):
        producer.acquire(timeout=0.05)
    assert old[0] == 1
    del old
    publish(producer, 2)  # only now can the slot be rewritten
    new = consumer.recv(timeout=5).array()
    assert new[0] == 2


def test_unconsumed_dlpack_capsule_releases_its_hold(make_pool):
    pool, consumer, producer = one_slot(make_pool)
    publish(producer, 3)
    buf = consumer.recv(timeout=5)
    capsule = buf.__dlpack__(max_version=(1, 0))
    with pytest.raises(BufferError):
        buf.release()
    del capsule
    buf.release()
    assert slot_is_free(pool)


def test_dlpack_tensor_keeps_the_slot_until_freed(make_pool):
    pool, consumer, producer = one_slot(make_pool)
    publish(producer, 9)
    tensor = np.from_dlpack(consumer.recv(timeout=5))
    gc.collect()
    assert pool.stats()["reading"] == 1 and tensor[0] == 9
    del tensor
    gc.collect()
    assert slot_is_free(pool)


def test_publish_refuses_while_producer_views_live(make_pool):
    pool, consumer, producer = one_slot(make_pool)
    wb = producer.acquire(timeout=5)
    arr = wb.array(np.uint8, (4,))
    arr[...] = 4
    with pytest.raises(BufferError, match="alive"):
        wb.publish()
    tensor = np.from_dlpack(wb)
    del arr
    with pytest.raises(BufferError, match="DLPack"):
        wb.publish()
    with pytest.raises(BufferError):
        wb.discard()
    del tensor
    assert wb.publish() == 0
    assert wb.is_published
    with pytest.raises(BufferError, match="published"):
        wb.array(np.uint8, (4,))
    with pytest.raises(BufferError, match="published"):
        memoryview(wb)
    with pytest.raises(BufferError, match="published"):
        wb.publish()
    assert consumer.recv(timeout=5).array().tolist() == [4, 4, 4, 4]


def test_dropped_write_buffer_returns_its_slot_after_its_views(make_pool):
    pool, consumer, producer = one_slot(make_pool)
    arr = producer.acquire(timeout=5).array(np.uint8, (8,))
    gc.collect()
    assert pool.stats()["writing"] == 1
    arr[...] = 1  # still ours to write
    del arr
    gc.collect()
    assert slot_is_free(pool)


def test_buffers_outlive_their_consumer_and_pool_handles(make_pool, pool_dir):
    pool, consumer, producer = one_slot(make_pool)
    publish(producer, 8)
    arr = consumer.recv(timeout=5).array()
    opened = shmpool.Pool.open("test", directory=pool_dir)
    consumer.close()
    producer.close()
    opened.close()
    pool.close()
    gc.collect()
    assert arr[0] == 8 and arr.sum() == 64  # the mapping stays valid under the view
