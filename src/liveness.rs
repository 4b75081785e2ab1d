//! Who is alive, told by the kernel: every peer holds an exclusive lock on one byte of the pool's
//! file, and every open pool handle a shared lock on byte 0.
//!
//! The locks are open-file-description (OFD) locks: the kernel drops them when the last descriptor
//! of the description closes, i.e. when the process dies, however it dies. Being kernel state on
//! the file, they work across PID namespaces and containers sharing a directory, where PIDs mean
//! nothing. Taking a dead peer's lock is also how a survivor gets the exclusive right to clean up
//! after it, and how a new peer claims a place.
//!
//! Elsewhere than Linux, classic per-process `fcntl` locks stand in (one peer of a kind per process
//! and pool handle, then).
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("shmpool-live-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let pool = shmpool::Pool::create("liveness-doc", &shmpool::Config::new(2, 4096).directory(&dir)).unwrap();
//! let consumer = pool.consumer().unwrap();
//! assert!(pool.stats().peers.iter().all(|p| p.alive));
//! # std::fs::remove_dir_all(&dir).ok();
//! ```

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Byte locked (shared) by every open handle of a pool.
pub(crate) const ATTACH_BYTE: u64 = 0;

/// Byte locked by consumer place `c`.
pub(crate) fn consumer_byte(c: usize) -> u64 {
    1 + c as u64
}

/// Byte locked by producer place `p`.
pub(crate) fn producer_byte(p: usize) -> u64 {
    1 + crate::pool::layout::MAX_CONSUMERS as u64 + p as u64
}

/// Byte locked (exclusively) by the handle that created the pool, while it lives: a pool whose
/// creator is gone without closing it, and that was not persisted, is orphaned.
pub(crate) const CREATOR_BYTE: u64 =
    1 + crate::pool::layout::MAX_CONSUMERS as u64 + crate::pool::layout::MAX_PRODUCERS as u64;

#[cfg(target_os = "linux")]
const SETLK: libc::c_int = libc::F_OFD_SETLK;
// Only the store (not built under loom) waits for a lock.
#[cfg(all(target_os = "linux", not(loom)))]
const SETLKW: libc::c_int = libc::F_OFD_SETLKW;
#[cfg(all(not(target_os = "linux"), not(loom)))]
const SETLKW: libc::c_int = libc::F_SETLKW;
#[cfg(target_os = "linux")]
const GETLK: libc::c_int = libc::F_OFD_GETLK;
#[cfg(not(target_os = "linux"))]
const SETLK: libc::c_int = libc::F_SETLK;
#[cfg(not(target_os = "linux"))]
const GETLK: libc::c_int = libc::F_GETLK;

fn flock(kind: libc::c_int, byte: u64) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is a valid value (OFD locks require l_pid == 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = byte as _;
    fl.l_len = 1;
    fl
}

fn fcntl_lock(fd: BorrowedFd<'_>, cmd: libc::c_int, fl: &mut libc::flock) -> io::Result<()> {
    loop {
        // SAFETY: `fd` is open for the call and `fl` a valid flock the kernel may write.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, fl as *mut libc::flock) };
        if r == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Tries to take the lock on `byte` through `fd` without waiting. `Ok(false)`: somebody holds it.
pub(crate) fn try_lock(fd: BorrowedFd<'_>, byte: u64, exclusive: bool) -> io::Result<bool> {
    let kind = if exclusive { libc::F_WRLCK } else { libc::F_RDLCK };
    match fcntl_lock(fd, SETLK, &mut flock(kind, byte)) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes the exclusive lock on `byte` through `fd`, waiting for its holder to let go (or die).
#[cfg(not(loom))]
pub(crate) fn lock_wait(fd: BorrowedFd<'_>, byte: u64) -> io::Result<()> {
    fcntl_lock(fd, SETLKW, &mut flock(libc::F_WRLCK, byte))
}

/// Lets go of the lock on `byte` held through `fd`.
pub(crate) fn unlock(fd: BorrowedFd<'_>, byte: u64) {
    let _ = fcntl_lock(fd, SETLK, &mut flock(libc::F_UNLCK, byte));
}

/// Whether a description other than `fd`'s holds any lock on `byte`.
pub(crate) fn is_held(fd: BorrowedFd<'_>, byte: u64) -> io::Result<bool> {
    let mut fl = flock(libc::F_WRLCK, byte);
    fcntl_lock(fd, GETLK, &mut fl)?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}
