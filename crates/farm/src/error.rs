//! Errors of the farm's clients and workers.

use crate::transport::TransportError;

/// What went wrong in a request, a worker or the broker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// No reply after every retry (Lazy Pirate): the broker or every worker is unreachable.
    #[error("no reply from service {service:?} after {attempts} attempts of {timeout_ms} ms")]
    NoReply { service: String, attempts: u32, timeout_ms: u128 },
    /// The broker refused the request (`code`: 503 no worker in time, 507 queue full, …).
    #[error("service {service:?} refused the request: {code} {reason}")]
    Refused { service: String, code: String, reason: String },
    /// A reply that is not valid MDP for this request.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The worker was stopped.
    #[error("the worker is stopped")]
    Stopped,
    #[error("invalid argument: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;
