//! A pool on the heap, for model checking the exchange with loom (`--cfg loom`): the same `View`
//! code as a real pool, over loom's atomics instead of a mapping.

use super::exchange::{Received, View};
use super::layout::{
    ring_entry, ConsumerRecord, Control, Geometry, ProducerRecord, SlotHeader, MAX_CONSUMERS, MAX_PRODUCERS,
};
use super::slot_state;
use crate::sync::{AtomicU64, Ordering::*};
use crate::{Mode, Overflow};

/// A heap-backed pool with no data region.
pub struct Model {
    view: View,
    _control: Box<Control>,
    _consumers: Box<[ConsumerRecord]>,
    _producers: Box<[ProducerRecord]>,
    _slots: Box<[SlotHeader]>,
    _ring: Box<[AtomicU64]>,
}

impl Model {
    pub fn new(slots: u32, mode: Mode, overflow: Overflow) -> Model {
        let geometry = Geometry::compute(slots, 4096, 0, mode, overflow, 1).expect("valid model geometry");
        let control = Box::new(Control::default());
        let consumers: Box<[ConsumerRecord]> = (0..MAX_CONSUMERS).map(|_| ConsumerRecord::default()).collect();
        let producers: Box<[ProducerRecord]> = (0..MAX_PRODUCERS).map(|_| ProducerRecord::default()).collect();
        let slot_headers: Box<[SlotHeader]> = (0..slots).map(|_| SlotHeader::default()).collect();
        let len = geometry.ring_len as u64;
        let ring: Box<[AtomicU64]> = (0..len).map(|p| AtomicU64::new(ring_entry::initial(p, len))).collect();
        // SAFETY: every part is allocated with the sizes the geometry names and lives in `Model`
        // next to the view.
        let view = unsafe {
            View::from_parts(
                geometry,
                &*control,
                consumers.as_ptr(),
                producers.as_ptr(),
                slot_headers.as_ptr(),
                ring.as_ptr(),
            )
        };
        view.initialise();
        Model {
            view,
            _control: control,
            _consumers: consumers,
            _producers: producers,
            _slots: slot_headers,
            _ring: ring,
        }
    }

    pub fn join_consumer(&self, c: usize) {
        self.view.join_consumer(c, 0);
    }

    pub fn leave_consumer(&self, c: usize) {
        self.view.clean_consumer(c);
    }

    pub fn acquire(&self, owner: usize) -> Option<usize> {
        self.view.try_acquire(owner, 0)
    }

    pub fn reclaim_oldest(&self, owner: usize) -> Option<usize> {
        self.view.reclaim_oldest(owner)
    }

    pub fn publish(&self, slot: usize) -> Option<u64> {
        self.view.publish(slot).expect("publish")
    }

    pub fn abort(&self, slot: usize) {
        self.view.abort(slot)
    }

    /// One receive attempt: `Some((slot, seq))`, or `None` if nothing (or only a half-done
    /// publication) is there.
    pub fn recv(&self, c: usize) -> Option<(usize, u64)> {
        let got = match self.view.geometry.mode {
            Mode::Broadcast => self.view.try_recv_broadcast(c),
            Mode::WorkQueue => self.view.try_recv_workqueue(c),
        };
        match got.expect("recv") {
            Received::Slot { slot, seq } => Some((slot, seq)),
            Received::Empty | Received::Busy => None,
        }
    }

    pub fn release(&self, slot: usize, c: usize) {
        self.view.release(slot, c)
    }

    pub fn collect_stale(&self) -> usize {
        self.view.collect_stale()
    }

    pub fn clean_producer(&self, p: usize) {
        self.view.clean_producer(p)
    }

    pub fn free_slots(&self) -> usize {
        (0..self.view.geometry.slot_count as usize)
            .filter(|&k| slot_state::is_free(self.view.slot(k).state.load(SeqCst)))
            .count()
    }

    pub fn dropped(&self, c: usize) -> u64 {
        self.view.consumer(c).dropped.load(SeqCst)
    }

    pub fn seq_of(&self, slot: usize) -> u64 {
        self.view.slot(slot).seq.load(SeqCst)
    }
}
