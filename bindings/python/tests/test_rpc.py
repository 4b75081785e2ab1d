"""shmpool.rpc: calls into worker processes on every transport (the NerfBaselines list), plus
negotiation, liveness and the namespace backend. Deadlines, not sleeps."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import shmpool
from shmpool import rpc

HERE = Path(__file__).resolve().parent
ENV = {"PYTHONPATH": str(HERE)}
PROTOCOLS = ["tcp", "unix", "tcp,shm"]
# Small pools keep the tests light; 8 MiB slots hold the 1 MiB and 4 MiB arrays.
SMALL = {"slots": 4, "slot_size": 8 << 20}


def start(protocol, **kw):
    opts = dict(SMALL, env=ENV, timeout=30)
    opts.update(kw)
    return rpc.start_worker(protocol=protocol, **opts)


@pytest.fixture(scope="module", params=PROTOCOLS)
def worker(request, tmp_path_factory):
    with start(request.param, directory=str(tmp_path_factory.mktemp("rpc"))) as w:
        yield w


def test_negotiated_transport_and_pid(worker):
    assert worker.protocol in ("tcp", "unix", "shm")
    assert worker.call("rpc_targets:pid") == worker.process.pid
    assert worker.pickle_protocol == 5
    options = worker._conn.options  # a named structure, not a tuple
    assert options.max_message > 0 and options.heartbeat > 0 and options.slots > 0
    assert f"slot_size={options.slot_size}" in repr(options)


def test_echo_numpy_arrays(worker):
    for n in (3, 1 << 18, 1 << 20):
        a = np.arange(n, dtype=np.float32)
        b = worker.call("rpc_targets:echo", a)
        assert isinstance(b, np.ndarray) and b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    # On shm, large arrays arrive in the worker and back on the host as views of pool slots.
    a = np.ones(1 << 20, dtype=np.float32)
    in_slot, total = worker.call("rpc_targets:describe", a)
    assert total == a.size
    assert in_slot == (worker.protocol == "shm")
    back = worker.call("rpc_targets:echo", a)
    assert rpc.in_pool(back) == (worker.protocol == "shm")
    assert not rpc.in_pool(a)
    held = [worker.call("rpc_targets:echo", np.full(1000, i, dtype=np.float32)) for i in range(6)]
    for i, h in enumerate(held):  # views stay valid across later calls
        assert (h == i).all()


def test_arrays_allocated_in_a_slot_travel_without_copies(worker):
    shm = worker.protocol == "shm"
    if not shm:
        with pytest.raises(shmpool.Unsupported):  # never an ordinary array in disguise
            worker.empty((512, 512), np.float32)
        return
    a = worker.empty((512, 512), np.float32)
    a[:] = np.arange(512 * 512, dtype=np.float32).reshape(512, 512)
    assert rpc.in_pool(a) == shm
    assert worker.call("rpc_targets:describe", a) == (shm, float(a.sum(dtype=np.float64)))
    back = worker.call("rpc_targets:echo", a)
    np.testing.assert_array_equal(back, a)
    # The echo is a view of our own slot: the same memory, no copy either way.
    assert (back.__array_interface__["data"][0] == a.__array_interface__["data"][0]) == shm
    in_slot = 0
    for i in range(12):  # slots come back once both sides dropped their views
        b = worker.empty(1 << 20, np.float32)
        b[0] = i
        in_slot += rpc.in_pool(b)
        assert worker.call("rpc_targets:echo", b)[0] == i
        del b
    assert in_slot >= (6 if shm else 0)


def test_large_messages(worker):
    big = np.random.default_rng(1).integers(0, 255, size=40 << 20, dtype=np.uint8)  # > a slot
    np.testing.assert_array_equal(worker.call("rpc_targets:echo", big), big)
    data = bytes(range(256)) * 4096
    assert worker.call("rpc_targets:echo", data) == data


def test_exceptions_with_remote_traceback(worker):
    with pytest.raises(ValueError, match="boom") as info:
        worker.call("rpc_targets:fail", "boom")
    assert "rpc_targets.py" in str(info.value.__cause__) and "in fail" in str(info.value.__cause__)
    import rpc_targets

    with pytest.raises(rpc_targets.CustomBase):
        worker.call("rpc_targets:fail_base")
    with pytest.raises(AttributeError):
        worker.call("rpc_targets:no_such_function")
    assert worker.call("rpc_targets:echo", 5) == 5  # still usable


def test_generators_stream_and_close_on_break(worker):
    assert list(worker.call("rpc_targets:count", 5)) == [0, 1, 2, 3, 4]
    assert list(worker.call("rpc_targets:count", 0)) == []
    before = len(worker.call("rpc_targets:closed_generators"))
    for i in worker.call("rpc_targets:count", 1000):
        if i == 2:
            break
    closed = worker.call("rpc_targets:closed_generators")
    assert len(closed) == before + 1 and closed[-1] == 1000
    assert worker.stats()["iterators"] == 0


def test_a_dropped_generator_is_closed_in_the_worker_even_if_never_iterated(worker):
    before = len(worker.call("rpc_targets:closed_generators"))
    it = worker.call("rpc_targets:count", 777)
    assert worker.stats()["iterators"] == 1
    del it
    gc.collect()
    # The close travels with the next request.
    assert worker.call("rpc_targets:closed_generators")[before:] == [777]
    assert worker.stats()["iterators"] == 0
    it = worker.call("rpc_targets:count", 778)
    it.close()
    assert worker.call("rpc_targets:closed_generators")[before:] == [777, 778]


def test_static_and_class_methods_through_a_proxy_run_in_the_worker(worker):
    counter = worker.instance("rpc_targets:Counter", 1)
    assert counter.static_pid() == worker.process.pid != os.getpid()
    assert counter.class_name() == ("Counter", worker.process.pid)


def test_instance_proxies_and_collection(worker):
    base = worker.stats()["objects"]
    counter = worker.instance("rpc_targets:Counter", 10)
    assert counter.add(5) == 15
    assert counter.value == 15
    counter.value = 1
    assert counter.add() == 2
    assert worker.stats()["objects"] == base + 1
    del counter
    gc.collect()
    assert worker.stats()["objects"] == base


def test_cancel_keeps_the_connection_usable(worker):
    result = {}

    def run():
        try:
            result["value"] = worker.call("rpc_targets:sleep", 60)
        except BaseException as e:  # noqa: B036
            result["error"] = e

    t = threading.Thread(target=run)
    started = time.monotonic()
    t.start()
    deadline = time.monotonic() + 10
    while worker._current is None and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.cancel()
    t.join(10)
    assert not t.is_alive()
    assert isinstance(result.get("error"), rpc.CancelledError), result
    assert time.monotonic() - started < 5
    assert worker.call("rpc_targets:echo", "after") == "after"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_worker_exit_and_kill_are_disconnections(protocol):
    with start(protocol) as w:
        with pytest.raises(ConnectionError):
            w.call("rpc_targets:exit_now")
        with pytest.raises(ConnectionError):
            w.call("rpc_targets:echo", 1)
    with start(protocol) as w:
        result = {}

        def run():
            try:
                w.call("rpc_targets:sleep", 60)
            except BaseException as e:  # noqa: B036
                result["error"] = e
                result["at"] = time.monotonic()

        t = threading.Thread(target=run)
        t.start()
        while w._current is None:
            time.sleep(0.01)
        killed = time.monotonic()
        os.kill(w.process.pid, signal.SIGKILL)
        t.join(5)
        assert isinstance(result["error"], shmpool.Disconnected)
        assert result["at"] - killed < 1.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_host_closes_before_or_after_a_receive(protocol):
    with start(protocol) as w:
        a = w.call("rpc_targets:echo", np.arange(1 << 18, dtype=np.float32))
        w.close()
        assert w.process.returncode == 0
        assert a[-1] == (1 << 18) - 1  # what was received stays valid
        with pytest.raises(ConnectionError):
            w.call("rpc_targets:echo", 1)


def test_timeout_waiting_for_a_worker(tmp_path):
    silent = tmp_path / "silent-python"
    silent.write_text("#!/bin/sh\nexec sleep 30\n")
    silent.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        with rpc.start_worker(python=str(silent), timeout=0.5, env=ENV):
            pass
    assert time.monotonic() - started < 5
    with pytest.raises(ConnectionError, match="exited"):
        with rpc.start_worker(python="/bin/false", timeout=30, env=ENV):
            pass


def test_negotiation_matrix(tmp_path):
    for protocol, transport in [("tcp", "tcp"), ("unix", "unix"), ("unix,shm", "shm"), ("tcp,unix", "unix")]:
        with start(protocol) as w:
            assert w.protocol == transport, protocol
            assert w.call("rpc_targets:echo", b"x" * 1000) == b"x" * 1000
    # A worker that cannot map the pools (it looks in an empty directory) stays on tcp.
    empty = tmp_path / "empty"
    empty.mkdir()
    with start("tcp,shm", env=dict(ENV, SHMPOOL_DIR=str(empty))) as w:
        assert w.protocol == "tcp"
        assert w.call("rpc_targets:shm_dir") == str(empty)
    # The environment variable chooses when the API does not.
    os.environ["SHMPOOL_PROTOCOL"] = "unix"
    try:
        with start(None) as w:
            assert w.protocol == "unix"
    finally:
        del os.environ["SHMPOOL_PROTOCOL"]
    with pytest.raises(shmpool.InvalidArgument, match="unknown protocol"):
        with start("tcp,pigeon"):
            pass


def test_stopped_worker_is_found_by_heartbeats():
    with start("tcp,shm", heartbeat=0.1, missed_heartbeats=10) as w:
        os.kill(w.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(shmpool.Disconnected, match="heartbeat"):
                w.call("rpc_targets:echo", 1)
            assert time.monotonic() - started < 5
        finally:
            os.kill(w.process.pid, signal.SIGKILL)
            os.kill(w.process.pid, signal.SIGCONT)


def test_namespace_worker_upgrades_to_shm(tmp_path):
    with start("tcp,shm", backend="namespace", directory=str(tmp_path)) as w:
        assert w.protocol == "shm"
        assert w.call("rpc_targets:shm_dir") == "/mnt/shmpool-pool"
        a = np.arange(1 << 20, dtype=np.float32)
        assert w.call("rpc_targets:describe", a) == (True, float(a.sum()))
