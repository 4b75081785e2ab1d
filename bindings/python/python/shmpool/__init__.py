"""shmpool: zero-copy inter-process buffer pools in shared memory.

A :class:`Pool` is a named shared-memory segment of fixed-size slots. A :class:`Producer` takes a
free slot (:meth:`Producer.acquire`), fills it in place (for example through the writable ndarray
of :meth:`WriteBuffer.array`) and publishes it; a :class:`Consumer` in another process receives it
(:meth:`Consumer.recv`) and reads it in place (:meth:`Buffer.array`, a read-only ndarray view).

A slot stays held while any view of it exists (memoryview, ndarray, DLPack tensor) and returns to
the pool when the last one goes away. NumPy is optional: only ``array()`` needs it.
"""

from __future__ import annotations

from . import _errors
from ._errors import (
    AuthenticationError,
    Closed,
    Corrupted,
    Disconnected,
    Error,
    FarmError,
    InsufficientSpace,
    InvalidArgument,
    IOFailure,
    Orphaned,
    PoolExists,
    PoolNotFound,
    ProtocolError,
    TooManyPeers,
    Unsupported,
    WriterBusy,
)
from ._shmpool import (
    CORE_VERSION,
    DTYPES,
    MAX_DIMS,
    MAX_META_BYTES,
    MAX_SLOTS,
    Buffer,
    Consumer,
    Pool,
    Operator,
    Producer,
    Run,
    Store,
    StoreVersion,
    StoreWriter,
    WriteBuffer,
    __version__,
    monotonic_ns,
)

__all__ = [
    "Pool",
    "Producer",
    "Consumer",
    "Buffer",
    "WriteBuffer",
    "Store",
    "StoreVersion",
    "StoreWriter",
    "Operator",
    "Run",
    "DTYPES",
    "MAX_DIMS",
    "MAX_SLOTS",
    "MAX_META_BYTES",
    "CORE_VERSION",
    "monotonic_ns",
    "__version__",
]
__all__ += _errors.__all__
