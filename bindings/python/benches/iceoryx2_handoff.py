"""8 MiB NumPy frames copied in, Python process -> Python process: shmpool against iceoryx2.

Compares, in one run, rounds interleaved (the machine is shared: compare rows of one run):
  shmpool blocking     Producer.acquire / Consumer.recv, which sleep on a futex
  shmpool busy-poll    the consumer polls Consumer.try_recv() until a frame is there
  shmpool spin         Consumer.set_spin(1 ms) then recv: the core spins (yielding its CPU while
                       another task wants it), then sleeps
  iceoryx2 event wait  publish-subscribe plus an event service: the consumer sleeps in its
                       listener, the producer notifies after each send
  iceoryx2 busy-poll   the consumer polls Subscriber.receive() until a frame is there

each with one and with three frames in flight. The producer copies a ready 8 MiB ndarray into
the slot (shmpool) or loaned sample (iceoryx2) with np.copyto, stamps the frame index and send
time into the first 16 bytes and publishes; the consumer takes a view, reads the stamps,
releases the frame and acknowledges its index through a pipe. The producer sends frame i only
after the acknowledgement of frame i - in_flight, so that at most `in_flight` frames are out.
  latency    consumer's CLOCK_MONOTONIC when it holds the frame minus the producer's before it
             took the slot (so including the copy in)
  frames/s   frames / (consumer's last receive - consumer's first receive)

iceoryx2 is not a dependency of shmpool or its tests: install it into this benchmark's own
environment, e.g. `python -m venv /tmp/bench && /tmp/bench/bin/pip install iceoryx2==0.10.0 numpy`
plus the shmpool bindings (`maturin develop --release` in bindings/python with that venv active).

Usage: python bindings/python/benches/iceoryx2_handoff.py [--frames N] [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import ctypes
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
SLOTS = 4
TIMEOUT_S = 60
SPIN_S = 0.001  # the budget of `shmpool bench`'s spin rows
TRANSPORTS = ["shmpool blocking", "shmpool busy-poll", "shmpool spin", "iceoryx2 event wait", "iceoryx2 busy-poll"]


def source_frame() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, NBYTES, dtype=np.uint8)


def stamps(flat: np.ndarray) -> np.ndarray:
    """The first 16 bytes of a frame as two uint64: frame index and send time."""
    return flat[:16].view(np.uint64)


def view_at(address: int) -> np.ndarray:
    """A flat uint8 view of the NBYTES at `address` (an iceoryx2 sample's payload)."""
    return np.ctypeslib.as_array((ctypes.c_uint8 * NBYTES).from_address(address))


# ---------------------------------------------------------------- iceoryx2 endpoints


def iceoryx2_service(name: str):
    import iceoryx2 as iox2

    iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    data = (
        node.service_builder(iox2.ServiceName.new(name))
        .publish_subscribe(iox2.Slice[ctypes.c_uint8])
        .subscriber_max_buffer_size(SLOTS)
        .history_size(0)
        .open_or_create()
    )
    event = node.service_builder(iox2.ServiceName.new(name + "/event")).event().open_or_create()
    return iox2, node, data, event


# ---------------------------------------------------------------- producer (child process)


def produce(transport, where, count, in_flight, acks):
    frame = source_frame()
    if transport.startswith("shmpool"):
        import shmpool

        pool = shmpool.Pool.open("bench", directory=where)
        producer = pool.producer()

        def send(i):
            t0 = time.monotonic_ns()
            wb = producer.acquire(timeout=TIMEOUT_S)
            flat = wb.array(np.uint8, (NBYTES,))
            np.copyto(flat, frame)
            stamps(flat)[:] = (i, t0)
            del flat
            wb.publish()

    else:
        iox2, node, data, event = iceoryx2_service(where)
        publisher = data.publisher_builder().initial_max_slice_len(NBYTES).create()
        notifier = event.notifier_builder().create()

        def send(i):
            t0 = time.monotonic_ns()
            sample = publisher.loan_slice_uninit(NBYTES)
            flat = view_at(sample.payload_ptr)
            np.copyto(flat, frame)
            stamps(flat)[:] = (i, t0)
            del flat
            sample.assume_init().send()
            notifier.notify()

    for i in range(count):
        if i >= in_flight:
            acks.recv()
        send(i)
    while count and acks.poll(TIMEOUT_S) and acks.recv() != count - 1:
        pass


# ---------------------------------------------------------------- consumer (child process)


def shmpool_receiver(where, poll, spin):
    import shmpool

    pool = shmpool.Pool.open("bench", directory=where)
    consumer = pool.consumer()
    if spin:
        consumer.set_spin(SPIN_S)

    def receive():
        if poll:
            deadline = time.monotonic() + TIMEOUT_S
            while (buf := consumer.try_recv()) is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("shmpool try_recv")
        else:
            buf = consumer.recv(timeout=TIMEOUT_S)
        flat = buf.array().reshape(-1)
        return flat, buf.release

    return (pool, consumer), receive


def iceoryx2_receiver(where, poll):
    iox2, node, data, event = iceoryx2_service(where)
    subscriber = data.subscriber_builder().create()
    listener = event.listener_builder().create()
    nap = iox2.Duration.from_millis(100)

    def receive():
        deadline = time.monotonic() + TIMEOUT_S
        while (sample := subscriber.receive()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("iceoryx2 receive")
            if not poll:
                listener.timed_wait(nap)
        return view_at(sample.payload_ptr), sample.delete

    return (node, data, event, subscriber, listener), receive


def consume(transport, where, count, acks, results, ready):
    poll = transport.endswith("busy-poll")
    if transport.startswith("shmpool"):
        keep, receive = shmpool_receiver(where, poll, transport.endswith(" spin"))
    else:
        keep, receive = iceoryx2_receiver(where, poll)
    ready.put(True)
    latencies, first, last = [], None, None
    for _ in range(count):
        flat, release = receive()
        now = time.monotonic_ns()
        index, t0 = (int(v) for v in stamps(flat))
        del flat
        release()
        latencies.append(now - t0)
        first = first or now
        last = now
        acks.send(index)
    results.put({"latencies_ns": latencies, "span_ns": last - first})
    del keep


# ---------------------------------------------------------------- driver


def run(transport, in_flight, count, ctx, pool_dir):
    results, ready = ctx.Queue(), ctx.Queue()
    ack_recv, ack_send = ctx.Pipe(duplex=False)
    pool = None
    if transport.startswith("shmpool"):
        import shmpool

        pool = shmpool.Pool.create("bench", slots=SLOTS, slot_size=NBYTES, directory=pool_dir)
        where = pool_dir
    else:
        where = f"shmpool-bench/{os.getpid()}/{time.monotonic_ns()}"
    cons = ctx.Process(target=consume, args=(transport, where, count, ack_send, results, ready))
    cons.start()
    ready.get(timeout=120)  # subscribed: nothing published from now on is missed
    prod = ctx.Process(target=produce, args=(transport, where, count, in_flight, ack_recv))
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
        "fps": (count - 1) / (result["span_ns"] / 1e9) if result["span_ns"] else float("nan"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, interleaved; the median is shown")
    parser.add_argument("--json", action="store_true", help="print every round as JSON too")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    shm_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    pool_dir = tempfile.mkdtemp(prefix="shmpool-bench-", dir=shm_root)
    rows = [(t, k) for k in (1, 3) for t in TRANSPORTS]
    rounds = {row: [] for row in rows}
    try:
        for _ in range(args.rounds):
            for transport, in_flight in rows:
                rounds[(transport, in_flight)].append(run(transport, in_flight, args.frames, ctx, pool_dir))
    finally:
        shutil.rmtree(pool_dir, ignore_errors=True)
    print(f"8 MiB frames copied in, Python -> Python, {os.cpu_count()} CPUs, {args.rounds} rounds of {args.frames}")
    print(f"{'transport':<22}{'in flight':>10}{'p50 latency':>14}{'p99 latency':>14}{'frames/s':>10}  frames/s of the rounds")
    for (transport, in_flight), rs in rounds.items():
        med = lambda key: statistics.median(r[key] for r in rs)  # noqa: E731
        spread = " ".join(f"{r['fps']:.0f}" for r in rs)
        print(
            f"{transport:<22}{in_flight:>10}{med('p50_us'):>11.1f} us{med('p99_us'):>11.1f} us"
            f"{med('fps'):>10.0f}  {spread}"
        )
    if args.json:
        print(json.dumps({f"{t} / {k}": rs for (t, k), rs in rounds.items()}, indent=2))


if __name__ == "__main__":
    main()
