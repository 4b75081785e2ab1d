"""Calls into a worker process over shmpool's host/worker protocol.

::

    from shmpool import rpc
    with rpc.start_worker() as worker:            # backend="process", protocol=$SHMPOOL_PROTOCOL
        print(worker.protocol)                     # "shm" when both ends map the pools
        y = worker.call("numpy:add", x, 1)         # arrays travel as pool slots on shm
        y = await worker.acall("numpy:add", x, 1)  # the same on asyncio, no thread per call
        model = worker.instance("mypkg.model:Model", size=3)
        model.fit(data)                            # runs in the worker
        for item in worker.call("mypkg:stream"):   # generators stream, first item eagerly
            ...

Values travel as pickles (the highest protocol both sides support); with protocol 5, out-of-band
buffers (NumPy arrays, bytes-like objects) go in pool slots on ``shm`` and arrive as read-only NumPy
arrays that are views of the slots (valid until they are garbage-collected). Exceptions are
re-raised on the host with the remote traceback as their ``__cause__``. ``cancel()`` from another
thread interrupts the running call through a second, authenticated channel; cancelling the asyncio
task of an ``acall`` does too.

Run as ``python -m shmpool.rpc`` this module is the worker (started by :func:`start_worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import itertools
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
import weakref
from typing import Any, Dict, Iterator, List, Optional, Tuple

from . import _shmpool
from ._aio import until
from ._errors import Disconnected

__all__ = ["start_worker", "in_pool", "Worker", "RemoteProxy", "RemoteTraceback", "RemoteError", "CancelledError"]

# The pickle protocol of the first message of each side (every Python 3 reads it).
_HELLO_PROTOCOL = 2


class CancelledError(Exception):
    """The call was cancelled by :meth:`Worker.cancel`."""


class RemoteTraceback(Exception):
    """The traceback text of an exception raised in the worker (set as ``__cause__``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RemoteError(Exception):
    """An exception of the worker that could not be pickled: its type name and message."""


def in_pool(obj: Any) -> bool:
    """Whether ``obj`` (an ndarray, memoryview, ...) is a view of a pool slot (no copy was made)."""
    seen = 0
    while obj is not None and seen < 64:
        if isinstance(obj, (_shmpool.Buffer, _shmpool.LentBuffer, _shmpool.SlotBuffer)):
            return True
        obj = obj.obj if isinstance(obj, memoryview) else getattr(obj, "base", None)
        seen += 1
    return False


def _resolve(target: str) -> Any:
    module, sep, name = target.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"target must be 'package.module:name', not {target!r}")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


class _Codec:
    """Pickles values with out-of-band buffers (protocol 5) or in-band (older protocols)."""

    def __init__(self, protocol: int) -> None:
        self.protocol = protocol

    def dumps(self, obj: Any) -> Tuple[bytes, List[Any]]:
        if self.protocol >= 5:
            buffers: List[pickle.PickleBuffer] = []
            data = pickle.dumps(obj, protocol=self.protocol, buffer_callback=buffers.append)
            return data, [b.raw() for b in buffers]
        return pickle.dumps(obj, protocol=self.protocol), []

    @staticmethod
    def loads(header: bytes, buffers: List[Any]) -> Any:
        return pickle.loads(header, buffers=buffers)


def _send(conn: Any, codec: _Codec, obj: Any) -> None:
    header, buffers = codec.dumps(obj)
    conn.send(header, buffers)


def _recv(conn: Any, codec: _Codec, timeout: Optional[float] = None) -> Any:
    header, buffers = conn.recv(timeout)
    return codec.loads(header, buffers)


# ---------------------------------------------------------------------------------------- host


class RemoteProxy:
    """An object living in the worker. Attribute reads run there; methods are called there. The
    remote object is deleted once the proxy is garbage-collected (the deletion travels with the
    next request, since a finalizer must not talk on the connection)."""

    def __init__(self, worker: "Worker", oid: int, description: str) -> None:
        object.__setattr__(self, "_worker", worker)
        object.__setattr__(self, "_oid", oid)
        object.__setattr__(self, "_description", description)
        weakref.finalize(self, worker._forget, oid)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._worker._request(("getattr", self._oid, name))

    def __setattr__(self, name: str, value: Any) -> None:
        self._worker._request(("setattr", self._oid, name, value))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._worker._request(("method", self._oid, "__call__", args, kwargs))

    def __repr__(self) -> str:
        return f"<RemoteProxy {self._description}>"


