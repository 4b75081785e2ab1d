"""Type stubs of the compiled module ``shmpool._shmpool`` (re-exported by ``shmpool``)."""

import builtins
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, AsyncIterator, Iterator, Literal, Optional, Sequence, Tuple, Union, final

if sys.version_info >= (3, 12):
    from collections.abc import Buffer as _BufferProto
else:
    _BufferProto = object

__all__ = [
    "__version__",
    "CORE_VERSION",
    "MAX_DIMS",
    "MAX_SLOTS",
    "MAX_META_BYTES",
    "DTYPES",
    "monotonic_ns",
    "Pool",
    "Producer",
    "Consumer",
    "Buffer",
    "WriteBuffer",
    "Listener",
    "Connection",
    "ConnectionOptions",
    "LentBuffer",
    "SlotBuffer",
    "connect_env",
    "worker_command",
    "FarmClient",
    "FarmWorker",
    "FarmRequest",
    "PartView",
    "FarmArray",
    "Store",
    "StoreVersion",
    "StoreWriter",
    "Operator",
    "Run",
    "SocketBuffer",
]

__version__: str
CORE_VERSION: str
MAX_DIMS: int
MAX_SLOTS: int
MAX_META_BYTES: int
DTYPES: list[str]

_Mode = Literal["broadcast", "workqueue"]
_Overflow = Literal["block", "drop-oldest"]
_Path = Union[str, "os.PathLike[str]"]
# A shmpool name ("u8", "f32", "bf16", ...) or anything numpy.dtype() accepts.
_DType = Any
_Shape = Union[int, Sequence[int]]

def monotonic_ns() -> int:
    """CLOCK_MONOTONIC in nanoseconds: the clock of default timestamps."""

@final
class Pool:
    @staticmethod
    def create(
        name: str,
        slots: int = 8,
        slot_size: int = 1 << 20,
        mode: _Mode = "broadcast",
        overflow: _Overflow = "block",
        meta_bytes: int = 256,
        directory: Optional[_Path] = None,
        permissions: int = 0o600,
    ) -> Pool:
        """Creates a pool; a stale one of that name (no live process has it open) is replaced,
        an orphaned one (its creator died without closing it) taken over (same configuration)
        or replaced. Raises PoolExists if a live one exists."""
    @staticmethod
    def open(name: str, directory: Optional[_Path] = None, timeout: Optional[float] = 0.0) -> Pool:
        """Opens a pool (directory None: $SHMPOOL_DIR, else /dev/shm), waiting up to timeout
        seconds for it to appear (0: not at all, None: forever). Raises PoolNotFound."""
    @staticmethod
    def list(directory: Optional[_Path] = None) -> builtins.list[dict[str, Any]]:
        """The pools of the directory: dicts with name, path, size, in_use."""
    @staticmethod
    def gc(directory: Optional[_Path] = None) -> builtins.list[str]:
        """Removes the pool files no live process has open; returns their names."""
    @staticmethod
    def remove(name: str, directory: Optional[_Path] = None) -> None:
        """Shuts the pool down for its users and removes its name, live peers or not."""
    def producer(self) -> Producer: ...
    def consumer(self) -> Consumer:
        """In broadcast mode the consumer receives what is published from now on."""
    def stats(self) -> dict[str, Any]:
        """slots, free, writing, ready, reading, producers, consumers, published, dropped,
        closed, creator_alive, producer_alive, persistent, orphaned, waiters (places blocked),
        wakes (wake system calls made), and peers (a list of dicts: role, place, pid, alive,
        count, dropped, waiting). After close(): the snapshot taken then."""
    def close(self) -> None:
        """Lets go of this handle. Closing the creating handle shuts the pool down (unless
        persisted); an opened handle only lets go of itself. Live buffers keep their mapping."""
    def shutdown(self) -> None:
        """Shuts the pool down for everyone, from any handle; removes its name."""
    def persist(self) -> None:
        """Keeps the pool after the creating handle goes away."""
    def reap(self) -> int:
        """Frees what dead peers held; returns how many peers were removed."""
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def slots(self) -> int: ...
    @property
    def slot_size(self) -> int: ...
    @property
    def meta_bytes(self) -> int: ...
    @property
    def mode(self) -> _Mode: ...
    @property
    def overflow(self) -> _Overflow: ...
    @property
    def lease(self) -> float: ...
    @property
    def closed(self) -> bool: ...
    def _read_mapping_range(self) -> Tuple[int, int]:
        """(address, length) of the read-only mapping of the slot data (received buffers)."""
    def _mapping_range(self) -> Tuple[int, int]:
        """(address, length) of this process's mapping of the pool."""
    def __enter__(self) -> Pool: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

