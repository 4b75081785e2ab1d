//! The lock-free exchange of slots between producers and consumers.
//!
//! Producers take a FREE slot (`try_acquire`), fill it and `publish` it: publishing appends
//! `(sequence, slot)` to the publish ring and marks the slot with the holders that must see it
//! (every active consumer in broadcast mode, the work-queue token otherwise). Consumers follow the
//! ring: a broadcast consumer keeps its own cursor, work-queue consumers share one head. A consumer
//! claims a slot by moving its pending bit to its reading bit in one compare-and-swap, and releases
//! it by clearing the reading bit; the slot is free when no bit is left.
//!
//! Nothing here blocks or calls the OS, and no operation leaves the pool inconsistent if its process
//! dies between any two steps: a dead peer's bits are removed by [`View::clean_consumer`] and
//! [`View::clean_producer`], which the pool runs for peers whose liveness lock is gone.
//!
//! Every value loaded from the segment is treated as untrusted: slot indices from the ring are
//! bounds-checked, and loops that depend on other processes' progress are bounded.

use super::layout::{
    ring_entry, ConsumerRecord, Control, Geometry, ProducerRecord, SlotHeader, MAX_PRODUCERS, PEER_ACTIVE, PEER_FREE,
};
use super::readiness::Pipes;
use super::slot_state as state;
use super::Event;
use crate::config::Mode;
use crate::sync::{AtomicU64, Ordering::*};
use crate::{Error, Result};

/// The sequence number of a slot that holds no publication.
pub(crate) const SEQ_NONE: u64 = u64::MAX;

/// How many times a compare-and-swap loop retries before the pool is deemed corrupted: far more than
/// any honest contention produces (a lagging consumer skips at most a ring's length, 4096 entries),
/// and it turns a hostile livelock into an error in milliseconds (the segment fuzzer hits it).
#[cfg(not(fuzzing))]
const MAX_RETRIES: u32 = 1 << 16;
/// Under cargo-fuzz (`--cfg fuzzing`): small, so the many inputs that exhaust it stay fast.
#[cfg(fuzzing)]
const MAX_RETRIES: u32 = 1 << 8;

/// Pointers into one pool's shared state. All pointers stay valid while the owner of the mapping
/// (the pool's `Segment`) lives, which outlives every `View` by construction.
pub(crate) struct View {
    pub geometry: Geometry,
    control: *const Control,
    consumers: *const ConsumerRecord,
    producers: *const ProducerRecord,
    slots: *const SlotHeader,
    ring: *const AtomicU64,
    user_meta: *mut u8,
    data: *mut u8,
    /// This process's ends of the places' readiness handles, opened when first written to.
    pub(crate) pipes: Pipes,
}

// SAFETY: a View only hands out shared references to atomics and raw pointers into a mapping that
// every process may access concurrently; all mutation goes through atomics.
unsafe impl Send for View {}
// SAFETY: as above.
unsafe impl Sync for View {}

/// What one receive attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// The consumer now holds `slot`, published at `seq`.
    Slot { slot: usize, seq: u64 },
    /// Nothing published yet.
    Empty,
    /// A publication is half-way (a producer between two steps): try again shortly.
    Busy,
}

impl View {
    /// A view of a mapping at `base` laid out as `geometry`.
    ///
    /// # Safety
    /// `base` must point to a mapping of at least `geometry.total` bytes, aligned to a page, that
    /// stays mapped for the life of the returned view.
    pub unsafe fn new(base: *mut u8, geometry: Geometry) -> View {
        let at = |offset: usize| base.add(offset);
        View {
            geometry,
            control: at(geometry.control).cast(),
            consumers: at(geometry.consumers).cast(),
            producers: at(geometry.producers).cast(),
            slots: at(geometry.slots).cast(),
            ring: at(geometry.ring).cast(),
            user_meta: at(geometry.user_meta),
            data: at(geometry.data),
            pipes: Pipes::default(),
        }
    }

    /// A view of separately allocated parts (model checking uses this: loom's atomics cannot live
    /// in a mapping). It has no user metadata or data region.
    ///
    /// # Safety
    /// Each pointer must point to as many initialised elements as `geometry` says, living as long
    /// as the view.
    #[cfg(loom)]
    pub unsafe fn from_parts(
        geometry: Geometry,
        control: *const Control,
        consumers: *const ConsumerRecord,
        producers: *const ProducerRecord,
        slots: *const SlotHeader,
        ring: *const AtomicU64,
    ) -> View {
        View {
            geometry,
            control,
            consumers,
            producers,
            slots,
            ring,
            user_meta: std::ptr::null_mut(),
            data: std::ptr::null_mut(),
            pipes: Pipes::default(),
        }
    }

