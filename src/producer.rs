//! Producers: take a free slot, fill it in place, publish it.
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("shmpool-prod-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! use shmpool::{Config, DType, Pool};
//! let pool = Pool::create("producer-doc", &Config::new(2, 4096).directory(&dir))?;
//! let mut consumer = pool.consumer()?;
//! let producer = pool.producer()?;
//! let mut buf = producer.try_acquire()?.expect("a free slot");
//! buf[..4].copy_from_slice(&1.5f32.to_ne_bytes());
//! buf.set_dtype(DType::F32);
//! buf.set_shape(&[1])?;
//! buf.set_len(4)?;
//! buf.set_user_meta(b"video/x-raw")?;
//! let seq = buf.publish()?;
//! assert_eq!(seq, Some(0));
//! let got = consumer.try_recv()?.expect("published");
//! assert_eq!((got.dtype(), got.shape(), got.user_meta()), (DType::F32, &[1u64][..], &b"video/x-raw"[..]));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), shmpool::Error>(())
//! ```

use crate::dtype::DType;
use crate::pool::exchange::View;
use crate::pool::layout::MAX_DIMS;
use crate::pool::{Attempt, Event, Place};
use crate::signaler::Spin;
use crate::sync::Ordering::*;
use crate::{Error, Overflow, Result};
use std::ops::{Deref, DerefMut};
use std::os::fd::RawFd;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

/// Publishes buffers into a pool. `Send + Sync`: threads may share one producer.
pub struct Producer {
    pub(crate) place: Arc<Place>,
    next: AtomicUsize,
    spin: Spin,
}

impl Producer {
    pub(crate) fn new(place: Arc<Place>) -> Self {
        Producer { place, next: AtomicUsize::new(0), spin: Spin::new(Duration::ZERO) }
    }

    /// Spins up to `spin` for a free slot before sleeping (only on multi-CPU machines).
    /// At most one place fewer than the CPUs spins at once per pool; the others sleep at once.
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = Spin::new(spin);
    }

    fn view(&self) -> &View {
        &self.place.pool.view
    }

    fn attempt(&self) -> Result<Option<WriteBuf>> {
        if self.place.pool.is_closed() {
            return Err(Error::Closed);
        }
        let view = self.view();
        let start = self.next.load(Relaxed);
        let mut slot = view.try_acquire(self.place.index, start);
        if slot.is_none() {
            view.collect_stale();
            slot = view.try_acquire(self.place.index, start);
        }
        if slot.is_none() && view.geometry.overflow == Overflow::DropOldest {
            slot = view.reclaim_oldest(self.place.index);
        }
        if slot.is_none() {
            view.validate_states()?;
        }
        Ok(slot.map(|k| {
            self.next.store(k + 1, Relaxed);
            WriteBuf::new(self.place.clone(), k)
        }))
    }

    /// Takes a free slot, waiting up to `timeout` (`None`: forever). Under drop-oldest overflow it
    /// reclaims the oldest published buffer nobody is reading instead of waiting.
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<WriteBuf> {
        self.place.block_on(Event::Freed, timeout, &self.spin, || {
            Ok(match self.attempt()? {
                Some(buf) => Attempt::Ready(buf),
                None => Attempt::Pending,
            })
        })
    }

    /// Takes a free slot if there is one now. With a [readiness handle](Producer::ready_fd),
    /// `Ok(None)` also arms it.
    pub fn try_acquire(&self) -> Result<Option<WriteBuf>> {
        self.place.try_once(Event::Freed, || Ok(self.attempt()?.map_or(Attempt::Pending, Attempt::Ready)))
    }

    /// A file descriptor that becomes readable when a slot may be free, for event loops: call
    /// [`Producer::try_acquire`] until `Ok(None)` after it is readable (see the
    /// [semantics](crate::readiness)). Opened on first call; it stays open
    /// (and the same) as long as the producer lives.
    pub fn ready_fd(&self) -> Result<RawFd> {
        self.place.ready_handle().map(|ready| ready.raw())
    }

    /// Buffers published by this producer.
    pub fn published(&self) -> u64 {
        self.view().producer(self.place.index).published.load(Relaxed)
    }
}

/// A slot being written. Derefs to the whole slot (`capacity()` bytes); publish the first `len()`.
/// Dropping it unpublished returns the slot to the pool.
pub struct WriteBuf {
    place: Arc<Place>,
    slot: usize,
    len: usize,
    timestamp: Option<u64>,
    done: bool,
}

