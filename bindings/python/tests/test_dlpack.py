"""DLPack export: NumPy (and torch, when installed) get views without copies; versioned
requests carry the read-only flag for received buffers."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import shmpool

# NumPy >= 2.1 asks for versioned DLPack (max_version=(1, 0)) and honours the read-only flag;
# older NumPy takes legacy capsules and marks every imported array read-only.
VERSIONED_NUMPY = np.lib.NumpyVersion(np.__version__) >= "2.1.0"

def address(arr) -> int:
    return arr.__array_interface__["data"][0]


@pytest.fixture
def received(make_pool):
    pool = make_pool(slots=2, slot_size=1 << 16)
    consumer, producer = pool.consumer(), pool.producer()
    wb = producer.acquire(timeout=5)
    wb.array(np.float32, (4, 5, 6))[...] = np.arange(120, dtype=np.float32).reshape(4, 5, 6)
    wb.publish()
    return pool, consumer.recv(timeout=5)


def test_from_dlpack_is_a_typed_view_without_copy(received):
    pool, buf = received
    tensor = np.from_dlpack(buf)
    assert tensor.dtype == np.float32 and tensor.shape == (4, 5, 6)
    assert address(tensor) == buf.address
    lo, length = pool._read_mapping_range()
    assert lo <= address(tensor) < lo + length
    np.testing.assert_array_equal(tensor, buf.array())
    assert buf.__dlpack_device__() == (1, 0)


def test_versioned_request_is_read_only(received):
    _, buf = received
    tensor = np.from_dlpack(buf)
    assert not tensor.flags.writeable
    if VERSIONED_NUMPY:  # read-only because of the flag: the same request on a producer is writable
        assert np.from_dlpack(np.asarray(buf).copy()).flags.writeable
    with pytest.raises(ValueError):
        tensor[0, 0, 0] = 1
    capsule = buf.__dlpack__(max_version=(1, 0))
    assert b"dltensor_versioned" in repr(capsule).encode()
    legacy = buf.__dlpack__()
    assert '"dltensor"' in repr(legacy)


def test_versioned_capsule_carries_the_read_only_flag(received):
    _, buf = received
    capsule = buf.__dlpack__(max_version=(1, 0))
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    ptr = get(capsule, b"dltensor_versioned")
    major, minor = ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint32))[0:2]
    flags = ctypes.cast(ptr + 24, ctypes.POINTER(ctypes.c_uint64))[0]  # after version, ctx, deleter
    assert (major, minor) == (1, 0)
    assert flags & 1 == 1  # DLPACK_FLAG_BITMASK_READ_ONLY


def test_bad_requests(received):
    _, buf = received
    with pytest.raises(BufferError):
        buf.__dlpack__(dl_device=(2, 0))
    with pytest.raises(BufferError):
        buf.__dlpack__(stream=1)
    buf.__dlpack__(dl_device=(1, 0), copy=False, stream=None)


def test_producer_dlpack_is_writable_and_recorded(make_pool):
    pool = make_pool(slots=1, slot_size=4096)
    consumer, producer = pool.consumer(), pool.producer()
    wb = producer.acquire(timeout=5)
    wb.array(np.int16, (3, 3))  # records dtype and shape (the array itself is dropped)
    tensor = np.from_dlpack(wb)
    assert tensor.dtype == np.int16 and tensor.shape == (3, 3)
    assert address(tensor) == wb.address
    if VERSIONED_NUMPY:
        assert tensor.flags.writeable
        tensor[...] = np.arange(9).reshape(3, 3)
    else:
        np.asarray(wb)[:18].view(np.int16)[...] = np.arange(9)
        np.testing.assert_array_equal(tensor, np.arange(9).reshape(3, 3))  # the same memory
    del tensor
    wb.publish()
    np.testing.assert_array_equal(consumer.recv(timeout=5).array(), np.arange(9).reshape(3, 3))


def test_torch_if_installed(received):
    torch = pytest.importorskip("torch")
    _, buf = received
    tensor = torch.from_dlpack(buf)
    assert tensor.data_ptr() == buf.address
    assert tuple(tensor.shape) == (4, 5, 6) and tensor.dtype == torch.float32
