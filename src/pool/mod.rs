//! The Buffer Pool: a named shared-memory segment of fixed-size slots.
//!
//! ```
//! use shmpool::{Config, Pool};
//! use std::time::Duration;
//! # let dir = std::env::temp_dir().join(format!("shmpool-pool-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let pool = Pool::create("frames", &Config::new(4, 1 << 20).directory(&dir))?;
//! let mut consumer = pool.consumer()?;          // usually in another process: Pool::open("frames")
//! let producer = pool.producer()?;
//! let mut buf = producer.acquire(Some(Duration::from_secs(1)))?;
//! buf[..5].copy_from_slice(b"hello");
//! buf.set_len(5)?;
//! buf.publish()?;
//! let got = consumer.recv(Some(Duration::from_secs(1)))?;
//! assert_eq!(&got[..], b"hello");
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), shmpool::Error>(())
//! ```

mod blocking;
mod directory;
pub(crate) mod exchange;
pub mod grow;
pub(crate) mod layout;
#[cfg(loom)]
pub mod model;
pub mod readiness;
mod readonly;
mod registry;
mod restart;
pub(crate) mod segment;
mod slot_region;
pub mod slot_state;
mod spinners;
mod truncation;
mod waiters;

pub(crate) use blocking::{Attempt, Event};
pub use directory::PoolEntry;
pub(crate) use registry::Place;
pub use registry::Role;

use crate::config::{resolve_dir, Config, Mode, Overflow};
use crate::consumer::Consumer;
use crate::producer::Producer;
use crate::sync::Ordering::*;
use crate::{Error, Result};
use exchange::View;
use layout::{Geometry, Header};
use segment::Segment;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A handle to a pool. Cheap to clone; the pool stays mapped while any handle, producer, consumer
/// or buffer of it lives. The handle that created the pool closes and unlinks it when the last
/// clone is dropped, unless [`Pool::persist`] was called.
#[derive(Clone)]
pub struct Pool {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    name: String,
    segment: Segment,
    pub(crate) view: View,
    /// The slot data again, read-only: what received buffers point into.
    pub(crate) read_only: readonly::ReadOnlyData,
    /// Whether this handle created the pool (or took an orphaned one over, see `restart`).
    creator: AtomicBool,
    persistent: AtomicBool,
    pub(crate) lease: Duration,
    last_sweep: Mutex<Instant>,
    /// When this handle last checked whether the pool is orphaned, and the answer.
    orphan_check: Mutex<Option<(Instant, bool)>>,
    /// Set when this handle found the file shrunk under it (see `truncation`).
    truncated: AtomicBool,
}

/// One attached producer or consumer, as seen in [`Stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub role: Role,
    /// Index of its place in the pool's table.
    pub place: usize,
    /// Its process id, in its own PID namespace (informational only).
    pub pid: u32,
    /// Whether the process still holds its liveness lock.
    pub alive: bool,
    /// Buffers it published (producers) or received (consumers).
    pub count: u64,
    /// Buffers it missed (consumers of drop-oldest pools).
    pub dropped: u64,
    /// Whether it is registered as blocked in `recv`/`acquire`.
    pub waiting: bool,
}

/// A snapshot of a pool's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub slots: u32,
    pub free: u32,
    /// Slots a producer is filling.
    pub writing: u32,
    /// Slots published and not being read by anyone yet.
    pub ready: u32,
    /// Slots at least one consumer holds.
    pub reading: u32,
    pub consumers: u32,
    pub producers: u32,
    pub published: u64,
    pub dropped: u64,
    pub closed: bool,
    /// Whether the handle that created the pool (or took it over) is alive.
    pub creator_alive: bool,
    /// Whether some live process holds a producer place.
    pub producer_alive: bool,
    /// Whether the pool was persisted (it then outlives its creator).
    pub persistent: bool,
    /// Whether the pool is orphaned: not closed, not persisted, its creator gone and no live
    /// producer left; consumers get [`crate::Error::Orphaned`] once drained.
    pub orphaned: bool,
    /// Places registered as waiters, blocked or with an armed readiness handle (a dead one is
    /// removed with its place).
    pub waiters: u32,
    /// Wake system calls notifiers made so far (`FUTEX_WAKE`s and readiness-handle writes): it
    /// stays put while nobody waits.
    pub wakes: u64,
    /// Places spinning now (at most one fewer than the CPUs).
    pub spinners: u32,
    /// Spins refused so far because enough places were spinning: those callers slept at once.
    pub spin_refused: u64,
    pub peers: Vec<PeerInfo>,
}