@final
class Producer:
    def acquire(self, timeout: Optional[float] = None) -> WriteBuffer:
        """Takes a free slot, waiting up to timeout seconds (None: forever). Raises
        TimeoutError, Closed; KeyboardInterrupt on Ctrl-C."""
    def try_acquire(self) -> Optional[WriteBuffer]:
        """Takes a free slot if there is one now, else None (which arms fileno())."""
    def set_spin(self, seconds: float) -> None:
        """Spins up to seconds for a free slot before sleeping (see Consumer.set_spin). Raises
        BufferError while an acquire of another thread runs."""
    def fileno(self) -> int:
        """Readiness descriptor: readable when a slot may be free; then try_acquire until None."""
    async def aacquire(self, timeout: Optional[float] = None) -> WriteBuffer:
        """acquire in the running asyncio loop (no thread); cancelling takes no slot."""
    @property
    def published(self) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Producer: ...
    def __exit__(self, *args: object) -> bool: ...

@final
class Consumer:
    def recv(self, timeout: Optional[float] = None) -> Buffer:
        """Receives the next buffer, waiting up to timeout seconds (None: forever). Raises
        TimeoutError, Closed (once the closed pool is drained); KeyboardInterrupt on Ctrl-C."""
    def __iter__(self) -> Iterator[Buffer]: ...
    def __next__(self) -> Buffer: ...
    def try_recv(self) -> Optional[Buffer]:
        """Receives the next buffer if one is published now, else None (which arms fileno())."""
    def set_spin(self, seconds: float) -> None:
        """Spins up to seconds for a publication before sleeping (0: never; multi-CPU machines
        only). At most one place fewer than the CPUs spins at once per pool, the others sleep at
        once; a spinner that loses its CPU to another task yields it between tries for a while."""
    def fileno(self) -> int:
        """Readiness descriptor: readable when a buffer may be received; then try_recv until None."""
    async def arecv(self, timeout: Optional[float] = None) -> Buffer:
        """recv in the running asyncio loop (no thread); cancelling loses no buffer."""
    def __aiter__(self) -> AsyncIterator[Buffer]: ...
    async def __anext__(self) -> Buffer: ...
    @property
    def received(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Consumer: ...
    def __exit__(self, *args: object) -> bool: ...

@final
class Buffer(_BufferProto):
    """A received buffer (read-only). Buffer protocol: 1-D read-only bytes of the payload."""

    def array(self) -> Any:
        """A read-only numpy.ndarray view typed and shaped from the slot's metadata (no shape
        recorded: 1-D; untyped: uint8; bf16: uint16 holding the raw bits)."""
    def release(self) -> None:
        """Returns the slot now; BufferError (slot kept) while views of it are alive."""
    @property
    def released(self) -> bool: ...
    @property
    def seq(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def user_meta(self) -> bytes: ...
    @property
    def meta(self) -> bytes:
        """Deprecated: user_meta."""
    @property
    def nbytes(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def shape(self) -> Tuple[int, ...]: ...
    @property
    def slot_index(self) -> int: ...
    @property
    def slot(self) -> int:
        """Deprecated: slot_index."""
    @property
    def address(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...
    def __dlpack__(
        self,
        *,
        stream: Optional[Any] = None,
        max_version: Optional[Tuple[int, int]] = None,
        dl_device: Optional[Tuple[int, int]] = None,
        copy: Optional[bool] = None,
    ) -> Any: ...
    def __dlpack_device__(self) -> Tuple[int, int]: ...
    def __enter__(self) -> Buffer: ...
    def __exit__(self, *args: object) -> bool: ...

@final
class WriteBuffer(_BufferProto):
    """A slot being filled (writable). Buffer protocol: 1-D writable bytes of the whole slot."""

    def array(self, dtype: _DType, shape: Optional[_Shape] = None) -> Any:
        """A writable numpy.ndarray view of the slot; records dtype and shape in the slot's
        metadata and sets the length publish() uses."""
    def publish(self, length: Optional[int] = None) -> Optional[int]:
        """Publishes; returns the sequence number (None: broadcast pool without consumers).
        BufferError (buffer kept) while views of it are alive."""
    def discard(self) -> None: ...
    @property
    def user_meta(self) -> bytes: ...
    @user_meta.setter
    def user_meta(self, value: Union[bytes, bytearray, str]) -> None: ...
    @property
    def meta(self) -> bytes:
        """Deprecated: user_meta."""
    @meta.setter
    def meta(self, value: Union[bytes, bytearray, str]) -> None: ...
    @property
    def timestamp(self) -> Optional[int]: ...
    @timestamp.setter
    def timestamp(self, value: int) -> None: ...
    @property
    def capacity(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def is_published(self) -> bool: ...
    @property
    def published(self) -> bool:
        """Deprecated: is_published."""
    @property
    def slot_index(self) -> int: ...
    @property
    def slot(self) -> int:
        """Deprecated: slot_index."""
    @property
    def address(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...
    def __dlpack__(
        self,
        *,
        stream: Optional[Any] = None,
        max_version: Optional[Tuple[int, int]] = None,
        dl_device: Optional[Tuple[int, int]] = None,
        copy: Optional[bool] = None,
    ) -> Any: ...
    def __dlpack_device__(self) -> Tuple[int, int]: ...
    def __enter__(self) -> WriteBuffer: ...
    def __exit__(self, *args: object) -> bool: ...

# The host/worker protocol (used by shmpool.rpc).

@final
class Listener:
    """A host's listening socket with a fresh secret."""

    def __new__(
        cls,
        protocols: Optional[str] = None,
        directory: Optional[_Path] = None,
        *,
        heartbeat: Optional[float] = None,
        missed_heartbeats: Optional[int] = None,
        slots: Optional[int] = None,
        slot_size: Optional[int] = None,
        max_message: Optional[int] = None,
        timeout: Optional[float] = None,
        max_slot_size: Optional[int] = None,
    ) -> Listener: ...
    def worker_env(self) -> list[Tuple[str, str]]: ...
    @property
    def address(self) -> str: ...
    @property
    def directory(self) -> Path: ...
    @property
    def protocols(self) -> list[str]: ...
    def accept(self, timeout: float, check: Optional[Any] = None, fallback_only: bool = False) -> Connection: ...

@final
class Connection:
    """One end of an authenticated message connection."""

    @property
    def protocol(self) -> Literal["tcp", "unix", "shm"]: ...
    @property
    def alive(self) -> bool: ...
    @property
    def options(self) -> ConnectionOptions: ...
    @property
    def stats(self) -> list[Tuple[str, int]]: ...
    def alloc(self, nbytes: int) -> SlotBuffer: ...
    def send(self, header: Any, buffers: Optional[list[Any]] = None) -> None: ...
    def recv(self, timeout: Optional[float] = None) -> Tuple[bytes, list[Any]]: ...
    def try_recv(self) -> Optional[Tuple[bytes, list[Any]]]:
        """A message if one is waiting now, else None (which re-arms fileno())."""
    def fileno(self) -> int:
        """Readiness descriptor: readable when a message may be waiting; then try_recv until None."""
    def close(self) -> None: ...

@final
class ConnectionOptions:
    """The options both ends of a connection agreed on."""

    @property
    def version(self) -> int: ...
    @property
    def max_message(self) -> int: ...
    @property
    def max_buffers(self) -> int: ...
    @property
    def max_header(self) -> int: ...
    @property
    def inline_threshold(self) -> int: ...
    @property
    def slots(self) -> int: ...
    @property
    def slot_size(self) -> int: ...
    @property
    def max_slot_size(self) -> int: ...
    @property
    def heartbeat(self) -> float: ...
    @property
    def missed_heartbeats(self) -> int: ...

@final
class LentBuffer(_BufferProto):
    """Bytes of this side's pool that the peer sent back without a copy (read-only)."""

    @property
    def nbytes(self) -> int: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...

@final
class SocketBuffer(_BufferProto):
    """Bytes that came on the socket (read-only), received without a further copy."""

    @property
    def nbytes(self) -> int: ...
    def __len__(self) -> int: ...
    def __bytes__(self) -> bytes: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...

@final
class SlotBuffer(_BufferProto):
    """A writable slot of this side's pool, lent to the peer (no copy) whenever it is sent."""

    @property
    def nbytes(self) -> int: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...

def connect_env(
    protocols: Optional[str] = None,
    directory: Optional[_Path] = None,
    *,
    heartbeat: Optional[float] = None,
    missed_heartbeats: Optional[int] = None,
    timeout: Optional[float] = None,
    slot_size: Optional[int] = None,
    max_slot_size: Optional[int] = None,
) -> Connection: ...
def worker_command(
    backend: str, argv: list[str], env: list[Tuple[str, str]], directory: _Path, arg: Optional[str] = None
) -> Tuple[list[str], list[Tuple[str, str]]]: ...

# shmpool.farm (see farm.py)
@final
class FarmClient:
    def __new__(
        cls,
        endpoint: str,
        *,
        timeout: float = 2.5,
        attempts: int = 3,
        shm: bool = True,
        shm_dir: str | os.PathLike[str] | None = None,
        threshold: int = 4096,
    ) -> FarmClient: ...
    def request(self, service: str, parts: Sequence[object]) -> list[Any]: ...
    def array(self, dtype: _DType, shape: Sequence[int]) -> Any:
        """A writable NumPy array to fill in place and send with no copy (a slot of the
        client's pool when the broker is co-located)."""
    def stats(self) -> dict[str, int]: ...
    def pool_mapping(self) -> tuple[int, int] | None: ...
    def reply_pool_mapping(self) -> tuple[int, int] | None: ...

@final
class FarmRequest:
    @property
    def parts(self) -> list[Any]: ...
    @property
    def shared(self) -> list[bool]: ...
    def reply(self, parts: Sequence[object]) -> None:
        """Answers the client (once). NumPy arrays are copied once, straight into slots of a
        co-located client's reply pool (else into their frames)."""

@final
class FarmWorker:
    def __new__(
        cls,
        endpoint: str,
        service: str,
        *,
        heartbeat: float = 1.0,
        reconnect: float = 1.0,
        shm: bool = True,
        shm_dir: str | os.PathLike[str] | None = None,
    ) -> FarmWorker: ...
    def recv(self, timeout: float | None = None) -> FarmRequest | None: ...
    def __iter__(self) -> FarmWorker: ...
    def __next__(self) -> FarmRequest: ...
    def close(self) -> None: ...

@final
class PartView: ...

@final
class FarmArray: ...

_Kind = Literal["array", "string", "i64", "f64", "bool"]

@final
class Store:
    """The store of named variables of a job: a directory ``shmpool-store.JOB`` in the pool
    directory. Versions, not locks: readers hold whole versions; one writer per variable."""

    def __new__(cls, job: str, directory: Optional[_Path] = None) -> Store: ...
    @staticmethod
    def open(job: str, directory: Optional[_Path] = None) -> Store:
        """Opens the store of ``job`` (default directory: $SHMPOOL_DIR or /dev/shm), creating it."""
    def declare(
        self,
        name: str,
        dtype: Optional[_DType] = None,
        shape: Optional[Sequence[int]] = None,
        capacity: Optional[int] = None,
        kind: _Kind = "array",
        versions: int = 4,
    ) -> None:
        """Declares ``name`` (or checks it is declared the same way); -1 dimensions are dynamic,
        up to ``capacity`` bytes per version."""
    def write(self, name: str, timeout: Optional[float] = None) -> StoreWriter:
        """A new version of ``name``; as a context manager, published on a clean exit."""
    def read(self, name: str, timeout: Optional[float] = None, newer_than: Optional[int] = None) -> StoreVersion:
        """The latest version (newer than ``newer_than``), waiting for it; TimeoutError after ``timeout``."""
    def try_read(self, name: str) -> Optional[StoreVersion]: ...
    def variables(self) -> list[dict[str, Any]]:
        """name, kind, dtype, dims, capacity, version, shape, readers and waiting of every variable."""
    def operator(
        self, name: str, inputs: Sequence[str] = ..., outputs: Optional[dict[str, dict[str, Any]]] = None
    ) -> Operator:
        """An operator; ``outputs`` maps names to ``declare`` keyword dicts."""
    def pipeline_operator(self, path: _Path, name: str) -> Operator:
        """Operator ``name`` of the JSON pipeline definition in ``path``."""
    def remove(self, name: str) -> None:
        """Removes ``name``; versions held stay valid. WriterBusy while another handle writes it."""
    def sweep(self) -> int: ...
    @staticmethod
    def list(directory: Optional[_Path] = None) -> builtins.list[dict[str, Any]]: ...
    @staticmethod
    def gc(directory: Optional[_Path] = None) -> builtins.list[str]:
        """Removes the stores nobody has open; returns their jobs."""
    @property
    def job(self) -> str: ...
    @property
    def path(self) -> Path: ...

@final
class StoreVersion(_BufferProto):
    """A held version (read-only; ``array()`` has ``writeable=False``, DLPack 1.0 is flagged
    read-only). Held while it or any view of it lives."""

    @property
    def version(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def shape(self) -> Tuple[int, ...]: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def address(self) -> int: ...
    def array(self) -> Any:
        """A read-only numpy.ndarray view, no copy."""
    def value(self) -> Any:
        """str, int, float or bool for those kinds; the read-only ndarray for arrays."""
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...
    def __dlpack__(
        self,
        *,
        stream: Optional[Any] = None,
        max_version: Optional[Tuple[int, int]] = None,
        dl_device: Optional[Tuple[int, int]] = None,
        copy: Optional[bool] = None,
    ) -> Any: ...
    def __dlpack_device__(self) -> Tuple[int, int]: ...

@final
class StoreWriter(_BufferProto):
    """A version being written. Fill its array before the commit; never write to it after."""

    def array(self, shape: Optional[Sequence[int]] = None) -> Any:
        """A writable numpy.ndarray of ``shape`` (default: the declared fixed shape)."""
    def set(self, value: Union[str, int, float, bool]) -> None:
        """Sets a string or scalar variable."""
    def commit(self) -> int: ...
    def discard(self) -> None: ...
    @property
    def done(self) -> bool: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...
    def __enter__(self) -> StoreWriter: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        _exc: Optional[BaseException] = None,
        _tb: Optional[TracebackType] = None,
    ) -> bool: ...

@final
class Operator:
    """A pipeline step with declared inputs and outputs."""

    def run(self, timeout: Optional[float] = None) -> Run:
        """Waits for a new version of every input (TimeoutError naming the missing one)."""
    @property
    def name(self) -> str: ...
    @property
    def inputs(self) -> list[str]: ...
    @property
    def outputs(self) -> list[str]: ...

@final
class Run:
    """One run: read-only ``inputs``, writable ``outputs``; published on a clean exit."""

    @property
    def inputs(self) -> dict[str, StoreVersion]: ...
    @property
    def outputs(self) -> dict[str, StoreWriter]: ...
    def commit(self) -> list[int]: ...
    def discard(self) -> None: ...
    def __enter__(self) -> Run: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        _exc: Optional[BaseException] = None,
        _tb: Optional[TracebackType] = None,
    ) -> bool: ...