class _RemoteMethod:
    def __init__(self, worker: "Worker", oid: int, name: str) -> None:
        self._worker, self._oid, self._name = worker, oid, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._worker._request(("method", self._oid, self._name, args, kwargs))


class _RemoteIterator:
    """A generator running in the worker: items come one request each (the first came with the
    call). Exhausting, closing or dropping it (iterated or not) closes the worker's generator."""

    def __init__(self, worker: "Worker", iid: int, done: bool, first: Any) -> None:
        self._worker, self._iid = worker, iid
        self._first: List[Any] = [] if done else [first]
        self._finished = done
        # A finalizer must not talk on the connection: the close travels with the next request.
        self._finalizer = None if done else weakref.finalize(self, worker._drop_iterator, iid)

    def __iter__(self) -> "_RemoteIterator":
        return self

    def __next__(self) -> Any:
        if self._first:
            return self._first.pop()
        if self._finished:
            raise StopIteration
        item = self._worker._request(("next", self._iid))
        if item[0] == "stop":
            self._finish()
            raise StopIteration
        return item[1]

    def _finish(self) -> None:
        self._finished = True
        if self._finalizer is not None:
            self._finalizer.detach()

    def close(self) -> None:
        """Closes the worker's generator now."""
        if self._finished:
            return
        self._finish()
        if not self._worker._closed:
            with contextlib.suppress(Exception):
                self._worker._request(("iter_close", self._iid))


