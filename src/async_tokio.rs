//! Waiting in tokio (feature `tokio`): [`Consumer::recv_async`] and [`Producer::acquire_async`]
//! wait on the handle's [readiness descriptor](crate::readiness) with tokio's `AsyncFd`, so a
//! task parks instead of a thread.
//!
//! Both are cancellation-safe: a buffer or slot is only taken by the non-blocking `try_*` call
//! that returns it, so dropping a pending future loses nothing. The descriptor is registered with
//! the runtime of the first call; use one runtime per handle.
//!
//! ```
//! use shmpool::{Config, Pool};
//! # let dir = std::env::temp_dir().join(format!("shmpool-tokio-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let pool = Pool::create("tokio-doc", &Config::new(2, 4096).directory(&dir))?;
//! let mut consumer = pool.consumer()?;
//! let producer = pool.producer()?;
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! rt.block_on(async {
//!     producer.acquire_async().await?.publish()?;
//!     let buf = consumer.recv_async().await?;
//!     assert_eq!(buf.seq(), 0);
//!     Ok::<(), shmpool::Error>(())
//! })?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), shmpool::Error>(())
//! ```

use crate::pool::Place;
use crate::{Consumer, Error, Producer, ReadBuf, Result, WriteBuf};
use std::io;
use std::os::fd::OwnedFd;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A place's readiness descriptor (a duplicate of it, owned) registered with a tokio reactor.
pub(crate) type Registered = AsyncFd<OwnedFd>;

impl Place {
    /// Waits until `try_op` gives something: try (which arms the handle when it finds nothing),
    /// then wait for readiness, at most a lease at a time (a retry sweeps dead peers when due).
    async fn until_ready<T>(&self, mut try_op: impl FnMut() -> Result<Option<T>>) -> Result<T> {
        // The handle first: only a `try_*` made while it exists arms it.
        let registered = self.registered()?;
        loop {
            if let Some(v) = try_op()? {
                return Ok(v);
            }
            if let Ok(guard) = tokio::time::timeout(self.pool.lease, registered.readable()).await {
                guard.map_err(|e| Error::io("waiting for readiness", e))?.clear_ready();
            }
        }
    }

    fn registered(&self) -> Result<&Registered> {
        let ready = self.ready_handle()?;
        if let Some(registered) = ready.tokio.get() {
            return Ok(registered);
        }
        let fd = ready.fd.try_clone().map_err(|e| Error::io("duplicating the readiness handle", e))?;
        // SAFETY: the AsyncFd owns `fd`, so it stays open, the same file, as long as it is registered.
        let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| Error::io("registering the readiness handle with tokio", io::Error::from(e)))?;
        Ok(ready.tokio.get_or_init(|| registered))
    }
}

impl Consumer {
    /// Receives the next buffer, waiting in the current tokio runtime without blocking a thread.
    /// Cancellation-safe. After the pool is closed and drained, gives [`Error::Closed`].
    pub async fn recv_async(&mut self) -> Result<ReadBuf> {
        let place = self.place.clone();
        place.until_ready(|| self.try_recv()).await
    }
}

impl Producer {
    /// Takes a free slot, waiting in the current tokio runtime without blocking a thread.
    /// Cancellation-safe.
    pub async fn acquire_async(&self) -> Result<WriteBuf> {
        self.place.until_ready(|| self.try_acquire()).await
    }
}
