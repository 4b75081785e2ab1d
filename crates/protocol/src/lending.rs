//! Zero-copy lending on `shm`: bytes that already lie in a slot one side holds cross to the other
//! side as a reference to that slot, not as a copy.
//!
//! A side can hold a slot of either pool: of the peer's pool (a received buffer, or a view the peer
//! lent it) or of its own (a [`LendableSlot`], or a view lent back to it). Every such hold is
//! registered as a region; sending bytes inside a live region lends it: the hold moves into the
//! `lent` table (counted) and the frame names the slot ([`Wire::Lent`]: in the receiver's pool,
//! [`Wire::Held`]: in the sender's). The receiver's [`LentView`] sends a release when dropped, and
//! the hold goes when its count reaches zero, so a slot is never reused while anyone views it.
//!
//! Releases are u32 codes: the slot index, the pool generation at [`GEN_SHIFT`], and [`OWN_POOL`]
//! set when the slot is in the lender's own pools.

use super::frame::Wire;
use crate::Result;
use shmpool::{Pool, WriteBuf};
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Release code bit: the slot is in the lender's own pool (it was sent as [`Wire::Held`]).
pub(crate) const OWN_POOL: u32 = 1 << 31;
/// Release code: where the generation is (slot indices are below 2^16, `shmpool::MAX_SLOTS`).
pub(crate) const GEN_SHIFT: u32 = 16;

/// The release code of slot `slot` of generation `gen`.
pub(crate) fn release_code(gen: u8, slot: u32) -> u32 {
    (u32::from(gen) << GEN_SHIFT) | (slot & 0xffff)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which pool a held slot is in, seen from the side that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PoolSide {
    Peer,
    Own,
}

/// Anything that keeps a slot from being reused while it lives.
pub(crate) trait Hold: Send + Sync {}
impl<T: Send + Sync> Hold for T {}

struct Region {
    hold: Weak<dyn Hold>,
    side: PoolSide,
    gen: u8,
    slot: u32,
    /// Start of the slot's bytes in this process.
    base: usize,
    /// The held bytes: `start..end`.
    start: usize,
    end: usize,
}

/// A slot lent to the peer: the hold, and how many views of it the peer has.
type Loan = (Arc<dyn Hold>, u32);

/// The lending state of one connection.
pub(crate) struct Lending {
    regions: Mutex<Vec<Region>>,
    lent: Mutex<HashMap<(PoolSide, u32), Loan>>,
    /// Release codes of views this side dropped, to send to the peer.
    pub releases: Arc<Mutex<Vec<u32>>>,
}

impl Lending {
    pub fn new() -> Lending {
        Lending {
            regions: Mutex::new(Vec::new()),
            lent: Mutex::new(HashMap::new()),
            releases: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Remembers that `hold` keeps `bytes`, in slot `slot` (starting at `base`) of generation `gen`
    /// of the `side` pools.
    pub fn register<T: Hold + 'static>(&self, hold: &Arc<T>, at: (PoolSide, u8, u32), base: *const u8, bytes: &[u8]) {
        let (side, gen, slot) = at;
        let hold: Arc<dyn Hold> = hold.clone();
        let mut regions = lock(&self.regions);
        regions.retain(|r| r.hold.strong_count() > 0);
        let start = bytes.as_ptr() as usize;
        regions.push(Region {
            hold: Arc::downgrade(&hold),
            side,
            gen,
            slot,
            base: base as usize,
            start,
            end: start + bytes.len(),
        });
    }

    /// Lends `bytes` if they lie in a region this side holds.
    pub fn lend(&self, bytes: &[u8]) -> Option<Wire<'static>> {
        let (start, end) = (bytes.as_ptr() as usize, bytes.as_ptr() as usize + bytes.len());
        let regions = lock(&self.regions);
        let (region, hold) =
            regions.iter().filter(|r| start >= r.start && end <= r.end).find_map(|r| Some((r, r.hold.upgrade()?)))?;
        let key = (region.side, release_code(region.gen, region.slot));
        lock(&self.lent).entry(key).or_insert_with(|| (hold, 0)).1 += 1;
        let (gen, slot, offset, len) = (region.gen, region.slot, (start - region.base) as u64, bytes.len() as u64);
        Some(match region.side {
            PoolSide::Peer => Wire::Lent { gen, slot, offset, len },
            PoolSide::Own => Wire::Held { gen, slot, offset, len },
        })
    }

    /// The peer dropped views of these lent slots (a release frame's header).
    pub fn released(&self, header: &[u8]) -> Result<()> {
        let mut lent = lock(&self.lent);
        for raw in header.chunks_exact(4) {
            let code = u32::from_le_bytes(raw.try_into().expect("4 bytes"));
            let side = if code & OWN_POOL != 0 { PoolSide::Own } else { PoolSide::Peer };
            let key = (side, code & !OWN_POOL);
            let entry = lent.get_mut(&key).ok_or_else(|| {
                crate::Error::Protocol(format!(
                    "the peer released slot code {:#x} ({side:?}), which was not lent",
                    key.1
                ))
            })?;
            entry.1 -= 1;
            if entry.1 == 0 {
                lent.remove(&key);
            }
        }
        Ok(())
    }

    /// The release codes to send now.
    pub fn take_releases(&self) -> Vec<u32> {
        std::mem::take(&mut *lock(&self.releases))
    }
}

/// Bytes of a slot that the peer holds for this side and sent without a copy: a slot of this
/// side's own pool sent back, or a slot of the peer's pool it keeps. Dropping the view tells the
/// peer to let go.
pub struct LentView {
    pub(crate) _pool: Pool,
    pub(crate) ptr: *const u8,
    pub(crate) len: usize,
    pub(crate) code: u32,
    pub(crate) releases: Arc<Mutex<Vec<u32>>>,
}

// SAFETY: a read-only view of a shared mapping that `_pool` keeps mapped; nothing in it is tied to
// a thread.
unsafe impl Send for LentView {}
// SAFETY: as above; only `&[u8]` is handed out.
unsafe impl Sync for LentView {}

impl Deref for LentView {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` lies in a slot of `_pool`'s mapping (checked by `shm::region`),
        // which the peer keeps from reuse until this view's release reaches it.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for LentView {
    fn drop(&mut self) {
        lock(&self.releases).push(self.code);
    }
}

/// A slot of this side's own pool that is kept, never published: the peer reads it in place each
/// time it is sent (as [`Wire::Held`]), and it returns to the pool when this handle and every view
/// the peer has of it are gone. Fill it before sending; writing while the peer reads is a race.
pub struct LendableSlot {
    inner: Arc<SlotHold>,
}

pub(crate) struct SlotHold {
    _buf: WriteBuf,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the bytes are in a shared mapping kept by `_buf`; only `LendableSlot` (the unique owner
// of `&mut`) writes them.
unsafe impl Send for SlotHold {}
// SAFETY: as above; `SlotHold` itself hands out nothing.
unsafe impl Sync for SlotHold {}

impl LendableSlot {
    /// Wraps a taken slot of generation `gen`; registers it with `lending` as a region of this
    /// side's own pools.
    pub(crate) fn new(gen: u8, mut buf: WriteBuf, len: usize, lending: &Lending) -> LendableSlot {
        let ptr = buf.as_mut_ptr();
        let slot = buf.slot_index() as u32;
        let inner = Arc::new(SlotHold { _buf: buf, ptr, len });
        // SAFETY: `ptr..ptr+len` lies in the slot (`len` <= its capacity, checked by the caller).
        lending.register(&inner, (PoolSide::Own, gen, slot), ptr, unsafe { std::slice::from_raw_parts(ptr, len) });
        LendableSlot { inner }
    }
}

impl Deref for LendableSlot {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` lies in the slot that `_buf` keeps.
        unsafe { std::slice::from_raw_parts(self.inner.ptr, self.inner.len) }
    }
}