    pub fn control(&self) -> &Control {
        // SAFETY: points into the live mapping (see `View::new`).
        unsafe { &*self.control }
    }

    pub fn consumer(&self, c: usize) -> &ConsumerRecord {
        assert!(c < super::layout::MAX_CONSUMERS);
        // SAFETY: index checked; the table has MAX_CONSUMERS records.
        unsafe { &*self.consumers.add(c) }
    }

    pub fn producer(&self, p: usize) -> &ProducerRecord {
        assert!(p < super::layout::MAX_PRODUCERS);
        // SAFETY: index checked; the table has MAX_PRODUCERS records.
        unsafe { &*self.producers.add(p) }
    }

    pub fn slot(&self, k: usize) -> &SlotHeader {
        assert!(k < self.geometry.slot_count as usize);
        // SAFETY: index checked against the slot count.
        unsafe { &*self.slots.add(k) }
    }

    fn ring(&self, seq: u64) -> &AtomicU64 {
        let pos = (seq & (self.geometry.ring_len as u64 - 1)) as usize;
        // SAFETY: pos < ring_len, the ring's length.
        unsafe { &*self.ring.add(pos) }
    }

    /// Start of slot `k`'s payload (`slot_size` bytes).
    pub fn data_ptr(&self, k: usize) -> *mut u8 {
        assert!(k < self.geometry.slot_count as usize);
        // SAFETY: in bounds of the data region by the geometry.
        unsafe { self.data.add(k * self.geometry.slot_size as usize) }
    }

    /// Start of slot `k`'s user metadata (`meta_bytes` bytes).
    pub fn user_meta_ptr(&self, k: usize) -> *mut u8 {
        assert!(k < self.geometry.slot_count as usize);
        // SAFETY: in bounds of the user-metadata region by the geometry.
        unsafe { self.user_meta.add(k * self.geometry.meta_stride) }
    }

    /// Fills a zeroed segment's shared state (the creator does this before anyone can see it).
    pub fn initialise(&self) {
        let len = self.geometry.ring_len as u64;
        for pos in 0..len {
            self.ring(pos).store(ring_entry::initial(pos, len), Relaxed);
        }
        for k in 0..self.geometry.slot_count as usize {
            self.slot(k).seq.store(SEQ_NONE, Relaxed);
        }
    }

    // ---- producers ---------------------------------------------------------------------------

    /// Takes a free slot for producer place `owner`: the one freed most recently if it still is
    /// (LIFO reuse keeps the working set warm in cache), else the first free one from `start`
    /// (every free slot stays reachable).
    pub fn try_acquire(&self, owner: usize, start: usize) -> Option<usize> {
        let n = self.geometry.slot_count as usize;
        let warm = self.control().warm.load(Relaxed) as usize;
        if warm < n && self.try_take(warm, owner) {
            return Some(warm);
        }
        (0..n).map(|i| (start + i) % n).find(|&k| k != warm && self.try_take(k, owner))
    }

    /// Moves slot `k` from FREE to WRITING by `owner`, if it is free.
    fn try_take(&self, k: usize, owner: usize) -> bool {
        let slot = self.slot(k);
        let s = slot.state.load(Relaxed);
        if state::is_free(s) && slot.state.compare_exchange(s, state::writing(owner), Acquire, Relaxed).is_ok() {
            slot.seq.store(SEQ_NONE, Relaxed);
            return true;
        }
        false
    }

    /// Records that slot `k` was just freed, for the next `try_acquire`. Writes only when the hint
    /// changes, so with one buffer in flight the line stays shared and costs no transfer.
    fn mark_warm(&self, k: usize) {
        let warm = &self.control().warm;
        if warm.load(Relaxed) != k as u32 {
            warm.store(k as u32, Relaxed);
        }
    }

