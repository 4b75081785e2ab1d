//! Readiness descriptors for event loops (`epoll`, `poll`, GLib's `g_unix_fd_add`).
//!
//! The descriptor becomes readable when a buffer may be received (consumer) or a slot may be free
//! (producer). After it is readable, call `shmpool_consumer_try_recv` (`shmpool_producer_try_acquire`)
//! until it returns `SHMPOOL_WOULD_BLOCK`, then wait again: that call is what re-arms the
//! descriptor. Readiness may be spurious; never read from the descriptor yourself, and do not
//! close it (it belongs to the handle and is closed by its `_free`). Ask for it before the first
//! `try_` call. A loop that must notice dead peers holding slots waits at most the pool's lease
//! (500 ms by default) at a time and then tries again. The full semantics are those of the Rust
//! crate's `shmpool::readiness`.
//!
//! ```c
//! int fd;
//! shmpool_consumer_fd(consumer, &fd);           /* once */
//! // in the loop's callback for fd readable:
//! shmpool_read_buf *buf;
//! while (shmpool_consumer_try_recv(consumer, &buf) == SHMPOOL_OK) {
//!     use(buf);
//!     shmpool_consumer_release(consumer, &buf);
//! }
//! ```

use super::consumer::shmpool_consumer;
use super::producer::shmpool_producer;
use super::{call, shmpool_status, try_ref, write_out};

/// Writes the consumer's readiness descriptor to `*fd`, for `epoll`/`poll`/`g_unix_fd_add`: it
/// becomes readable when a buffer may be received. Ask for it before the first try_recv; when it
/// is readable, call `shmpool_consumer_try_recv` until `SHMPOOL_WOULD_BLOCK` (which re-arms it),
/// then wait again. Readiness may be spurious. Do not read or close it: it belongs to the consumer.
/// To notice dead peers, wait at most the pool's lease at a time. Same thread rule as receiving.
#[no_mangle]
pub unsafe extern "C" fn shmpool_consumer_fd(consumer: *const shmpool_consumer, fd: *mut i32) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle (module contract).
        let c = unsafe { try_ref(consumer, "consumer") }?;
        // SAFETY: one receiving thread at a time (module contract).
        let raw = unsafe { c.receiver() }.ready_fd()?;
        // SAFETY: NULL or writable (module contract).
        unsafe { write_out(fd, raw, "fd") }
    })
}

/// Writes the producer's readiness descriptor to `*fd`: readable when a slot may be free. Used as
/// `shmpool_consumer_fd`, with `shmpool_producer_try_acquire`.
#[no_mangle]
pub unsafe extern "C" fn shmpool_producer_fd(producer: *const shmpool_producer, fd: *mut i32) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle (module contract).
        let p = unsafe { try_ref(producer, "producer") }?;
        let raw = p.producer.ready_fd()?;
        // SAFETY: NULL or writable (module contract).
        unsafe { write_out(fd, raw, "fd") }
    })
}
