"""Latency of sharing a named array between two Python processes: from "publish" in the writer
to the reader holding the new version, at 64 B, 8 MiB and 64 MiB, in one run.

  shmpool.Store      the writer fills a version in place (not timed), then commits; the reader
                     wakes in store.read(newer_than=...) and holds a read-only ndarray view
  .npy in /dev/shm   np.save to a temporary file + os.replace (atomic rename); the name goes to
                     the reader through a pipe; the reader np.load()s it
  shared_memory+lock multiprocessing.shared_memory by name; the writer copies the array in under
                     a multiprocessing.Lock; the reader, told through a pipe, copies it out
                     under the lock (its own consistent version)

Latency = reader's CLOCK_MONOTONIC once it holds the data minus the writer's just before it
publishes (stamped in the array's first 8 bytes). One version in flight: the writer waits for
the reader's ack before the next one.

Every round lasts the same --period (default 40 ms) at every size and for every method: the writer
produces the data, then waits for the period to end before it publishes. Without that, the reader
sleeps longer at larger sizes (while the writer fills 64 MiB), and a CPU that sat idle longer
takes longer to wake (on a VM, 8 us after 0 ms idle, ~150 us after 20 ms idle, for 64 B and
64 MiB alike): the size would be blamed for the machine's wake-up latency.

Usage: python bindings/python/benches/store_latency.py [--quick] [--json]
Noisy on a shared 2-vCPU machine: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
from multiprocessing import shared_memory

import numpy as np

import shmpool

SIZES = {"64 B": 64, "8 MiB": 8 << 20, "64 MiB": 64 << 20}
ROUNDS = {"64 B": 300, "8 MiB": 100, "64 MiB": 30}


PERIOD = 0.04  # seconds per round, set by --period


def pace(start: float) -> None:
    """Waits until the round that began at `start` (time.monotonic()) has lasted PERIOD."""
    left = start + PERIOD - time.monotonic()
    if left > 0:
        time.sleep(left)


def stamp(a: np.ndarray) -> None:
    a[:8] = np.frombuffer(np.int64(time.monotonic_ns()).tobytes(), np.uint8)


def stamped(a: np.ndarray) -> int:
    return int(np.frombuffer(a[:8].tobytes(), np.int64)[0])


# --- shmpool.Store -----------------------------------------------------------------------------


def store_reader(directory: str, rounds: int, conn) -> None:
    store = shmpool.Store.open("bench", directory)
    last, lat, held = 0, [], None
    for _ in range(rounds):
        v = store.read("x", newer_than=last, timeout=60)
        a = v.array()
        lat.append(time.monotonic_ns() - stamped(a))
        last, held = v.version, (v, a)  # hold the version like a user would, until the next
        conn.send(None)
    del held
    conn.send(lat)


def run_store(nbytes: int, rounds: int) -> list:
    directory = tempfile.mkdtemp(dir="/dev/shm")
    try:
        store = shmpool.Store.open("bench", directory)
        store.declare("x", dtype="u8", shape=(-1,), capacity=nbytes)
        frame = np.full(nbytes, 7, np.uint8)
        parent, child = mp.Pipe()
        p = mp.get_context("fork").Process(target=store_reader, args=(directory, rounds, child))
        p.start()
        for _ in range(rounds):
            start = time.monotonic()
            w = store.write("x", timeout=60)
            a = w.array(shape=(nbytes,))
            np.copyto(a, frame)  # the data is produced in place: not timed
            pace(start)
            stamp(a)
            w.commit()
            parent.recv()
        lat = parent.recv()
        p.join(30)
        del store, w, a
        return lat
    finally:
        shmpool.Store.gc(directory)
        shutil.rmtree(directory, ignore_errors=True)


# --- .npy in /dev/shm --------------------------------------------------------------------------


def npy_reader(rounds: int, conn) -> None:
    lat = []
    for _ in range(rounds):
        path = conn.recv()
        a = np.load(path)
        lat.append(time.monotonic_ns() - stamped(a))
        conn.send(None)
    conn.send(lat)


def run_npy(nbytes: int, rounds: int) -> list:
    directory = tempfile.mkdtemp(dir="/dev/shm")
    try:
        path = os.path.join(directory, "x.npy")
        frame = np.full(nbytes, 7, np.uint8)
        parent, child = mp.Pipe()
        p = mp.get_context("fork").Process(target=npy_reader, args=(rounds, child))
        p.start()
        for _ in range(rounds):
            pace(time.monotonic())
            stamp(frame)
            np.save(path + ".tmp.npy", frame)
            os.replace(path + ".tmp.npy", path)
            parent.send(path)
            parent.recv()
        lat = parent.recv()
        p.join(30)
        return lat
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- multiprocessing.shared_memory + lock -------------------------------------------------------


def shm_reader(name: str, nbytes: int, lock, rounds: int, conn) -> None:
    shm = shared_memory.SharedMemory(name=name)
    view = np.ndarray((nbytes,), np.uint8, shm.buf)
    lat = []
    for _ in range(rounds):
        conn.recv()
        with lock:
            a = view.copy()
        lat.append(time.monotonic_ns() - stamped(a))
        conn.send(None)
    del view
    shm.close()
    conn.send(lat)


def run_shm(nbytes: int, rounds: int) -> list:
    shm = shared_memory.SharedMemory(create=True, size=nbytes)
    try:
        view = np.ndarray((nbytes,), np.uint8, shm.buf)
        frame = np.full(nbytes, 7, np.uint8)
        lock = mp.get_context("fork").Lock()
        parent, child = mp.Pipe()
        p = mp.get_context("fork").Process(target=shm_reader, args=(shm.name, nbytes, lock, rounds, child))
        p.start()
        for _ in range(rounds):
            pace(time.monotonic())
            stamp(frame)
            with lock:
                np.copyto(view, frame)
            parent.send(None)
            parent.recv()
        lat = parent.recv()
        p.join(30)
        del view
        return lat
    finally:
        shm.close()
        shm.unlink()


def summary(lat: list) -> dict:
    us = sorted(x / 1000 for x in lat)
    return {"p50_us": statistics.median(us), "p99_us": us[min(len(us) - 1, int(len(us) * 0.99))], "n": len(us)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of the rounds")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--period", type=float, default=40.0, help="milliseconds per round (0: back to back)")
    args = ap.parse_args()
    global PERIOD
    PERIOD = args.period / 1000
    results = {}
    for label, nbytes in SIZES.items():
        rounds = max(5, ROUNDS[label] // (10 if args.quick else 1))
        for method, run in (("shmpool.Store", run_store), (".npy in /dev/shm", run_npy), ("shared_memory+lock", run_shm)):
            results[(label, method)] = summary(run(nbytes, rounds))
    if args.json:
        print(json.dumps([{"size": s, "method": m, **r} for (s, m), r in results.items()]))
        return
    print(f"one version per {args.period:g} ms at every size (see --period)")
    print(f"{'size':>7}  {'method':<20} {'p50 µs':>10} {'p99 µs':>10}  {'vs Store (p50)':>14}")
    for (label, method), r in results.items():
        ratio = r["p50_us"] / results[(label, "shmpool.Store")]["p50_us"]
        print(f"{label:>7}  {method:<20} {r['p50_us']:>10.1f} {r['p99_us']:>10.1f}  {ratio:>13.0f}x")


if __name__ == "__main__":
    main()