    /// Drop-oldest overflow: takes the published slot with the lowest sequence that nobody is
    /// reading. Counts a drop when some holder had not received it yet.
    pub fn reclaim_oldest(&self, owner: usize) -> Option<usize> {
        for _ in 0..MAX_RETRIES {
            let mut oldest: Option<(usize, u64, u64)> = None;
            for k in 0..self.geometry.slot_count as usize {
                let slot = self.slot(k);
                let s = slot.state.load(Acquire);
                if state::is_writing(s) || state::is_free(s) || state::reading(s) != 0 {
                    continue;
                }
                let seq = slot.seq.load(Relaxed);
                if oldest.is_none_or(|(_, _, best)| seq < best) {
                    oldest = Some((k, s, seq));
                }
            }
            let (k, s, _) = oldest?;
            let slot = self.slot(k);
            if slot.state.compare_exchange(s, state::writing(owner), Acquire, Relaxed).is_ok() {
                slot.seq.store(SEQ_NONE, Relaxed);
                if state::pending(s) != 0 {
                    self.control().dropped.fetch_add(1, Relaxed);
                }
                return Some(k);
            }
        }
        None
    }

    /// Returns an unpublished slot to the pool.
    pub fn abort(&self, k: usize) {
        self.slot(k).state.swap(0, SeqCst);
        self.mark_warm(k);
        self.notify_freed();
    }

    /// Publishes slot `k`, which the caller holds in WRITING state, to the holders the mode asks
    /// for. Returns its sequence number, or `None` when a broadcast had no consumer to go to (the
    /// slot is then free again at once).
    pub fn publish(&self, k: usize) -> Result<Option<u64>> {
        let control = self.control();
        let slot = self.slot(k);
        let pending = match self.geometry.mode {
            Mode::Broadcast => (control.consumers.load(SeqCst) as u64) << 1,
            Mode::WorkQueue => state::WQ_TOKEN,
        };
        control.published.fetch_add(1, Relaxed);
        if pending == 0 {
            slot.state.swap(0, SeqCst);
            self.mark_warm(k);
            self.notify_freed();
            return Ok(None);
        }
        let len = self.geometry.ring_len as u64;
        for _ in 0..MAX_RETRIES {
            let t = control.tail.load(Acquire);
            let entry = self.ring(t);
            let e = entry.load(Acquire);
            if ring_entry::seq_matches(e, t) {
                // Another producer appended at t but has not moved the tail yet: help it.
                let _ = control.tail.compare_exchange(t, t.wrapping_add(1), AcqRel, Relaxed);
                continue;
            }
            if !ring_entry::seq_matches(e, t.wrapping_sub(len)) {
                // Our tail is stale; reload.
                crate::sync::spin_hint();
                continue;
            }
            // The sequence goes in before the ring entry makes the slot findable.
            slot.seq.store(t, Release);
            if entry.compare_exchange(e, ring_entry::pack(t, k as u64), AcqRel, Acquire).is_ok() {
                let _ = control.tail.compare_exchange(t, t.wrapping_add(1), AcqRel, Relaxed);
                slot.state.swap(state::published(pending, t), SeqCst);
                self.notify_published();
                return Ok(Some(t));
            }
        }
        Err(Error::corrupted("publish ring does not advance"))
    }

    // ---- consumers ---------------------------------------------------------------------------

    /// One attempt of broadcast consumer `c` to receive the next buffer at its cursor.
    pub fn try_recv_broadcast(&self, c: usize) -> Result<Received> {
        let record = self.consumer(c);
        let (pbit, rbit) = (state::consumer_bit(c), state::reading_bit(c));
        for _ in 0..MAX_RETRIES {
            let t = record.cursor.load(Relaxed);
            let slot_index = match self.find(t)? {
                Found::Slot(k) => k,
                Found::NotYet => return Ok(Received::Empty),
                Found::Overwritten(next) => {
                    record.dropped.fetch_add(next.wrapping_sub(t), Relaxed);
                    record.cursor.store(next, Release);
                    continue;
                }
            };
            let slot = self.slot(slot_index);
            let s = slot.state.load(Acquire);
            let seq = slot.seq.load(Acquire);
            if seq != t {
                // Reclaimed by a drop-oldest producer (and maybe republished since).
                record.dropped.fetch_add(1, Relaxed);
                record.cursor.store(t.wrapping_add(1), Release);
                continue;
            }
            if state::is_writing(s) {
                return Ok(Received::Busy);
            }
            if state::pending(s) & pbit == 0 || !state::tag_matches(s, t) {
                // Published before this consumer joined, or already freed: not ours.
                record.cursor.store(t.wrapping_add(1), Release);
                continue;
            }
            if slot.state.compare_exchange(s, state::claim(s, pbit, rbit), AcqRel, Acquire).is_err() {
                continue;
            }
            record.cursor.store(t.wrapping_add(1), Release);
            bump(&record.received);
            return Ok(Received::Slot { slot: slot_index, seq: t });
        }
        Err(Error::corrupted("broadcast receive does not advance"))
    }

