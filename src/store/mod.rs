//! Named shared variables: a [`Store`] per job holds variables that operators in other processes
//! (or containers sharing the pool directory) publish and read by name.
//!
//! - Versions, not locks: a writer fills a new version in place and publishes it whole; readers
//!   keep the versions they hold undisturbed, and the latest one is there for late joiners.
//! - One writer per variable (a second one gets [`Error::WriterBusy`]).
//! - Readers' views are mapped read-only: writing through one faults in that process only.
//! - A process killed while holding versions or writing leaks nothing: its OFD locks vanish with
//!   it, and the writer frees what dead places held.
//! - [`Store::remove`] frees a name; the versions readers hold stay valid until they let go.
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("shmpool-store-doc-{}", std::process::id()));
//! use shmpool::{store::{Decl, Store}, DType};
//! let store = Store::open_in("doc-job", Some(&dir))?;
//! store.declare("image", &Decl::array(DType::F32, &[-1, 4]).capacity(1024))?;
//! let mut w = store.write("image")?;
//! w.array_mut::<f32>(&[2, 4])?.fill(0.5);
//! w.commit()?;
//! let v = store.read("image", Some(std::time::Duration::from_secs(1)))?;
//! assert_eq!((v.version(), v.shape()), (1, &[2, 4][..]));
//! assert!(store.read_newer("image", v.version(), Some(std::time::Duration::ZERO)).is_err());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), shmpool::Error>(())
//! ```

mod decl;
mod directory;
mod element;
mod layout;
mod map;
mod op;
mod read;
#[cfg(feature = "spec")]
mod spec;
mod table;
mod wait;
mod write;

pub use decl::{check_name, Decl, Kind, DEFAULT_VERSIONS};
pub use directory::{StoreEntry, VarStatus};
pub use element::Element;
pub use layout::{MAX_CAPACITY, MAX_NAME, MAX_PLACES, MAX_VARS, MAX_VERSIONS, MIN_VERSIONS};
pub use op::{Execution, Inputs, Operator};
pub use read::Version;
#[cfg(feature = "spec")]
pub use spec::Pipeline;
pub use write::WriteGuard;

use crate::config::resolve_dir;
use crate::{liveness, Error, Result};
use map::Mapping;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use table::{Table, VarInfo};
use wait::PlaceWaiter;
use write::Writer;

/// An open store of named variables (cheap to clone; every clone is the same reader place).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The process that opened the handle: a forked child shares its place and locks (same
    /// open file description) but not its hold counts, so it must not use them.
    pid: u32,
    job: String,
    table: Table,
    place: usize,
    /// This place's holds per (variable, buffer): the shared bit is set while the count is > 0.
    holds: Mutex<HashMap<(usize, usize), u32>>,
    /// This place's waiting threads per waiter mask (see `wait.rs`).
    waits: Mutex<HashMap<usize, u32>>,
    /// When this handle may next sweep dead places after a notification (ms since `opened`).
    next_sweep: AtomicU64,
    opened: Instant,
    vars: Mutex<HashMap<String, Arc<VarInfo>>>,
    read_maps: Mutex<HashMap<(usize, u32), Arc<Mapping>>>,
    writers: Mutex<HashMap<(usize, u32), Arc<Writer>>>,
}

