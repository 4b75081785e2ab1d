//! Who waits for which event, recorded per peer place so that it dies with the place.
//!
//! A place that waits sets its bit in the event's waiter mask in the control block (what
//! notifiers test: one load, no system call while the mask is empty) and the kind of wait in its
//! own record: blocked threads (`WAIT_PUBLISHED`/`WAIT_FREED`, woken by `FUTEX_WAKE`) or an armed
//! readiness handle (`WAIT_*_FD`, woken by one byte, see `readiness`). Both are set and cleared
//! with idempotent bit operations, so the registry's clean step removes a dead peer's registration
//! exactly, whatever instruction it died at: a killed waiter cannot leave notifiers paying a
//! system call for the rest of the pool's life.
//!
//! Threads of one process sharing a place (a `Producer` is `Sync`) are counted in the process,
//! and only the first and the last touch the shared bits.

use super::exchange::View;
use super::layout::{
    waiter_bit, MAX_CONSUMERS, MAX_PRODUCERS, WAIT_FREED, WAIT_FREED_FD, WAIT_PUBLISHED, WAIT_PUBLISHED_FD,
};
use super::{Event, Place, Role};
use crate::signaler;
use crate::sync::{AtomicU32, AtomicU64, Ordering::*};

impl Event {
    fn record_bit(self) -> u32 {
        match self {
            Event::Published => WAIT_PUBLISHED,
            Event::Freed => WAIT_FREED,
        }
    }

    fn fd_bit(self) -> u32 {
        match self {
            Event::Published => WAIT_PUBLISHED_FD,
            Event::Freed => WAIT_FREED_FD,
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

    /// Registers place `index` of `role` as waiting for `event` in the ways `bits` of its record
    /// say.
    fn set_waiting(&self, role: Role, index: usize, event: Event, bits: u32) {
        // The record first: a place whose mask bit is set always has it recorded, so cleaning
        // by the record never misses a mask bit.
        self.waiting_record(role, index).fetch_or(bits, SeqCst);
        self.waiters_mask(event).fetch_or(waiter_bit(role == Role::Producer, index), SeqCst);
    }

    /// Unregisters the ways `bits` of waiting; the mask bit stays if the place still waits in
    /// another way (`keep_mask`).
    fn clear_bits(&self, role: Role, index: usize, event: Event, bits: u32, keep_mask: bool) {
        if !keep_mask {
            self.waiters_mask(event).fetch_and(!waiter_bit(role == Role::Producer, index), SeqCst);
        }
        self.waiting_record(role, index).fetch_and(!bits, SeqCst);
    }

    /// Wakes whoever waits for `event`: `FUTEX_WAKE` if a place has blocked threads, one byte to
    /// each armed readiness handle (taking its arming away: one byte per arming). Costs one load
    /// and no system call while nobody waits. The caller's state change must be a `SeqCst`
    /// read-modify-write (see [`signaler::notify`]).
    pub(crate) fn notify(&self, event: Event) {
        let mask = self.waiters_mask(event).load(SeqCst);
        if mask == 0 {
            return;
        }
        let (mut futex, mut calls) = (false, 0);
        let mut rest = mask;
        while rest != 0 {
            let bit = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            // Bits come from shared memory: ignore those that name no place.
            let (role, index) = match bit.checked_sub(MAX_CONSUMERS) {
                None => (Role::Consumer, bit),
                Some(p) if p < MAX_PRODUCERS => (Role::Producer, p),
                Some(_) => continue,
            };
            let record = self.waiting_record(role, index);
            let ways = record.load(SeqCst);
            futex |= ways & event.record_bit() != 0;
            if ways & event.fd_bit() != 0 && record.fetch_and(!event.fd_bit(), SeqCst) & event.fd_bit() != 0 {
                self.pipes.poke(role, index);
                calls += 1;
            }
        }
        if futex {
            let control = self.control();
            signaler::wake(match event {
                Event::Published => &control.published_event,
                Event::Freed => &control.freed_event,
            });
            calls += 1;
        }
        if calls > 0 {
            self.control().wakes.fetch_add(calls, Relaxed);
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

/// This process's waiters through one place, per event: blocked threads and whether the place's
/// readiness handle is armed.
#[derive(Default)]
pub(crate) struct Waits {
    threads: [u32; 2],
    armed: [bool; 2],
}

/// A place's registration as a waiter for an event, held for a whole blocking call: dropping it
/// unregisters (unless another thread of this process still waits through the same place).
pub(crate) struct Registration<'a> {
    place: &'a Place,
    event: Event,
}

impl Place {
    fn waits(&self) -> std::sync::MutexGuard<'_, Waits> {
        self.waits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers this place as waiting for `event`.
    pub(crate) fn register_waiter(&self, event: Event) -> Registration<'_> {
        let mut waits = self.waits();
        if waits.threads[event.slot()] == 0 {
            self.pool.view.set_waiting(self.role, self.index, event, event.record_bit());
        }
        waits.threads[event.slot()] += 1;
        Registration { place: self, event }
    }

    /// Arms (or disarms) this place's readiness handle for `event`. Arming again re-arms a handle
    /// a notifier has written to.
    pub(crate) fn set_armed(&self, event: Event, on: bool) {
        let mut waits = self.waits();
        let (view, slot) = (&self.pool.view, event.slot());
        if on {
            view.set_waiting(self.role, self.index, event, event.fd_bit());
        } else if waits.armed[slot] {
            view.clear_bits(self.role, self.index, event, event.fd_bit(), waits.threads[slot] > 0);
        }
        waits.armed[slot] = on;
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let (place, slot) = (self.place, self.event.slot());
        let mut waits = place.waits();
        waits.threads[slot] -= 1;
        // A shrunk file is not touched again (see `truncation`).
        if waits.threads[slot] == 0 && place.pool.is_intact() {
            let armed = waits.armed[slot];
            place.pool.view.clear_bits(place.role, place.index, self.event, self.event.record_bit(), armed);
        }
    }
}
