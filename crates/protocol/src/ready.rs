//! A connection's readiness descriptor, for event loops: an `eventfd` that becomes readable when
//! a message may be waiting for [`Connection::try_recv`](crate::Connection::try_recv).
//!
//! The semantics are those of the core's pool handles (`shmpool::readiness`): ask for the
//! descriptor before the first `try_recv`; after it is readable, call `try_recv` until it gives
//! `Ok(None)` (which re-arms it), then wait again; spurious readiness is allowed; never read the
//! descriptor yourself. Level-triggered until that `try_recv`, so it suits `epoll` (also with
//! `EPOLLET`), `poll`, asyncio's `add_reader` and tokio's `AsyncFd` alike.
//!
//! Messages are queued by the connection's reader thread; it writes the descriptor after each
//! message (and when the connection ends) once somebody asked for it, never before: a connection
//! no loop waits on costs no extra system call.

use crate::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, Ordering::SeqCst};
use std::sync::OnceLock;

/// The descriptor, created when first asked for.
#[derive(Default)]
pub(crate) struct Ready {
    fd: OnceLock<OwnedFd>,
}

impl Ready {
    /// The descriptor (created on first call).
    pub(crate) fn fd(&self) -> Result<RawFd> {
        if let Some(fd) = self.fd.get() {
            return Ok(fd.as_raw_fd());
        }
        // SAFETY: eventfd has no memory effects; the flags are valid.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(Error::io("creating the connection's readiness descriptor", std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(self.fd.get_or_init(|| fd).as_raw_fd())
    }

    /// Called by the reader after it queued a message (or the end): makes the descriptor readable.
    pub(crate) fn notify(&self) {
        // Pairs with the fence in `arm`: either the waiter's re-check finds the message, or this
        // load sees its descriptor (Dekker's pattern on the queue and the descriptor).
        fence(SeqCst);
        if let Some(fd) = self.fd.get() {
            let one = 1u64.to_ne_bytes();
            // SAFETY: `fd` is an open eventfd; the buffer holds the 8 bytes eventfd takes. A full
            // counter (EAGAIN) is readable already.
            unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        }
    }

    /// Called by `try_recv` before it looks at the queue: takes the pending notifications, so
    /// that the descriptor is readable again only for messages queued after this.
    pub(crate) fn arm(&self) {
        if let Some(fd) = self.fd.get() {
            let mut count = [0u8; 8];
            // SAFETY: `fd` is an open, non-blocking eventfd; `count` holds the 8 bytes it gives.
            unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
        }
        fence(SeqCst);
    }
}
