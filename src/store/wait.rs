//! Waiting for a store event (a declaration, a publication, a freed buffer), registered per reader
//! place so that the registration dies with the place.
//!
//! A waiting handle sets its place's bit in the event's waiter mask; a notifier makes the wake
//! system call only while the mask is not empty. Sweeping a dead place clears its bits
//! (`Table::clear_place`), and a handle whose notification made the system call sweeps at most
//! once a second (`Inner::notify`): a process killed while waiting costs the others a wake call
//! per notification for a second at most, not for the life of the store.
//!
//! Threads of one handle share its place: they are counted in the process, and only the first
//! and the last touch the shared bit.

use super::{locked, Inner};
use crate::signaler::Waiter;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// A registered waiter of one event, for one blocking call; unregistered on drop.
pub(crate) struct PlaceWaiter<'a> {
    waiter: Waiter<'a>,
    mask: &'a AtomicU64,
    inner: &'a Inner,
}

impl<'a> PlaceWaiter<'a> {
    /// Registers this handle's place as waiting for `event`, whose waiters are `mask`.
    pub fn register(inner: &'a Inner, event: &'a AtomicU32, mask: &'a AtomicU64) -> Self {
        let mut waits = locked(&inner.waits);
        let count = waits.entry(key(mask)).or_insert(0);
        if *count == 0 {
            mask.fetch_or(1 << inner.place, SeqCst);
        }
        *count += 1;
        drop(waits);
        PlaceWaiter { waiter: Waiter::registered(event), mask, inner }
    }
}

/// Waits are counted per mask (its address in this process's mapping of the table).
fn key(mask: &AtomicU64) -> usize {
    mask as *const AtomicU64 as usize
}

impl<'a> std::ops::Deref for PlaceWaiter<'a> {
    type Target = Waiter<'a>;
    fn deref(&self) -> &Waiter<'a> {
        &self.waiter
    }
}

impl Drop for PlaceWaiter<'_> {
    fn drop(&mut self) {
        let mut waits = locked(&self.inner.waits);
        let Some(count) = waits.get_mut(&key(self.mask)) else { return };
        *count -= 1;
        if *count == 0 {
            waits.remove(&key(self.mask));
            self.mask.fetch_and(!(1 << self.inner.place), SeqCst);
        }
    }
}
