//! Waiting without burning CPU: producers for a free slot, consumers for a publication.
//!
//! An event is a 32-bit futex word in shared memory plus a mask of waiters. A waiter registers,
//! re-checks its condition, and sleeps on the word; a notifier changes the shared state and, only
//! if somebody waits, bumps the word and wakes the sleepers. Publishing with nobody waiting thus costs
//! one fence and one load, no system call. The futex operations are the *shared* (not private) ones,
//! keyed on the physical page, so they work across processes and PID namespaces.
//!
//! Before sleeping, a waiter may spin for a bounded time, but only when this process can run on
//! more than one CPU: spinning against a peer on the same CPU only delays it (a scheduler tick).
//! For the same reason at most one place fewer than the CPUs spins at once (`pool::spinners`).
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
//! # std::fs::remove_dir_all(&dir).ok();
//! ```

use crate::sync::{fence, AtomicU32, AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

/// Wakes the waiters of `event`, if any (`waiters`: a mask of the places waiting, see
/// `pool::waiters`). Returns whether it made the wake system call. The caller's state change must
/// be a `SeqCst` read-modify-write: with this `SeqCst` load and the waiter's `SeqCst` fence it forms
/// the store-buffering pattern in which either we see the waiter or the waiter sees the new state.
/// (On x86 the locked instruction the state change needs anyway is the only barrier paid.)
#[inline]
pub fn notify(event: &AtomicU32, waiters: &AtomicU64) -> bool {
    if waiters.load(SeqCst) == 0 {
        return false;
    }
    wake(event);
    true
}

/// Bumps `event` and wakes its sleepers: [`notify`] once the caller knows that somebody sleeps.
pub(crate) fn wake(event: &AtomicU32) {
    event.fetch_add(1, Release);
    wake_all(event);
}

/// Sleeping on an event, for a caller that has registered as its waiter and stays registered for
/// a whole blocking call: after a wake-up it re-reads the event and retries without registering
/// again, so a wake costs no extra writes to shared memory.
pub(crate) struct Waiter<'a> {
    event: &'a AtomicU32,
}

impl<'a> Waiter<'a> {
    /// To be made just after registering. Each round the caller then reads [`Waiter::observe`],
    /// re-checks its condition, and passes what it observed to [`Waiter::sleep`].
    pub fn registered(event: &'a AtomicU32) -> Self {
        // Pairs with `notify` (see there): the waiter, on the slow path, pays for the fence.
        // Either the notifier saw this registration, and bumps the event after its state change
        // (so `sleep` returns at once, or is woken), or the re-check after this fence sees the change.
        fence(SeqCst);
        Waiter { event }
    }

    /// The event's value, to be read before re-checking the condition.
    pub fn observe(&self) -> u32 {
        self.event.load(SeqCst)
    }

    /// Sleeps unless the event moved past `seen`, until notified or `timeout` passes (spurious
    /// wake-ups are possible).
    pub fn sleep(&self, seen: u32, timeout: Duration) {
        wait_on(self.event, seen, timeout);
    }
}

/// Whether spinning before sleeping can pay off: the machine, or the container this process runs
/// in, has two CPUs or more, so a peer can run while we spin. This deliberately ignores the
/// process's own affinity mask: pinning a spinner to one CPU and its peer to another is exactly
/// where spinning pays.
pub(crate) fn spin_useful() -> bool {
    cpus() > 1
}

/// The CPUs this process's container (cpuset) or machine has: what the pool's processes share.
pub(crate) fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| container_cpus().unwrap_or_else(online_cpus))
}

/// How many places may spin at once: one CPU stays for the peer they wait for.
pub fn spin_limit() -> usize {
    cpus().saturating_sub(1)
}

fn online_cpus() -> usize {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1)
}

