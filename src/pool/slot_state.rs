//! The 64-bit state word of a slot: who holds it and why, changed only by atomic operations.
//!
//! ```text
//! bit 63 set:   WRITING   bits 0..8 = producer place that owns it
//! bit 63 clear: bits 0..25  pending: bit 0 = the work-queue token, bit 1+c = consumer c must still
//!                           receive it (broadcast)
//!               bits 25..49 reading: bit 25+c = consumer c holds it
//!               bits 49..63 tag: the low bits of the publish sequence, so a compare-and-swap
//!                           prepared against one publication cannot succeed on a later one
//! FREE:         bit 63 clear and no pending or reading bit (the tag is then meaningless)
//! ```
//!
//! A slot whose last holder leaves is free by that same atomic operation: there is no separate
//! "free it" step that a crash could skip.
//!
//! ```
//! # use shmpool::__private::slot_state::*;
//! let published = published(consumer_bit(0) | consumer_bit(3), 7);
//! assert!(!is_free(published));
//! let claimed = claim(published, consumer_bit(0), reading_bit(0));
//! assert_eq!(reading(claimed), reading_bit(0));
//! ```

use crate::pool::layout::MAX_CONSUMERS;

pub const WRITING: u64 = 1 << 63;
pub const OWNER_MASK: u64 = 0xFF;
pub const WQ_TOKEN: u64 = 1;
pub const PENDING_MASK: u64 = (1 << (1 + MAX_CONSUMERS)) - 1;
pub const READING_SHIFT: u32 = 1 + MAX_CONSUMERS as u32;
pub const READING_MASK: u64 = ((1 << MAX_CONSUMERS) - 1) << READING_SHIFT;
pub const TAG_SHIFT: u32 = READING_SHIFT + MAX_CONSUMERS as u32;
pub const TAG_MASK: u64 = !(PENDING_MASK | READING_MASK | WRITING);
const HOLDERS: u64 = PENDING_MASK | READING_MASK;

/// The pending bit of consumer place `c`.
pub const fn consumer_bit(c: usize) -> u64 {
    1 << (1 + c)
}

/// The reading bit of consumer place `c`.
pub const fn reading_bit(c: usize) -> u64 {
    1 << (READING_SHIFT as usize + c)
}

/// The state of a slot owned by producer place `owner`.
pub const fn writing(owner: usize) -> u64 {
    WRITING | owner as u64
}

/// The state of a slot just published at `seq` for the holders in `pending`.
pub const fn published(pending: u64, seq: u64) -> u64 {
    (pending & PENDING_MASK) | ((seq << TAG_SHIFT) & TAG_MASK)
}

pub const fn is_free(state: u64) -> bool {
    state & (WRITING | HOLDERS) == 0
}

pub const fn is_writing(state: u64) -> bool {
    state & WRITING != 0
}

/// The producer place of a WRITING state.
pub const fn owner(state: u64) -> usize {
    (state & OWNER_MASK) as usize
}

pub const fn pending(state: u64) -> u64 {
    state & PENDING_MASK
}

pub const fn reading(state: u64) -> u64 {
    state & READING_MASK
}

/// Whether the tag of a published state matches `seq`.
pub const fn tag_matches(state: u64, seq: u64) -> bool {
    state & TAG_MASK == (seq << TAG_SHIFT) & TAG_MASK
}

/// `state` with the pending bit `from` moved to the reading bit `to`.
pub const fn claim(state: u64, from: u64, to: u64) -> u64 {
    (state & !from) | to
}

/// `state` without any bit of consumer place `c`.
pub const fn without_consumer(state: u64, c: usize) -> u64 {
    state & !(consumer_bit(c) | reading_bit(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_overlap() {
        assert_eq!(PENDING_MASK & READING_MASK, 0);
        assert_eq!((PENDING_MASK | READING_MASK) & TAG_MASK, 0);
        assert_eq!(PENDING_MASK | READING_MASK | TAG_MASK | WRITING, u64::MAX);
        assert!(TAG_MASK.count_ones() >= 12);
        for c in 0..MAX_CONSUMERS {
            assert_eq!(consumer_bit(c) & !PENDING_MASK, 0);
            assert_eq!(reading_bit(c) & !READING_MASK, 0);
            assert_ne!(consumer_bit(c), WQ_TOKEN);
        }
    }

    #[test]
    fn a_slot_is_free_when_its_last_holder_leaves() {
        let s = published(consumer_bit(2), 99);
        assert!(!is_free(s));
        let s = claim(s, consumer_bit(2), reading_bit(2));
        assert!(!is_free(s));
        assert!(is_free(s & !reading_bit(2)));
        assert!(tag_matches(s, 99));
        assert!(!tag_matches(s, 100));
    }

    #[test]
    fn writing_carries_the_owner() {
        let s = writing(31);
        assert!(is_writing(s));
        assert!(!is_free(s));
        assert_eq!(owner(s), 31);
    }
}
