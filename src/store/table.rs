//! The table file of a store: creating or opening it (validated), the handle's reader place,
//! declaring variables, finding them by name, and freeing what dead readers held.
//!
//! A store of job `JOB` is the directory `DIR/shmpool-store.JOB/` holding `table` and one data file
//! `var.INDEX.GENERATION` per variable. The table is built under a temporary name and linked into
//! place complete. Every open handle holds a shared OFD lock on byte 0 (so `gc` knows the store is
//! in use) and an exclusive one on its reader place; a dead process's locks go with it, which is
//! how its holds are recognised as stale.

use super::decl::{check_name, Decl, Kind};
use super::layout::*;
use super::map::Mapping;
use crate::liveness;
use crate::pool::segment::{file_id, open_fd, reserve};
use crate::{DType, Error, Result, PAGE};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::fence;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

/// Directory-name prefix of a store.
pub(crate) const STORE_PREFIX: &str = "shmpool-store.";
const TABLE: &str = "table";

/// A variable's declaration as found in the table, checked, with where its data lies.
#[derive(Debug, Clone)]
pub(crate) struct VarInfo {
    pub index: usize,
    pub generation: u32,
    pub name: String,
    pub decl: Decl,
    /// Bytes between two version buffers in the data file (the capacity rounded to pages).
    pub stride: usize,
}

impl VarInfo {
    /// Length of the data file.
    pub fn data_len(&self) -> usize {
        self.stride * self.decl.versions
    }
}

/// The mapped table of a store, through this handle's own open file description.
pub(crate) struct Table {
    map: Mapping,
    pub dir: PathBuf,
}

impl Table {
    /// Opens the store directory `dir`, creating it and its table if missing.
    pub fn open(dir: &Path) -> Result<Table> {
        // A concurrent `gc` may remove a directory between our open and our attach lock: retry.
        for _ in 0..8 {
            let _ = std::fs::DirBuilder::new().recursive(true).create(dir);
            let path = dir.join(TABLE);
            let map = match open_fd(&path, libc::O_RDWR, 0) {
                Ok(fd) => Mapping::of(fd, &path, TABLE_BYTES, true)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => match create(dir, &path)? {
                    Some(map) => map,
                    None => continue,
                },
                Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
            };
            if !liveness::try_lock(map.fd(), liveness::ATTACH_BYTE, false).map_err(|e| Error::io("locking", e))? {
                return Err(Error::corrupted("the store's attach lock is held exclusively"));
            }
            let still_there = open_fd(&path, libc::O_RDONLY, 0)
                .and_then(|fd| file_id(fd.as_fd()))
                .is_ok_and(|(dev, ino, _)| file_id(map.fd()).is_ok_and(|(d, i, _)| (d, i) == (dev, ino)));
            if still_there {
                let table = Table { map, dir: dir.to_path_buf() };
                table.check_header()?;
                return Ok(table);
            }
        }
        Err(Error::corrupted(format!("{} keeps disappearing", dir.display())))
    }

    fn check_header(&self) -> Result<()> {
        let h = self.header();
        let ok = h.magic.load(Acquire) == MAGIC
            && h.layout.load(Relaxed) == LAYOUT_VERSION
            && h.max_vars.load(Relaxed) as usize == MAX_VARS
            && h.max_versions.load(Relaxed) as usize == MAX_VERSIONS
            && h.entry_size.load(Relaxed) as usize == size_of::<Entry>();
        if ok {
            Ok(())
        } else {
            Err(Error::corrupted(format!(
                "{} is not a shmpool store table (layout {LAYOUT_VERSION})",
                self.dir.display()
            )))
        }
    }

    pub fn header(&self) -> &Header {
        // SAFETY: the mapping is at least TABLE_BYTES long, page aligned, and every field of
        // Header is an atomic (any bit pattern is valid).
        unsafe { &*(self.map.base() as *const Header) }
    }

    pub fn entry(&self, index: usize) -> &Entry {
        assert!(index < MAX_VARS);
        // SAFETY: index < MAX_VARS keeps the entry inside TABLE_BYTES; entries are 8-aligned
        // (the header is a multiple of 8 bytes) and made of atomics only.
        unsafe { &*(self.map.base().add(size_of::<Header>() + index * size_of::<Entry>()) as *const Entry) }
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.map.fd()
    }

    pub fn data_path(&self, var: &VarInfo) -> PathBuf {
        self.dir.join(format!("var.{}.{}", var.index, var.generation))
    }

