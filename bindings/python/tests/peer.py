"""Child-process roles for the cross-process tests (run as `python peer.py ROLE ...`).

Each role prints "ready" once it is attached, then one line per event; the parent reads them
with deadlines (tests/conftest.py: Child)."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import shmpool


def pattern(i: int, shape) -> np.ndarray:
    return (np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) + i * 1000).astype(np.float32)


def produce(name: str, count: str) -> None:
    """Opens NAME, publishes COUNT float32 (3, 5, 7) arrays: pattern(i), meta b"py:i"."""
    with shmpool.Pool.open(name) as pool, pool.producer() as producer:
        print("ready", flush=True)
        for i in range(int(count)):
            wb = producer.acquire(timeout=20)
            wb.array(np.float32, (3, 5, 7))[...] = pattern(i, (3, 5, 7))
            wb.user_meta = b"py:%d" % i
            wb.publish()
        print("done", flush=True)


def consume(name: str, count: str) -> None:
    """Opens NAME, joins as a consumer, prints "ready", then "seq ok|bad meta" per buffer."""
    with shmpool.Pool.open(name) as pool, pool.consumer() as consumer:
        print("ready", flush=True)
        for i in range(int(count)):
            buf = consumer.recv(timeout=20)
            arr = buf.array()
            ok = arr.dtype == np.float32 and np.array_equal(arr, pattern(i, arr.shape))
            print(buf.seq, "ok" if ok and not arr.flags.writeable else "bad", buf.user_meta.decode(), flush=True)
            del arr
            buf.release()


def blocked(name: str, op: str) -> None:
    """Blocks forever in recv() or acquire() (the pool must be full for acquire) and reports how
    a KeyboardInterrupt ended it, with the CLOCK_MONOTONIC time it was caught."""
    with shmpool.Pool.open(name) as pool:
        consumer = pool.consumer()
        producer = pool.producer()
        try:
            print("ready", os.getpid(), flush=True)
            if op == "recv":
                consumer.recv()
            else:
                producer.acquire()
            print("returned", flush=True)
        except KeyboardInterrupt:
            print("interrupted", time.monotonic_ns(), flush=True)


def consume_first(name: str) -> None:
    """Started before NAME exists: waits for it with Pool.open(timeout=...), then prints the
    first buffer's bytes."""
    print("waiting", flush=True)
    with shmpool.Pool.open(name, timeout=20) as pool, pool.consumer() as consumer:
        print("opened", flush=True)
        print(bytes(consumer.recv(timeout=20)).decode(), flush=True)


def consume_into_queue(name: str, directory: str, count: int, queue) -> None:
    """multiprocessing (spawn) target: receives COUNT int32 arrays and puts them as lists."""
    with shmpool.Pool.open(name, directory=directory) as pool, pool.consumer() as consumer:
        queue.put("ready")
        for _ in range(count):
            buf = consumer.recv(timeout=20)
            queue.put(buf.array().tolist())


if __name__ == "__main__":
    roles = {"produce": produce, "consume": consume, "blocked": blocked, "consume_first": consume_first}
    roles[sys.argv[1]](*sys.argv[2:])
