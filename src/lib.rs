//! # shmpool: zero-copy buffer pools in shared memory
//!
//! A producer writes a buffer once into a slot of a shared-memory [`Pool`]; consumers in other
//! processes (or languages, or containers sharing a directory) read it in place.
//!
//! - [`Pool`]: the segment, created or opened by name; [`Config`] says its shape.
//! - [`Producer`] / [`WriteBuf`]: take a free slot, fill it, publish it.
//! - [`Consumer`] / [`ReadBuf`]: receive published buffers, release them by dropping.
//! - The Signaler (`signaler`) makes both sides sleep on futexes instead of spinning; liveness
//!   (`liveness`) frees what a crashed peer held.
//!
//! ```
//! use shmpool::{Config, Pool};
//! # let dir = std::env::temp_dir().join(format!("shmpool-lib-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let pool = Pool::create("lib-doc", &Config::new(4, 4096).directory(&dir))?;
//! let mut consumer = pool.consumer()?;
//! let mut buf = pool.producer()?.acquire(None)?;
//! buf[0] = 42;
//! buf.set_len(1)?;
//! buf.publish()?;
//! assert_eq!(consumer.recv(None)?[0], 42);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), shmpool::Error>(())
//! ```

#[cfg(feature = "tokio")]
mod async_tokio;
mod config;
mod consumer;
mod dtype;
mod error;
mod fuzz;
mod liveness;
mod pool;
mod producer;
mod signaler;
#[cfg(not(loom))]
pub mod store;
mod sync;

pub use config::{resolve_dir, Config, Mode, Overflow, DEFAULT_DIR, DIR_ENV};
pub use consumer::{Consumer, ReadBuf};
pub use dtype::DType;
pub use error::{Error, Result};
pub use pool::grow::{generation_name, PoolFollower, PoolSet, SetStats, MAX_GENERATIONS};
pub use pool::layout::{MAX_CONSUMERS, MAX_DIMS, MAX_META_BYTES, MAX_PRODUCERS, MAX_SLOTS, PAGE};
pub use pool::{readiness, PeerInfo, Pool, PoolEntry, Role, Stats};
pub use producer::{monotonic_ns, Producer, WriteBuf};
#[cfg(not(loom))]
pub use store::Store;

/// Library version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Internals exposed for this crate's own tests and benchmarks. Not a stable API.
#[doc(hidden)]
pub mod __private {
    #[cfg(loom)]
    pub use crate::pool::model;
    pub use crate::pool::slot_state;

    /// The segment fuzzing harness (fuzz target and `tests/segment_fuzz.rs`).
    pub use crate::fuzz::{seed as fuzz_seed, segment as fuzz_segment};
    pub use crate::signaler::futex;
    /// The Signaler's post (for the criterion benchmarks in benches/exchange.rs).
    pub use crate::signaler::notify;
    /// How many places may spin at once in this process's cpuset (for the spinner tests).
    pub use crate::signaler::spin_limit;

    /// Where the parts of a pool's segment lie (for tests that corrupt them on purpose).
    #[derive(Debug, Clone, Copy)]
    pub struct Offsets {
        pub control: usize,
        pub slots: usize,
        pub slot_stride: usize,
        pub ring: usize,
        pub ring_len: usize,
        pub data: usize,
    }

    pub fn offsets(pool: &crate::Pool) -> Offsets {
        let g = pool.inner.view.geometry;
        Offsets {
            control: g.control,
            slots: g.slots,
            slot_stride: size_of::<crate::pool::layout::SlotHeader>(),
            ring: g.ring,
            ring_len: g.ring_len as usize,
            data: g.data,
        }
    }
}
