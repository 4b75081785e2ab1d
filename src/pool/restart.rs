//! Orphaned pools and restarting creators.
//!
//! A pool whose creating handle is gone without closing it (killed, or its process ended without
//! running destructors), that was not persisted, and that has no live producer left is
//! *orphaned*: nothing will ever be published into it again unless its creator comes back. Its
//! consumers drain what was published and then get [`Error::Orphaned`] instead of waiting forever.
//!
//! A creator that restarts calls `Pool::create` again. If the name holds:
//! - a stale pool (no live handle): the file is removed *before* the new one is reserved, so a
//!   restart never needs room for two pools;
//! - an orphaned pool of the same configuration: the new handle takes it over (it becomes its
//!   creator) and its consumers go on receiving without reopening;
//! - an orphaned pool of another configuration: it is closed (its consumers drain, then get
//!   [`Error::Closed`] and can reopen the name) and a new pool is created;
//! - anything else (a live creator or producer, a persisted pool in use): [`Error::AlreadyExists`].

use super::layout::Geometry;
use super::{segment, Inner, Pool, Role};
use crate::sync::Ordering::*;
use crate::{Error, Result};
use std::path::Path;
use std::time::Instant;

impl Inner {
    /// Whether a live handle created this pool (this one, or one in any process).
    pub(crate) fn creator_alive(&self) -> bool {
        self.creator.load(Relaxed) || self.segment.creator_held()
    }

    /// Whether some live process holds a producer place.
    pub(crate) fn producer_alive(&self) -> bool {
        (0..Role::Producer.places())
            .any(|p| Role::Producer.is_active(&self.view, p) && self.is_alive(Role::Producer, p))
    }

    pub(crate) fn is_persistent(&self) -> bool {
        self.view.control().persistent.load(Acquire) != 0
    }

    /// Whether the pool is orphaned (see the module documentation). A few system calls.
    pub(crate) fn is_orphaned(&self) -> bool {
        !self.is_closed() && !self.is_persistent() && !self.creator_alive() && !self.producer_alive()
    }

    /// [`Inner::is_orphaned`], re-checked at most four times a lease: cheap enough for the slow
    /// path of every receive, and a consumer learns within the lease that its creator is gone.
    pub(crate) fn orphaned_recently(&self) -> bool {
        let mut last = self.orphan_check.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some((at, orphaned)) if at.elapsed() < self.lease / 4 => orphaned,
            _ => {
                let orphaned = self.is_orphaned();
                *last = Some((Instant::now(), orphaned));
                orphaned
            }
        }
    }
}

/// Makes the name at `path` free for a new pool of `geometry`, or takes over the orphaned pool of
/// that geometry it holds (returned). See the module documentation.
pub(super) fn prepare_name(path: &Path, name: &str, geometry: &Geometry) -> Result<Option<Pool>> {
    let exists = || Error::AlreadyExists { name: name.to_string() };
    // A few rounds: the name may change hands while we look (its last user leaves, another
    // creator replaces it).
    for _ in 0..8 {
        if segment::remove_if_unused(path)? {
            return Ok(None);
        }
        let (old_segment, old_geometry) = match segment::Segment::open(path, name) {
            Ok(opened) => opened,
            Err(Error::NotFound { .. }) => continue,
            // In use by somebody, but not a pool we can read: not ours to replace.
            Err(Error::Corrupted(_)) => return Err(exists()),
            Err(e) => return Err(e),
        };
        let old = Pool::from_segment(name, old_segment, old_geometry, false)?;
        if !old.inner.is_orphaned() {
            return Err(exists());
        }
        // The creator's lock makes us the one restarting creator; a rival gets AlreadyExists.
        if !old.inner.segment.claim_creator()? {
            return Err(exists());
        }
        if old_geometry == *geometry && !old.is_closed() {
            old.inner.creator.store(true, Relaxed);
            // Dead producers' half-written slots go back to the pool now, not a lease later.
            old.reap();
            return Ok(Some(old));
        }
        // Another shape: its consumers drain, get Closed and reopen the name we now create.
        old.shutdown();
    }
    Err(exists())
}
