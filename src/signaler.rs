//! Waiting without burning CPU: producers for a free slot, consumers for a publication.
//!
//! An event is a 32-bit futex word in shared memory plus a count of waiters. A waiter registers,
//! re-checks its condition, and sleeps on the word; a notifier changes the shared state and, only
//! if somebody waits, bumps the word and wakes the sleepers. Publishing with nobody waiting thus costs
//! one fence and one load, no system call. The futex operations are the *shared* (not private) ones,
//! keyed on the physical page, so they work across processes and PID namespaces.
//!
//! Before sleeping, a waiter may spin for a bounded time, but only when this process can run on
//! more than one CPU: spinning against a peer on the same CPU only delays it (a scheduler tick).
//!
//! On systems without futexes the wait is a sleep of growing length (10 µs to 1 ms) between checks:
//! correct, slower to wake.
//!
//! ```
//! use shmpool::Pool;
//! // Waiting is what `recv` and `acquire` do with a timeout:
//! # let dir = tempfile_dir();
//! # fn tempfile_dir() -> std::path::PathBuf { let d = std::env::temp_dir().join(format!("shmpool-doc-{}", std::process::id())); std::fs::create_dir_all(&d).unwrap(); d }
//! let pool = Pool::create("signaler-doc", &shmpool::Config::new(2, 4096).directory(&dir)).unwrap();
//! let mut consumer = pool.consumer().unwrap();
//! let started = std::time::Instant::now();
//! assert!(matches!(consumer.recv(Some(std::time::Duration::from_millis(20))), Err(shmpool::Error::Timeout)));
//! assert!(started.elapsed() >= std::time::Duration::from_millis(20));
//! ```

use crate::sync::{fence, AtomicU32, Ordering::*};
use std::time::{Duration, Instant};

/// Wakes the waiters of `event`, if any.
#[inline]
pub(crate) fn notify(event: &AtomicU32, waiting: &AtomicU32) {
    // Orders the caller's state change before the waiter-count load; pairs with the SeqCst
    // registration in `Waiter::register`, so either we see the waiter or it sees the new state.
    fence(SeqCst);
    if waiting.load(Relaxed) != 0 {
        event.fetch_add(1, Release);
        wake_all(event);
    }
}

/// One registration as a waiter on an event; dropping it unregisters.
pub(crate) struct Waiter<'a> {
    waiting: &'a AtomicU32,
    event: &'a AtomicU32,
    seen: u32,
}

impl<'a> Waiter<'a> {
    /// Registers; the caller must re-check its condition afterwards, then call [`Waiter::sleep`].
    pub fn register(event: &'a AtomicU32, waiting: &'a AtomicU32) -> Self {
        waiting.fetch_add(1, SeqCst);
        let seen = event.load(SeqCst);
        Waiter { waiting, event, seen }
    }

    /// Sleeps until notified or `timeout` passes (spurious wake-ups are possible).
    pub fn sleep(&self, timeout: Duration) {
        wait_on(self.event, self.seen, timeout);
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Relaxed);
    }
}

/// Whether spinning before sleeping can pay off for this process: it may run on two CPUs or more.
pub(crate) fn spin_useful() -> bool {
    static USEFUL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USEFUL.get_or_init(|| usable_cpus() > 1)
}

#[cfg(target_os = "linux")]
fn usable_cpus() -> usize {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            return libc::CPU_COUNT(&set) as usize;
        }
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(not(target_os = "linux"))]
fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Spins on `ready` for at most `budget`; returns its first `Some`.
pub(crate) fn spin<T>(budget: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    if budget.is_zero() || !spin_useful() {
        return None;
    }
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if let Some(v) = ready() {
                return Some(v);
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= budget {
            return None;
        }
    }
}

#[cfg(not(loom))]
fn wait_on(event: &AtomicU32, seen: u32, timeout: Duration) {
    futex::wait(event, seen, timeout);
}

#[cfg(not(loom))]
fn wake_all(event: &AtomicU32) {
    futex::wake(event);
}

#[cfg(loom)]
fn wait_on(event: &AtomicU32, _seen: u32, _timeout: Duration) {
    let _ = event.load(Acquire);
    loom::thread::yield_now();
}

#[cfg(loom)]
fn wake_all(_event: &AtomicU32) {}

/// Shared (inter-process) futex operations on a 32-bit word in shared memory: the primitive under
/// the Signaler, public for benchmark baselines. Elsewhere than Linux, `wait` polls with a growing
/// sleep (10 µs to 1 ms) and `wake` does nothing.
pub mod futex {
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    /// Sleeps while `word` holds `seen`, for at most `timeout`. Returns early on a wake, a signal
    /// or a changed value: callers re-check their condition.
    #[cfg(target_os = "linux")]
    pub fn wait(word: &AtomicU32, seen: u32, timeout: Duration) {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `word` is a live, aligned u32 for the duration of the call; FUTEX_WAIT (shared:
        // no FUTEX_PRIVATE_FLAG) only reads it and returns at once if it no longer holds `seen`.
        // EINTR, EAGAIN and ETIMEDOUT all mean "re-check", which every caller does.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                seen,
                &ts as *const libc::timespec,
                std::ptr::null::<u32>(),
                0u32,
            );
        }
    }

    /// Wakes every process sleeping on `word`.
    #[cfg(target_os = "linux")]
    pub fn wake(word: &AtomicU32) {
        // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not access memory.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE,
                i32::MAX,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                0u32,
            );
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn wait(word: &AtomicU32, seen: u32, timeout: Duration) {
        use std::sync::atomic::Ordering::Acquire;
        use std::time::Instant;
        let deadline = Instant::now() + timeout;
        let mut nap = Duration::from_micros(10);
        while word.load(Acquire) == seen && Instant::now() < deadline {
            std::thread::sleep(nap.min(deadline.saturating_duration_since(Instant::now())));
            nap = (nap * 2).min(Duration::from_millis(1));
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn wake(_word: &AtomicU32) {}
}