    /// One attempt of work-queue consumer `c` to take the buffer at the shared head.
    pub fn try_recv_workqueue(&self, c: usize) -> Result<Received> {
        let control = self.control();
        let record = self.consumer(c);
        let rbit = state::reading_bit(c);
        for _ in 0..MAX_RETRIES {
            let h = control.wq_head.load(Acquire);
            let slot_index = match self.find(h)? {
                Found::Slot(k) => k,
                Found::NotYet => return Ok(Received::Empty),
                Found::Overwritten(next) => {
                    let _ = control.wq_head.compare_exchange(h, next, AcqRel, Relaxed);
                    continue;
                }
            };
            let slot = self.slot(slot_index);
            let s = slot.state.load(Acquire);
            let seq = slot.seq.load(Acquire);
            if seq == h && state::is_writing(s) {
                return Ok(Received::Busy);
            }
            if seq != h || state::pending(s) & state::WQ_TOKEN == 0 || !state::tag_matches(s, h) {
                // Taken by another consumer, or gone: move the head on (helping its taker).
                let _ = control.wq_head.compare_exchange(h, h.wrapping_add(1), AcqRel, Relaxed);
                continue;
            }
            if slot.state.compare_exchange(s, state::claim(s, state::WQ_TOKEN, rbit), AcqRel, Acquire).is_err() {
                continue;
            }
            let _ = control.wq_head.compare_exchange(h, h.wrapping_add(1), AcqRel, Relaxed);
            bump(&record.received);
            return Ok(Received::Slot { slot: slot_index, seq: h });
        }
        Err(Error::corrupted("work-queue receive does not advance"))
    }

    /// Consumer `c` lets go of slot `k`. The last holder frees it.
    pub fn release(&self, k: usize, c: usize) {
        let before = self.slot(k).state.fetch_and(!state::reading_bit(c), SeqCst);
        if state::is_free(before & !state::reading_bit(c)) {
            self.mark_warm(k);
            self.notify_freed();
        }
    }

    /// Where the publication `seq` is in the ring.
    fn find(&self, seq: u64) -> Result<Found> {
        let len = self.geometry.ring_len as u64;
        let e = self.ring(seq).load(Acquire);
        if ring_entry::seq_matches(e, seq) {
            let k = ring_entry::slot(e);
            if k >= self.geometry.slot_count as u64 {
                return Err(Error::corrupted(format!("ring names slot {k} of {}", self.geometry.slot_count)));
            }
            return Ok(Found::Slot(k as usize));
        }
        if ring_entry::seq_matches(e, seq.wrapping_sub(len)) {
            return Ok(Found::NotYet);
        }
        // The entry was overwritten by a later lap: everything before the oldest entry the ring
        // still holds is gone.
        let tail = self.control().tail.load(Acquire);
        Ok(Found::Overwritten(tail.saturating_sub(len).max(seq.wrapping_add(1))))
    }

    // ---- maintenance -------------------------------------------------------------------------

    /// Removes holders that can never let go: pending bits of consumers whose cursor has already
    /// passed the slot (they skipped it while lagging, or joined while it was being published), and
    /// work-queue tokens the head has passed. Cheap: no system call. Returns the slots freed.
    pub fn collect_stale(&self) -> usize {
        let control = self.control();
        let mut freed = 0;
        for k in 0..self.geometry.slot_count as usize {
            let slot = self.slot(k);
            let s = slot.state.load(Acquire);
            if state::is_writing(s) || state::is_free(s) {
                continue;
            }
            let seq = slot.seq.load(Acquire);
            if !state::tag_matches(s, seq) {
                continue;
            }
            let mut stale = 0;
            let pending = state::pending(s);
            if pending & state::WQ_TOKEN != 0 && control.wq_head.load(Acquire) > seq {
                stale |= state::WQ_TOKEN;
            }
            for c in 0..super::layout::MAX_CONSUMERS {
                let bit = state::consumer_bit(c);
                if pending & bit != 0 {
                    let record = self.consumer(c);
                    if record.state.load(Acquire) == PEER_ACTIVE && record.cursor.load(Acquire) > seq {
                        stale |= bit;
                    }
                }
            }
            if stale != 0
                && slot.state.compare_exchange(s, s & !stale, SeqCst, Relaxed).is_ok()
                && state::is_free(s & !stale)
            {
                self.mark_warm(k);
                freed += 1;
            }
        }
        if freed > 0 {
            self.notify_freed();
        }
        freed
    }

