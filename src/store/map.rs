//! A shared mapping of a whole file, read-only or read/write. Readers get their views of a
//! variable from a read-only one (opened `O_RDONLY`, mapped `PROT_READ`), so a write through an
//! input faults in the writing process instead of corrupting the value for everyone.

use crate::pool::segment::{file_id, open_fd};
use crate::{Error, Result};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

/// A mapped file; unmapped on drop.
pub(crate) struct Mapping {
    base: *mut u8,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is shared memory accessed through atomics (the table) or through raw
// pointers under the version protocol (the data); the pointer may move between threads.
unsafe impl Send for Mapping {}
// SAFETY: as above; nothing in Mapping itself is mutated after construction.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Opens `path` and maps its first `len` bytes, after checking the file is that long (a
    /// shorter file would SIGBUS on access). `writable`: read/write, else read-only.
    pub fn open(path: &Path, len: usize, writable: bool) -> Result<Mapping> {
        let flags = if writable { libc::O_RDWR } else { libc::O_RDONLY };
        let fd = open_fd(path, flags, 0).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        Mapping::of(fd, path, len, writable)
    }

    /// Maps the first `len` bytes of the open file `fd` (named `path` in errors).
    pub fn of(fd: OwnedFd, path: &Path, len: usize, writable: bool) -> Result<Mapping> {
        let (_, _, size) = file_id(fd.as_fd()).map_err(|e| Error::io("fstat", e))?;
        if size < len as u64 || len == 0 {
            return Err(Error::corrupted(format!("{} is {size} bytes, {len} expected", path.display())));
        }
        let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: mapping `len` bytes of a file we hold open and checked to be that long; the
        // kernel picks the address.
        let base = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.as_raw_fd(), 0) };
        if base == libc::MAP_FAILED {
            return Err(Error::last_os(format!("mapping {}", path.display())));
        }
        Ok(Mapping { base: base.cast(), len, fd })
    }

    pub fn base(&self) -> *mut u8 {
        self.base
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `of` mapped; every view into it holds an Arc of it.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}
