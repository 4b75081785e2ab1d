//! Reading: taking hold of the latest version without ever seeing a half-written one, waiting
//! for a newer one, and the read-only [`Version`] view.
//!
//! A reader marks its place's bit in the holders mask of the buffer that `latest` names, then
//! checks that the buffer still carries that version. A writer, to reuse a buffer, first clears
//! its version and then checks the mask is empty. Both steps are sequentially consistent, so
//! either the writer sees the reader's bit (and leaves the buffer alone) or the reader sees the
//! cleared version (and lets go, and tries again with the new `latest`).

use super::decl::Kind;
use super::element::Element;
use super::layout::{decode_latest, MAX_DIMS};
use super::map::Mapping;
use super::table::VarInfo;
use super::wait::PlaceWaiter;
use super::Inner;
use crate::{DType, Error, Result};
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tries before giving up on a `latest` that keeps moving under us (only a runaway or hostile
/// writer can make this many publications between two loads).
const RETRIES: usize = 1 << 16;

/// One published version of a variable, held for as long as this value lives: the writer will
/// not reuse its buffer meanwhile. Its memory is mapped read-only: writing through
/// [`Version::as_ptr`] faults.
pub struct Version {
    inner: Arc<Inner>,
    map: Arc<Mapping>,
    var: Arc<VarInfo>,
    slot: usize,
    version: u64,
    shape: Vec<usize>,
    len: usize,
}

impl Version {
    /// The version number (1 for the first publication, then increasing).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The variable's name.
    pub fn name(&self) -> &str {
        &self.var.name
    }

    /// The variable's kind.
    pub fn kind(&self) -> Kind {
        self.var.decl.kind
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.var.decl.dtype
    }

    /// The shape of this version.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The payload's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `as_ptr` points at `len` bytes inside the mapping (len ≤ capacity ≤ stride),
        // which lives as long as self; the writer does not touch the buffer while we hold it.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The payload viewed as elements of `T`; an error if the variable holds another type.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        if !T::fits(self.dtype()) {
            return Err(Error::invalid(format!(
                "variable {:?} holds {}, not {}",
                self.name(),
                self.dtype().name(),
                T::DTYPE.name()
            )));
        }
        // SAFETY: buffers start on a page boundary (aligned for any element type), `len` is a
        // whole number of elements (checked against the shape), every bit pattern is valid.
        Ok(unsafe { std::slice::from_raw_parts(self.as_ptr().cast::<T>(), self.len / size_of::<T>()) })
    }

    /// The text of a string variable.
    pub fn as_str(&self) -> Result<&str> {
        self.expect(Kind::String)?;
        std::str::from_utf8(self.bytes())
            .map_err(|_| Error::corrupted(format!("variable {:?} is not UTF-8", self.name())))
    }

    /// The value of an `i64` variable.
    pub fn i64(&self) -> Result<i64> {
        self.expect(Kind::I64)?;
        Ok(i64::from_ne_bytes(self.bytes().try_into().map_err(|_| self.damaged())?))
    }

    /// The value of an `f64` variable.
    pub fn f64(&self) -> Result<f64> {
        self.expect(Kind::F64)?;
        Ok(f64::from_ne_bytes(self.bytes().try_into().map_err(|_| self.damaged())?))
    }

    /// The value of a `bool` variable.
    pub fn bool(&self) -> Result<bool> {
        self.expect(Kind::Bool)?;
        Ok(self.bytes().first().ok_or_else(|| self.damaged())? != &0)
    }

    /// Where the payload starts, in a read-only mapping.
    pub fn as_ptr(&self) -> *const u8 {
        // SAFETY: slot < versions, so the offset stays inside the mapping of versions × stride.
        unsafe { self.map.base().add(self.slot * self.var.stride) }
    }

    fn expect(&self, kind: Kind) -> Result<()> {
        if self.kind() == kind {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "variable {:?} is a {}, not a {}",
                self.name(),
                self.kind().name(),
                kind.name()
            )))
        }
    }

    fn damaged(&self) -> Error {
        Error::corrupted(format!("variable {:?}: payload of {} bytes", self.name(), self.len))
    }
}

