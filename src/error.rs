//! The one error type of the crate.
//!
//! Every fallible call returns [`Result`]. The variants are the things a caller can act on; the
//! messages say what happened and, where it helps, what to do about it.
//!
//! ```
//! use shmpool::{Error, Pool};
//! match Pool::open("does-not-exist") {
//!     Err(Error::NotFound { .. }) => {}
//!     other => panic!("unexpected: {other:?}"),
//! }
//! ```

use std::io;
use std::path::PathBuf;

/// Errors of every shmpool operation. New variants may come in minor releases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No pool of that name exists in the directory.
    #[error("pool {name:?} not found at {path}")]
    NotFound { name: String, path: PathBuf },
    /// A pool of that name exists and has live peers.
    #[error("pool {name:?} already exists and is in use")]
    AlreadyExists { name: String },
    /// A blocking call ran out of time.
    #[error("timed out")]
    Timeout,
    /// The pool was closed by its creator (consumers first drain what was published).
    #[error("pool is closed")]
    Closed,
    /// The pool's creator died without closing it (it was not persisted) and no live producer is
    /// left: consumers get this once they drained what was published. The handle stays usable: if
    /// a producer restarts and creates the pool again with the same configuration it takes the
    /// pool over and `recv` delivers again; with another configuration the old pool is closed
    /// ([`Error::Closed`]) and consumers reopen the name.
    #[error("the pool's creator died without closing it and no producer is left (wait for a restart, or reopen)")]
    Orphaned,
    /// The segment holds something that is not a valid shmpool pool or state.
    #[error("corrupted pool: {0}")]
    Corrupted(String),
    /// An argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The file system cannot hold the segment (e.g. Docker's 64 MiB `/dev/shm`).
    #[error(
        "not enough space for the pool at {path}: {needed} bytes needed, {available} bytes free \
         (enlarge the shm mount, e.g. docker --shm-size, or use SHMPOOL_DIR)"
    )]
    InsufficientSpace { path: PathBuf, needed: u64, available: u64 },
    /// Every producer or consumer place of the pool is taken by a live peer.
    #[error("too many {role}s: the pool allows {limit}")]
    TooManyPeers { role: &'static str, limit: usize },
    /// The operation is not allowed for this handle.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A named variable of a store already has a writer: one writer per variable.
    #[error("variable {name:?} already has a writer (another store handle); one writer per variable")]
    WriterBusy { name: String },
    /// An operator waited too long for one of its inputs.
    #[error("timed out waiting for input {name:?}")]
    InputTimeout { name: String },
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    pub(crate) fn last_os(context: impl Into<String>) -> Self {
        Error::io(context, io::Error::last_os_error())
    }

    pub(crate) fn corrupted(what: impl Into<String>) -> Self {
        Error::Corrupted(what.into())
    }

    pub(crate) fn invalid(what: impl Into<String>) -> Self {
        Error::InvalidArgument(what.into())
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
