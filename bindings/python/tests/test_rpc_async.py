"""shmpool.rpc on asyncio: ``await worker.acall(...)`` against real worker processes on every
transport; the loop keeps running while a call is pending, no thread is started per call, and a
cancelled call leaves the connection usable (its late reply is dropped, the next call gets its
own). Every await has a deadline."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from shmpool import rpc
from test_rpc import PROTOCOLS, start

DEADLINE = 20.0


@pytest.fixture(scope="module", params=PROTOCOLS)
def worker(request, tmp_path_factory):
    with start(request.param, directory=str(tmp_path_factory.mktemp("arpc"))) as w:
        yield w


def run(coro):
    async def bounded():
        return await asyncio.wait_for(coro, DEADLINE)

    return asyncio.run(bounded())


def test_acall_returns_results_arrays_and_remote_errors(worker):
    async def main():
        a = np.arange(1 << 20, dtype=np.float32)
        b = await worker.acall("rpc_targets:echo", a)
        np.testing.assert_array_equal(a, b)
        assert rpc.in_pool(b) == (worker.protocol == "shm")
        with pytest.raises(ValueError, match="boom") as info:
            await worker.acall("rpc_targets:fail", "boom")
        assert isinstance(info.value.__cause__, rpc.RemoteTraceback)
        # Calls of one loop take turns; each gets its own reply.
        got = await asyncio.gather(*(worker.acall("rpc_targets:echo", i) for i in range(20)))
        assert got == list(range(20))
        # A generator streams through later (blocking) requests, as with call().
        assert list(await worker.acall("rpc_targets:count", 4)) == [0, 1, 2, 3]

    run(main())
    assert worker.call("rpc_targets:echo", "sync") == "sync"

    async def concurrent():  # calls of a second loop (a second asyncio.run) take turns too
        return await asyncio.gather(*(worker.acall("rpc_targets:echo", i) for i in range(5)))

    assert run(concurrent()) == list(range(5))


def test_the_loop_runs_while_a_call_is_pending_and_no_thread_is_started(worker):
    ticks = 0

    async def ticker(stop):
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def main():
        stop = asyncio.Event()
        t = asyncio.create_task(ticker(stop))
        threads = threading.active_count()
        call = asyncio.create_task(worker.acall("rpc_targets:sleep", 0.5))
        await asyncio.sleep(0.2)
        assert threading.active_count() == threads, "a thread per call"
        assert await call == "slept"
        stop.set()
        await t

    started = time.monotonic()
    run(main())
    elapsed = time.monotonic() - started
    # The ticker ran through the call's half second (at 10 ms a tick, far more than 10 ticks).
    assert ticks >= 10, (ticks, elapsed)


def test_a_cancelled_acall_leaves_the_connection_usable(worker):
    async def main():
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(worker.acall("rpc_targets:sleep", 60), 0.3)
        # The worker stopped the call: the next one comes back long before the 60 s, with its own
        # reply (not the cancelled call's late one).
        assert await worker.acall("rpc_targets:echo", "after") == "after"
        assert time.monotonic() - started < 10
        # Cancelled while its reply may already be in flight: every next call still gets its own.
        for i in range(20):
            task = asyncio.create_task(worker.acall("rpc_targets:echo", ("late", i)))
            await asyncio.sleep(0.001 * (i % 4))
            task.cancel()
            try:
                assert await task == ("late", i)  # it finished before the cancellation
            except asyncio.CancelledError:
                pass
            assert await worker.acall("rpc_targets:echo", ("own", i)) == ("own", i)

    run(main())

    # The blocking path drops late replies too.
    async def cancel_one():
        task = asyncio.create_task(worker.acall("rpc_targets:sleep", 60))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancel_one())
    assert worker.call("rpc_targets:echo", 7) == 7


def test_a_blocking_call_while_an_acall_is_pending_is_refused(worker):
    async def main():
        call = asyncio.create_task(worker.acall("rpc_targets:sleep", 0.5))
        await asyncio.sleep(0.1)
        error = []

        def other():
            try:
                worker.call("rpc_targets:echo", 1)
            except RuntimeError as e:
                error.append(e)

        t = threading.Thread(target=other)
        t.start()
        await asyncio.get_running_loop().run_in_executor(None, t.join, DEADLINE)
        assert error and "acall" in str(error[0])
        with pytest.raises(RuntimeError, match="acall"):  # from the loop's own thread too
            worker.call("rpc_targets:echo", 1)
        assert await call == "slept"

    run(main())
    assert worker.call("rpc_targets:echo", 2) == 2


def test_a_worker_killed_during_an_acall_is_a_disconnection():
    with start("tcp,shm") as w:

        async def main():
            call = asyncio.create_task(w.acall("rpc_targets:sleep", 60))
            await asyncio.sleep(0.2)
            w.process.kill()
            with pytest.raises(ConnectionError):
                await call

        run(main())