impl std::fmt::Debug for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Version")
            .field("name", &self.var.name)
            .field("version", &self.version)
            .field("shape", &self.shape)
            .finish()
    }
}

impl Drop for Version {
    fn drop(&mut self) {
        self.inner.release(self.var.index, self.slot);
    }
}

/// The latest version of `var`, held; `None` before the first publication.
pub(crate) fn latest(inner: &Arc<Inner>, var: &Arc<VarInfo>) -> Result<Option<Version>> {
    if !inner.table.is_current(var) {
        return Err(removed(var));
    }
    let entry = inner.table.entry(var.index);
    for _ in 0..RETRIES {
        let word = entry.latest.load(SeqCst);
        if word == 0 {
            return Ok(None);
        }
        let (version, slot) = decode_latest(word);
        if slot >= var.decl.versions {
            return Err(Error::corrupted(format!("variable {:?}: latest buffer {slot}", var.name)));
        }
        inner.hold(var.index, slot);
        if entry.slots[slot].seq.load(SeqCst) == version {
            // Removed meanwhile: the buffer may already belong to a new declaration.
            let checked = if inner.table.is_current(var) {
                shape_of(inner, var, slot).and_then(|(shape, len)| Ok((shape, len, inner.read_map(var)?)))
            } else {
                Err(removed(var))
            };
            return match checked {
                Ok((shape, len, map)) => {
                    Ok(Some(Version { inner: inner.clone(), map, var: var.clone(), slot, version, shape, len }))
                }
                Err(e) => {
                    inner.release(var.index, slot);
                    Err(e)
                }
            };
        }
        inner.release(var.index, slot);
    }
    Err(Error::corrupted(format!("variable {:?}: the latest version keeps changing", var.name)))
}

fn removed(var: &VarInfo) -> Error {
    Error::invalid(format!("variable {:?} was removed", var.name))
}

/// The shape and length of the version in buffer `slot`, checked against the declaration.
fn shape_of(inner: &Inner, var: &VarInfo, slot: usize) -> Result<(Vec<usize>, usize)> {
    let meta = &inner.table.entry(var.index).slots[slot];
    let damaged = || Error::corrupted(format!("variable {:?}: bad shape in buffer {slot}", var.name));
    let ndims = meta.ndims.load(Acquire) as usize;
    if ndims > MAX_DIMS {
        return Err(damaged());
    }
    let shape = meta.shape[..ndims]
        .iter()
        .map(|d| usize::try_from(d.load(Relaxed)).map_err(|_| damaged()))
        .collect::<Result<Vec<_>>>()?;
    let bytes = var.decl.max_shape_bytes(&shape).map_err(|_| damaged())?;
    if meta.len.load(Relaxed) != bytes {
        return Err(damaged());
    }
    Ok((shape, bytes as usize))
}

/// Waits until `var` has a version newer than `newer_than` (any version if `None`), then holds it.
pub(crate) fn newer(
    inner: &Arc<Inner>,
    var: &Arc<VarInfo>,
    newer_than: Option<u64>,
    timeout: Option<Duration>,
) -> Result<Version> {
    let fresh = |v: &Version| newer_than.is_none_or(|n| v.version > n);
    if let Some(v) = latest(inner, var)?.filter(fresh) {
        return Ok(v);
    }
    let entry = inner.table.entry(var.index);
    let deadline = timeout.map(|t| Instant::now() + t);
    let waiter = PlaceWaiter::register(inner, &entry.published, &entry.published_waiters);
    loop {
        let seen = waiter.observe();
        if let Some(v) = latest(inner, var)?.filter(fresh) {
            return Ok(v);
        }
        waiter.sleep(seen, remaining(deadline)?);
    }
}

/// Time left until `deadline` (a long nap if none); `Timeout` once it passed.
pub(crate) fn remaining(deadline: Option<Instant>) -> Result<Duration> {
    match deadline {
        None => Ok(Duration::from_secs(3600)),
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => Err(Error::Timeout),
        },
    }
}
