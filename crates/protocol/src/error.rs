//! The protocol's error type: what can go wrong on a connection, plus the errors of the pools it
//! uses once upgraded to shared memory.
//!
//! ```
//! use shmpool_protocol::Error;
//! let e = Error::from(shmpool::Error::Timeout);
//! assert!(matches!(e, Error::Timeout));
//! ```

use std::io;

/// Errors of a host/worker connection. New variants may come in minor releases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer went away: it closed the connection, its process exited, or it stopped answering
    /// heartbeats.
    #[error("disconnected: {0}")]
    Disconnected(String),
    /// The peer sent something malformed, too large or unexpected.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer failed the authentication (a different secret).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// A call ran out of time.
    #[error("timed out")]
    Timeout,
    /// An argument or a setting is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The peer or this side does not support what was asked.
    #[error("{0}")]
    Unsupported(&'static str),
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A shared-memory pool of the connection failed.
    #[error(transparent)]
    Pool(shmpool::Error),
}

impl From<shmpool::Error> for Error {
    fn from(e: shmpool::Error) -> Self {
        match e {
            // One meaning, one variant: callers match `Timeout` whichever layer timed out.
            shmpool::Error::Timeout => Error::Timeout,
            e => Error::Pool(e),
        }
    }
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    pub(crate) fn invalid(what: impl Into<String>) -> Self {
        Error::InvalidArgument(what.into())
    }
}

/// `Result` with the protocol's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
