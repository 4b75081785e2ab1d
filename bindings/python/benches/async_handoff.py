"""One-way hand-off latency of ``await consumer.arecv()`` (asyncio) against the blocking
``consumer.recv()``, in one run, 64 B and 8 MiB, producer and consumer in two Python processes.

One buffer in flight (a one-slot pool): the producer takes the slot once the consumer released it,
waits a pause (so the consumer is asleep: every hand-off is a real wake-up), writes its
CLOCK_MONOTONIC into the first 8 bytes and publishes. Latency = the consumer's clock when the
receive returned minus that stamp. Each round measures every cell once, alternating which API goes
first; the samples of all rounds are pooled, and the median (lowest-highest) of the rounds' p50
ratios is printed too (the two APIs of a round ran back to back: the least disturbed by the load).

asyncio's own cost, measured the same way in every round (the ``pipe`` row): an 8-byte stamp
through a pipe, a blocking ``os.read`` against a non-blocking one awaited with the very helper
``arecv`` uses (``shmpool._aio.until``: ``add_reader`` plus ``asyncio.wait_for`` per wait).

Usage: python bindings/python/benches/async_handoff.py [--messages N] [--rounds R] [--json PATH]
Noisy on a shared 2-vCPU machine: compare the ratios of one run, not numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time

import numpy as np

import shmpool
from shmpool._aio import until

SIZES = [("64 B", 64), ("8 MiB", 8 << 20)]
PAUSE = 300e-6  # seconds before each publication: longer than any spinning, so the consumer sleeps
DEADLINE = 10.0  # the longest any single wait may take


def produce(directory: str, name: str, size: int, count: int) -> None:
    with shmpool.Pool.open(name, directory=directory, timeout=DEADLINE) as pool, pool.producer() as producer:
        for _ in range(count):
            wb = producer.acquire(timeout=DEADLINE)
            time.sleep(PAUSE)
            stamp = wb.array(np.uint64, (1,))
            stamp[0] = time.monotonic_ns()
            del stamp
            wb.publish(size)


def latency(buf: shmpool.Buffer, now: int) -> int:
    with memoryview(buf) as view:
        return now - int.from_bytes(view[:8], "little")


def receive_blocking(consumer: shmpool.Consumer, count: int, out: list) -> None:
    for _ in range(count):
        buf = consumer.recv(timeout=DEADLINE)
        now = time.monotonic_ns()
        out.append(latency(buf, now))
        buf.release()


async def receive_async(consumer: shmpool.Consumer, count: int, out: list) -> None:
    for _ in range(count):
        buf = await consumer.arecv(timeout=DEADLINE)
        now = time.monotonic_ns()
        out.append(latency(buf, now))
        buf.release()


def cell(directory: str, size: int, api: str, count: int, out: list) -> None:
    name = f"handoff-{size}-{api}"
    with shmpool.Pool.create(name, slots=1, slot_size=size, directory=directory) as pool, pool.consumer() as consumer:
        producer = mp.get_context("spawn").Process(target=produce, args=(directory, name, size, count))
        producer.start()
        try:
            if api == "recv":
                receive_blocking(consumer, count, out)
            else:
                asyncio.run(receive_async(consumer, count, out))
        finally:
            producer.join(DEADLINE)
            if producer.is_alive():
                producer.kill()
        if producer.exitcode != 0:
            raise RuntimeError(f"the producer exited with {producer.exitcode}")


def pipe_writer(w: int, count: int) -> None:
    for _ in range(count):
        time.sleep(PAUSE)
        os.write(w, time.monotonic_ns().to_bytes(8, "little"))


def pipe_cell(api: str, count: int, out: list) -> None:
    """The pipe baseline: `api` "recv" reads blocking, "arecv" awaits as arecv does."""
    r, w = os.pipe()
    writer = mp.get_context("fork").Process(target=pipe_writer, args=(w, count))
    writer.start()
    os.close(w)
    try:
        if api == "recv":
            for _ in range(count):
                stamp = os.read(r, 8)
                out.append(time.monotonic_ns() - int.from_bytes(stamp, "little"))
        else:
            os.set_blocking(r, False)

            def attempt():
                try:
                    return os.read(r, 8)
                except BlockingIOError:
                    return None

            async def receive():
                for _ in range(count):
                    stamp = await until(r, attempt, DEADLINE)
                    out.append(time.monotonic_ns() - int.from_bytes(stamp, "little"))

            asyncio.run(receive())
    finally:
        writer.join(DEADLINE)
        if writer.is_alive():
            writer.kill()
        os.close(r)


def percentile(sorted_ns: list, per_mille: int) -> int:
    return sorted_ns[min(len(sorted_ns) * per_mille // 1000, len(sorted_ns) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    apis = ["recv", "arecv"]
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    directory = tempfile.mkdtemp(prefix="shmpool-async-handoff-", dir=base)
    samples: dict = {(size, api): [] for _, size in SIZES for api in apis}
    round_p50s: dict = {(size, api): [] for _, size in SIZES for api in apis}
    for api in apis:
        samples[("pipe", api)], round_p50s[("pipe", api)] = [], []
    try:
        for r in range(args.rounds):
            for _, size in SIZES:
                for k in range(len(apis)):
                    api = apis[(k + r) % len(apis)]
                    got: list = []
                    cell(directory, size, api, args.messages, got)
                    round_p50s[(size, api)].append(percentile(sorted(got), 500))
                    samples[(size, api)] += got
            for k in range(len(apis)):
                api = apis[(k + r) % len(apis)]
                got = []
                pipe_cell(api, args.messages, got)
                round_p50s[("pipe", api)].append(percentile(sorted(got), 500))
                samples[("pipe", api)] += got
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    print(
        f"one-way hand-off, {args.messages} messages x {args.rounds} rounds per cell, {PAUSE * 1e6:.0f} µs pause, "
        "producer and consumer in two Python processes"
    )
    print(
        f"{'size':<7} {'recv p50':>12} {'recv p99':>12} {'arecv p50':>12} {'arecv p99':>12} {'x p50':>7} {'x p99':>7}"
        "  x p50 per round"
    )
    rows = []
    for label, size in SIZES + [("pipe", "pipe")]:
        stat = {}
        for api in apis:
            v = sorted(samples[(size, api)])
            stat[api] = (percentile(v, 500), percentile(v, 990))
            rows.append(
                {
                    "size": size,
                    "api": api,
                    "count": len(v),
                    "p50_ns": stat[api][0],
                    "p99_ns": stat[api][1],
                    "round_p50_ns": round_p50s[(size, api)],
                }
            )
        b, a = stat["recv"], stat["arecv"]
        ratios = sorted(x / max(y, 1) for x, y in zip(round_p50s[(size, "arecv")], round_p50s[(size, "recv")]))
        print(
            f"{label:<7} {b[0] / 1e3:>9.1f} µs {b[1] / 1e3:>9.1f} µs {a[0] / 1e3:>9.1f} µs {a[1] / 1e3:>9.1f} µs "
            f"{a[0] / b[0]:>6.2f}x {a[1] / b[1]:>6.2f}x  {ratios[len(ratios) // 2]:.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"pause_us": PAUSE * 1e6, "rows": rows}, f)


if __name__ == "__main__":
    main()