impl Pool {
    /// Creates a pool named `name` (see [`Config`] for where and how). A stale pool of that name,
    /// one no live process has open, is removed first and replaced; an orphaned one (its creator
    /// died without closing it) is taken over or replaced (see [`Error::Orphaned`]); a live one
    /// gives [`Error::AlreadyExists`].
    pub fn create(name: &str, config: &Config) -> Result<Pool> {
        let name = segment::check_name(name)?;
        let lease_ns = u64::try_from(config.lease.as_nanos()).unwrap_or(u64::MAX).max(1_000_000);
        let geometry = Geometry::compute(
            config.slots,
            config.slot_size as u64,
            u32::try_from(config.meta_bytes).map_err(|_| Error::invalid("meta_bytes too large"))?,
            config.mode,
            config.overflow,
            lease_ns,
        )?;
        let dir = resolve_dir(config.directory.as_deref());
        let path = segment::path_for(&dir, name);
        if let Some(pool) = restart::prepare_name(&path, name, &geometry)? {
            return Ok(pool);
        }
        let segment = Segment::create(&path, name, &geometry, config.permissions, |base| {
            // SAFETY: `base` maps `geometry.total` zeroed bytes that no other process can see yet.
            let view = unsafe { View::new(base, geometry) };
            view.initialise();
            // SAFETY: the header lies at the start of the mapping.
            geometry.write_header(unsafe { &*(base as *const Header) });
        })?;
        Pool::from_segment(name, segment, geometry, true)
    }

    /// Opens the pool `name` in `$SHMPOOL_DIR` (default `/dev/shm`).
    pub fn open(name: &str) -> Result<Pool> {
        Pool::open_in(name, None)
    }

    /// Opens the pool `name` in `directory` (or the default directory for `None`).
    pub fn open_in(name: &str, directory: Option<&Path>) -> Result<Pool> {
        let name = segment::check_name(name)?;
        let path = segment::path_for(&resolve_dir(directory), name);
        let (segment, geometry) = Segment::open(&path, name)?;
        Pool::from_segment(name, segment, geometry, false)
    }

    /// Opens the pool `name` in `directory` (or the default directory for `None`), waiting up to
    /// `timeout` for it to appear (`None`: no limit), so a consumer may start before its producer.
    ///
    /// ```
    /// use shmpool::{Error, Pool};
    /// use std::time::Duration;
    /// let dir = std::env::temp_dir();
    /// let missing = Pool::open_timeout("nobody-creates-this", Some(&dir), Some(Duration::from_millis(20)));
    /// assert!(matches!(missing, Err(Error::NotFound { .. })));
    /// ```
    pub fn open_timeout(name: &str, directory: Option<&Path>, timeout: Option<Duration>) -> Result<Pool> {
        let start = Instant::now();
        let mut nap = Duration::from_millis(1);
        loop {
            match Pool::open_in(name, directory) {
                Err(Error::NotFound { .. }) if timeout.is_none_or(|t| start.elapsed() < t) => {
                    let left = timeout.map_or(nap, |t| t.saturating_sub(start.elapsed()));
                    std::thread::sleep(nap.min(left));
                    nap = (nap * 2).min(Duration::from_millis(20));
                }
                result => return result,
            }
        }
    }

    fn from_segment(name: &str, segment: Segment, geometry: Geometry, creator: bool) -> Result<Pool> {
        // SAFETY: the segment maps `geometry.total` bytes (checked by create/open) and lives in the
        // same Inner as the view, so it outlives it.
        let view = unsafe { View::new(segment.base(), geometry) };
        let read_only = readonly::ReadOnlyData::map(segment.fd(), &geometry)?;
        view.pipes.locate(&segment.path, file_mode(segment.fd()).unwrap_or(0o600));
        Ok(Pool {
            inner: Arc::new(Inner {
                name: name.to_string(),
                segment,
                view,
                read_only,
                creator: AtomicBool::new(creator),
                persistent: AtomicBool::new(false),
                lease: Duration::from_nanos(geometry.lease_ns),
                last_sweep: Mutex::new(
                    Instant::now().checked_sub(Duration::from_secs(3600)).unwrap_or_else(Instant::now),
                ),
                orphan_check: Mutex::new(None),
                truncated: AtomicBool::new(false),
            }),
        })
    }

    /// A new producer of this pool.
    pub fn producer(&self) -> Result<Producer> {
        self.check_open()?;
        Ok(Producer::new(self.inner.join(Role::Producer)?))
    }

    /// A new consumer of this pool. In broadcast mode it receives everything published from now on.
    pub fn consumer(&self) -> Result<Consumer> {
        self.check_open()?;
        Ok(Consumer::new(self.inner.join(Role::Consumer)?))
    }

    fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The pool's file.
    pub fn path(&self) -> &Path {
        &self.inner.segment.path
    }

    pub fn slots(&self) -> u32 {
        self.inner.view.geometry.slot_count
    }

