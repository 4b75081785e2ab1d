"""Exceptions of shmpool. Every failure of the core raises a subclass of :class:`Error` carrying
the core's message; a blocking call that runs out of time raises the builtin ``TimeoutError``."""

from __future__ import annotations

__all__ = [
    "Error",
    "PoolNotFound",
    "PoolExists",
    "Closed",
    "Orphaned",
    "Corrupted",
    "InvalidArgument",
    "InsufficientSpace",
    "TooManyPeers",
    "Unsupported",
    "WriterBusy",
    "IOFailure",
    "Disconnected",
    "ProtocolError",
    "AuthenticationError",
    "FarmError",
]


class Error(Exception):
    """Base class of shmpool's errors."""


class PoolNotFound(Error, FileNotFoundError):
    """No pool of that name exists in the directory."""


class PoolExists(Error, FileExistsError):
    """A pool of that name exists and has live peers."""


class Closed(Error):
    """The pool (or this handle) was closed; consumers first drain what was published."""


class Orphaned(Closed):
    """The pool's creator died without closing it and no producer is left; raised once what was
    published is drained. The consumer stays usable: if the creator restarts with the same
    configuration it takes the pool over and ``recv()`` delivers again; otherwise reopen."""


class Corrupted(Error):
    """The segment holds something that is not a valid shmpool pool, slot or metadata."""


class InvalidArgument(Error, ValueError):
    """An argument is out of range."""


class InsufficientSpace(Error):
    """The file system cannot hold the pool (e.g. Docker's 64 MiB /dev/shm)."""


class TooManyPeers(Error):
    """Every producer or consumer place of the pool is taken by a live process."""


class Unsupported(Error):
    """The operation is not allowed for this handle."""


class WriterBusy(Error):
    """A variable of a store already has a writer (another store handle): one writer per variable."""


class IOFailure(Error):
    """An operating-system call failed."""


class Disconnected(Error, ConnectionError):
    """The peer of a protocol connection went away (closed, exited, or missed heartbeats)."""


class ProtocolError(Error):
    """The peer of a protocol connection sent something malformed, too large or unexpected."""


class AuthenticationError(Error, PermissionError):
    """The peer of a protocol connection does not know the secret."""


class FarmError(Error):
    """A farm broker refused a request (no worker in time, full queues, …) or a farm call failed."""
