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
//! # Ok::<(), shmpool::Error>(())
//! ```

pub(crate) mod exchange;
pub(crate) mod layout;
#[cfg(loom)]
pub mod model;
pub(crate) mod segment;
pub mod slot_state;

use crate::config::{resolve_dir, Config, Mode, Overflow};
use crate::consumer::Consumer;
use crate::liveness;
use crate::producer::Producer;
use crate::signaler::{Spin, Waiter};
use crate::sync::Ordering::*;
use crate::{Error, Result};
use exchange::View;
use layout::{Geometry, Header, MAX_CONSUMERS, MAX_PRODUCERS, PEER_ACTIVE, PEER_FREE};
use segment::Segment;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
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
    pub name: String,
    pub segment: Segment,
    pub view: View,
    creator: bool,
    persistent: AtomicBool,
    lease: Duration,
    last_sweep: Mutex<Instant>,
}

/// What kind of peer a place holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Producer,
    Consumer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        }
    }
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
    pub peers: Vec<PeerInfo>,
}

/// A pool file found by [`Pool::list`].
#[derive(Debug, Clone)]
pub struct PoolEntry {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    /// Whether some process has it open.
    pub in_use: bool,
}

/// What one attempt of a blocking operation found.
pub(crate) enum Attempt<T> {
    Ready(T),
    /// Nothing yet: sleep until notified.
    Pending,
    /// A peer is between two steps: retry soon.
    Busy,
}

/// Which event a blocked operation waits for.
#[derive(Clone, Copy)]
pub(crate) enum Event {
    Published,
    Freed,
}

impl Pool {
    /// Creates a pool named `name` (see [`Config`] for where and how). A stale pool of that name,
    /// one no live process has open, is replaced; a live one gives [`Error::AlreadyExists`].
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
        let segment = Segment::create(&path, name, &geometry, config.permissions, |base| {
            // SAFETY: `base` maps `geometry.total` zeroed bytes that no other process can see yet.
            let view = unsafe { View::new(base, geometry) };
            view.initialise();
            // SAFETY: the header lies at the start of the mapping.
            geometry.write_header(unsafe { &*(base as *const Header) });
        })?;
        Ok(Pool::from_segment(name, segment, geometry, true))
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
        Ok(Pool::from_segment(name, segment, geometry, false))
    }

    fn from_segment(name: &str, segment: Segment, geometry: Geometry, creator: bool) -> Pool {
        // SAFETY: the segment maps `geometry.total` bytes (checked by create/open) and lives in the
        // same Inner as the view, so it outlives it.
        let view = unsafe { View::new(segment.base(), geometry) };
        Pool {
            inner: Arc::new(Inner {
                name: name.to_string(),
                segment,
                view,
                creator,
                persistent: AtomicBool::new(false),
                lease: Duration::from_nanos(geometry.lease_ns),
                last_sweep: Mutex::new(
                    Instant::now().checked_sub(Duration::from_secs(3600)).unwrap_or_else(Instant::now),
                ),
            }),
        }
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

    pub fn is_closed(&self) -> bool {
        self.inner.view.control().closed.load(Acquire) != 0
    }

    /// Closes the pool for everyone: producers get [`Error::Closed`], consumers drain what was
    /// published and then get [`Error::Closed`]. The name is unlinked; mappings stay valid.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Keeps the pool (and its name) after this creator handle goes away.
    pub fn persist(&self) {
        self.inner.persistent.store(true, Relaxed);
    }

    /// Removes dead peers now: frees their slots and their holds. Returns how many were removed.
    pub fn reap(&self) -> usize {
        self.inner.sweep()
    }

    /// A snapshot of slot states, counters and peers.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// The pools in `directory` (default: `$SHMPOOL_DIR` or `/dev/shm`).
    pub fn list(directory: Option<&Path>) -> Result<Vec<PoolEntry>> {
        let dir = resolve_dir(directory);
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let mut pools = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_prefix(segment::PREFIX)) else {
                continue;
            };
            let path = entry.path();
            let size = entry.metadata().map_or(0, |m| m.len());
            let in_use = segment::in_use(&path).unwrap_or(true);
            pools.push(PoolEntry { name: name.to_string(), path, size, in_use });
        }
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(pools)
    }

    /// Removes pool files (and abandoned half-created ones) that no live process has open.
    /// Returns the names removed.
    pub fn gc(directory: Option<&Path>) -> Result<Vec<String>> {
        let dir = resolve_dir(directory);
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else { continue };
            let ours =
                name.starts_with(segment::PREFIX) || (name.starts_with(segment::TEMP_PREFIX) && name.ends_with(".tmp"));
            if ours && !segment::in_use(&entry.path()).unwrap_or(true) && std::fs::remove_file(entry.path()).is_ok() {
                removed.push(name.strip_prefix(segment::PREFIX).unwrap_or(name).to_string());
            }
        }
        Ok(removed)
    }

    /// Closes the pool `name` for its users and removes its name, live peers or not.
    pub fn remove(name: &str, directory: Option<&Path>) -> Result<()> {
        let pool = Pool::open_in(name, directory)?;
        pool.inner.close();
        Ok(())
    }
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

