"""asyncio support: ``await consumer.arecv()``, ``async for buf in consumer``,
``await producer.aacquire()``.

Each wait registers the handle's readiness descriptor (``fileno()``) with the running loop's
``add_reader`` and re-tries the non-blocking ``try_recv``/``try_acquire`` when it fires: no thread
per call. The semantics of the descriptor (spurious readiness allowed, re-armed by a ``try_*`` that
finds nothing) are those of the Rust crate's ``shmpool::readiness``.

Cancelling a task that awaits one of these releases nothing it did not get: a buffer or slot is
only taken by the ``try_*`` call that returns it, which is never interrupted by an ``await``. One
pending ``arecv``/``aacquire`` per handle at a time (``add_reader`` holds one callback per
descriptor).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Callable, Optional, TypeVar

from ._errors import Closed

if TYPE_CHECKING:
    from ._shmpool import Buffer, Consumer, Producer, WriteBuffer

T = TypeVar("T")

# The longest single wait: a retry after it notices dead peers holding slots (the pool sweeps
# them at most once a lease, 0.5 s by default).
_RETRY = 0.5


async def _readable(fd: int, timeout: float) -> None:
    """Returns when ``fd`` is readable or ``timeout`` seconds passed."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await asyncio.wait_for(ready, timeout)
    except asyncio.TimeoutError:
        pass
    finally:
        loop.remove_reader(fd)


async def until(fd: int, attempt: Callable[[], Optional[T]], timeout: Optional[float]) -> T:
    """Calls ``attempt`` until it gives something, waiting for ``fd`` to be readable in between
    (at most ``_RETRY`` seconds at a time). Raises ``TimeoutError`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        got = attempt()
        if got is not None:
            return got
        wait = _RETRY
        if deadline is not None:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("timed out")
            wait = min(wait, left)
        await _readable(fd, wait)


async def arecv(consumer: Consumer, timeout: Optional[float] = None) -> Buffer:
    """Receives the next buffer, waiting in the running loop up to ``timeout`` seconds (``None``:
    forever). Raises ``TimeoutError``, ``Closed`` once the closed pool is drained."""
    fd = consumer.fileno()  # before the first try: only a try made with it arms it
    return await until(fd, consumer.try_recv, timeout)


async def aacquire(producer: Producer, timeout: Optional[float] = None) -> WriteBuffer:
    """Takes a free slot, waiting in the running loop up to ``timeout`` seconds (``None``:
    forever). Raises ``TimeoutError``, ``Closed``."""
    fd = producer.fileno()
    return await until(fd, producer.try_acquire, timeout)


async def anext(consumer: Consumer) -> Buffer:
    """The next buffer of ``async for buf in consumer``; ends when the pool is closed and
    drained."""
    try:
        return await arecv(consumer)
    except Closed:
        raise StopAsyncIteration from None
