"""Hand 8 MiB frames from a Python producer process to a Python consumer process as ndarrays.

Compares, in one run:
  shmpool (in place)   the producer fills the slot in place (only the 16-byte header is written;
                       the frame is "rendered" into shared memory), the consumer gets a view
  shmpool (copy in)    the producer copies a ready ndarray into the slot (np.copyto), the consumer
                       gets a view
  mp.Queue             multiprocessing.Queue.put(ndarray): pickled copy through a pipe
  shared_memory+names  a new multiprocessing.shared_memory segment per frame (copy in), its name
                       through a multiprocessing.Queue; the consumer attaches a view, then unlinks

Two phases per transport:
  latency      one frame in flight: the producer waits for the consumer's ack before the next
               frame; latency = consumer's CLOCK_MONOTONIC when it holds the ndarray minus the
               producer's just before it starts sending (stamped in the frame's first 16 bytes)
  throughput   frames streamed with at most 4 in flight (4 slots / maxsize=4 queues);
               fps = frames / (consumer's last receive - consumer's first receive)

Usage: python bindings/python/benches/handoff.py [--frames N] [--queue-frames N] [--json]
Noisy on a shared 2-vCPU machine: compare ratios in one run, not absolute numbers across runs.
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

import numpy as np

SHAPE = (1024, 2048, 4)  # 8 MiB of uint8
NBYTES = int(np.prod(SHAPE))
IN_FLIGHT = 4


def header(arr: np.ndarray) -> np.ndarray:
    """The first 16 bytes of a frame as two uint64: frame index and send time."""
    return arr.reshape(-1)[:16].view(np.uint64)


def source_frame() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, SHAPE, dtype=np.uint8)


# ---------------------------------------------------------------- producers (child processes)


def produce_shmpool(pool_dir, count, acks, copy_in):
    import shmpool

    frame = source_frame()
    with shmpool.Pool.open("bench", directory=pool_dir) as pool, pool.producer() as producer:
        for i in range(count):
            t0 = time.monotonic_ns()
            wb = producer.acquire(timeout=60)
            arr = wb.array(np.uint8, SHAPE)
            if copy_in:
                np.copyto(arr, frame)
            header(arr)[:] = (i, t0)
            del arr
            wb.publish()
            if acks is not None:
                acks.get(timeout=60)


def produce_queue(queue, count, acks):
    frame = source_frame()
    for i in range(count):
        t0 = time.monotonic_ns()
        header(frame)[:] = (i, t0)
        queue.put(frame)
        if acks is not None:
            acks.get(timeout=60)


def produce_shared_memory(queue, count, acks):
    from multiprocessing import resource_tracker, shared_memory

    frame = source_frame()
    for i in range(count):
        t0 = time.monotonic_ns()
        shm = shared_memory.SharedMemory(create=True, size=NBYTES)
        arr = np.ndarray(SHAPE, dtype=np.uint8, buffer=shm.buf)
        np.copyto(arr, frame)
        header(arr)[:] = (i, t0)
        del arr
        name = shm.name
        shm.close()
        # The consumer unlinks it: hand the tracker's record over so nothing is unlinked twice.
        resource_tracker.unregister(shm._name, "shared_memory")
        queue.put(name)
        if acks is not None:
            acks.get(timeout=60)


# ---------------------------------------------------------------- consumers (child processes)


def consume(kind, source, count, acks, results, ready):
    import shmpool

    latencies, firsts, lasts = [], None, None
    pool = consumer = None
    if kind == "shmpool":
        pool = shmpool.Pool.open("bench", directory=source)
        consumer = pool.consumer()
    ready.put(True)
    for _ in range(count):
        if kind == "shmpool":
            buf = consumer.recv(timeout=60)
            arr = buf.array()
        elif kind == "queue":
            arr = source.get(timeout=60)
        else:
            from multiprocessing import shared_memory

            shm = shared_memory.SharedMemory(name=source.get(timeout=60))
            arr = np.ndarray(SHAPE, dtype=np.uint8, buffer=shm.buf)
        now = time.monotonic_ns()
        index, t0 = (int(v) for v in header(arr))
        assert arr.shape == SHAPE
        latencies.append(now - t0)
        firsts = firsts or now
        lasts = now
        del arr
        if kind == "shmpool":
            buf.release()
        elif kind == "shm":
            shm.close()
            shm.unlink()
        if acks is not None:
            acks.put(index)
    results.put({"latencies_ns": latencies, "span_ns": lasts - firsts, "count": count})
    if pool is not None:
        consumer.close()
        pool.close()


# ---------------------------------------------------------------- driver


def run(kind, phase, count, ctx, pool_dir):
    latency = phase == "latency"
    acks = ctx.Queue() if latency else None
    results, ready = ctx.Queue(), ctx.Queue()
    pool = None
    if kind.startswith("shmpool"):
        import shmpool

        pool = shmpool.Pool.create("bench", slots=IN_FLIGHT, slot_size=NBYTES, directory=pool_dir)
        source = pool_dir
        consumer_kind = "shmpool"
    else:
        source = ctx.Queue(maxsize=IN_FLIGHT)
        consumer_kind = "queue" if kind == "mp.Queue" else "shm"
    cons = ctx.Process(target=consume, args=(consumer_kind, source, count, acks, results, ready))
    cons.start()
    ready.get(timeout=120)  # the consumer has joined (broadcast pools drop frames before that)
    if kind == "shmpool (in place)":
        prod = ctx.Process(target=produce_shmpool, args=(pool_dir, count, acks, False))
    elif kind == "shmpool (copy in)":
        prod = ctx.Process(target=produce_shmpool, args=(pool_dir, count, acks, True))
    elif kind == "mp.Queue":
        prod = ctx.Process(target=produce_queue, args=(source, count, acks))
    else:
        prod = ctx.Process(target=produce_shared_memory, args=(source, count, acks))
    prod.start()
    result = results.get(timeout=600)
    prod.join(timeout=60)
    cons.join(timeout=60)
    if pool is not None:
        pool.close()
    lat = sorted(result["latencies_ns"])
    return {
        "p50_us": statistics.median(lat) / 1e3,
        "p99_us": lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e3,
        "fps": (result["count"] - 1) / (result["span_ns"] / 1e9) if result["span_ns"] else float("nan"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per phase for shmpool")
    parser.add_argument("--queue-frames", type=int, default=60, help="frames per phase for the copying transports")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    shm_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    pool_dir = tempfile.mkdtemp(prefix="shmpool-bench-", dir=shm_root)
    kinds = ["shmpool (in place)", "shmpool (copy in)", "mp.Queue", "shared_memory+names"]
    table = {}
    try:
        for kind in kinds:
            count = args.frames if kind.startswith("shmpool") else args.queue_frames
            table[kind] = {
                "latency": run(kind, "latency", count, ctx, pool_dir),
                "throughput": run(kind, "throughput", count, ctx, pool_dir),
            }
    finally:
        shutil.rmtree(pool_dir, ignore_errors=True)
    base = table["mp.Queue"]
    print(f"8 MiB frames {SHAPE} uint8, Python process -> Python process, {os.cpu_count()} CPUs")
    print(f"{'transport':<22}{'p50 latency':>14}{'p99 latency':>14}{'frames/s':>11}{'p50 vs Queue':>14}{'fps vs Queue':>14}")
    for kind, r in table.items():
        lat, thr = r["latency"], r["throughput"]
        print(
            f"{kind:<22}{lat['p50_us']:>11.1f} us{lat['p99_us']:>11.1f} us{thr['fps']:>11.1f}"
            f"{base['latency']['p50_us'] / lat['p50_us']:>13.1f}x{thr['fps'] / base['throughput']['fps']:>13.1f}x"
        )
    if args.json:
        print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
