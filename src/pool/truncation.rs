//! A pool file shrunk under live peers (`ftruncate` by a process that can write the file).
//!
//! Pages past the new end of a file are unmapped from every process's mapping by the kernel, and
//! the next load or store there raises SIGBUS. A file in a directory cannot be sealed against
//! shrinking (only `memfd` files can), so a peer touching the lost pages cannot be saved without a
//! process-wide signal handler, which a library must not install. What can be saved is every peer
//! that is not touching them: a blocked call checks the file's size after each sleep (one `fstat`,
//! on the slow path only) and returns [`Error::Corrupted`] instead of reading the segment again,
//! and from then on this handle's buffers, peers and pool drop without touching shared memory.

use super::Inner;
use crate::sync::Ordering::*;
use crate::{Error, Result};

impl Inner {
    /// Fails (and marks this handle) if the pool file no longer holds the whole segment.
    pub(crate) fn check_intact(&self) -> Result<()> {
        if self.truncated.load(Relaxed) {
            return Err(self.truncated_error());
        }
        if self.segment.len_on_disk().is_some_and(|size| size < self.view.geometry.total) {
            self.truncated.store(true, Relaxed);
            return Err(self.truncated_error());
        }
        Ok(())
    }

    /// Whether shared memory may be touched: false once this handle found the file truncated.
    /// (One load of a flag of this process: cheap enough for every release.)
    pub(crate) fn is_intact(&self) -> bool {
        !self.truncated.load(Relaxed)
    }

    fn truncated_error(&self) -> Error {
        let size = self.segment.len_on_disk().unwrap_or(0);
        Error::corrupted(format!(
            "the pool file was truncated to {size} bytes under its live peers (it needs {})",
            self.view.geometry.total
        ))
    }
}
