"""Type stubs of the compiled module ``shmpool._shmpool`` (re-exported by ``shmpool``)."""

import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Iterator, Literal, Optional, Sequence, Tuple, Union

if sys.version_info >= (3, 12):
    from collections.abc import Buffer as _BufferProto
else:
    _BufferProto = object

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
        """Creates a pool; a stale one of that name (no live process has it open) is replaced.
        Raises PoolExists if a live one exists."""
    @staticmethod
    def open(name: str, directory: Optional[_Path] = None) -> Pool:
        """Opens a pool (directory None: $SHMPOOL_DIR, else /dev/shm). Raises PoolNotFound."""
    def producer(self) -> Producer: ...
    def consumer(self) -> Consumer:
        """In broadcast mode the consumer receives what is published from now on."""
    def stats(self) -> dict[str, Any]:
        """slots, free, writing, ready, reading, producers, consumers, published, dropped,
        closed, and peers (a list of dicts: role, place, pid, alive, count, dropped)."""
    def close(self) -> None:
        """The creating handle closes the pool for everyone and removes its name; an opened
        handle only lets go of itself. Live buffers keep their mapping either way."""
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
    def closed(self) -> bool: ...
    def _mapping_range(self) -> Tuple[int, int]:
        """(address, length) of this process's mapping of the pool."""
    def __enter__(self) -> Pool: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class Producer:
    def acquire(self, timeout: Optional[float] = None) -> WriteBuffer:
        """Takes a free slot, waiting up to timeout seconds (None: forever). Raises
        TimeoutError, Closed; KeyboardInterrupt on Ctrl-C."""
    @property
    def published(self) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Producer: ...
    def __exit__(self, *args: object) -> bool: ...

class Consumer:
    def recv(self, timeout: Optional[float] = None) -> Buffer:
        """Receives the next buffer, waiting up to timeout seconds (None: forever). Raises
        TimeoutError, Closed (once the closed pool is drained); KeyboardInterrupt on Ctrl-C."""
    def __iter__(self) -> Iterator[Buffer]: ...
    def __next__(self) -> Buffer: ...
    @property
    def received(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Consumer: ...
    def __exit__(self, *args: object) -> bool: ...

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
    def meta(self) -> bytes: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def shape(self) -> Tuple[int, ...]: ...
    @property
    def slot(self) -> int: ...
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

class WriteBuffer(_BufferProto):
    """A slot being filled (writable). Buffer protocol: 1-D writable bytes of the whole slot."""

    def array(self, dtype: _DType, shape: Optional[_Shape] = None) -> Any:
        """A writable numpy.ndarray view of the slot; records dtype and shape in the slot's
        metadata and sets the length publish() uses."""
    def publish(self, length: Optional[int] = None) -> Optional[int]:
        """Publishes; returns the sequence number (None: broadcast pool without consumers).
        BufferError (buffer kept) while views of it are alive."""
    def discard(self) -> None: ...
    meta: bytes
    timestamp: Optional[int]
    @property
    def capacity(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def published(self) -> bool: ...
    @property
    def slot(self) -> int: ...
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

class Listener:
    """A host's listening socket with a fresh secret."""

    def __init__(
        self,
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
    ) -> None: ...
    def worker_env(self) -> list[Tuple[str, str]]: ...
    @property
    def address(self) -> str: ...
    @property
    def directory(self) -> Path: ...
    @property
    def protocols(self) -> list[str]: ...
    def accept(self, timeout: float, check: Optional[Any] = None, fallback_only: bool = False) -> Connection: ...

class Connection:
    """One end of an authenticated message connection."""

    @property
    def protocol(self) -> Literal["tcp", "unix", "shm"]: ...
    @property
    def alive(self) -> bool: ...
    @property
    def options(self) -> Tuple[int, int, int, int, int]: ...
    @property
    def stats(self) -> list[Tuple[str, int]]: ...
    def alloc(self, nbytes: int) -> SlotBuffer: ...
    def send(self, header: Any, buffers: Optional[list[Any]] = None) -> None: ...
    def recv(self, timeout: Optional[float] = None) -> Tuple[bytes, list[Any]]: ...
    def close(self) -> None: ...

class LentBuffer(_BufferProto):
    """Bytes of this side's pool that the peer sent back without a copy (read-only)."""

    @property
    def nbytes(self) -> int: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...

class SocketBuffer(_BufferProto):
    """Bytes that came on the socket (read-only), received without a further copy."""

    @property
    def nbytes(self) -> int: ...
    def __len__(self) -> int: ...
    def __bytes__(self) -> bytes: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...

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