    /// Takes a free reader place (its lock), dropping whatever a dead predecessor held there.
    pub fn claim_place(&self) -> Result<usize> {
        for place in 0..MAX_PLACES {
            if liveness::try_lock(self.fd(), place_byte(place), true).map_err(|e| Error::io("locking", e))? {
                self.clear_place(place);
                return Ok(place);
            }
        }
        Err(Error::TooManyPeers { role: "store handle", limit: MAX_PLACES })
    }

    /// Clears place `place`'s holds everywhere (its owner is dead, or is us before starting).
    fn clear_place(&self, place: usize) {
        for i in 0..MAX_VARS {
            let entry = self.entry(i);
            for slot in &entry.slots {
                if slot.holders.fetch_and(!(1u64 << place), SeqCst) & (1 << place) != 0 {
                    crate::signaler::notify(&entry.freed, &entry.freed_waiters);
                }
            }
            entry.published_waiters.fetch_and(!(1u64 << place), SeqCst);
            entry.freed_waiters.fetch_and(!(1u64 << place), SeqCst);
        }
        self.header().declared_waiters.fetch_and(!(1u64 << place), SeqCst);
    }

    /// Frees the holds of dead places (other than `own`). Returns how many places were freed.
    pub fn sweep(&self, own: usize) -> usize {
        // Places that hold a buffer or wait for an event: the live ones keep their locks.
        let mut held = self.header().declared_waiters.load(Relaxed);
        for i in 0..MAX_VARS {
            let entry = self.entry(i);
            held |= entry.published_waiters.load(Relaxed) | entry.freed_waiters.load(Relaxed);
            for slot in &entry.slots {
                held |= slot.holders.load(Relaxed);
            }
        }
        held &= !(1u64 << own);
        let mut freed = 0;
        for place in (0..MAX_PLACES).filter(|p| held & (1 << p) != 0) {
            // Holding the dead place's lock while clearing keeps a newcomer from claiming it.
            if liveness::try_lock(self.fd(), place_byte(place), true).unwrap_or(false) {
                self.clear_place(place);
                liveness::unlock(self.fd(), place_byte(place));
                freed += 1;
            }
        }
        freed
    }

    /// Reads entry `index`: `Ok(None)` if it holds no variable, an error if it is damaged.
    pub fn load(&self, index: usize) -> Result<Option<VarInfo>> {
        let entry = self.entry(index);
        match entry.state.load(Acquire) {
            FREE => return Ok(None),
            READY => {}
            s => return Err(Error::corrupted(format!("variable entry {index} in state {s}"))),
        }
        let generation = entry.generation.load(Relaxed);
        let damaged = |what: &str| Error::corrupted(format!("variable entry {index}: {what}"));
        let name = load_name(entry).ok_or_else(|| damaged("bad name"))?;
        let kind = Kind::from_code(entry.kind.load(Relaxed)).ok_or_else(|| damaged("bad kind"))?;
        let dtype = DType::from_code(entry.dtype.load(Relaxed)).ok_or_else(|| damaged("bad dtype"))?;
        let ndims = entry.ndims.load(Relaxed) as usize;
        if ndims > MAX_DIMS {
            return Err(damaged("too many dimensions"));
        }
        let dims = entry.dims[..ndims].iter().map(|d| d.load(Relaxed)).collect();
        let decl = Decl {
            kind,
            dtype,
            dims,
            capacity: entry.capacity.load(Relaxed),
            versions: entry.versions.load(Relaxed) as usize,
        };
        // Removed (and maybe declared again) while we read it: as if not there (yet).
        fence(Acquire);
        if entry.state.load(Relaxed) != READY || entry.generation.load(Relaxed) != generation {
            return Ok(None);
        }
        decl.check().map_err(|e| damaged(&e.to_string()))?;
        let stride = (decl.capacity as usize).div_ceil(PAGE) * PAGE;
        Ok(Some(VarInfo { index, generation, name, decl, stride }))
    }

    /// Whether `var` still describes its entry (not removed and declared again meanwhile).
    pub fn is_current(&self, var: &VarInfo) -> bool {
        let entry = self.entry(var.index);
        entry.state.load(Acquire) == READY && entry.generation.load(Relaxed) == var.generation
    }

    /// Finds variable `name`; damaged entries of other names are skipped.
    pub fn find(&self, name: &str) -> Result<Option<VarInfo>> {
        for i in 0..MAX_VARS {
            match self.load(i) {
                Ok(Some(v)) if v.name == name => return Ok(Some(v)),
                Err(e) if load_name(self.entry(i)).as_deref() == Some(name) => return Err(e),
                _ => {}
            }
        }
        Ok(None)
    }

    /// Declares `name` as `decl`, or checks an existing declaration is the same.
    pub fn declare(&self, name: &str, decl: &Decl) -> Result<VarInfo> {
        check_name(name)?;
        decl.check()?;
        self.locked(|| self.declare_locked(name, decl))
    }

