//! Writing: the one writer of a variable fills a free version buffer in place, then publishes it
//! by moving `latest`. Readers of older versions are undisturbed; a dropped, uncommitted
//! [`WriteGuard`] leaves nothing behind.
//!
//! A buffer is free when it is not the latest and no reader place holds it. The writer claims
//! one by clearing its version number and then checking, again, that nobody holds it (see
//! `read.rs` for why this is race-free). When every other buffer is held, the writer frees the
//! holds of dead readers (their place locks are gone) and otherwise waits for a reader to let go.

use super::decl::Kind;
use super::element::Element;
use super::layout::{decode_latest, encode_latest};
use super::map::Mapping;
use super::read::remaining;
use super::table::VarInfo;
use super::wait::PlaceWaiter;
use super::Inner;
use crate::{Error, Result};
use std::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// This handle's writer right on one variable: its lock is held, its data mapped read/write.
pub(crate) struct Writer {
    pub map: Mapping,
    /// A guard is open (one at a time per handle and variable).
    busy: AtomicBool,
}

impl Writer {
    pub fn new(map: Mapping) -> Writer {
        Writer { map, busy: AtomicBool::new(false) }
    }

    /// Takes the writer for good (the variable is being removed); false if a guard is open.
    pub fn retire(&self) -> bool {
        !self.busy.swap(true, Ordering::Acquire)
    }
}

/// A new version being written. Fill it, then [`WriteGuard::commit`] publishes it; dropping it
/// uncommitted discards it. Pointers into it (`as_mut_ptr`, the C and Python views) must not
/// be written after the commit: the buffer then belongs to the readers. (Sealing it with
/// `mprotect` was measured at 1 to 45 ms per commit for 64 MiB, so it is not done.)
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("shmpool-store-wdoc-{}", std::process::id()));
/// use shmpool::{store::{Decl, Store}, DType};
/// let store = Store::open_in("doc-write", Some(&dir))?;
/// store.declare("xs", &Decl::array(DType::U32, &[-1]).capacity(64))?;
/// let mut w = store.write("xs")?;
/// w.array_mut::<u32>(&[3])?.copy_from_slice(&[1, 2, 3]);
/// let version = w.commit()?;
/// assert_eq!(store.read("xs", None)?.as_slice::<u32>()?, &[1, 2, 3][..]);
/// # assert_eq!(version, 1);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), shmpool::Error>(())
/// ```
pub struct WriteGuard {
    inner: Arc<Inner>,
    var: Arc<VarInfo>,
    writer: Arc<Writer>,
    slot: usize,
    shape: Vec<usize>,
    shape_set: bool,
    len: usize,
}

impl WriteGuard {
    pub(crate) fn begin(
        inner: &Arc<Inner>,
        var: Arc<VarInfo>,
        writer: Arc<Writer>,
        timeout: Option<Duration>,
    ) -> Result<WriteGuard> {
        if writer.busy.swap(true, Ordering::Acquire) {
            return Err(Error::WriterBusy { name: var.name.clone() });
        }
        let slot = match claim(inner, &var, timeout) {
            Ok(slot) => slot,
            Err(e) => {
                writer.busy.store(false, Ordering::Release);
                return Err(e);
            }
        };
        // Fully fixed shapes (and scalars) start out set; dynamic ones wait for `set_shape`.
        let shape: Vec<usize> = var.decl.dims.iter().map(|&d| d.max(0) as usize).collect();
        let shape_set = !var.decl.dims.contains(&-1);
        let len = if shape_set { var.decl.max_shape_bytes(&shape)? as usize } else { 0 };
        Ok(WriteGuard { inner: inner.clone(), var, writer, slot, shape, shape_set, len })
    }

    /// The variable's name.
    pub fn name(&self) -> &str {
        &self.var.name
    }

    /// Sets this version's shape (dynamic dimensions up to the capacity; fixed ones as declared).
    pub fn set_shape(&mut self, shape: &[usize]) -> Result<()> {
        self.len = self.var.decl.max_shape_bytes(shape)? as usize;
        self.shape = shape.to_vec();
        self.shape_set = true;
        Ok(())
    }

    /// The shape set so far.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Whether the shape is known: declared fixed, or set for this version.
    pub fn is_shape_set(&self) -> bool {
        self.shape_set
    }

    /// The variable's element type.
    pub fn dtype(&self) -> crate::DType {
        self.var.decl.dtype
    }

    /// The variable's kind.
    pub fn kind(&self) -> Kind {
        self.var.decl.kind
    }