class Worker:
    """A started worker: :meth:`call`, :meth:`acall`, :meth:`instance`, :meth:`cancel`,
    :meth:`close`."""

    def __init__(self, conn: Any, cancel_conn: Any, process: subprocess.Popen) -> None:
        self._conn = conn
        self._cancel_conn = cancel_conn
        self.process = process
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._current: Optional[int] = None
        self._forgotten: List[int] = []
        self._dead_iterators: List[int] = []
        self._closed = False
        # asyncio: calls of one loop take turns (the loop and its lock); the call awaiting its
        # reply; replies owed to cancelled calls (the worker answers in order: the next ones read
        # are theirs).
        self._turn: Optional[Tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = None
        self._awaiting: Optional[int] = None
        self._late_replies = 0
        hello = _recv(conn, _Codec(_HELLO_PROTOCOL), timeout=30)
        if not (isinstance(hello, tuple) and hello[0] == "hello"):
            raise Disconnected(f"unexpected greeting from the worker: {hello!r}")
        self.pickle_protocol = min(pickle.HIGHEST_PROTOCOL, int(hello[1]))
        _send(conn, _Codec(_HELLO_PROTOCOL), ("hello_ack", self.pickle_protocol))
        self._codec = _Codec(self.pickle_protocol)

    @property
    def protocol(self) -> str:
        """The negotiated transport: ``tcp``, ``unix`` or ``shm``."""
        return self._conn.protocol

    def call(self, target: str, *args: Any, **kwargs: Any) -> Any:
        """Calls ``package.module:function`` in the worker and returns its result (a generator
        result streams: its first item is fetched eagerly)."""
        return self._request(("call", target, args, kwargs))

    async def acall(self, target: str, *args: Any, **kwargs: Any) -> Any:
        """:meth:`call` on asyncio: awaits the reply on the running loop through the
        connection's readiness descriptor (``add_reader``), no thread per call. Calls of one
        loop run one after the other. Cancelling the task (``asyncio.wait_for``, ``Task.cancel``)
        cancels the call in the worker as :meth:`cancel` does; its late reply is discarded and the
        next call gets its own. One loop at a time per worker; a blocking call (from any thread)
        or another loop's ``acall`` while an ``acall`` is pending raises ``RuntimeError``."""
        return await self._arequest(("call", target, args, kwargs))

    def instance(self, target: str, *args: Any, **kwargs: Any) -> RemoteProxy:
        """Creates ``package.module:Class(*args, **kwargs)`` in the worker; returns a proxy."""
        return self._request(("instance", target, args, kwargs))

    def empty(self, shape: Any, dtype: Any = "float32") -> Any:
        """A writable NumPy array that lives in a pool slot (the pools grow for it up to the
        negotiated maximum slot size): passing it to a call sends it without a copy, and a worker
        that returns it (or a view of it) sends it back without a copy either. Fill it before the
        call; do not write to it while a call that received it runs. Never an ordinary array: raises
        ``Unsupported`` unless the connection is on ``shm``, ``InvalidArgument`` past the maximum
        slot size, ``TimeoutError`` when every slot is held and the pools may not grow."""
        import numpy as np

        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        buf = self._conn.alloc(count * dt.itemsize)
        return np.frombuffer(buf, dtype=dt, count=count).reshape(shape)

    def transport_stats(self) -> Dict[str, int]:
        """What the host sent where: ``shm_buffers``, ``socket_buffers``, ``spilled_buffers``
        (large buffers that found no slot: past ``max_slot_size``), their bytes, and the pools
        (``generation``, ``slot_size``, ``slots``, ``max_slot_size``, ``pools_grown``)."""
        return dict(self._conn.stats)

    def stats(self) -> Dict[str, int]:
        """Objects and iterators the worker holds for this host."""
        return self._request(("stats",))

    def cancel(self) -> None:
        """Cancels the running call (from another thread): it raises :class:`CancelledError`."""
        current = self._current
        if current is not None and not self._closed:
            _send(self._cancel_conn, self._codec, ("cancel", current))

    def _forget(self, oid: int) -> None:
        # Runs in a garbage-collection finalizer: only note it, send with the next request.
        self._forgotten.append(oid)

    def _send_request(self, request: tuple) -> int:
        """Sends `request` with what finalizers noted (under the lock); returns its call id."""
        if self._closed:
            raise Disconnected("the worker was closed")
        if self._awaiting is not None:
            raise RuntimeError("an acall of this worker is pending: await it before a blocking call")
        call_id = next(self._ids)
        forgotten, self._forgotten = self._forgotten, []
        dead_iterators, self._dead_iterators = self._dead_iterators, []
        _send(self._conn, self._codec, (call_id, forgotten, dead_iterators, request))
        return call_id

    def _request(self, request: tuple) -> Any:
        with self._lock:
            self._current = self._send_request(request)
            try:
                reply = _recv(self._conn, self._codec)
                while self._late(reply):
                    reply = _recv(self._conn, self._codec)
            finally:
                self._current = None
        return self._unwrap(reply)

    async def _arequest(self, request: tuple) -> Any:
        loop = asyncio.get_running_loop()
        if self._turn is None or self._turn[0] is not loop:
            # An asyncio lock belongs to one loop: a later loop (a second asyncio.run) gets its own.
            self._turn = (loop, asyncio.Lock())
        async with self._turn[1]:
            fd = self._conn.fileno()  # before the first try_recv: only a try made with it arms it
            with self._lock:
                call_id = self._send_request(request)
                self._current = self._awaiting = call_id
            try:
                reply = await until(fd, self._try_reply, None)
            except asyncio.CancelledError:
                # Cancelled before the reply was read: it is read and dropped later, and the
                # worker is told to stop the call.
                with self._lock:
                    self._late_replies += 1
                with contextlib.suppress(Exception):
                    self.cancel()
                raise
            finally:
                with self._lock:
                    self._current = self._awaiting = None
        return self._unwrap(reply)

    def _try_reply(self) -> Optional[tuple]:
        """The reply of the awaited call if it came, skipping those owed to cancelled calls."""
        with self._lock:
            while True:
                message = self._conn.try_recv()
                if message is None:
                    return None
                reply = _Codec.loads(*message)
                if not self._late(reply):
                    return reply

    def _late(self, reply: tuple) -> bool:
        """Whether `reply` belongs to a cancelled call (then it is dropped, and what it created in
        the worker is let go of with the next request)."""
        if self._late_replies == 0:
            return False
        self._late_replies -= 1
        if reply[0] == "instance":
            self._forgotten.append(reply[1])
        elif reply[0] == "iterator" and not reply[2]:
            self._dead_iterators.append(reply[1])
        return True

    def _unwrap(self, reply: tuple) -> Any:
        kind = reply[0]
        if kind == "result":
            return reply[1]
        if kind == "instance":
            return RemoteProxy(self, reply[1], reply[2])
        if kind == "method":
            return _RemoteMethod(self, reply[1], reply[2])
        if kind == "iterator":
            return _RemoteIterator(self, reply[1], reply[2], reply[3])
        if kind == "error":
            exc, text = reply[1], reply[2]
            exc.__cause__ = RemoteTraceback(text)
            raise exc
        raise Disconnected(f"unexpected reply from the worker: {kind!r}")

    def _drop_iterator(self, iid: int) -> None:
        # Runs in a garbage-collection finalizer: only note it, send with the next request.
        self._dead_iterators.append(iid)

    def close(self, timeout: float = 10.0) -> None:
        """Closes the connections and waits for the worker to exit (then kills it)."""
        if self._closed:
            return
        self._closed = True
        self._conn.close()
        self._cancel_conn.close()
        _stop(self.process, timeout)

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _stop(process: subprocess.Popen, timeout: float) -> None:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(1.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def start_worker(
    backend: str = "process",
    protocol: Optional[str] = None,
    python: str = sys.executable,
    env: Optional[Dict[str, str]] = None,
    timeout: float = 60.0,
    *,
    image: Optional[str] = None,
    conda_env: Optional[str] = None,
    directory: Optional[str] = None,
    heartbeat: Optional[float] = None,
    missed_heartbeats: Optional[int] = None,
    slots: Optional[int] = None,
    slot_size: Optional[int] = None,
    max_slot_size: Optional[int] = None,
) -> Iterator[Worker]:
    """Starts a Python worker under ``backend`` (``process``, ``namespace``, ``docker``,
    ``podman``, ``apptainer`` with ``image``, ``conda`` with ``conda_env``) and connects to it
    within ``timeout`` seconds. ``protocol``: the comma-separated list (default
    ``$SHMPOOL_PROTOCOL``, else ``tcp,shm``). On ``shm``, arrays up to ``max_slot_size`` bytes
    (default 1 GiB; the smaller of both sides) travel in pool slots, the pools growing from
    ``slot_size`` (default 16 MiB; the larger of both sides) as needed; larger ones go on the
    socket and are counted in :meth:`Worker.transport_stats`. The worker asks for its own sizes
    through ``SHMPOOL_RPC_SLOT_SIZE`` and ``SHMPOOL_RPC_MAX_SLOT_SIZE`` in its environment."""
    listener = _shmpool.Listener(
        protocol,
        directory,
        heartbeat=heartbeat,
        missed_heartbeats=missed_heartbeats,
        slots=slots,
        slot_size=slot_size,
        max_slot_size=max_slot_size,
    )
    # Everything the worker needs goes through its environment (containers get `-e NAME`).
    passed = dict(listener.worker_env())
    passed.update(env or {})
    if heartbeat is not None:
        passed["SHMPOOL_RPC_HEARTBEAT"] = str(heartbeat)
    argv, backend_env = _shmpool.worker_command(
        backend,
        [python, "-m", "shmpool.rpc"],
        list(passed.items()),
        listener.directory,
        image if image is not None else conda_env,
    )
    full_env = dict(os.environ)
    full_env.update(backend_env)
    full_env.update(env or {})  # the caller's values win (even SHMPOOL_DIR)
    process = subprocess.Popen(argv, env=full_env, stdin=subprocess.DEVNULL)

    def check() -> None:
        if process.poll() is not None:
            raise Disconnected(f"the worker exited with status {process.returncode} before connecting")

    worker = None
    try:
        conn = listener.accept(timeout, check)
        cancel_conn = listener.accept(timeout, check, fallback_only=True)
        worker = Worker(conn, cancel_conn, process)
        yield worker
    finally:
        if worker is not None:
            worker.close()
        else:
            process.kill()
            process.wait()


# -------------------------------------------------------------------------------------- worker


class _Serve:
    """The worker's state: objects and iterators by id, the running call, cancellations."""

    def __init__(self, conn: Any, cancel_conn: Any) -> None:
        self.conn = conn
        self.cancel_conn = cancel_conn
        self.objects: Dict[int, Any] = {}
        self.iterators: Dict[int, Iterator[Any]] = {}
        self.ids = itertools.count(1)
        self.current: Optional[int] = None
        self.interruptible = False
        self.cancelled: set = set()
        hello = _Codec(_HELLO_PROTOCOL)
        _send(conn, hello, ("hello", pickle.HIGHEST_PROTOCOL))
        ack = _recv(conn, hello, timeout=30)
        self.codec = _Codec(int(ack[1]))

    def on_signal(self, signum: int, frame: Any) -> None:
        if self.interruptible and self.current in self.cancelled:
            raise CancelledError(f"call {self.current} was cancelled")

    def cancel_loop(self) -> None:
        main = threading.main_thread().ident
        while True:
            try:
                message = _recv(self.cancel_conn, self.codec)
            except Exception:
                return
            if message[0] == "cancel":
                self.cancelled.add(message[1])
                if self.current == message[1] and main is not None:
                    signal.pthread_kill(main, signal.SIGUSR1)

    def run(self) -> None:
        signal.signal(signal.SIGUSR1, self.on_signal)
        canceller = threading.Thread(target=self.cancel_loop, name="shmpool-rpc-cancel")
        canceller.start()
        try:
            self.serve()
        finally:
            # Stop the cancel thread before the interpreter exits (it must not die inside Rust).
            self.cancel_conn.close()
            canceller.join()

    def serve(self) -> None:
        while True:
            try:
                call_id, forgotten, dead_iterators, request = _recv(self.conn, self.codec)
            except Disconnected:
                return
            for oid in forgotten:
                self.objects.pop(oid, None)
            for iid in dead_iterators:
                self.close_iterator(iid)
            reply = self.handle(call_id, request)
            try:
                _send(self.conn, self.codec, reply)
            except Disconnected:
                return
            except Exception as e:  # an unpicklable result
                _send(self.conn, self.codec, self.error(e))
            # Let go of the arguments and the result now, not at the next request: they may be
            # views of the host's pool slots.
            del request, reply

    def handle(self, call_id: int, request: tuple) -> tuple:
        self.current = call_id
        try:
            self.interruptible = True
            if call_id in self.cancelled:
                raise CancelledError(f"call {call_id} was cancelled")
            reply = self.dispatch(request)
            self.interruptible = False
            return reply
        except BaseException as e:  # noqa: B036 - everything goes back to the host
            self.interruptible = False
            return self.error(e)
        finally:
            self.current = None
            self.cancelled.discard(call_id)

    def error(self, e: BaseException) -> tuple:
        text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        try:
            pickle.dumps(e, protocol=self.codec.protocol)
            exc: BaseException = e
        except Exception:
            exc = RemoteError(f"{type(e).__module__}.{type(e).__qualname__}: {e}")
        exc.__traceback__ = None
        exc.__context__ = None
        exc.__cause__ = None
        return ("error", exc, text)

    def wrap(self, value: Any) -> tuple:
        if inspect.isgenerator(value) or (
            hasattr(value, "__next__") and hasattr(value, "__iter__") and not isinstance(value, (str, bytes))
        ):
            iid = next(self.ids)
            try:
                first = next(value)
            except StopIteration:
                return ("iterator", iid, True, None)
            self.iterators[iid] = value
            return ("iterator", iid, False, first)
        return ("result", value)

    def close_iterator(self, iid: int) -> None:
        close = getattr(self.iterators.pop(iid, None), "close", None)
        if close is not None:
            close()

    def dispatch(self, request: tuple) -> tuple:
        op = request[0]
        if op == "call":
            _, target, args, kwargs = request
            return self.wrap(_resolve(target)(*args, **kwargs))
        if op == "instance":
            _, target, args, kwargs = request
            obj = _resolve(target)(*args, **kwargs)
            oid = next(self.ids)
            self.objects[oid] = obj
            return ("instance", oid, f"{target} #{oid}")
        if op == "getattr":
            _, oid, name = request
            value = getattr(self.objects[oid], name)
            # Anything callable (methods, static and class methods, classes) is called here, in
            # the worker, never sent to the host to run there.
            if callable(value):
                return ("method", oid, name)
            return self.wrap(value)
        if op == "setattr":
            _, oid, name, value = request
            setattr(self.objects[oid], name, value)
            return ("result", None)
        if op == "method":
            _, oid, name, args, kwargs = request
            return self.wrap(getattr(self.objects[oid], name)(*args, **kwargs))
        if op == "next":
            it = self.iterators[request[1]]
            try:
                return ("result", ("item", next(it)))
            except StopIteration:
                del self.iterators[request[1]]
                return ("result", ("stop",))
        if op == "iter_close":
            self.close_iterator(request[1])
            return ("result", None)
        if op == "stats":
            return ("result", {"objects": len(self.objects), "iterators": len(self.iterators)})
        raise ValueError(f"unknown request {op!r}")


def _worker_main() -> None:
    heartbeat = os.environ.get("SHMPOOL_RPC_HEARTBEAT")
    kw = {"heartbeat": float(heartbeat)} if heartbeat else {}
    sizes = {
        arg: int(os.environ[var])
        for arg, var in (("slot_size", "SHMPOOL_RPC_SLOT_SIZE"), ("max_slot_size", "SHMPOOL_RPC_MAX_SLOT_SIZE"))
        if os.environ.get(var)
    }
    conn = _shmpool.connect_env(**kw, **sizes)
    fallback = os.environ.get("SHMPOOL_PROTOCOL", "tcp").split(",")[0].strip() or "tcp"
    cancel_conn = _shmpool.connect_env(fallback, **kw)
    try:
        _Serve(conn, cancel_conn).run()
    finally:
        cancel_conn.close()
        conn.close()


if __name__ == "__main__":
    # Run the importable module's copy, so that pickled classes (CancelledError, ...) are named
    # shmpool.rpc.*, not __main__.*.
    from shmpool import rpc as _rpc

    _rpc._worker_main()