/// One claimed producer or consumer place: its own file description holds the place's lock, so
/// the place is freed by the kernel if the process dies, and by `Drop` otherwise.
pub(crate) struct Place {
    pub pool: Arc<Inner>,
    pub role: Role,
    pub index: usize,
    fd: OwnedFd,
}

impl Drop for Place {
    fn drop(&mut self) {
        match self.role {
            Role::Consumer => self.pool.view.clean_consumer(self.index),
            Role::Producer => self.pool.view.clean_producer(self.index),
        }
        liveness::unlock(self.fd.as_fd(), lock_byte(self.role, self.index));
    }
}

fn lock_byte(role: Role, index: usize) -> u64 {
    match role {
        Role::Consumer => liveness::consumer_byte(index),
        Role::Producer => liveness::producer_byte(index),
    }
}

fn places(role: Role) -> usize {
    match role {
        Role::Consumer => MAX_CONSUMERS,
        Role::Producer => MAX_PRODUCERS,
    }
}

impl Inner {
    fn record_state(&self, role: Role, index: usize) -> u32 {
        match role {
            Role::Consumer => self.view.consumer(index).state.load(Acquire),
            Role::Producer => self.view.producer(index).state.load(Acquire),
        }
    }

    fn clean(&self, role: Role, index: usize) {
        match role {
            Role::Consumer => self.view.clean_consumer(index),
            Role::Producer => self.view.clean_producer(index),
        }
    }

    /// Claims the first place whose lock is free, cleaning up after a dead previous holder.
    fn join(self: &Arc<Self>, role: Role) -> Result<Arc<Place>> {
        let fd = self.segment.reopen()?;
        let pid = std::process::id();
        for index in 0..places(role) {
            let locked = liveness::try_lock(fd.as_fd(), lock_byte(role, index), true)
                .map_err(|e| Error::io("locking a peer place", e))?;
            if !locked {
                continue;
            }
            // We hold the place: whatever a previous holder left is ours to clean.
            self.clean(role, index);
            match role {
                Role::Consumer => self.view.join_consumer(index, pid),
                Role::Producer => self.view.join_producer(index, pid),
            }
            return Ok(Arc::new(Place { pool: self.clone(), role, index, fd }));
        }
        Err(Error::TooManyPeers { role: role.name(), limit: places(role) })
    }