    fn declare_locked(&self, name: &str, decl: &Decl) -> Result<VarInfo> {
        if let Some(existing) = self.find(name)? {
            if existing.decl == *decl {
                return Ok(existing);
            }
            return Err(Error::invalid(format!(
                "variable {name:?} is already declared as {:?}, not {decl:?}",
                existing.decl
            )));
        }
        let index = (0..MAX_VARS)
            .find(|&i| self.entry(i).state.load(Acquire) == FREE)
            .ok_or_else(|| Error::invalid(format!("the store is full ({MAX_VARS} variables)")))?;
        let entry = self.entry(index);
        let generation = entry.generation.load(Relaxed).wrapping_add(1);
        // The generation moves first: a reader that raced with an earlier removal and read some
        // of the fields below sees it changed when it re-checks (see `load`).
        entry.generation.store(generation, Relaxed);
        fence(Release);
        store_name(entry, name);
        entry.kind.store(decl.kind as u32, Relaxed);
        entry.dtype.store(decl.dtype.code(), Relaxed);
        entry.ndims.store(decl.dims.len() as u32, Relaxed);
        for (slot, &d) in entry.dims.iter().zip(&decl.dims) {
            slot.store(d, Relaxed);
        }
        entry.capacity.store(decl.capacity, Relaxed);
        entry.versions.store(decl.versions as u32, Relaxed);
        entry.latest.store(0, Relaxed);
        for slot in &entry.slots {
            slot.seq.store(0, Relaxed);
        }
        let var = self.load_unpublished(index, name, decl, generation);
        self.create_data(&var)?;
        entry.state.swap(READY, SeqCst);
        let h = self.header();
        h.declared.fetch_add(1, SeqCst);
        crate::signaler::notify(&h.declared, &h.declared_waiters);
        Ok(var)
    }

    /// Marks `var` removed and unlinks its data file: views mapped from it stay valid, the
    /// entry can be declared again (with a new data file). Call with the declaration lock held.
    pub fn retire(&self, var: &VarInfo) {
        self.entry(var.index).state.swap(FREE, SeqCst);
        let _ = std::fs::remove_file(self.data_path(var));
    }

    /// Runs `f` under the declaration lock (declarations and removals are serialised).
    pub fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        liveness::lock_wait(self.fd(), DECLARE_BYTE).map_err(|e| Error::io("locking the store", e))?;
        let result = f();
        liveness::unlock(self.fd(), DECLARE_BYTE);
        result
    }

    fn load_unpublished(&self, index: usize, name: &str, decl: &Decl, generation: u32) -> VarInfo {
        let stride = (decl.capacity as usize).div_ceil(PAGE) * PAGE;
        VarInfo { index, generation, name: name.to_string(), decl: decl.clone(), stride }
    }

    /// Creates the variable's data file with its memory reserved (a full tmpfs fails here, with
    /// a clear error, not with a SIGBUS later).
    fn create_data(&self, var: &VarInfo) -> Result<()> {
        let path = self.data_path(var);
        let fd = open_fd(&path, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC, 0o600)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        reserve(fd.as_fd(), var.data_len() as u64, &self.dir).inspect_err(|_| {
            let _ = std::fs::remove_file(&path);
        })
    }
}

/// Builds the table under a temporary name and links it in; `None` if another process linked
/// its own first (open that one).
fn create(dir: &Path, path: &Path) -> Result<Option<Mapping>> {
    // Unique across PID namespaces too (processes in two containers may share a PID).
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let temp = dir.join(format!(".table.{}.{nanos}.tmp", std::process::id()));
    let fd = open_fd(&temp, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC, 0o600)
        .map_err(|e| Error::io(format!("creating {}", temp.display()), e))?;
    let result = (|| {
        reserve(fd.as_fd(), TABLE_BYTES as u64, dir)?;
        let map = Mapping::of(fd, &temp, TABLE_BYTES, true)?;
        let table = Table { map, dir: dir.to_path_buf() };
        let h = table.header();
        h.layout.store(LAYOUT_VERSION, Relaxed);
        h.max_vars.store(MAX_VARS as u32, Relaxed);
        h.max_versions.store(MAX_VERSIONS as u32, Relaxed);
        h.entry_size.store(size_of::<Entry>() as u32, Relaxed);
        h.magic.store(MAGIC, SeqCst);
        match std::fs::hard_link(&temp, path) {
            Ok(()) => Ok(Some(table.map)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(Error::io(format!("linking {}", path.display()), e)),
        }
    })();
    let _ = std::fs::remove_file(&temp);
    result
}
