//! The host/worker protocol: an authenticated, full-duplex [`Connection`] carrying messages (a
//! header plus out-of-band buffers) between a host and the worker processes it starts.
//!
//! - [`frame`]: the wire format of one frame, with limits checked before anything is allocated.
//! - `stream`: the sockets (`tcp` on loopback, `unix`) and addresses.
//! - `auth`: the mutual HMAC-SHA256 challenge–response every socket runs first.
//! - `handshake`: option negotiation and protocol upgrades.
//! - `shm`: the growing pools that carry large buffers once a connection is upgraded to `shm`.
//! - `stats`: [`ConnStats`], what a connection sent where.
//! - `recycle`: receive buffers for inline data, sized once and kept across messages.
//! - `heartbeat`: liveness on an idle connection.
//! - `lending`: sending bytes that already lie in a held slot as a reference to it.
//! - `connection`: [`Connection`], [`Message`], [`Payload`], [`AllocBuf`].
//! - `ready`: a connection's readiness descriptor for event loops ([`Connection::ready_fd`]).
//! - `endpoint`: the host's [`Listener`] and the worker's [`connect`].
//! - `launcher`: starting workers under a [`Backend`] (process, docker, podman, apptainer, conda,
//!   namespace) and shutting them down.
//!
//! A host binds a [`Listener`], starts a worker with [`Listener::worker_env`] in its environment
//! (the address, the secret, the protocol list: never on the command line) and accepts it; the
//! worker calls [`connect_env`].
//!
//! ```no_run
//! use shmpool_protocol::{connect_env, ConnConfig};
//! // In a worker started by a host:
//! let conn = connect_env(&ConnConfig::default())?;
//! let msg = conn.recv(None)?;
//! conn.send(&msg.header, msg.buffers.iter().map(|b| b.as_ref().into()).collect())?;
//! # Ok::<(), shmpool_protocol::Error>(())
//! ```

mod auth;
mod connection;
mod endpoint;
mod error;
pub mod frame;
mod handshake;
mod heartbeat;
mod launcher;
mod lending;
mod ready;
mod recycle;
mod shm;
mod stats;
mod stream;

pub use auth::Secret;
pub use connection::{AllocBuf, Connection, Message, Payload, SendBuf};
pub use endpoint::{connect, connect_env, ConnConfig, Listener};
pub use error::{Error, Result};
pub use handshake::{parse_protocols, Options, Protocol, DEFAULT_SLOT_SIZE};
pub use launcher::NAMESPACE_DIR;
pub use launcher::{Backend, WorkerProcess};
pub use lending::{LendableSlot, LentView};
pub use recycle::InlineBuf;
pub use stats::ConnStats;
pub use stream::Address;

/// Environment variable with the comma-separated protocol list (default [`DEFAULT_PROTOCOLS`]).
pub const PROTOCOL_ENV: &str = "SHMPOOL_PROTOCOL";
/// Default protocol list: start on `tcp`, upgrade to `shm` when both ends can map the pools.
pub const DEFAULT_PROTOCOLS: &str = "tcp,shm";
/// Environment variable through which a host hands its secret (hex) to a worker.
pub const SECRET_ENV: &str = "SHMPOOL_SECRET";
/// Environment variable through which a host tells a worker where to connect (`tcp:HOST:PORT` or
/// `unix:PATH`).
pub const ADDRESS_ENV: &str = "SHMPOOL_ADDRESS";

/// The README's Rust examples (the core's and this crate's), compiled and run as doc tests here,
/// the lowest crate that sees both.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