impl DerefMut for LendableSlot {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`; `&mut self` is the only way to write, and nothing else in this
        // process reads the slot through another path.
        unsafe { std::slice::from_raw_parts_mut(self.inner.ptr, self.inner.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lends_from_live_holds_only_and_counts_releases() {
        let lending = Lending::new();
        let bytes = vec![0u8; 64];
        let old = Arc::new(1u8);
        let new = Arc::new(2u8);
        lending.register(&old, (PoolSide::Peer, 2, 3), bytes.as_ptr(), &bytes);
        lending.register(&new, (PoolSide::Peer, 2, 3), bytes.as_ptr(), &bytes);
        drop(old); // a stale region of the same slot must not hide the live one
        assert_eq!(lending.lend(&bytes[8..16]), Some(Wire::Lent { gen: 2, slot: 3, offset: 8, len: 8 }));
        assert_eq!(lending.lend(&bytes[..]), Some(Wire::Lent { gen: 2, slot: 3, offset: 0, len: 64 }));
        assert!(lending.lend(&[1, 2, 3]).is_none(), "not in any region");
        assert_eq!(Arc::strong_count(&new), 2, "lent: held once for both views");
        let code = release_code(2, 3);
        assert!(lending.released(&3u32.to_le_bytes()).is_err(), "slot 3 of another generation");
        lending.released(&code.to_le_bytes()).unwrap();
        assert_eq!(Arc::strong_count(&new), 2);
        lending.released(&code.to_le_bytes()).unwrap();
        assert_eq!(Arc::strong_count(&new), 1, "both views released: the hold is gone");
        assert!(lending.released(&code.to_le_bytes()).is_err(), "released more than lent");
        assert!(lending.released(&(code | OWN_POOL).to_le_bytes()).is_err(), "the other pool's slot 3");
    }
}
