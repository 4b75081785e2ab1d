"""Arrays of any size stay in shared memory on ``tcp,shm``: the pools grow up to the negotiated
maximum slot size, past it buffers go on the socket and are counted; slot sizes either side asks
for are honoured; nothing is held or left behind afterwards, even when the worker is killed."""

from __future__ import annotations

import gc
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import shmpool
from shmpool import rpc

HERE = Path(__file__).resolve().parent
ENV = {"PYTHONPATH": str(HERE)}
MiB = 1 << 20
COLOR = 1920 * 1080 * 3 * 4  # NerfBaselines' colour array: 23.7 MiB
SIZES = [1, 4096, MiB, 16 * MiB, COLOR, 64 * MiB, 200 * MiB]


@pytest.fixture
def shm_dir():
    """A private directory in /dev/shm (large pools on disk would be slow); must end up empty."""
    d = Path(tempfile.mkdtemp(prefix="shmpool-test-grow-", dir="/dev/shm"))
    yield d
    gc.collect()
    left = sorted(p.name for p in d.iterdir())
    shutil.rmtree(d, ignore_errors=True)
    assert not left, f"pool files left behind: {left}"


def start(directory, **kw):
    return rpc.start_worker(protocol="tcp,shm", env=dict(ENV, **kw.pop("env", {})), timeout=30,
                            directory=str(directory), slots=4, **kw)


def marked(nbytes, seed):
    """`nbytes` bytes that differ page to page (cheap for 200 MiB)."""
    block = np.random.default_rng(seed).integers(0, 256, size=4099, dtype=np.uint8)
    return np.resize(block, nbytes)


def wait_until(what, cond, limit=10.0):
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_every_size_up_to_the_maximum_travels_in_pool_slots(shm_dir):
    with start(shm_dir) as worker:
        assert worker.protocol == "shm"
        for n in SIZES:
            a = marked(n, n)
            if n >= 256:  # copied into a slot (smaller ones are cheaper on the socket)
                assert worker.call("rpc_targets:received_in_pool", a) == (True, n), n
                back = worker.call("rpc_targets:echo", a)
                assert rpc.in_pool(back) and np.array_equal(back, a), n
                del back
            # In place: a slot of any size, sent and echoed without a copy.
            sent = worker.empty(n, np.uint8)
            sent[:] = a
            back = worker.call("rpc_targets:echo", sent)
            assert rpc.in_pool(sent) and rpc.in_pool(back) and np.array_equal(back, a), n
            assert back.__array_interface__["data"][0] == sent.__array_interface__["data"][0]
            del a, sent, back
            gc.collect()
        stats = worker.transport_stats()
        assert stats["spilled_buffers"] == 0, stats
        assert stats["slot_size"] >= 200 * MiB and stats["pools_grown"] >= 3, stats


def test_mixed_sizes_leave_no_slot_held_and_no_file(shm_dir):
    sizes = [1, 300, 4096, MiB, 5 * MiB, 16 * MiB, COLOR]
    rng = np.random.default_rng(7)
    with start(shm_dir) as worker:
        arrays = {n: marked(n, n) for n in sizes}
        for i in range(100):
            n = sizes[int(rng.integers(len(sizes)))]
            if i % 2:
                back = worker.call("rpc_targets:echo", arrays[n])
            else:
                back = worker.call("rpc_targets:fresh", n, i)  # the worker's pools
                assert (n < 256 or rpc.in_pool(back)) and back[0] == i and back[-1] == i
            del back
        gc.collect()
        # Releases of the worker's views travel with its next message or heartbeat.
        wait_until("every slot back", lambda: worker.transport_stats()["slots_in_use"] == 0)
        assert worker.transport_stats()["spilled_buffers"] == 0
    # Closed: no pool file (checked by the fixture).


def test_a_side_asking_for_larger_slots_gets_them(shm_dir):
    with start(shm_dir, slot_size=32 * MiB) as worker:  # the host asks
        stats = worker.transport_stats()
        assert stats["slot_size"] == 32 * MiB, stats
        assert worker.call("rpc_targets:received_in_pool", marked(COLOR, 1)) == (True, COLOR)
        assert worker.transport_stats()["pools_grown"] == 0, "the first pools were large enough"
    env = {"SHMPOOL_RPC_SLOT_SIZE": str(64 * MiB)}  # the worker asks
    with start(shm_dir, slot_size=MiB, env=env) as worker:
        assert worker.transport_stats()["slot_size"] == 64 * MiB


def test_past_the_maximum_a_buffer_goes_on_the_socket_counted(shm_dir):
    with start(shm_dir, max_slot_size=2 * MiB) as worker:
        fits, over = marked(2 * MiB, 1), marked(2 * MiB + 1, 2)
        assert worker.call("rpc_targets:received_in_pool", fits) == (True, 2 * MiB)
        assert worker.call("rpc_targets:received_in_pool", over) == (False, 2 * MiB + 1)
        back = worker.call("rpc_targets:echo", over)
        assert not rpc.in_pool(back) and np.array_equal(back, over)
        stats = worker.transport_stats()
        assert (stats["spilled_buffers"], stats["spilled_bytes"]) == (2, 2 * (2 * MiB + 1)), stats
        with pytest.raises(shmpool.InvalidArgument):  # never an ordinary array in disguise
            worker.empty(2 * MiB + 1, np.uint8)
        del back


def test_killing_the_worker_while_a_grown_pool_is_in_use(shm_dir):
    with start(shm_dir) as worker:
        big = worker.call("rpc_targets:fresh", 40 * MiB, 3)  # in a pool the worker grew
        assert rpc.in_pool(big) and worker.transport_stats()["generation"] == 0
        sent = worker.empty(40 * MiB, np.uint8)  # and one the host grew
        assert worker.transport_stats()["generation"] >= 1
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait(10)
        with pytest.raises(shmpool.Disconnected):
            worker.call("rpc_targets:echo", sent)
        assert big[-1] == 3, "the view outlives the worker"
        del big, sent
    # Closed: no pool file (checked by the fixture).
