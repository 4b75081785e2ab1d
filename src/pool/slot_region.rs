//! Reading part of a slot in place by its index, for protocols in which the slot's owner keeps it
//! (taken, unpublished) while a peer it sent the slot's descriptor to reads it: the shmpool farm's
//! requests (`crates/farm`). The owner promises not to write the slot until the peer is done (the
//! peer's reply); the peer holds nothing in the pool, so a crash of either side leaks nothing: the
//! owner's taken slots are reclaimed by liveness like any producer's.
//!
//! ```
//! use shmpool::{Config, Pool};
//! # let dir = std::env::temp_dir().join(format!("shmpool-region-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let pool = Pool::create("region-doc", &Config::new(2, 4096).directory(&dir))?;
//! let mut buf = pool.producer()?.acquire(None)?;        // the owner takes a slot and fills it
//! buf[..5].copy_from_slice(b"hello");
//! let reader = Pool::open_in("region-doc", Some(&dir))?; // the peer (usually another process)
//! assert_eq!(reader.slot_region(buf.slot_index() as u32, 0, 5)?, b"hello");
//! assert!(reader.slot_region(2, 0, 1).is_err());        // no slot 2: the index came from outside
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), shmpool::Error>(())
//! ```

use crate::{Error, Pool, Result};

impl Pool {
    /// The `len` bytes at `offset` in slot `slot`, read in place. `slot`, `offset` and `len` are
    /// checked against the pool's geometry (they usually come from another process). The bytes
    /// are only meaningful while the slot's owner keeps the slot for this reader.
    pub fn slot_region(&self, slot: u32, offset: u64, len: u64) -> Result<&[u8]> {
        let geometry = self.inner.view.geometry;
        let fits = offset.checked_add(len).is_some_and(|end| end <= geometry.slot_size);
        if slot >= geometry.slot_count || !fits {
            return Err(Error::invalid(format!("{len} bytes at {offset} in slot {slot} are outside the pool")));
        }
        // The read/write mapping: the slot's owner lends it back as itself (the protocol's lending
        // compares addresses), and a `&[u8]` cannot be written through without `unsafe`.
        let start = self.inner.view.data_ptr(slot as usize);
        // SAFETY: `offset + len` lies within slot `slot` (checked above), inside the mapping that
        // lives as long as `self`; the bytes are plain data (any value is a valid u8).
        Ok(unsafe { std::slice::from_raw_parts(start.add(offset as usize), len as usize) })
    }
}