/// How often, at most, a notifying handle sweeps dead places (see `wait.rs`).
const SWEEP_EVERY_MS: u64 = 1000;

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding one of these maps leaves it consistent: keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Opens (creating it if missing) the store of `job` in the default directory
    /// (`$SHMPOOL_DIR` or `/dev/shm`).
    pub fn open(job: &str) -> Result<Store> {
        Store::open_in(job, None)
    }

    /// Opens (creating it if missing) the store of `job` in `directory`.
    pub fn open_in(job: &str, directory: Option<&Path>) -> Result<Store> {
        check_name(job)?;
        let dir = resolve_dir(directory).join(format!("{}{job}", table::STORE_PREFIX));
        let table = Table::open(&dir)?;
        let place = table.claim_place()?;
        let inner = Inner {
            pid: std::process::id(),
            job: job.to_string(),
            table,
            place,
            holds: Mutex::default(),
            waits: Mutex::default(),
            next_sweep: AtomicU64::new(0),
            opened: Instant::now(),
            vars: Mutex::default(),
            read_maps: Mutex::default(),
            writers: Mutex::default(),
        };
        Ok(Store { inner: Arc::new(inner) })
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.inner.job
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.inner.table.dir
    }

    /// Declares variable `name` (preallocating its version buffers), or checks that an existing
    /// declaration is the same. Readers and writers of every process may declare it.
    pub fn declare(&self, name: &str, decl: &Decl) -> Result<()> {
        self.inner.not_forked()?;
        let var = self.inner.table.declare(name, decl)?;
        locked(&self.inner.vars).insert(name.to_string(), Arc::new(var));
        Ok(())
    }

    /// The declaration of `name`, if it is declared.
    pub fn declaration(&self, name: &str) -> Result<Option<Decl>> {
        Ok(self.inner.find(name)?.map(|v| v.decl.clone()))
    }

    /// Starts a new version of `name` (declared). Waits for a free version buffer if readers
    /// hold them all. The first write makes this handle the variable's writer for its lifetime.
    pub fn write(&self, name: &str) -> Result<WriteGuard> {
        self.write_timeout(name, None)
    }

    /// [`Store::write`], waiting at most `timeout` for a free version buffer.
    pub fn write_timeout(&self, name: &str, timeout: Option<Duration>) -> Result<WriteGuard> {
        self.inner.not_forked()?;
        let var = self.inner.find(name)?.ok_or_else(|| Error::invalid(format!("variable {name:?} is not declared")))?;
        let writer = self.inner.writer(&var)?;
        WriteGuard::begin(&self.inner, var, writer, timeout)
    }

    /// The latest version of `name`, waiting up to `timeout` (`None`: forever) for it to be
    /// declared and published.
    pub fn read(&self, name: &str, timeout: Option<Duration>) -> Result<Version> {
        self.inner.not_forked()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let var = self.inner.find_wait(name, deadline)?;
        read::newer(&self.inner, &var, None, deadline.map(|d| d.saturating_duration_since(Instant::now())))
    }

    /// The latest version of `name` if it is newer than `version`, else waits up to `timeout`
    /// for one.
    pub fn read_newer(&self, name: &str, version: u64, timeout: Option<Duration>) -> Result<Version> {
        self.inner.not_forked()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let var = self.inner.find_wait(name, deadline)?;
        read::newer(&self.inner, &var, Some(version), deadline.map(|d| d.saturating_duration_since(Instant::now())))
    }

    /// The latest version of `name` now, if declared and published.
    pub fn try_read(&self, name: &str) -> Result<Option<Version>> {
        self.inner.not_forked()?;
        match self.inner.find(name)? {
            Some(var) => read::latest(&self.inner, &var),
            None => Ok(None),
        }
    }

    /// Removes variable `name`: its name is free for a new declaration, and the versions that
    /// readers hold stay valid (and unchanged) until they let go. Refused ([`Error::WriterBusy`])
    /// while another handle is its writer or this one is writing it.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.inner.not_forked()?;
        check_name(name)?;
        let inner = &self.inner;
        inner.table.locked(|| {
            let var =
                inner.table.find(name)?.ok_or_else(|| Error::invalid(format!("variable {name:?} is not declared")))?;
            let key = (var.index, var.generation);
            let mut writers = locked(&inner.writers);
            let byte = layout::writer_byte(var.index);
            let ours = match writers.get(&key) {
                Some(w) if !w.retire() => return Err(Error::WriterBusy { name: name.to_string() }),
                Some(_) => true,
                None => false,
            };
            if !ours && !liveness::try_lock(inner.table.fd(), byte, true).map_err(|e| Error::io("locking", e))? {
                return Err(Error::WriterBusy { name: name.to_string() });
            }
            inner.table.retire(&var);
            writers.remove(&key);
            liveness::unlock(inner.table.fd(), byte);
            locked(&inner.vars).remove(name);
            locked(&inner.read_maps).remove(&key);
            Ok(())
        })
    }

    /// Frees what dead processes held. Returns how many reader places were freed. (Writers do
    /// this by themselves when they run out of buffers.)
    pub fn sweep(&self) -> usize {
        self.inner.table.sweep(self.inner.place)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("job", &self.inner.job).field("place", &self.inner.place).finish()
    }
}

