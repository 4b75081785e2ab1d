//! Receive buffers for inline data, kept across messages.
//!
//! A large inline buffer is allocated once at its declared length (checked against the negotiated
//! limit before), never grown by doubling. When the message is dropped its memory comes back here,
//! so the next large message lands in pages already mapped: no fresh `mmap` and page fault per
//! page on every message, which is what made the socket path slow past glibc's mmap threshold.

use std::ops::Deref;
use std::sync::{Arc, Mutex, Weak};

/// Buffers smaller than this are left to the allocator (it recycles them well).
const MIN_KEPT: usize = 1 << 20;
/// How many buffers a connection keeps (the messages of a request/reply loop need a couple).
const KEEP: usize = 4;

/// The spare receive buffers of one connection.
#[derive(Default)]
pub(crate) struct Recycler {
    spare: Mutex<Vec<Vec<u8>>>,
}

impl Recycler {
    /// A buffer of exactly `len` bytes: a spare one if one is large enough (its contents are stale
    /// and will be overwritten), else a fresh one.
    pub fn take(&self, len: usize) -> Vec<u8> {
        if len >= MIN_KEPT {
            let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
            // The smallest spare that fits, so large ones stay for large messages.
            let best = (0..spare.len()).filter(|&i| spare[i].capacity() >= len).min_by_key(|&i| spare[i].capacity());
            if let Some(i) = best {
                let mut v = spare.swap_remove(i);
                // Within the capacity: no reallocation; only bytes never used before are zeroed.
                v.resize(len, 0);
                return v;
            }
        }
        vec![0; len]
    }

    fn give(&self, v: Vec<u8>) {
        if v.capacity() < MIN_KEPT {
            return;
        }
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        spare.push(v);
        if spare.len() > KEEP {
            // Keep the largest ones.
            let smallest = (0..spare.len()).min_by_key(|&i| spare[i].capacity()).expect("not empty");
            spare.swap_remove(smallest);
        }
    }
}

/// Inline bytes of a received message; their memory returns to the connection when dropped.
pub struct InlineBuf {
    data: Vec<u8>,
    home: Weak<Recycler>,
}

impl InlineBuf {
    pub(crate) fn new(data: Vec<u8>, home: &Arc<Recycler>) -> InlineBuf {
        InlineBuf { data, home: Arc::downgrade(home) }
    }
}

impl Deref for InlineBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for InlineBuf {
    fn drop(&mut self) {
        if let Some(home) = self.home.upgrade() {
            home.give(std::mem::take(&mut self.data));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_come_back_and_are_reused_without_reallocation() {
        let r = Arc::new(Recycler::default());
        let first = InlineBuf::new(r.take(3 << 20), &r);
        let ptr = first.as_ptr();
        drop(first);
        let again = r.take(2 << 20);
        assert_eq!((again.as_ptr(), again.len()), (ptr, 2 << 20), "the same memory, sized exactly");
        InlineBuf::new(again, &r);
        let larger = r.take(4 << 20);
        assert_ne!(larger.as_ptr(), ptr, "too small for 4 MiB: a fresh buffer");
        let small = InlineBuf::new(r.take(1000), &r);
        drop(small);
        assert!(r.spare.lock().unwrap().iter().all(|v| v.capacity() >= MIN_KEPT), "small ones are not kept");
        for _ in 0..10 {
            InlineBuf::new(vec![0; MIN_KEPT], &r);
        }
        assert_eq!(r.spare.lock().unwrap().len(), KEEP);
    }
}
