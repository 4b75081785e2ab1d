//! Consumers: receive published buffers and read them in place.
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("shmpool-cons-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! use shmpool::{Config, Error, Pool};
//! use std::time::Duration;
//! let pool = Pool::create("consumer-doc", &Config::new(2, 4096).directory(&dir))?;
//! let mut consumer = pool.consumer()?;
//! pool.producer()?.acquire(None)?.publish()?;
//! pool.shutdown();
//! assert!(consumer.recv(Some(Duration::from_secs(1))).is_ok()); // drains what was published
//! assert!(matches!(consumer.recv(None), Err(Error::Closed)));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), shmpool::Error>(())
//! ```

use crate::dtype::DType;
use crate::pool::exchange::{Received, View};
use crate::pool::layout::MAX_DIMS;
use crate::pool::{Attempt, Event, Place};
use crate::signaler::Spin;
use crate::sync::Ordering::*;
use crate::{Error, Mode, Result};
use std::ops::Deref;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

/// Receives buffers from a pool. `Send`, not `Sync`: it keeps a position.
pub struct Consumer {
    pub(crate) place: Arc<Place>,
    spin: Spin,
}

impl Consumer {
    pub(crate) fn new(place: Arc<Place>) -> Self {
        Consumer { place, spin: Spin::new(Duration::ZERO) }
    }

    /// Spins up to `spin` for a publication before sleeping (only on multi-CPU machines).
    /// At most one place fewer than the CPUs spins at once per pool; the others sleep at once.
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = Spin::new(spin);
    }

    fn view(&self) -> &View {
        &self.place.pool.view
    }

    /// One try: the `(slot, seq)` this consumer now holds. The caller wraps it in a [`ReadBuf`] at
    /// once (so the buffer is built where it is returned: no copy of it through the wait loops).
    fn attempt(&self) -> Result<Attempt<(usize, u64)>> {
        let closed = self.place.pool.is_closed();
        let view = self.view();
        let received = match view.geometry.mode {
            Mode::Broadcast => view.try_recv_broadcast(self.place.index)?,
            Mode::WorkQueue => view.try_recv_workqueue(self.place.index)?,
        };
        match received {
            Received::Slot { slot, seq } => Ok(Attempt::Ready((slot, seq))),
            Received::Empty if closed => Err(Error::Closed),
            Received::Empty if self.place.pool.orphaned_recently() => Err(Error::Orphaned),
            Received::Empty => Ok(Attempt::Pending),
            Received::Busy => Ok(Attempt::Busy),
        }
    }

    /// Receives the next buffer, waiting up to `timeout` (`None`: forever). After the pool is
    /// closed, returns what was still published, then [`Error::Closed`]; if its creator died
    /// without closing it and no producer is left, [`Error::Orphaned`] (within the lease).
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<ReadBuf> {
        let (slot, seq) = self.place.block_on(Event::Published, timeout, &self.spin, || self.attempt())?;
        ReadBuf::new(self.place.clone(), slot, seq)
    }

    /// Receives the next buffer if one is published now. With a [readiness
    /// handle](Consumer::ready_fd), `Ok(None)` also arms it.
    pub fn try_recv(&mut self) -> Result<Option<ReadBuf>> {
        match self.place.try_once(Event::Published, || self.attempt())? {
            Some((slot, seq)) => ReadBuf::new(self.place.clone(), slot, seq).map(Some),
            None => Ok(None),
        }
    }

    /// A file descriptor that becomes readable when a buffer may be received, for event loops:
    /// call [`Consumer::try_recv`] until `Ok(None)` after it is readable (see the
    /// [semantics](crate::readiness)). Opened on first call; it stays open
    /// (and the same) as long as the consumer lives.
    pub fn ready_fd(&self) -> Result<RawFd> {
        self.place.ready_handle().map(|ready| ready.raw())
    }

    /// Buffers this consumer missed because a drop-oldest producer reclaimed them first.
    pub fn dropped(&self) -> u64 {
        self.view().consumer(self.place.index).dropped.load(Relaxed)
    }

    /// Buffers this consumer received.
    pub fn received(&self) -> u64 {
        self.view().consumer(self.place.index).received.load(Relaxed)
    }

    /// Index of this consumer's place in the pool (0 to 23).
    pub fn place(&self) -> usize {
        self.place.index
    }
}

