//! `shmpool_consumer`: receive published buffers and release them.

use super::buffers::Table;
use super::{call, guard, shmpool_read_buf, shmpool_status, timeout, try_ref, Fail};
use shmpool::{Consumer, ReadBuf};
use std::cell::UnsafeCell;
use std::time::Duration;

/// A consumer of a pool. Receiving (`recv`, `try_recv`, `set_spin_us`, the counters) must happen
/// on one thread at a time; `shmpool_consumer_release` may run on any thread, also concurrently
/// with a receive (e.g. from a GStreamer buffer's destroy notify).
pub struct shmpool_consumer {
    /// Declared first: outstanding buffers are released before the consumer leaves the pool.
    /// Used concurrently by release (distinct entries).
    bufs: Table<shmpool_read_buf>,
    /// Only reached through [`shmpool_consumer::receiver`].
    consumer: UnsafeCell<Consumer>,
}

impl shmpool_consumer {
    pub(crate) fn new(consumer: Consumer, slots: usize) -> Self {
        shmpool_consumer { bufs: Table::new(slots), consumer: UnsafeCell::new(consumer) }
    }

    /// The consumer, for receiving.
    ///
    /// # Safety
    /// No other call on this consumer may be receiving at the same time (module contract: one
    /// receiving thread at a time).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn receiver(&self) -> &mut Consumer {
        // SAFETY: per this function's contract, nobody else holds a reference into the cell; the
        // release path only uses `bufs`, outside the cell.
        unsafe { &mut *self.consumer.get() }
    }

    /// Hands `buf` to C through `out`.
    ///
    /// # Safety
    /// `out` is non-NULL and writable.
    #[inline]
    unsafe fn hand_out(&self, buf: ReadBuf, out: *mut *mut shmpool_read_buf) -> Result<(), Fail> {
        let b = self.bufs.hand_out(buf.slot_index(), buf)?;
        // SAFETY: per this function's contract.
        unsafe { out.write(b) };
        Ok(())
    }
}

/// Frees a consumer (NULL is ignored). Buffers it received and did not release are released; their
/// handles become invalid.
#[no_mangle]
pub unsafe extern "C" fn shmpool_consumer_free(consumer: *mut shmpool_consumer) {
    guard((), || {
        if !consumer.is_null() {
            // SAFETY: a non-NULL consumer came from `Box::into_raw` and is freed once (contract).
            drop(unsafe { Box::from_raw(consumer) });
        }
    })
}

/// Spins up to `spin_us` microseconds for a publication before sleeping (multi-CPU machines only).
#[no_mangle]
pub unsafe extern "C" fn shmpool_consumer_set_spin_us(
    consumer: *const shmpool_consumer,
    spin_us: u32,
) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle; one receiving thread at a time (module contract).
        let c = unsafe { try_ref(consumer, "consumer")?.receiver() };
        c.set_spin(Duration::from_micros(u64::from(spin_us)));
        Ok(())
    })
}

/// Receives the next buffer, waiting up to `timeout_ms` (`SHMPOOL_FOREVER`: no limit). After the
/// pool is closed, returns what was still published, then `SHMPOOL_CLOSED`. Release the buffer with
/// `shmpool_consumer_release`.
#[no_mangle]
pub unsafe extern "C" fn shmpool_consumer_recv(
    consumer: *const shmpool_consumer,
    timeout_ms: u32,
    out: *mut *mut shmpool_read_buf,
) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle (module contract).
        let c = unsafe { try_ref(consumer, "consumer") }?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: one receiving thread at a time (module contract).
        let buf = unsafe { c.receiver() }.recv(timeout(timeout_ms))?;
        // SAFETY: `out` checked non-NULL, writable (module contract).
        unsafe { c.hand_out(buf, out) }
    })
}

/// Receives the next buffer if one is published now, else returns `SHMPOOL_WOULD_BLOCK`
/// (`SHMPOOL_CLOSED` once the pool is closed and drained).
#[no_mangle]
pub unsafe extern "C" fn shmpool_consumer_try_recv(
    consumer: *const shmpool_consumer,
    out: *mut *mut shmpool_read_buf,
) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle (module contract).
        let c = unsafe { try_ref(consumer, "consumer") }?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: one receiving thread at a time (module contract).
        let received = unsafe { c.receiver() }.try_recv()?;
        let buf = received.ok_or_else(|| Fail::would_block("nothing published"))?;
        // SAFETY: `out` checked non-NULL, writable (module contract).
        unsafe { c.hand_out(buf, out) }
    })
}

/// Releases the buffer `*buf` (it must come from this consumer) and sets `*buf` to NULL. May run
/// on any thread, also while another thread receives.
#[no_mangle]
pub unsafe extern "C" fn shmpool_consumer_release(
    consumer: *const shmpool_consumer,
    buf: *mut *mut shmpool_read_buf,
) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle (module contract); only `bufs` is used.
        let c = unsafe { try_ref(consumer, "consumer") }?;
        // SAFETY: NULL or a writable handle variable, not used concurrently (module contract).
        unsafe { c.bufs.discard(buf, "consumer") }
    })
}

/// Buffers this consumer received (0 for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_consumer_received(consumer: *const shmpool_consumer) -> u64 {
    // SAFETY: NULL or a live handle, on the receiving thread (module contract).
    guard(0, || unsafe { consumer.as_ref() }.map_or(0, |c| unsafe { c.receiver() }.received()))
}

/// Buffers this consumer missed because a drop-oldest producer reclaimed them (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmpool_consumer_dropped(consumer: *const shmpool_consumer) -> u64 {
    // SAFETY: NULL or a live handle, on the receiving thread (module contract).
    guard(0, || unsafe { consumer.as_ref() }.map_or(0, |c| unsafe { c.receiver() }.dropped()))
}

// Read buffers are released on whatever thread C chooses (see shmpool_consumer_release).
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<ReadBuf>();
    assert_send::<Consumer>();
};
