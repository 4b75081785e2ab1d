//! Readiness handles: a file descriptor per consumer or producer that an event loop (`epoll`,
//! `poll`, GLib's `g_unix_fd_add`, tokio's `AsyncFd`, asyncio's `add_reader`) can wait on.
//!
//! # Semantics (the one place they are written down)
//!
//! - [`Consumer::ready_fd`](crate::Consumer::ready_fd) becomes readable when a buffer may be
//!   received, [`Producer::ready_fd`](crate::Producer::ready_fd) when a slot may be free (or the
//!   pool was closed).
//! - Ask for the descriptor before the first `try_*` call: only calls made while it exists arm it.
//! - Readiness is a hint: spurious readiness is allowed, so after it, call `try_recv` /
//!   `try_acquire` until it gives nothing (`Ok(None)`, `WouldBlock` in C and Python), then wait
//!   again. Never read from the descriptor yourself.
//! - It is level-triggered on a notification: once readable, the descriptor stays readable until
//!   the next `try_*` call that gives nothing. That call is what arms the handle (drain, register,
//!   re-check): a publication after it makes the descriptor readable, one before it is returned by
//!   it. So it works with level-triggered loops (GLib, asyncio, `poll`) and with edge-triggered
//!   `epoll` (`EPOLLET`, tokio) alike.
//! - Only an armed handle costs its notifiers anything, one `write` per arming, counted in
//!   `Stats::wakes` with the `FUTEX_WAKE`s. A handle that gives a buffer is disarmed: a loop busy
//!   with its buffers, or one that never asked for the descriptor, costs publishing nothing.
//! - A peer killed while waiting is cleaned with its place (its arming is a bit in its record),
//!   and a notifier writes at most one byte to an armed handle anyway. A loop that must notice
//!   dead peers holding slots waits at most a lease (`Pool::lease`) at a time: `try_*` sweeps.
//!
//! # Mechanism
//!
//! A named pipe (FIFO) per place beside the pool file, `.shmpool.<name>.ready.c<k>` (consumers) or
//! `.p<k>` (producers): it needs nothing but the pool directory, so it works across PID, mount and
//! IPC namespaces, and it is reused by the place's next holder (a stale byte is spurious
//! readiness). Every end is opened read-write and non-blocking, so a writer never blocks nor gets
//! `SIGPIPE`, and a waiter never sees end-of-file when nobody has it open for writing.
//!
//! ```
//! use shmpool::{Config, Pool};
//! # let dir = std::env::temp_dir().join(format!("shmpool-ready-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let pool = Pool::create("ready-doc", &Config::new(2, 4096).directory(&dir))?;
//! let mut consumer = pool.consumer()?;
//! let fd = consumer.ready_fd()?;
//! assert!(consumer.try_recv()?.is_none()); // armed: the next publication makes `fd` readable
//! pool.producer()?.acquire(None)?.publish()?;
//! let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
//! assert_eq!(unsafe { libc::poll(&mut poll, 1, 1000) }, 1);
//! let mut received = 0;
//! while let Some(_buf) = consumer.try_recv()? {
//!     received += 1; // ... use the buffer
//! }
//! assert_eq!(received, 1); // `Ok(None)` armed the handle again
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), shmpool::Error>(())
//! ```

use super::layout::{MAX_CONSUMERS, MAX_PRODUCERS};
use super::{Attempt, Event, Place, Role};
use crate::{Error, Result};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A place's readiness handle: its end of the FIFO, and its tokio registration if any.
pub(crate) struct Ready {
    pub(crate) fd: OwnedFd,
    #[cfg(feature = "tokio")]
    pub(crate) tokio: OnceLock<crate::async_tokio::Registered>,
}

