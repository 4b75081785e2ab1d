//! Who waits for which event, recorded per peer place so that it dies with the place.
//!
//! A place that blocks sets its bit in the event's waiter mask in the control block (what
//! notifiers test: one load, no system call while the mask is empty) and the event's bit in its
//! own record. Both are set and cleared with idempotent bit operations, so the registry's clean
//! step removes a dead peer's registration exactly, whatever instruction it died at: a killed
//! waiter cannot leave notifiers paying a `FUTEX_WAKE` for the rest of the pool's life.
//!
//! Threads of one process sharing a place (a `Producer` is `Sync`) are counted in the process,
//! and only the first and the last touch the shared bits.

use super::exchange::View;
use super::layout::{waiter_bit, WAIT_FREED, WAIT_PUBLISHED};
use super::{Event, Place, Role};
use crate::sync::{AtomicU32, AtomicU64, Ordering::*};

impl Event {
    fn record_bit(self) -> u32 {
        match self {
            Event::Published => WAIT_PUBLISHED,
            Event::Freed => WAIT_FREED,
        }
    }

    fn slot(self) -> usize {
        match self {
            Event::Published => 0,
            Event::Freed => 1,
        }
    }
}

const EVENTS: [Event; 2] = [Event::Published, Event::Freed];

impl View {
    fn waiters_mask(&self, event: Event) -> &AtomicU64 {
        match event {
            Event::Published => &self.control().published_waiters,
            Event::Freed => &self.control().freed_waiters,
        }
    }

    fn waiting_record(&self, role: Role, index: usize) -> &AtomicU32 {
        match role {
            Role::Consumer => &self.consumer(index).waiting,
            Role::Producer => &self.producer(index).waiting,
        }
    }

    /// Registers (or, with `on == false`, unregisters) place `index` of `role` as waiting for
    /// `event`.
    fn set_waiting(&self, role: Role, index: usize, event: Event, on: bool) {
        let bit = waiter_bit(role == Role::Producer, index);
        let record = self.waiting_record(role, index);
        if on {
            // The record first: a place whose mask bit is set always has it recorded, so cleaning
            // by the record never misses a mask bit.
            record.fetch_or(event.record_bit(), SeqCst);
            self.waiters_mask(event).fetch_or(bit, SeqCst);
        } else {
            self.waiters_mask(event).fetch_and(!bit, SeqCst);
            record.fetch_and(!event.record_bit(), SeqCst);
        }
    }

    /// Removes every registration of place `index` of `role`. The caller owns the place.
    pub(crate) fn clear_waiting(&self, role: Role, index: usize) {
        let bit = waiter_bit(role == Role::Producer, index);
        for event in EVENTS {
            self.waiters_mask(event).fetch_and(!bit, SeqCst);
        }
        self.control().spinners.fetch_and(!bit, SeqCst);
        self.waiting_record(role, index).store(0, SeqCst);
    }

    /// Whether place `index` of `role` is registered as a waiter (in its record or a mask) or as
    /// a spinner.
    pub(crate) fn is_waiting(&self, role: Role, index: usize) -> bool {
        let bit = waiter_bit(role == Role::Producer, index);
        self.waiting_record(role, index).load(Acquire) != 0
            || EVENTS.iter().any(|&e| self.waiters_mask(e).load(Acquire) & bit != 0)
            || self.control().spinners.load(Acquire) & bit != 0
    }

    /// How many places are registered as waiters, over both events.
    pub(crate) fn waiter_count(&self) -> u32 {
        EVENTS.iter().map(|&e| self.waiters_mask(e).load(Acquire).count_ones()).sum()
    }
}

/// A place's registration as a waiter for an event, held for a whole blocking call: dropping it
/// unregisters (unless another thread of this process still waits through the same place).
pub(crate) struct Registration<'a> {
    place: &'a Place,
    event: Event,
}

impl Place {
    /// Registers this place as waiting for `event`.
    pub(crate) fn register_waiter(&self, event: Event) -> Registration<'_> {
        let mut counts = self.waits.lock().unwrap_or_else(|e| e.into_inner());
        if counts[event.slot()] == 0 {
            self.pool.view.set_waiting(self.role, self.index, event, true);
        }
        counts[event.slot()] += 1;
        Registration { place: self, event }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let place = self.place;
        let mut counts = place.waits.lock().unwrap_or_else(|e| e.into_inner());
        counts[self.event.slot()] -= 1;
        if counts[self.event.slot()] == 0 && place.pool.is_intact() {
            place.pool.view.set_waiting(place.role, place.index, self.event, false);
        }
    }
}