    /// Bytes per slot (the requested size rounded up to a page).
    pub fn slot_size(&self) -> usize {
        self.inner.view.geometry.slot_size as usize
    }

    pub fn meta_bytes(&self) -> usize {
        self.inner.view.geometry.meta_bytes as usize
    }

    pub fn mode(&self) -> Mode {
        self.inner.view.geometry.mode
    }

    pub fn overflow(&self) -> Overflow {
        self.inner.view.geometry.overflow
    }

    /// The liveness lease: how often blocked calls re-check that their peers live.
    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    /// The address range of this process's mapping of the pool (for zero-copy checks).
    pub fn mapping(&self) -> (*const u8, usize) {
        (self.inner.segment.base(), self.inner.view.geometry.total as usize)
    }

    /// The address range of this process's read-only mapping of the slot data, where received
    /// buffers lie (a write through one faults).
    pub fn read_mapping(&self) -> (*const u8, usize) {
        self.inner.read_only.range()
    }

    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Shuts the pool down for everyone, from any handle: producers get [`Error::Closed`],
    /// consumers drain what was published and then get [`Error::Closed`]. The name is unlinked;
    /// mappings stay valid. (Closing a handle is dropping it: the creator's handle shuts the pool
    /// down when it goes, unless [`Pool::persist`] was called.)
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Keeps the pool (and its name) after this creator handle goes away.
    pub fn persist(&self) {
        self.inner.persistent.store(true, Relaxed);
        // Shared, so consumers know the pool is not orphaned when its creator goes.
        self.inner.view.control().persistent.store(1, Release);
    }

    /// Removes dead peers now: frees their slots and their holds. Returns how many were removed.
    pub fn reap(&self) -> usize {
        self.inner.sweep()
    }

    /// A snapshot of slot states, counters and peers.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
}

/// The permission bits of an open file.
fn file_mode(fd: std::os::fd::BorrowedFd<'_>) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
    Some(file.metadata().ok()?.permissions().mode())
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.inner.name)
            .field("path", &self.inner.segment.path)
            .field("geometry", &self.inner.view.geometry)
            .finish()
    }
}

impl Inner {
    fn shutdown(&self) {
        let control = self.view.control();
        control.closed.store(1, SeqCst);
        // Wake everyone so they see it; the counters make sure nobody sleeps through.
        control.published_event.fetch_add(1, SeqCst);
        control.freed_event.fetch_add(1, SeqCst);
        self.view.notify_published();
        self.view.notify_freed();
        self.segment.unlink();
        self.view.pipes.unlink_all();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.view.control().closed.load(Acquire) != 0
    }

    fn stats(&self) -> Stats {
        let view = &self.view;
        let g = &view.geometry;
        let mut stats = Stats {
            slots: g.slot_count,
            free: 0,
            writing: 0,
            ready: 0,
            reading: 0,
            consumers: 0,
            producers: 0,
            published: view.control().published.load(Relaxed),
            dropped: view.control().dropped.load(Relaxed),
            closed: self.is_closed(),
            creator_alive: self.creator_alive(),
            producer_alive: self.producer_alive(),
            persistent: self.is_persistent(),
            orphaned: self.is_orphaned(),
            waiters: view.waiter_count(),
            wakes: view.control().wakes.load(Relaxed),
            spinners: view.spinner_count(),
            spin_refused: view.control().spin_refused.load(Relaxed),
            peers: Vec::new(),
        };
        for k in 0..g.slot_count as usize {
            let s = view.slot(k).state.load(Acquire);
            if slot_state::is_free(s) {
                stats.free += 1;
            } else if slot_state::is_writing(s) {
                stats.writing += 1;
            } else if slot_state::reading(s) != 0 {
                stats.reading += 1;
            } else {
                stats.ready += 1;
            }
        }
        for role in Role::ALL {
            for place in 0..role.places() {
                if !role.is_active(view, place) {
                    continue;
                }
                let (pid, count, dropped) = match role {
                    Role::Consumer => {
                        let r = view.consumer(place);
                        (r.pid.load(Relaxed), r.received.load(Relaxed), r.dropped.load(Relaxed))
                    }
                    Role::Producer => {
                        let r = view.producer(place);
                        (r.pid.load(Relaxed), r.published.load(Relaxed), 0)
                    }
                };
                match role {
                    Role::Consumer => stats.consumers += 1,
                    Role::Producer => stats.producers += 1,
                }
                let alive = self.is_alive(role, place);
                let waiting = view.is_waiting(role, place);
                stats.peers.push(PeerInfo { role, place, pid, alive, count, dropped, waiting });
            }
        }
        stats
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.check_intact().is_ok()
            && self.creator.load(Relaxed)
            && !self.persistent.load(Relaxed)
            && !self.is_closed()
        {
            self.shutdown();
        }
    }
}
