"""NumPy views: zero copy, every dtype and up to 8 dimensions through the slot metadata,
read-only enforcement on the consumer side."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import shmpool

DTYPES = {
    "u8": np.uint8,
    "u16": np.uint16,
    "u32": np.uint32,
    "u64": np.uint64,
    "i8": np.int8,
    "i16": np.int16,
    "i32": np.int32,
    "i64": np.int64,
    "f16": np.float16,
    "f32": np.float32,
    "f64": np.float64,
}
SHAPES = [(7,), (3, 4), (2, 3, 4), (2, 1, 3, 2), (1, 2, 1, 2, 3), (2, 2, 1, 2, 1, 2), (1, 2, 1, 2, 1, 2, 1), (2,) * 8]


def data_address(arr: np.ndarray) -> int:
    return arr.__array_interface__["data"][0]


def send(pool, producer, consumer, dtype, shape, fill):
    wb = producer.acquire(timeout=5)
    wb.array(dtype, shape)[...] = fill
    wb.publish()
    return consumer.recv(timeout=5)


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_every_dtype_and_shape_round_trips(make_pool, name):
    pool = make_pool(slot_size=8192)
    consumer, producer = pool.consumer(), pool.producer()
    np_type = DTYPES[name]
    for shape, spec in itertools.product(SHAPES, (name, np.dtype(np_type).name, np_type, np.dtype(np_type))):
        expected = (np.arange(int(np.prod(shape))) % 100).astype(np_type).reshape(shape)
        buf = send(pool, producer, consumer, spec, shape, expected)
        assert (buf.dtype, buf.shape, buf.nbytes) == (name, shape, expected.nbytes)
        arr = buf.array()
        assert arr.dtype == np_type and arr.shape == shape
        np.testing.assert_array_equal(arr, expected)
        del arr
        buf.release()
    assert pool.stats()["free"] == 4


def test_bf16_is_recorded_and_read_as_raw_bits(make_pool):
    pool = make_pool()
    consumer, producer = pool.consumer(), pool.producer()
    bits = np.array([0x3F80, 0x4000, 0xC040], dtype=np.uint16)  # 1.0, 2.0, -3.0 as bfloat16
    wb = producer.acquire(timeout=5)
    view = wb.array("bf16", (3,))
    assert view.dtype == np.uint16
    view[...] = bits
    del view
    wb.publish()
    buf = consumer.recv(timeout=5)
    assert buf.dtype == "bf16"
    arr = buf.array()
    assert arr.dtype == np.uint16
    np.testing.assert_array_equal(arr, bits)
    as_f32 = (arr.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(as_f32, [1.0, 2.0, -3.0])


def test_untyped_and_unshaped(make_pool):
    pool = make_pool()
    consumer, producer = pool.consumer(), pool.producer()
    wb = producer.acquire(timeout=5)
    memoryview(wb)[:3] = b"abc"
    wb.publish(3)
    arr = consumer.recv(timeout=5).array()
    assert arr.dtype == np.uint8 and arr.shape == (3,)
    assert bytes(arr) == b"abc"
    wb = producer.acquire(timeout=5)
    flat = wb.array(np.int32)  # no shape: the whole slot, 1-D
    assert flat.shape == (wb.capacity // 4,)
    flat[:2] = [5, 6]
    del flat
    wb.publish(8)
    buf = consumer.recv(timeout=5)
    assert (buf.dtype, buf.shape) == ("i32", ())
    assert buf.array().tolist() == [5, 6]


def test_bad_dtype_and_shape_are_rejected(make_pool):
    pool = make_pool(slot_size=4096)
    wb = pool.producer().acquire(timeout=5)
    with pytest.raises(shmpool.InvalidArgument, match="not supported"):
        wb.array(np.complex64, (2,))
    with pytest.raises(shmpool.InvalidArgument, match="byte order"):
        wb.array(np.dtype(">f4") if np.little_endian else np.dtype("<f4"), (2,))
    with pytest.raises(shmpool.InvalidArgument, match="dimensions"):
        wb.array(np.uint8, (1,) * 9)
    with pytest.raises(shmpool.InvalidArgument, match="bytes of a slot"):
        wb.array(np.float64, (513,))
    with pytest.raises(shmpool.InvalidArgument, match="negative"):
        wb.array(np.uint8, (-1, 2))
    with pytest.raises(TypeError):
        wb.array("no-such-type", (2,))
    wb.discard()


def test_zero_copy_consumer_view_is_in_the_mapping(make_pool):
    pool = make_pool(slots=2, slot_size=1 << 16)
    lo, length = pool._mapping_range()
    consumer, producer = pool.consumer(), pool.producer()
    wb = producer.acquire(timeout=5)
    warr = wb.array(np.uint32, (128, 64))
    assert lo <= data_address(warr) and data_address(warr) + warr.nbytes <= lo + length
    assert data_address(warr) == wb.address
    warr[...] = 7
    del warr
    wb.publish()
    buf = consumer.recv(timeout=5)
    a1, a2 = buf.array(), buf.array()
    assert data_address(a1) == data_address(a2) == buf.address == data_address(np.asarray(buf))
    lo, length = pool._read_mapping_range()  # received buffers: the read-only mapping
    assert lo <= buf.address and buf.address + buf.nbytes <= lo + length
    assert not a1.flags.owndata


def test_writes_through_the_producer_view_are_seen_in_place(make_pool):
    pool = make_pool(slots=1, slot_size=1 << 16)
    consumer, producer = pool.consumer(), pool.producer()
    for round_ in range(3):
        wb = producer.acquire(timeout=5)
        arr = wb.array(np.float64, (16, 16))
        arr[...] = round_
        arr[3, 4] = -1.5
        del arr
        wb.publish()
        got = consumer.recv(timeout=5)
        assert got.array()[3, 4] == -1.5 and got.array()[0, 0] == round_
        assert got.slot_index == 0  # the one slot, reused in place each round
        got.release()


def test_consumer_views_are_read_only(make_pool):
    pool = make_pool()
    consumer, producer = pool.consumer(), pool.producer()
    wb = producer.acquire(timeout=5)
    wb.array(np.uint8, (4,))[...] = 1
    wb.publish()
    buf = consumer.recv(timeout=5)
    assert np.asarray(buf).flags.writeable is False
    arr = buf.array()
    assert arr.flags.writeable is False
    with pytest.raises(ValueError):
        arr[0] = 2
    with pytest.raises(ValueError):
        arr.setflags(write=True)
    view = memoryview(buf)
    assert view.readonly
    with pytest.raises(TypeError):
        view[0] = 2
    import ctypes

    with pytest.raises((BufferError, TypeError)):
        (ctypes.c_char * 4).from_buffer(buf)  # asks for a writable buffer
    with pytest.raises(ValueError):
        np.frombuffer(memoryview(buf), dtype=np.uint8).setflags(write=True)
    assert bytes(arr) == b"\x01" * 4


def test_producer_views_are_writable(make_pool):
    pool = make_pool()
    wb = pool.producer().acquire(timeout=5)
    assert np.asarray(wb).flags.writeable
    assert not memoryview(wb).readonly
    import ctypes

    (ctypes.c_char * 4).from_buffer(wb)  # a writable buffer request succeeds