impl WriteBuf {
    fn new(place: Arc<Place>, slot: usize) -> Self {
        let view = &place.pool.view;
        let meta = view.slot(slot);
        meta.dtype.store(DType::Bytes.code(), Relaxed);
        meta.ndim.store(0, Relaxed);
        meta.meta_len.store(0, Relaxed);
        let len = view.geometry.slot_size as usize;
        WriteBuf { place, slot, len, timestamp: None, done: false }
    }

    fn view(&self) -> &View {
        &self.place.pool.view
    }

    /// Bytes the slot can hold.
    pub fn capacity(&self) -> usize {
        self.view().geometry.slot_size as usize
    }

    /// Bytes that will be published (default: the whole capacity).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets how many bytes to publish.
    pub fn set_len(&mut self, len: usize) -> Result<()> {
        if len > self.capacity() {
            return Err(Error::invalid(format!("length {len} exceeds the slot size {}", self.capacity())));
        }
        self.len = len;
        Ok(())
    }

    /// Sets the timestamp (any unit; default: CLOCK_MONOTONIC nanoseconds at publish).
    pub fn set_timestamp(&mut self, timestamp: u64) {
        self.timestamp = Some(timestamp);
    }

    pub fn set_dtype(&mut self, dtype: DType) {
        self.view().slot(self.slot).dtype.store(dtype.code(), Relaxed);
    }

    /// Sets the shape (at most 8 dimensions).
    pub fn set_shape(&mut self, shape: &[u64]) -> Result<()> {
        if shape.len() > MAX_DIMS {
            return Err(Error::invalid(format!("{} dimensions, at most {MAX_DIMS}", shape.len())));
        }
        let meta = self.view().slot(self.slot);
        for (d, &n) in meta.shape.iter().zip(shape) {
            d.store(n, Relaxed);
        }
        meta.ndim.store(shape.len() as u32, Relaxed);
        Ok(())
    }

    /// Sets the user metadata bytes (at most the pool's `meta_bytes`).
    pub fn set_user_meta(&mut self, bytes: &[u8]) -> Result<()> {
        let capacity = self.view().geometry.meta_bytes as usize;
        if bytes.len() > capacity {
            return Err(Error::invalid(format!("{} bytes of metadata, the pool holds {capacity}", bytes.len())));
        }
        // SAFETY: the slot is ours (WRITING) and its metadata area holds `capacity` bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.view().user_meta_ptr(self.slot), bytes.len()) };
        self.view().slot(self.slot).meta_len.store(bytes.len() as u32, Relaxed);
        Ok(())
    }

    /// Index of the slot in the pool.
    pub fn slot_index(&self) -> usize {
        self.slot
    }

    /// Returns the slot to the pool unpublished (what dropping the buffer does too).
    pub fn discard(self) {}

    /// Publishes the first `len()` bytes. Returns the sequence number, or `None` if a broadcast pool
    /// had no consumer (the buffer is then discarded).
    pub fn publish(mut self) -> Result<Option<u64>> {
        self.done = true;
        let view = &self.place.pool.view;
        if self.place.pool.is_closed() {
            view.abort(self.slot);
            return Err(Error::Closed);
        }
        let meta = view.slot(self.slot);
        meta.len.store(self.len as u64, Relaxed);
        meta.timestamp.store(self.timestamp.unwrap_or_else(monotonic_ns), Relaxed);
        let seq = view.publish(self.slot)?;
        let counter = &view.producer(self.place.index).published;
        counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed); // only this producer writes it
        Ok(seq)
    }
}

impl Deref for WriteBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the slot is in WRITING state owned by this buffer, so no other well-behaved peer
        // touches its `slot_size` bytes, which lie inside the mapping kept alive by `place`.
        unsafe { std::slice::from_raw_parts(self.view().data_ptr(self.slot), self.capacity()) }
    }
}

impl DerefMut for WriteBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference from this process.
        unsafe { std::slice::from_raw_parts_mut(self.view().data_ptr(self.slot), self.capacity()) }
    }
}

impl Drop for WriteBuf {
    fn drop(&mut self) {
        if !self.done && self.place.pool.is_intact() {
            self.view().abort(self.slot);
        }
    }
}

/// Nanoseconds of CLOCK_MONOTONIC: the same clock in every process of the machine, so a consumer
/// can subtract a producer's timestamp.
pub fn monotonic_ns() -> u64 {
    // SAFETY: timespec is plain data filled by clock_gettime.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid clock id and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl std::fmt::Debug for WriteBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBuf").field("slot", &self.slot).field("len", &self.len).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("place", &self.place.index).finish_non_exhaustive()
    }
}
