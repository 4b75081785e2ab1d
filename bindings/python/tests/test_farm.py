"""shmpool.farm against the real broker and the Rust worker/client programs (crate
shmpool-farm): a Python worker reads co-located clients' arrays in place, a Python client gets
NumPy arrays back, refusals raise FarmError. The programs come from $SHMPOOL_FARM_BIN (a
directory), else target/debug (`cargo build -p shmpool-farm`); without them the tests skip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import shmpool
from shmpool.farm import Client, FarmError, Worker

REPO = Path(__file__).resolve().parents[3]
BIN = Path(os.environ.get("SHMPOOL_FARM_BIN", REPO / "target" / "debug"))


def program(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{path} is not built (cargo build -p shmpool-farm)")
    return str(path)


@pytest.fixture
def broker(tmp_path):
    """A broker on an ipc endpoint, its pools and challenges in tmp_path; stopped with SIGTERM."""
    endpoint = f"ipc://{tmp_path}/broker"
    proc = subprocess.Popen(
        [program("shmpool-broker"), "--bind", endpoint, "--shm-dir", str(tmp_path), "--queue-deadline-ms", "300"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in proc.stdout.readline()
        yield endpoint, tmp_path
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


@pytest.fixture
def rust_echo(broker):
    """The broker, with a Rust worker of service "echo" (tag "rust", reports how arrays came)."""
    endpoint, shm_dir = broker
    worker = subprocess.Popen(
        [program("shmpool-farm-worker"), "--connect", endpoint, "--service", "echo", "--tag", "rust",
         "--shm-dir", str(shm_dir), "--report-shared"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_workers(endpoint, "echo", 1)
        yield broker
    finally:
        worker.kill()
        worker.wait(timeout=10)


def wait_workers(endpoint, service, n):
    status = Client(endpoint, timeout=2.0, attempts=1, shm=False)
    for _ in range(500):
        s = json.loads(bytes(status.request("mmi.status", [])[0]))
        if s["services"].get(service, {}).get("workers", 0) >= n:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"no {n} workers of {service}: {s}")


def test_python_worker_reads_arrays_in_place_and_no_slot_is_held(broker):
    endpoint, shm_dir = broker
    worker = Worker(endpoint, "py", shm_dir=str(shm_dir))
    seen = []

    def serve():
        for _ in range(1000):
            request = worker.recv(timeout=30)
            assert request is not None
            parts = request.parts
            seen.append((request.shared[2], isinstance(parts[2], np.ndarray), parts[2].flags.writeable))
            request.reply([b"py"] + parts)

    thread = threading.Thread(target=serve)
    thread.start()
    wait_workers(endpoint, "py", 1)
    out = subprocess.run(
        [program("shmpool-farm-client"), "--connect", endpoint, "--service", "py", "--events", "1000",
         "--planes", "1", "--side", "64", "--timeout-ms", "10000", "--shm-dir", str(shm_dir)],
        capture_output=True, text=True, timeout=120,
    )
    thread.join(timeout=30)
    worker.close()
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert len(seen) == 1000
    assert all(shared and is_array and not writeable for shared, is_array, writeable in seen)
    assert result["shared_parts"] == 1000 and result["slots_held"] == 0, result
    # The Python worker's reply arrays went into the Rust client's reply pool.
    assert result["shared_reply_parts"] == 1000 and result["reply_slots_held"] == 0, result
    # Whole, in an envelope in that pool: the REPLY through the broker only confirmed them.
    assert result["shared_replies"] == 1000, result


def test_python_client_gets_numpy_arrays_back_from_a_rust_worker(rust_echo):
    endpoint, shm_dir = rust_echo
    client = Client(endpoint, shm_dir=str(shm_dir))
    for event in range(20):
        plane = np.arange(512 * 512, dtype=np.float32).reshape(1, 1, 512, 512) + event
        tag, name, meta, back, shared = client.request("echo", [b"plane0", '{"event": 1}', plane])
        assert (tag, name, meta, shared) == (b"rust", b"plane0", b'{"event": 1}', b"shared")
        assert back.dtype == np.float32 and back.shape == (1, 1, 512, 512)
        assert np.array_equal(back, plane)
        # The reply array is a read-only view inside the client's reply pool mapping.
        base, size = client.reply_pool_mapping()
        address = back.__array_interface__["data"][0]
        assert base <= address and address + back.nbytes <= base + size
        assert not back.flags.writeable
        assert client.stats()["reply_slots_held"] == 1
        del back
        assert client.stats()["reply_slots_held"] == 0
    stats = client.stats()
    assert (stats["shared_parts"], stats["shared_reply_parts"], stats["inline_reply_parts"]) == (20, 20, 80)
    assert stats["shared_replies"] == 20, stats


def test_client_array_is_filled_in_a_slot_and_sent_without_a_copy(rust_echo):
    endpoint, shm_dir = rust_echo
    client = Client(endpoint, shm_dir=str(shm_dir))
    for event in range(5):
        # Every slot of the client's pool (8, the default) holds one array written in place.
        planes = [client.array("float32", (1, 1, 256, 256)) for _ in range(8)]
        base, size = client.pool_mapping()
        for i, plane in enumerate(planes):
            plane[...] = np.arange(256 * 256, dtype=np.float32).reshape(plane.shape) + event * 8 + i
            address = plane.__array_interface__["data"][0]
            assert base <= address and address + plane.nbytes <= base + size
        assert client.stats()["slots_held"] == 8
        # Each is sent as it is (lent to the request and given back; a copy would need a free
        # slot, and there is none), twice: the worker reads it in place.
        for plane in planes:
            for _ in range(2):
                tag, back, shared = client.request("echo", [plane])
                assert (tag, shared) == (b"rust", b"shared")
                assert np.array_equal(back, plane) and plane.flags.writeable
        # A slice is an array like any other: copied (into its frame: no slot is free).
        _, back, shared = client.request("echo", [planes[0][0, 0, :2048]])
        assert shared == b"inline" and np.array_equal(back, planes[0][0, 0, :2048])
        # A ninth array finds no free slot: an ordinary array, sent as bytes.
        extra = client.array("float32", (1, 1, 256, 256))
        extra[...] = 1
        assert not base <= extra.__array_interface__["data"][0] < base + size
        assert client.request("echo", [extra])[2] == b"inline"
        del back, planes, plane, extra
        assert client.stats()["slots_held"] == 0
    assert client.stats()["resent_inline"] == 0
    # Without shared memory it is an ordinary array, sent as bytes.
    plain = Client(endpoint, shm=False)
    plane = plain.array(np.uint16, [3, 5000])
    plane[...] = 7
    tag, back, shared = plain.request("echo", [plane])
    assert (shared, back.dtype, back.shape, int(back.sum())) == (b"inline", np.uint16, (3, 5000), 7 * 15000)
    assert plain.pool_mapping() is None
    with pytest.raises(shmpool.InvalidArgument):
        plain.array("float32", [1 << 40, 1 << 40])


SHARED_CLIENT = """
import sys, threading
from shmpool.farm import Client
client = Client(sys.argv[1], shm_dir=sys.argv[2])
errors = []

def use(i):
    try:
        for event in range(50):
            plane = client.array("float32", (64, 64))
            plane[...] = i * 1000 + event
            _, back, _ = client.request("echo", [plane])
            assert back[0, 0] == i * 1000 + event
            assert client.stats()["slots_held"] >= 1 and client.pool_mapping() is not None
    except Exception as e:
        errors.append(e)

threads = [threading.Thread(target=use, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
"""


def test_one_client_shared_by_threads_neither_deadlocks_nor_mixes_replies(rust_echo):
    endpoint, shm_dir = rust_echo
    # In a child process: a deadlock (a thread holding the GIL waiting for the client's lock)
    # would stop this interpreter too; the child is killed at the deadline instead.
    out = subprocess.run([sys.executable, "-c", SHARED_CLIENT, endpoint, str(shm_dir)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_a_request_nobody_serves_raises_farm_error(broker):
    endpoint, _ = broker
    with pytest.raises(FarmError, match="503"):
        Client(endpoint, shm=False).request("nobody", [b"x"])
