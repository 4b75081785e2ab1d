"""Across processes: Python <-> Python, Rust -> Python, Python -> Rust, Ctrl-C during blocking
calls, and the module's behaviour at interpreter exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import shmpool
from conftest import wait_for
from peer import pattern

COUNT = 40


def test_python_producer_process_to_python_consumer(make_pool, spawn):
    pool = make_pool("p2p", slots=3, slot_size=4096)
    consumer = pool.consumer()  # broadcast: join before the producer publishes
    child = spawn("produce", "p2p", str(COUNT))
    child.expect("ready")
    for i in range(COUNT):
        buf = consumer.recv(timeout=20)
        arr = buf.array()
        assert (buf.seq, buf.user_meta, arr.shape) == (i, b"py:%d" % i, (3, 5, 7))
        np.testing.assert_array_equal(arr, pattern(i, (3, 5, 7)))
        del arr
        buf.release()
    child.expect("done")
    assert child.wait() == 0


def test_python_producer_to_python_consumer_process(make_pool, spawn):
    pool = make_pool("p2c", slots=3, slot_size=4096)
    child = spawn("consume", "p2c", str(COUNT))
    child.expect("ready")
    wait_for(lambda: pool.stats()["consumers"] == 1, what="the child's consumer")
    producer = pool.producer()
    for i in range(COUNT):
        wb = producer.acquire(timeout=20)
        wb.array(np.float32, (6, 5))[...] = pattern(i, (6, 5))
        wb.user_meta = b"py:%d" % i
        wb.publish()
    for i in range(COUNT):
        assert child.readline() == f"{i} ok py:{i}"
    assert child.wait() == 0


def test_multiprocessing_spawn_consumer(make_pool, pool_dir):
    import multiprocessing as mp

    from peer import consume_into_queue

    pool = make_pool("mp", slots=2, slot_size=4096)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=consume_into_queue, args=("mp", str(pool_dir), 5, queue))
    proc.start()
    try:
        assert queue.get(timeout=60) == "ready"
        producer = pool.producer()
        for i in range(5):
            wb = producer.acquire(timeout=20)
            wb.array(np.int32, (4,))[...] = i
            wb.publish()
        assert [queue.get(timeout=20) for _ in range(5)] == [[i] * 4 for i in range(5)]
        proc.join(timeout=30)
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=10)


def test_rust_producer_to_python_consumer(make_pool, pool_dir, rust_peer, spawn):
    pool = make_pool("r2p", slots=3, slot_size=4096)
    consumer = pool.consumer()
    child = spawn(argv=[rust_peer, "produce", "r2p", str(pool_dir), str(COUNT)])
    for i in range(COUNT):
        buf = consumer.recv(timeout=20)
        assert (buf.seq, buf.dtype, buf.shape, buf.user_meta) == (i, "f32", (4, 16), b"rust:%d" % i)
        arr = buf.array()
        assert not arr.flags.writeable
        np.testing.assert_array_equal(arr, (np.arange(64) + i * 1000).astype(np.float32).reshape(4, 16))
        del arr
        buf.release()
    assert child.wait() == 0


def test_python_producer_to_rust_consumer(make_pool, pool_dir, rust_peer, spawn):
    pool = make_pool("p2r", slots=3, slot_size=4096)
    child = spawn(argv=[rust_peer, "consume", "p2r", str(pool_dir), str(COUNT), "20"])
    child.expect("ready")
    producer = pool.producer()
    sent = []
    for i in range(COUNT):
        wb = producer.acquire(timeout=20)
        arr = wb.array(np.uint16, (2, 3, 5))
        arr[...] = np.arange(30).reshape(2, 3, 5) * (i + 1)
        sent.append(int(arr.view(np.uint8).sum()))
        del arr
        wb.user_meta = b"py:%d" % i
        wb.publish()
    for i in range(COUNT):
        assert child.readline() == f"{i} u16 2x3x5 60 {sent[i]} py:{i}"
    assert child.wait() == 0


def _sleeping(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "S"


@pytest.mark.parametrize("op", ["recv", "acquire"])
def test_ctrl_c_interrupts_a_blocking_call(make_pool, spawn, op):
    pool = make_pool("sigint", slots=1, slot_size=4096)
    held = pool.producer().acquire(timeout=5) if op == "acquire" else None  # pool full: acquire blocks
    child = spawn("blocked", "sigint", op)
    pid = int(child.expect("ready").split()[1])
    wait_for(lambda: _sleeping(pid), timeout=20, what="the child to block")
    time.sleep(0.15)  # let it sit in the blocking call for more than one 100 ms slice
    assert child.proc.poll() is None, "the blocking call returned on its own"
    sent = time.monotonic_ns()
    os.kill(pid, signal.SIGINT)
    line = child.readline(timeout=5)
    assert line.startswith("interrupted"), line
    latency = (int(line.split()[1]) - sent) / 1e9
    print(f"KeyboardInterrupt {latency * 1e3:.1f} ms after SIGINT")
    assert latency < 0.5, f"KeyboardInterrupt after {latency:.3f}s"
    assert child.wait() == 0
    if held is not None:
        held.discard()


def test_clean_exit_with_live_views_and_no_warnings(pool_dir):
    script = f"""
import numpy as np, shmpool
pool = shmpool.Pool.create("exit", slots=2, slot_size=4096, directory={str(pool_dir)!r})
c, p = pool.consumer(), pool.producer()
wb = p.acquire(timeout=5)
wb.array(np.uint8, (4,))[...] = 1
wb.publish()
buf = c.recv(timeout=5)
arr, mv, t = buf.array(), memoryview(buf), np.from_dlpack(buf)
pending = p.acquire(timeout=5)
wview = pending.array(np.uint8, (4,))
print("ok", flush=True)
"""
    out = subprocess.run(
        [sys.executable, "-W", "error", "-X", "dev", "-c", script], capture_output=True, timeout=60, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok\n" and out.stderr == ""
    assert list(Path(pool_dir).iterdir()) == []  # the creator's pool went away with it


def test_killed_creator_leaves_a_pool_that_can_be_recreated(pool_dir, spawn):
    script = f"""
import shmpool, time
pool = shmpool.Pool.create("crash", slots=2, slot_size=4096, directory={str(pool_dir)!r})
c = pool.consumer()
print("ready", flush=True)
time.sleep(60)
"""
    child = spawn(argv=[sys.executable, "-c", script])
    child.expect("ready")
    child.proc.kill()
    child.wait()
    with shmpool.Pool.create("crash", slots=2, slot_size=4096, directory=pool_dir) as pool:  # stale: replaced
        assert pool.stats()["consumers"] == 0
