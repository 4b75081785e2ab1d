//! `shmpool_producer`: acquire free slots, publish or abort them.

use super::buffers::Table;
use super::shmpool_write_buf;
use super::{call, guard, shmpool_status, timeout, try_mut, try_ref, write_out, Fail};
use shmpool::{Producer, WriteBuf};
use std::time::Duration;

/// Sequence written by `shmpool_producer_publish` when a broadcast pool had no consumer and the
/// buffer was discarded.
pub const SHMPOOL_NO_SEQUENCE: u64 = u64::MAX;

/// A producer of a pool. May be shared between threads.
pub struct shmpool_producer {
    /// Declared first: outstanding buffers are aborted before the producer leaves the pool.
    bufs: Table<shmpool_write_buf>,
    pub(crate) producer: Producer,
}

impl shmpool_producer {
    pub(crate) fn new(producer: Producer, slots: usize) -> Self {
        shmpool_producer { bufs: Table::new(slots), producer }
    }

    /// Hands `buf` to C through `out`.
    ///
    /// # Safety
    /// `out` is non-NULL and writable.
    #[inline]
    unsafe fn hand_out(&self, buf: WriteBuf, out: *mut *mut shmpool_write_buf) -> Result<(), Fail> {
        let b = self.bufs.hand_out(buf.slot_index(), buf)?;
        // SAFETY: per this function's contract.
        unsafe { out.write(b) };
        Ok(())
    }
}

/// Frees a producer (NULL is ignored). Buffers it acquired and did not publish are aborted; their
/// handles become invalid.
#[no_mangle]
pub unsafe extern "C" fn shmpool_producer_free(producer: *mut shmpool_producer) {
    guard((), || {
        if !producer.is_null() {
            // SAFETY: a non-NULL producer came from `Box::into_raw` and is freed once (contract).
            drop(unsafe { Box::from_raw(producer) });
        }
    })
}

/// Spins up to `spin_us` microseconds for a free slot before sleeping (multi-CPU machines only).
#[no_mangle]
pub unsafe extern "C" fn shmpool_producer_set_spin_us(producer: *mut shmpool_producer, spin_us: u32) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle not used by another thread during this call (contract).
        let p = unsafe { try_mut(producer, "producer") }?;
        p.producer.set_spin(Duration::from_micros(u64::from(spin_us)));
        Ok(())
    })
}

/// Takes a free slot, waiting up to `timeout_ms` (`SHMPOOL_FOREVER`: no limit); `*out` receives the
/// buffer, to be passed to `shmpool_producer_publish` or `shmpool_producer_discard`.
#[no_mangle]
pub unsafe extern "C" fn shmpool_producer_acquire(
    producer: *const shmpool_producer,
    timeout_ms: u32,
    out: *mut *mut shmpool_write_buf,
) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle (module contract).
        let p = unsafe { try_ref(producer, "producer") }?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let buf = p.producer.acquire(timeout(timeout_ms))?;
        // SAFETY: `out` checked non-NULL, writable (module contract).
        unsafe { p.hand_out(buf, out) }
    })
}

/// Takes a free slot if there is one now, else returns `SHMPOOL_WOULD_BLOCK`.
#[no_mangle]
pub unsafe extern "C" fn shmpool_producer_try_acquire(
    producer: *const shmpool_producer,
    out: *mut *mut shmpool_write_buf,
) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle (module contract).
        let p = unsafe { try_ref(producer, "producer") }?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let buf = p.producer.try_acquire()?.ok_or_else(|| Fail::would_block("no free slot"))?;
        // SAFETY: `out` checked non-NULL, writable (module contract).
        unsafe { p.hand_out(buf, out) }
    })
}

/// Takes the buffer out of `*buf` (checking it belongs to `producer`) and sets `*buf` to NULL.
#[inline]
unsafe fn take_buf(producer: *const shmpool_producer, buf: *mut *mut shmpool_write_buf) -> Result<WriteBuf, Fail> {
    // SAFETY: NULL or a live handle (module contract).
    let p = unsafe { try_ref(producer, "producer") }?;
    // SAFETY: NULL or a writable handle variable, not used concurrently (module contract).
    unsafe { p.bufs.take(buf, "producer") }
}

/// Publishes the buffer `*buf` and sets `*buf` to NULL (also on failure: a buffer that cannot be
/// published returns to the pool). `seq` (may be NULL) receives the sequence number, or
/// `SHMPOOL_NO_SEQUENCE` if a broadcast pool had no consumer.
#[no_mangle]
pub unsafe extern "C" fn shmpool_producer_publish(
    producer: *const shmpool_producer,
    buf: *mut *mut shmpool_write_buf,
    seq: *mut u64,
) -> shmpool_status {
    call(|| {
        // SAFETY: forwarded module contract.
        let taken = unsafe { take_buf(producer, buf) }?;
        let s = taken.publish()?.unwrap_or(SHMPOOL_NO_SEQUENCE);
        if !seq.is_null() {
            // SAFETY: non-NULL out-parameter, writable (module contract).
            unsafe { write_out(seq, s, "seq") }?;
        }
        Ok(())
    })
}

/// Returns the buffer `*buf` to the pool unpublished and sets `*buf` to NULL.
#[no_mangle]
pub unsafe extern "C" fn shmpool_producer_discard(
    producer: *const shmpool_producer,
    buf: *mut *mut shmpool_write_buf,
) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle (module contract).
        let p = unsafe { try_ref(producer, "producer") }?;
        // SAFETY: NULL or a writable handle variable, not used concurrently (module contract).
        unsafe { p.bufs.discard(buf, "producer") }
    })
}

/// Buffers this producer published (0 for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_producer_published(producer: *const shmpool_producer) -> u64 {
    // SAFETY: NULL or a live handle (module contract).
    guard(0, || unsafe { producer.as_ref() }.map_or(0, |p| p.producer.published()))
}