impl Iterator for Consumer {
    type Item = Result<ReadBuf>;

    /// Blocks for the next buffer; ends when the pool is closed and drained.
    fn next(&mut self) -> Option<Result<ReadBuf>> {
        match self.recv(None) {
            Err(Error::Closed) => None,
            other => Some(other),
        }
    }
}

/// A received buffer, read in place. Dropping it releases the slot.
pub struct ReadBuf {
    place: Arc<Place>,
    slot: usize,
    seq: u64,
    len: usize,
    timestamp: u64,
    dtype: DType,
    ndim: usize,
    shape: [u64; MAX_DIMS],
    meta_len: usize,
}

impl ReadBuf {
    /// Copies and validates the slot's metadata: a hostile or broken producer gets `Corrupted`,
    /// and the slot is released.
    fn new(place: Arc<Place>, slot: usize, seq: u64) -> Result<ReadBuf> {
        let view = &place.pool.view;
        let g = view.geometry;
        let meta = view.slot(slot);
        let (len, dtype, ndim) = (meta.len.load(Relaxed), meta.dtype.load(Relaxed), meta.ndim.load(Relaxed));
        let meta_len = meta.meta_len.load(Relaxed) as usize;
        let mut shape = [0; MAX_DIMS];
        for (d, s) in shape.iter_mut().zip(&meta.shape) {
            *d = s.load(Relaxed);
        }
        let timestamp = meta.timestamp.load(Relaxed);
        // From here on, dropping `buf` (also on the error paths) releases the slot.
        let mut buf = ReadBuf { place, slot, seq, len: 0, timestamp, dtype: DType::Bytes, ndim: 0, shape, meta_len: 0 };
        if len > g.slot_size {
            return Err(Error::corrupted(format!("slot {slot}: length {len} exceeds slot size {}", g.slot_size)));
        }
        buf.dtype =
            DType::from_code(dtype).ok_or_else(|| Error::corrupted(format!("slot {slot}: dtype code {dtype}")))?;
        if ndim as usize > MAX_DIMS {
            return Err(Error::corrupted(format!("slot {slot}: {ndim} dimensions")));
        }
        if meta_len > g.meta_bytes as usize {
            return Err(Error::corrupted(format!("slot {slot}: {meta_len} metadata bytes of {}", g.meta_bytes)));
        }
        buf.len = len as usize;
        buf.ndim = ndim as usize;
        buf.meta_len = meta_len;
        Ok(buf)
    }

    /// Publish sequence number; gaps mean drops (drop-oldest) or other consumers' share (work queue).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn shape(&self) -> &[u64] {
        &self.shape[..self.ndim]
    }

    pub fn user_meta(&self) -> &[u8] {
        // SAFETY: `meta_len` was checked against the pool's metadata size; we hold the slot.
        unsafe { std::slice::from_raw_parts(self.place.pool.view.user_meta_ptr(self.slot), self.meta_len) }
    }

    /// Index of the slot in the pool.
    pub fn slot_index(&self) -> usize {
        self.slot
    }
}

impl Deref for ReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: we hold a reading bit, so no well-behaved producer reuses the slot; `len` was
        // checked against the slot size; the read-only mapping lives as long as `place`.
        unsafe { std::slice::from_raw_parts(self.place.pool.read_only.slot(self.slot), self.len) }
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        if self.place.pool.is_intact() {
            self.place.pool.view.release(self.slot, self.place.index);
        }
    }
}

impl std::fmt::Debug for ReadBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBuf")
            .field("slot", &self.slot)
            .field("seq", &self.seq)
            .field("len", &self.len)
            .field("dtype", &self.dtype)
            .field("shape", &self.shape())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("place", &self.place.index).finish_non_exhaustive()
    }
}
