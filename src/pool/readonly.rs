//! A second, read-only mapping of the slot data: what consumers read through.
//!
//! Producers write slots through the pool's read/write mapping; a received buffer points into this
//! one, mapped `PROT_READ`, so a stray write through it (a C consumer casting away `const`, a bug
//! in unsafe Rust) faults in the writing process instead of changing a frame other consumers are
//! reading.

use super::layout::Geometry;
use crate::{Error, Result};
use std::os::fd::{AsRawFd, BorrowedFd};

pub(crate) struct ReadOnlyData {
    base: *const u8,
    len: usize,
    slot_size: usize,
    slots: usize,
}

// SAFETY: a read-only mapping shared by the threads of this process; nothing in it is mutated.
unsafe impl Send for ReadOnlyData {}
// SAFETY: as above.
unsafe impl Sync for ReadOnlyData {}

impl ReadOnlyData {
    /// Maps the data region of the pool file `fd` laid out as `geometry`, read-only.
    pub fn map(fd: BorrowedFd<'_>, geometry: &Geometry) -> Result<ReadOnlyData> {
        let slot_size = geometry.slot_size as usize;
        let slots = geometry.slot_count as usize;
        let len = slot_size * slots;
        let offset = libc::off_t::try_from(geometry.data).map_err(|_| Error::invalid("pool too large"))?;
        // SAFETY: a new shared, read-only mapping of a file we hold open; `geometry.data` is page
        // aligned and the file holds `geometry.total` bytes (checked by create/open).
        let base =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd.as_raw_fd(), offset) };
        if base == libc::MAP_FAILED {
            return Err(Error::last_os("mapping the slot data read-only"));
        }
        Ok(ReadOnlyData { base: base as *const u8, len, slot_size, slots })
    }

    /// Start of slot `k`'s payload in the read-only mapping.
    pub fn slot(&self, k: usize) -> *const u8 {
        assert!(k < self.slots);
        // SAFETY: in bounds: the mapping holds `slots` slots of `slot_size` bytes.
        unsafe { self.base.add(k * self.slot_size) }
    }

    /// The mapping's address range.
    pub fn range(&self) -> (*const u8, usize) {
        (self.base, self.len)
    }
}

impl Drop for ReadOnlyData {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped; every buffer pointing into it holds the
        // pool's `Inner` (which owns this) alive.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}