impl Ready {
    pub(crate) fn raw(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// Where a pool's FIFOs are, and this process's write ends of them (opened when first needed, kept
/// for the life of the mapping: waking an armed handle then costs one `write`).
pub(crate) struct Pipes {
    location: OnceLock<Location>,
    ends: [OnceLock<OwnedFd>; MAX_CONSUMERS + MAX_PRODUCERS],
}

struct Location {
    /// The pool directory and `.shmpool.<name>.ready.`.
    prefix: PathBuf,
    /// The pool file's permissions, given to the FIFOs too.
    mode: libc::mode_t,
}

impl Default for Pipes {
    fn default() -> Self {
        Pipes { location: OnceLock::new(), ends: std::array::from_fn(|_| OnceLock::new()) }
    }
}

impl Pipes {
    /// Places the FIFOs beside `pool_file`, with its permissions `mode`.
    pub(crate) fn locate(&self, pool_file: &Path, mode: u32) {
        let name = pool_file.file_name().map(|n| n.as_bytes()).unwrap_or_default();
        let mut file = b".".to_vec();
        file.extend_from_slice(name);
        file.extend_from_slice(b".ready.");
        let prefix = pool_file.with_file_name(std::ffi::OsStr::from_bytes(&file));
        let _ = self.location.set(Location { prefix, mode: (mode & 0o666) as libc::mode_t });
    }

    fn path(&self, role: Role, index: usize) -> Option<PathBuf> {
        let mut path = self.location.get()?.prefix.clone().into_os_string();
        path.push(match role {
            Role::Consumer => format!("c{index}"),
            Role::Producer => format!("p{index}"),
        });
        Some(path.into())
    }

    /// Opens (creating it if needed) the FIFO of place `index` of `role`.
    fn open(&self, role: Role, index: usize) -> io::Result<OwnedFd> {
        let location = self.location.get().ok_or(io::ErrorKind::NotFound)?;
        let path = self.path(role, index).ok_or(io::ErrorKind::NotFound)?;
        let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: `cpath` is a valid C string; mkfifo only creates a file.
        if unsafe { libc::mkfifo(cpath.as_ptr(), location.mode) } == 0 {
            // The exact mode, whatever the umask (peers of other users may share the pool).
            // SAFETY: as above; chmod only changes the file's mode.
            unsafe { libc::chmod(cpath.as_ptr(), location.mode) };
        }
        open_fifo(&cpath)
    }

    /// Writes the byte that makes place `index` of `role`'s handle readable (best effort: a full
    /// pipe is readable already, and a missing FIFO has nobody waiting on it).
    pub(crate) fn poke(&self, role: Role, index: usize) {
        let slot = match role {
            Role::Consumer => index,
            Role::Producer => MAX_CONSUMERS + index,
        };
        let Some(cell) = self.ends.get(slot) else { return };
        let fd = match cell.get() {
            Some(fd) => fd,
            None => match self.open(role, index) {
                Ok(fd) => cell.get_or_init(|| fd),
                Err(_) => return,
            },
        };
        // SAFETY: `fd` is an open descriptor; the buffer is one valid byte.
        unsafe { libc::write(fd.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    }

    /// Removes the FIFOs (when the pool is closed: its name goes, theirs too).
    pub(crate) fn unlink_all(&self) {
        for (role, places) in [(Role::Consumer, MAX_CONSUMERS), (Role::Producer, MAX_PRODUCERS)] {
            for index in 0..places {
                if let Some(path) = self.path(role, index) {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

/// The pool a readiness FIFO's file name belongs to, if it is one.
pub(crate) fn pool_of_fifo(file_name: &str) -> Option<&str> {
    let (pool, place) = file_name.strip_prefix(".shmpool.")?.rsplit_once(".ready.")?;
    let index = place.strip_prefix('c').or_else(|| place.strip_prefix('p'))?;
    index.parse::<usize>().ok().map(|_| pool)
}

/// Opens an existing FIFO read-write and non-blocking, refusing anything that is not a FIFO (the
/// directory is shared: a symlink or a regular file there must not be written to).
fn open_fifo(path: &CString) -> io::Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    // SAFETY: `path` is a valid C string; open has no memory effects on us.
    let raw = unsafe { libc::open(path.as_ptr(), flags) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: an all-zero stat is a valid out-buffer for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` is a valid out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "readiness handle is not a FIFO"));
    }
    Ok(fd)
}

/// Reads whatever notifications wait in `fd` (one `read` in the usual case).
fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes; the descriptor is non-blocking.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < buf.len() as isize {
            break;
        }
    }
}

impl Place {
    /// This place's readiness handle, opened on first use.
    pub(crate) fn ready_handle(&self) -> Result<&Ready> {
        if let Some(ready) = self.ready.get() {
            return Ok(ready);
        }
        let fd = self.pool.view.pipes.open(self.role, self.index).map_err(|e| {
            let path = self.pool.view.pipes.path(self.role, self.index).unwrap_or_default();
            Error::io(format!("opening the readiness handle {}", path.display()), e)
        })?;
        Ok(self.ready.get_or_init(|| Ready {
            fd,
            #[cfg(feature = "tokio")]
            tokio: OnceLock::new(),
        }))
    }

    /// One non-blocking attempt of an operation waiting for `event`. With a readiness handle, an
    /// attempt that finds nothing arms it (drain, register, re-check: no publication is missed)
    /// and one that finds something disarms it.
    #[inline]
    pub(crate) fn try_once<T>(
        &self,
        event: Event,
        mut attempt: impl FnMut() -> Result<Attempt<T>>,
    ) -> Result<Option<T>> {
        match self.ready.get() {
            None => attempt().map(Attempt::ready),
            Some(ready) => self.try_armed(ready, event, attempt),
        }
    }

    /// [`Place::try_once`] with a readiness handle (out of line: the path without one stays small).
    #[inline(never)]
    fn try_armed<T>(
        &self,
        ready: &Ready,
        event: Event,
        mut attempt: impl FnMut() -> Result<Attempt<T>>,
    ) -> Result<Option<T>> {
        let first = attempt();
        if let Ok(Attempt::Pending | Attempt::Busy) = first {
            drain(ready.fd.as_fd());
            self.set_armed(event, true);
            let mut again = attempt();
            // A dead peer may be what we wait for: sweep (at most once a lease), then re-check.
            if matches!(again, Ok(Attempt::Pending)) && self.pool.sweep_if_due() {
                again = attempt();
            }
            if let Ok(Attempt::Pending | Attempt::Busy) = again {
                return Ok(None);
            }
            self.set_armed(event, false);
            return again.map(Attempt::ready);
        }
        self.set_armed(event, false);
        first.map(Attempt::ready)
    }
}

impl<T> Attempt<T> {
    fn ready(self) -> Option<T> {
        match self {
            Attempt::Ready(v) => Some(v),
            Attempt::Pending | Attempt::Busy => None,
        }
    }
}