impl Inner {
    fn not_forked(&self) -> Result<()> {
        if std::process::id() == self.pid {
            Ok(())
        } else {
            Err(Error::Unsupported("a store handle cannot be used after fork(): open the store again in the child"))
        }
    }

    /// Variable `name`, from the cache if its entry has not changed since.
    fn find(&self, name: &str) -> Result<Option<Arc<VarInfo>>> {
        if let Some(var) = locked(&self.vars).get(name).filter(|v| self.table.is_current(v)) {
            return Ok(Some(var.clone()));
        }
        let Some(var) = self.table.find(name)?.map(Arc::new) else { return Ok(None) };
        locked(&self.vars).insert(name.to_string(), var.clone());
        Ok(Some(var))
    }

    /// Variable `name`, waiting until `deadline` for somebody to declare it.
    fn find_wait(&self, name: &str, deadline: Option<Instant>) -> Result<Arc<VarInfo>> {
        check_name(name)?;
        if let Some(var) = self.find(name)? {
            return Ok(var);
        }
        let h = self.table.header();
        let waiter = PlaceWaiter::register(self, &h.declared, &h.declared_waiters);
        loop {
            let seen = waiter.observe();
            if let Some(var) = self.find(name)? {
                return Ok(var);
            }
            waiter.sleep(seen, read::remaining(deadline)?);
        }
    }

    /// The read-only mapping of `var`'s data.
    fn read_map(&self, var: &VarInfo) -> Result<Arc<Mapping>> {
        let mut maps = locked(&self.read_maps);
        if let Some(m) = maps.get(&(var.index, var.generation)) {
            return Ok(m.clone());
        }
        let m = Arc::new(Mapping::open(&self.table.data_path(var), var.data_len(), false)?);
        maps.insert((var.index, var.generation), m.clone());
        Ok(m)
    }

    /// This handle's writer right on `var`: taken (exclusive lock) at the first write.
    fn writer(&self, var: &VarInfo) -> Result<Arc<Writer>> {
        let mut writers = locked(&self.writers);
        if let Some(w) = writers.get(&(var.index, var.generation)) {
            return Ok(w.clone());
        }
        let byte = layout::writer_byte(var.index);
        if !liveness::try_lock(self.table.fd(), byte, true).map_err(|e| Error::io("locking", e))? {
            return Err(Error::WriterBusy { name: var.name.clone() });
        }
        let made = Mapping::open(&self.table.data_path(var), var.data_len(), true).map(Writer::new);
        let w = Arc::new(made.inspect_err(|_| liveness::unlock(self.table.fd(), byte))?);
        writers.insert((var.index, var.generation), w.clone());
        Ok(w)
    }

    /// Takes a hold on buffer `slot` of variable `var` for this place.
    fn hold(&self, var: usize, slot: usize) {
        let mut holds = locked(&self.holds);
        let count = holds.entry((var, slot)).or_insert(0);
        if *count == 0 {
            self.table.entry(var).slots[slot].holders.fetch_or(1 << self.place, SeqCst);
        }
        *count += 1;
    }

    /// Lets go of a hold taken by `hold`; the last one clears this place's bit.
    fn release(&self, var: usize, slot: usize) {
        if self.not_forked().is_err() {
            return; // the parent's hold, not ours to drop
        }
        let mut holds = locked(&self.holds);
        let Some(count) = holds.get_mut(&(var, slot)) else { return };
        *count -= 1;
        if *count == 0 {
            holds.remove(&(var, slot));
            let entry = self.table.entry(var);
            entry.slots[slot].holders.fetch_and(!(1 << self.place), SeqCst);
            self.notify(&entry.freed, &entry.freed_waiters);
        }
    }

    /// Wakes the waiters of `event`; if that took the wake system call, sweeps dead places (at
    /// most once a second), so that a waiter killed while registered stops costing it.
    fn notify(&self, event: &AtomicU32, waiters: &AtomicU64) {
        if !crate::signaler::notify(event, waiters) {
            return;
        }
        let now = self.opened.elapsed().as_millis() as u64;
        let due = self.next_sweep.load(Relaxed);
        if now >= due && self.next_sweep.compare_exchange(due, now + SWEEP_EVERY_MS, Relaxed, Relaxed).is_ok() {
            self.table.sweep(self.place);
        }
    }
}