    /// Cleans up after every dead peer. Returns how many there were.
    pub fn sweep(&self) -> usize {
        *self.last_sweep.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let mut reaped = 0;
        for role in [Role::Consumer, Role::Producer] {
            for index in 0..places(role) {
                let leftovers = match role {
                    Role::Consumer => self.view.consumer_has_bits(index),
                    Role::Producer => self.view.producer_has_slots(index),
                };
                if self.record_state(role, index) == PEER_FREE && !leftovers {
                    continue;
                }
                let byte = lock_byte(role, index);
                // Taking the lock succeeds only if no live process holds the place.
                if let Ok(true) = liveness::try_lock(self.segment.fd(), byte, true) {
                    if self.record_state(role, index) == PEER_ACTIVE {
                        reaped += 1;
                    }
                    self.clean(role, index);
                    liveness::unlock(self.segment.fd(), byte);
                }
            }
        }
        self.view.collect_stale();
        reaped
    }

    /// Sweeps unless this handle swept less than a lease ago. Returns whether it reaped anyone.
    fn sweep_if_due(&self) -> bool {
        let due = self.last_sweep.lock().map_or(true, |t| t.elapsed() >= self.lease);
        due && self.sweep() > 0
    }

    fn close(&self) {
        let control = self.view.control();
        control.closed.store(1, SeqCst);
        // Wake everyone so they see it; the counters make sure nobody sleeps through.
        control.published_event.fetch_add(1, SeqCst);
        control.freed_event.fetch_add(1, SeqCst);
        self.view.notify_published();
        self.view.notify_freed();
        self.segment.unlink();
    }

    pub fn is_closed(&self) -> bool {
        self.view.control().closed.load(Acquire) != 0
    }

    /// Runs `attempt` until it is ready, sleeping on `event` between tries, spinning first within
    /// `spin`'s budget, sweeping dead peers every lease, for at most `timeout` (`None`: no limit).
    pub fn block_on<T>(
        &self,
        event: Event,
        timeout: Option<Duration>,
        spin: &Spin,
        mut attempt: impl FnMut() -> Result<Attempt<T>>,
    ) -> Result<T> {
        if let Attempt::Ready(v) = attempt()? {
            return Ok(v);
        }
        // Not ready at once: a dead peer may be what holds us up, so check (at most once a lease).
        if self.sweep_if_due() {
            if let Attempt::Ready(v) = attempt()? {
                return Ok(v);
            }
        }
        let start = Instant::now();
        let mut failure = None;
        let spun = spin.run(|| match attempt() {
            Ok(Attempt::Ready(v)) => Some(Ok(v)),
            Ok(_) => None,
            Err(e) => {
                failure = Some(e);
                Some(Err(()))
            }
        });
        match spun {
            Some(Ok(v)) => return Ok(v),
            Some(Err(())) => return Err(failure.unwrap_or(Error::Closed)),
            None => {}
        }
        let control = self.view.control();
        let waiter = match event {
            Event::Published => Waiter::register(&control.published_event, &control.consumers_waiting),
            Event::Freed => Waiter::register(&control.freed_event, &control.producers_waiting),
        };
        let mut last_check = start;
        loop {
            let remaining = match timeout {
                Some(t) => match t.checked_sub(start.elapsed()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return Err(Error::Timeout),
                },
                None => None,
            };
            let seen = waiter.observe();
            let nap = match attempt()? {
                Attempt::Ready(v) => return Ok(v),
                Attempt::Pending => self.lease,
                Attempt::Busy => Duration::from_micros(200),
            };
            waiter.sleep(seen, remaining.map_or(nap, |r| r.min(nap)));
            if last_check.elapsed() >= self.lease {
                last_check = Instant::now();
                self.sweep_if_due();
            }
        }
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
        for role in [Role::Consumer, Role::Producer] {
            for place in 0..places(role) {
                if self.record_state(role, place) != PEER_ACTIVE {
                    continue;
                }
                let alive = liveness::is_held(self.segment.fd(), lock_byte(role, place)).unwrap_or(false);
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
                stats.peers.push(PeerInfo { role, place, pid, alive, count, dropped });
            }
        }
        stats
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.creator && !self.persistent.load(Relaxed) && !self.is_closed() {
            self.close();
        }
    }
}