/// CPUs of this process's cpuset cgroup (what `docker --cpuset-cpus` limits), v2 or v1.
fn container_cpus() -> Option<usize> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let file = cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        match controllers {
            "" => Some(format!("/sys/fs/cgroup{path}/cpuset.cpus.effective")),
            c if c.split(',').any(|c| c == "cpuset") => {
                Some(format!("/sys/fs/cgroup/cpuset{path}/cpuset.effective_cpus"))
            }
            _ => None,
        }
    })?;
    count_cpu_list(std::fs::read_to_string(file).ok()?.trim())
}

/// Counts a kernel CPU list such as `0-3,8,10-11`.
fn count_cpu_list(list: &str) -> Option<usize> {
    let mut n = 0;
    for part in list.split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()?.checked_sub(a.parse::<usize>().ok()?)? + 1,
            None => part.parse::<usize>().map(|_| 1).ok()?,
        };
    }
    (n > 0).then_some(n)
}

/// How long a waiter may spin before it sleeps (zero: never). Spinning pays when the peer runs on
/// another CPU and answers within the budget; with more spinning processes than CPUs it only keeps
/// the peer off the CPU for the whole budget, so use it where every spinner has a CPU of its own.
pub(crate) struct Spin {
    budget: Duration,
}

impl Spin {
    pub fn new(budget: Duration) -> Spin {
        Spin { budget }
    }

    /// Whether spinning is on and can pay here.
    pub fn enabled(&self) -> bool {
        !self.budget.is_zero() && spin_useful()
    }

    /// Spins on `ready` for at most the budget; returns its first `Some`. While another task of
    /// the machine wants this CPU (see [`yielding`]), yields it every [`YIELD_EVERY`].
    pub fn run<T>(&self, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
        if !self.enabled() {
            return None;
        }
        let start = Instant::now();
        let (mut last, mut last_yield) = (start, start);
        loop {
            for _ in 0..64 {
                if let Some(v) = ready() {
                    return Some(v);
                }
                std::hint::spin_loop();
            }
            let now = Instant::now();
            if now.duration_since(last) >= PREEMPTED {
                contended();
            }
            last = now;
            if now.duration_since(start) >= self.budget {
                return None;
            }
            if now.duration_since(last_yield) >= YIELD_EVERY && yielding() {
                std::thread::yield_now();
                last_yield = now;
            }
        }
    }
}

/// How often a spinner yields its CPU while the machine is busy: a task waiting for the CPU then
/// gets it within this, and with nobody waiting a yield costs one system call per this much
/// spinning (a few hundred nanoseconds of delay for a message that arrives during it).
const YIELD_EVERY: Duration = Duration::from_micros(20);

/// A gap this long between two looks at the clock of a spin loop means that the scheduler gave
/// our CPU to another task: the machine has more runnable tasks than CPUs (other programs count
/// too, not only the pool's processes, which `pool::spinners` bounds).
const PREEMPTED: Duration = Duration::from_micros(100);

/// How long the spinners of this process yield after one of them was preempted: at most one
/// time slice is lost to a busy machine per this period, and spinning resumes when it calms.
const YIELD_FOR_NS: u64 = 100_000_000;

/// Until when (`monotonic_ns`) spinners of this process yield their CPU.
static YIELD_UNTIL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Records that a spinner of this process lost its CPU.
fn contended() {
    YIELD_UNTIL.store(crate::monotonic_ns().saturating_add(YIELD_FOR_NS), Relaxed);
}

/// Whether spinners yield their CPU now and then: a spinner of this process was preempted within
/// [`YIELD_FOR_NS`]. A spinner that keeps its CPU while the peer it waits for, or any other task,
/// is queued for one only delays them; a yielding one spins on CPU time nobody else wants.
fn yielding() -> bool {
    crate::monotonic_ns() < YIELD_UNTIL.load(Relaxed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_counted() {
        assert_eq!(count_cpu_list("0-1"), Some(2));
        assert_eq!(count_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpu_list("5"), Some(1));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("x"), None);
    }

    #[test]
    fn this_machine_has_a_cpuset() {
        assert!(container_cpus().unwrap_or_else(online_cpus) >= 1);
    }
}
