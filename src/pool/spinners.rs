//! Who spins: at most one place fewer than the CPUs spins at once, so that a spinner never keeps
//! the peer it waits for off a CPU; a place refused sleeps at once.
//!
//! Spinners are bits in a mask in the control block (one per place, as for waiters), set by a
//! compare-and-swap that checks the count, and cleared with the place: a spinner killed while
//! spinning stops counting when its place is cleaned, whatever instruction it died at. Threads of
//! one process sharing a place spin one at a time.

use super::exchange::View;
use super::layout::{waiter_bit, MAX_CONSUMERS, MAX_PRODUCERS};
use super::{Place, Role};
use crate::signaler::spin_limit;
use crate::sync::Ordering::*;

/// The mask bits that name a place (anything else in the word is garbage from a hostile writer
/// and is not counted).
const PLACES: u64 = (1 << (MAX_CONSUMERS + MAX_PRODUCERS)) - 1;

impl View {
    /// Marks place bit `bit` as spinning if fewer than `limit` places spin and it does not
    /// already. Counts a refusal otherwise.
    fn start_spinning(&self, bit: u64, limit: usize) -> bool {
        let control = self.control();
        let mut mask = control.spinners.load(Relaxed);
        loop {
            if mask & bit != 0 || (mask & PLACES).count_ones() as usize >= limit {
                control.spin_refused.fetch_add(1, Relaxed);
                return false;
            }
            match control.spinners.compare_exchange_weak(mask, mask | bit, AcqRel, Relaxed) {
                Ok(_) => return true,
                Err(actual) => mask = actual,
            }
        }
    }

    fn stop_spinning(&self, bit: u64) {
        self.control().spinners.fetch_and(!bit, Release);
    }

    /// How many places spin now.
    pub(crate) fn spinner_count(&self) -> u32 {
        (self.control().spinners.load(Relaxed) & PLACES).count_ones()
    }
}

/// The right to spin, held while spinning; dropping it lets another place spin.
pub(crate) struct SpinTicket<'a> {
    view: &'a View,
    bit: u64,
}

impl Place {
    /// A ticket to spin, if fewer places than [`spin_limit`] spin.
    pub(crate) fn admit_spinner(&self) -> Option<SpinTicket<'_>> {
        let view = &self.pool.view;
        let bit = waiter_bit(self.role == Role::Producer, self.index);
        view.start_spinning(bit, spin_limit()).then_some(SpinTicket { view, bit })
    }
}

impl Drop for SpinTicket<'_> {
    fn drop(&mut self) {
        self.view.stop_spinning(self.bit);
    }
}