    /// The payload's bytes for the current shape, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the buffer lies inside the read/write mapping (slot < versions, len ≤ stride);
        // we claimed it, so no reader holds it and no other guard writes it.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr(), self.len) }
    }

    /// Sets the shape and returns the payload as elements of `T` (which must be the declared
    /// element type).
    pub fn array_mut<T: Element>(&mut self, shape: &[usize]) -> Result<&mut [T]> {
        if !T::fits(self.var.decl.dtype) {
            return Err(Error::invalid(format!(
                "variable {:?} holds {}, not {}",
                self.var.name,
                self.var.decl.dtype.name(),
                T::DTYPE.name()
            )));
        }
        self.set_shape(shape)?;
        // SAFETY: page-aligned buffer of `len` bytes = a whole number of `T`s, claimed by us;
        // every bit pattern is a valid `T`.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr().cast::<T>(), self.len / size_of::<T>()) })
    }

    /// Sets the text of a string variable.
    pub fn set_str(&mut self, text: &str) -> Result<()> {
        self.expect(Kind::String)?;
        self.set_shape(&[text.len()])?;
        self.bytes_mut().copy_from_slice(text.as_bytes());
        Ok(())
    }

    /// Sets the value of an `i64` variable.
    pub fn set_i64(&mut self, value: i64) -> Result<()> {
        self.expect(Kind::I64)?;
        self.bytes_mut().copy_from_slice(&value.to_ne_bytes());
        Ok(())
    }

    /// Sets the value of an `f64` variable.
    pub fn set_f64(&mut self, value: f64) -> Result<()> {
        self.expect(Kind::F64)?;
        self.bytes_mut().copy_from_slice(&value.to_ne_bytes());
        Ok(())
    }

    /// Sets the value of a `bool` variable.
    pub fn set_bool(&mut self, value: bool) -> Result<()> {
        self.expect(Kind::Bool)?;
        self.bytes_mut().copy_from_slice(&[value as u8]);
        Ok(())
    }

    /// Where the payload starts (read/write mapping).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: slot < versions, so the offset stays inside the mapping.
        unsafe { self.writer.map.base().add(self.slot * self.var.stride) }
    }

    /// Publishes this version; returns its number. Readers see it whole or not at all.
    pub fn commit(self) -> Result<u64> {
        let entry = self.inner.table.entry(self.var.index);
        let meta = &entry.slots[self.slot];
        let (previous, _) = decode_latest(entry.latest.load(SeqCst));
        let version = previous + 1;
        if version >= 1 << 56 {
            return Err(Error::corrupted(format!("variable {:?}: version {previous}", self.var.name)));
        }
        meta.len.store(self.len as u64, Relaxed);
        meta.ndims.store(self.shape.len() as u32, Relaxed);
        for (d, &s) in meta.shape.iter().zip(&self.shape) {
            d.store(s as u64, Relaxed);
        }
        meta.seq.store(version, Release);
        entry.latest.swap(encode_latest(version, self.slot), SeqCst);
        self.inner.notify(&entry.published, &entry.published_waiters);
        Ok(version)
    }

    fn expect(&self, kind: Kind) -> Result<()> {
        if self.var.decl.kind == kind {
            Ok(())
        } else {
            let have = self.var.decl.kind.name();
            Err(Error::invalid(format!("variable {:?} is a {have}, not a {}", self.var.name, kind.name())))
        }
    }
}

impl std::fmt::Debug for WriteGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGuard").field("name", &self.var.name).field("shape", &self.shape).finish()
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        // Uncommitted, the buffer's version stays 0: it is free again, nothing to undo.
        self.writer.busy.store(false, Ordering::Release);
    }
}

/// Claims a free buffer of `var`, waiting up to `timeout` for one.
fn claim(inner: &Inner, var: &VarInfo, timeout: Option<Duration>) -> Result<usize> {
    let entry = inner.table.entry(var.index);
    let deadline = timeout.map(|t| Instant::now() + t);
    let try_claim = || {
        let (_, latest) = decode_latest(entry.latest.load(SeqCst));
        let n = var.decl.versions;
        (1..=n).map(|k| (latest + k) % n).find(|&s| {
            let slot = &entry.slots[s];
            s != latest && slot.holders.load(SeqCst) == 0 && {
                slot.seq.store(0, SeqCst);
                slot.holders.load(SeqCst) == 0
            }
        })
    };
    if let Some(s) = try_claim() {
        return Ok(s);
    }
    let waiter = PlaceWaiter::register(inner, &entry.freed, &entry.freed_waiters);
    loop {
        let seen = waiter.observe();
        if let Some(s) = try_claim() {
            return Ok(s);
        }
        if inner.table.sweep(inner.place) > 0 {
            continue;
        }
        // Dead readers are found by polling their locks: sleep in short rounds.
        // (Timing out here means every buffer stayed held by live readers.)
        waiter.sleep(seen, remaining(deadline)?.min(Duration::from_millis(50)));
    }
}
