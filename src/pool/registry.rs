//! The peer registry: the producer and consumer places of a pool, who holds them, and crash
//! recovery. A place is claimed by taking its liveness lock; a survivor that can take a dead
//! peer's lock owns the right to clean what that peer left (its slots, its bits, its record).
//!
//! What differs between producers and consumers is data ([`RoleTable`]), so claiming, sweeping
//! and cleaning are written once.

use super::exchange::View;
use super::layout::{MAX_CONSUMERS, MAX_PRODUCERS, PEER_ACTIVE, PEER_FREE};
use super::Inner;
use crate::liveness;
use crate::sync::Ordering::*;
use crate::{Error, Result};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What kind of peer a place holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Producer,
    Consumer,
}

/// How a role's places are laid out and cleaned.
struct RoleTable {
    name: &'static str,
    places: usize,
    lock_byte: fn(usize) -> u64,
    record_state: fn(&View, usize) -> u32,
    /// Whether the place still holds something in the slots (a dead peer's leftovers).
    holds_slots: fn(&View, usize) -> bool,
    clean: fn(&View, usize),
    join: fn(&View, usize, u32),
}

const CONSUMERS: RoleTable = RoleTable {
    name: "consumer",
    places: MAX_CONSUMERS,
    lock_byte: liveness::consumer_byte,
    record_state: |view, c| view.consumer(c).state.load(Acquire),
    holds_slots: View::consumer_has_bits,
    clean: View::clean_consumer,
    join: View::join_consumer,
};

const PRODUCERS: RoleTable = RoleTable {
    name: "producer",
    places: MAX_PRODUCERS,
    lock_byte: liveness::producer_byte,
    record_state: |view, p| view.producer(p).state.load(Acquire),
    holds_slots: View::producer_has_slots,
    clean: View::clean_producer,
    join: View::join_producer,
};

impl Role {
    /// Both roles, in the order sweeps and stats visit them.
    pub(crate) const ALL: [Role; 2] = [Role::Consumer, Role::Producer];

    fn table(self) -> &'static RoleTable {
        match self {
            Role::Consumer => &CONSUMERS,
            Role::Producer => &PRODUCERS,
        }
    }

    /// `"producer"` or `"consumer"`.
    pub fn name(self) -> &'static str {
        self.table().name
    }

    /// How many places of this role a pool has.
    pub fn places(self) -> usize {
        self.table().places
    }

    pub(crate) fn lock_byte(self, index: usize) -> u64 {
        (self.table().lock_byte)(index)
    }

    /// Removes everything place `index` holds: its waiter registration, its slots and bits, its
    /// record. The caller owns the place (holds its lock), so nobody joins it meanwhile.
    fn clean(self, view: &View, index: usize) {
        view.clear_waiting(self, index);
        (self.table().clean)(view, index);
    }

    /// Whether place `index` is registered as active (alive or not).
    pub(crate) fn is_active(self, view: &View, index: usize) -> bool {
        (self.table().record_state)(view, index) == PEER_ACTIVE
    }
}

/// One claimed producer or consumer place: its own file description holds the place's lock, so
/// the place is freed by the kernel if the process dies, and by `Drop` otherwise.
pub(crate) struct Place {
    pub pool: Arc<Inner>,
    pub role: Role,
    pub index: usize,
    fd: OwnedFd,
    /// Threads of this process blocked through this place, per event (see `waiters`).
    pub(super) waits: Mutex<super::waiters::Waits>,
    /// This place's readiness handle, once asked for (see `readiness`).
    pub(super) ready: std::sync::OnceLock<super::readiness::Ready>,
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.pool.check_intact().is_ok() {
            self.role.clean(&self.pool.view, self.index);
        }
        liveness::unlock(self.fd.as_fd(), self.role.lock_byte(self.index));
    }
}

impl Inner {
    /// Claims the first place whose lock is free, cleaning up after a dead previous holder.
    pub(crate) fn join(self: &Arc<Self>, role: Role) -> Result<Arc<Place>> {
        let table = role.table();
        let fd = self.segment.reopen()?;
        for index in 0..table.places {
            let locked = liveness::try_lock(fd.as_fd(), (table.lock_byte)(index), true)
                .map_err(|e| Error::io("locking a peer place", e))?;
            if !locked {
                continue;
            }
            // We hold the place: whatever a previous holder left is ours to clean.
            role.clean(&self.view, index);
            (table.join)(&self.view, index, std::process::id());
            return Ok(Arc::new(Place {
                pool: self.clone(),
                role,
                index,
                fd,
                waits: Mutex::default(),
                ready: Default::default(),
            }));
        }
        Err(Error::TooManyPeers { role: table.name, limit: table.places })
    }

    /// Cleans up after every dead peer. Returns how many there were.
    pub(crate) fn sweep(&self) -> usize {
        *self.last_sweep.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let mut reaped = 0;
        for role in Role::ALL {
            let table = role.table();
            for index in 0..table.places {
                let registered = (table.record_state)(&self.view, index) != PEER_FREE;
                if !registered && !(table.holds_slots)(&self.view, index) && !self.view.is_waiting(role, index) {
                    continue;
                }
                let byte = (table.lock_byte)(index);
                // Taking the lock succeeds only if no live process holds the place.
                if let Ok(true) = liveness::try_lock(self.segment.fd(), byte, true) {
                    if role.is_active(&self.view, index) {
                        reaped += 1;
                    }
                    role.clean(&self.view, index);
                    liveness::unlock(self.segment.fd(), byte);
                }
            }
        }
        self.view.collect_stale();
        reaped
    }

    /// Sweeps unless this handle swept less than a lease ago. Returns whether it reaped anyone.
    pub(crate) fn sweep_if_due(&self) -> bool {
        let due = self.last_sweep.lock().map_or(true, |t| t.elapsed() >= self.lease);
        due && self.sweep() > 0
    }

    /// Whether the process holding place `index` of `role` is alive.
    pub(crate) fn is_alive(&self, role: Role, index: usize) -> bool {
        liveness::is_held(self.segment.fd(), role.lock_byte(index)).unwrap_or(false)
    }
}
