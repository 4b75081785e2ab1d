"""asyncio: arecv / async for / aacquire on one event loop, fed by other processes; cancelled
waits lose nothing; Ctrl-C still interrupts a waiting loop."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import threading

import pytest

import shmpool
from conftest import wait_for

POOLS = 50
PER_POOL = 40
FEEDERS = 5

# A feeder process: publishes COUNT buffers into each named pool, round-robin, with random pauses.
FEEDER = """
import random, sys, time, shmpool
count, names = int(sys.argv[1]), sys.argv[2:]
pools = [shmpool.Pool.open(n) for n in names]
producers = [p.producer() for p in pools]
print("ready", flush=True)
for i in range(count):
    for p in producers:
        p.acquire(timeout=20).publish()
        if random.random() < 0.05:
            time.sleep(random.random() * 0.002)
print("done", flush=True)
"""


def feeder(spawn, count, names):
    return spawn(argv=[sys.executable, "-c", FEEDER, str(count), *names])


def test_one_loop_serves_50_consumers_of_50_pools_fed_by_other_processes(make_pool, spawn):
    pools = [make_pool(f"aio{k}", slots=2) for k in range(POOLS)]
    consumers = [p.consumer() for p in pools]  # broadcast: join before anything is published
    names = [p.name for p in pools]
    children = [feeder(spawn, PER_POOL, names[k::FEEDERS]) for k in range(FEEDERS)]
    for child in children:
        child.expect("ready")

    async def drain_with_async_for(consumer):
        seqs = []
        async for buf in consumer:
            seqs.append(buf.seq)
            buf.release()
            if len(seqs) == PER_POOL:
                break
        return seqs

    async def drain_with_arecv(consumer):
        seqs = []
        for _ in range(PER_POOL):
            buf = await consumer.arecv(timeout=20)
            seqs.append(buf.seq)
            buf.release()
        return seqs

    async def main():
        tasks = [
            (drain_with_async_for if k % 2 else drain_with_arecv)(c) for k, c in enumerate(consumers)
        ]
        return await asyncio.wait_for(asyncio.gather(*tasks), 60)

    results = asyncio.run(main())
    assert threading.active_count() == 1, "asyncio waits must not start threads"
    assert results == [list(range(PER_POOL))] * POOLS
    for child in children:
        child.expect("done")
        assert child.wait() == 0
    assert sum(p.stats()["wakes"] for p in pools) > 0, "the loop never had to wait"


def test_cancelled_arecv_loses_nothing(make_pool, spawn):
    pool = make_pool("aiocancel", slots=2)
    consumer = pool.consumer()
    count = 300
    child = feeder(spawn, count, [pool.name])
    child.expect("ready")

    async def main():
        seqs, cancelled = [], 0
        deadline = asyncio.get_running_loop().time() + 30
        while len(seqs) < count:
            assert asyncio.get_running_loop().time() < deadline, f"stalled after {len(seqs)} buffers"
            task = asyncio.ensure_future(consumer.arecv(timeout=20))
            if random.random() < 0.5:  # cancel after a few scheduling steps, or some time
                for _ in range(random.randrange(4)):
                    await asyncio.sleep(0)
            else:
                await asyncio.wait({task}, timeout=random.random() * 0.002)
            task.cancel()  # may come too late: then the task has its buffer
            try:
                buf = await task
            except asyncio.CancelledError:
                cancelled += 1
                continue
            assert buf.seq == len(seqs), f"buffer {len(seqs)} lost (got {buf.seq})"
            seqs.append(buf.seq)
            buf.release()
        return seqs, cancelled

    seqs, cancelled = asyncio.run(main())
    assert seqs == list(range(count))
    assert cancelled > 0, "no arecv was cancelled while waiting"
    child.expect("done")
    assert child.wait() == 0
    stats = pool.stats()
    assert (stats["free"], stats["reading"]) == (2, 0), stats


def test_aacquire_waits_for_a_free_slot_and_cancelling_it_takes_none(make_pool):
    pool = make_pool("aioacq", slots=1)
    producer, consumer = pool.producer(), pool.consumer()

    async def main():
        (await producer.aacquire(timeout=5)).publish()
        with pytest.raises(TimeoutError):
            await producer.aacquire(timeout=0.05)
        pending = asyncio.ensure_future(producer.aacquire(timeout=5))
        await asyncio.sleep(0.02)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert pool.stats()["writing"] == 0, "a cancelled aacquire took a slot"
        waiting = asyncio.ensure_future(producer.aacquire(timeout=5))
        await asyncio.sleep(0.02)
        assert not waiting.done()
        consumer.try_recv().release()  # frees the only slot: the waiting aacquire gets it
        wb = await asyncio.wait_for(waiting, 5)
        wb.discard()

    asyncio.run(main())
    assert pool.stats()["free"] == 1


def test_handles_have_fileno_and_try_methods(make_pool):
    pool = make_pool("aiofd", slots=1)
    producer, consumer = pool.producer(), pool.consumer()
    assert consumer.fileno() >= 0 and producer.fileno() >= 0
    assert consumer.fileno() == consumer.fileno()
    assert consumer.try_recv() is None
    producer.try_acquire().publish()
    assert producer.try_acquire() is None
    buf = consumer.try_recv()
    assert buf is not None and buf.seq == 0
    buf.release()
    consumer.close()
    with pytest.raises(shmpool.Closed):
        consumer.fileno()


def test_ctrl_c_interrupts_a_loop_waiting_in_arecv(make_pool, spawn):
    pool = make_pool("aiosigint", slots=2)
    script = f"""
import asyncio, os, shmpool
async def main():
    consumer = shmpool.Pool.open({pool.name!r}).consumer()
    print("ready", os.getpid(), flush=True)
    await consumer.arecv()
try:
    asyncio.run(main())
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""
    child = spawn(argv=[sys.executable, "-c", script])
    pid = int(child.expect("ready").split()[1])
    wait_for(lambda: pool.stats()["waiters"] == 1, what="the child's arecv to arm its descriptor")
    os.kill(pid, signal.SIGINT)
    child.expect("interrupted", timeout=5)
    assert child.wait() == 0