    /// Checks every slot's state word for values no peer writes. Run on slow paths, where a pool
    /// that never frees a slot would otherwise just time out.
    pub fn validate_states(&self) -> Result<()> {
        for k in 0..self.geometry.slot_count as usize {
            let s = self.slot(k).state.load(Acquire);
            if state::is_writing(s)
                && (s & !(state::WRITING | state::OWNER_MASK) != 0 || state::owner(s) >= MAX_PRODUCERS)
            {
                return Err(Error::corrupted(format!("slot {k}: state {s:#018x} names no producer place")));
            }
        }
        Ok(())
    }

    /// Whether any slot still carries a bit of consumer place `c`.
    pub fn consumer_has_bits(&self, c: usize) -> bool {
        let bits = state::consumer_bit(c) | state::reading_bit(c);
        (0..self.geometry.slot_count as usize).any(|k| {
            let s = self.slot(k).state.load(Acquire);
            !state::is_writing(s) && s & bits != 0
        })
    }

    /// Whether any slot is being written by producer place `p`.
    pub fn producer_has_slots(&self, p: usize) -> bool {
        (0..self.geometry.slot_count as usize).any(|k| {
            let s = self.slot(k).state.load(Acquire);
            state::is_writing(s) && state::owner(s) == p
        })
    }

    /// Removes consumer place `c` and every bit it holds. The caller owns the place (holds its
    /// liveness lock), so nobody else joins it meanwhile.
    pub fn clean_consumer(&self, c: usize) {
        let control = self.control();
        control.consumers.fetch_and(!(1 << c), SeqCst);
        let bits = state::consumer_bit(c) | state::reading_bit(c);
        let mut freed = false;
        for k in 0..self.geometry.slot_count as usize {
            let slot = self.slot(k);
            let mut s = slot.state.load(Acquire);
            while !state::is_writing(s) && s & bits != 0 {
                let next = state::without_consumer(s, c);
                match slot.state.compare_exchange_weak(s, next, SeqCst, Acquire) {
                    Ok(_) => {
                        freed |= state::is_free(next);
                        break;
                    }
                    Err(actual) => s = actual,
                }
            }
        }
        self.consumer(c).state.store(PEER_FREE, Release);
        if freed {
            self.notify_freed();
        }
    }

    /// Frees every slot producer place `p` was writing. The caller owns the place.
    pub fn clean_producer(&self, p: usize) {
        let mut freed = false;
        for k in 0..self.geometry.slot_count as usize {
            let slot = self.slot(k);
            let s = slot.state.load(Acquire);
            if state::is_writing(s) && state::owner(s) == p {
                freed |= slot.state.compare_exchange(s, 0, SeqCst, Relaxed).is_ok();
            }
        }
        self.producer(p).state.store(PEER_FREE, Release);
        if freed {
            self.notify_freed();
            // A consumer may be waiting on a publication this producer never finished.
            self.notify_published();
        }
    }

    /// Makes consumer place `c` active, receiving from the current tail on.
    pub fn join_consumer(&self, c: usize, pid: u32) {
        let control = self.control();
        let record = self.consumer(c);
        record.pid.store(pid, Relaxed);
        record.received.store(0, Relaxed);
        record.dropped.store(0, Relaxed);
        record.cursor.store(control.tail.load(SeqCst), SeqCst);
        record.state.store(PEER_ACTIVE, SeqCst);
        control.consumers.fetch_or(1 << c, SeqCst);
        // A publication racing with the join may have marked this place for a sequence before the
        // cursor; those bits are stale now.
        self.collect_stale();
    }

    pub fn join_producer(&self, p: usize, pid: u32) {
        let record = self.producer(p);
        record.pid.store(pid, Relaxed);
        record.published.store(0, Relaxed);
        record.state.store(PEER_ACTIVE, Release);
    }

    pub fn notify_published(&self) {
        self.notify(Event::Published);
    }

    pub fn notify_freed(&self) {
        self.notify(Event::Freed);
    }
}

enum Found {
    Slot(usize),
    NotYet,
    /// Lapped: continue from this sequence.
    Overwritten(u64),
}

/// Adds one to a counter only its owner writes: a plain load and store, no locked instruction.
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
}
