//! The bytes of a pool segment: what lies where, and the validation of everything `open` reads.
//!
//! ```text
//! offset 0        Header        magic, layout version, configuration, offsets (written once)
//!                 Control       ring tail, work-queue head, consumer mask, counters, futex words
//!                 consumers[24] one record per consumer place: cursor, counters
//!                 producers[32] one record per producer place
//!                 slots[N]      per-slot state word, sequence, length, timestamp, dtype, shape
//!                 ring[R]       publish log: (sequence, slot) per entry, R = N rounded to 2^k
//!                 user_meta[N]  `meta_bytes` free-form bytes per slot
//! page aligned    data[N]       `slot_size` bytes per slot, each starting on a 4096-byte boundary
//! ```
//!
//! Every field after the header is an atomic: other processes write them concurrently, and a hostile
//! or crashed one may leave anything there, so readers validate what they load (see `exchange`).

use crate::config::{Mode, Overflow};
use crate::sync::{AtomicU32, AtomicU64};
use crate::{Error, Result};
use crossbeam_utils::CachePadded;

/// `SHMPOOL\0` in little-endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMPOOL\0");
/// Bumped whenever the byte layout changes.
pub(crate) const LAYOUT_VERSION: u32 = 3;
/// Data of every slot starts on this boundary.
pub const PAGE: usize = 4096;
/// Most slots a pool may have.
pub const MAX_SLOTS: u32 = 4096;
/// Most consumers attached to one pool at a time.
pub const MAX_CONSUMERS: usize = 24;
/// Most producers attached to one pool at a time.
pub const MAX_PRODUCERS: usize = 32;
/// Most dimensions of a buffer's shape.
pub const MAX_DIMS: usize = 8;
/// Most user-metadata bytes per slot.
pub const MAX_META_BYTES: usize = 64 * 1024;
/// Largest slot.
pub const MAX_SLOT_SIZE: u64 = 1 << 40;

/// Written once by the creator before the segment becomes visible under its name.
#[repr(C)]
pub(crate) struct Header {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub header_size: AtomicU32,
    pub total_size: AtomicU64,
    pub slot_count: AtomicU32,
    pub mode: AtomicU32,
    pub slot_size: AtomicU64,
    pub meta_bytes: AtomicU32,
    pub overflow: AtomicU32,
    pub lease_ns: AtomicU64,
    pub data_offset: AtomicU64,
}

/// The state every operation touches. Hot words sit on their own cache lines.
#[repr(C)]
#[derive(Default)]
pub(crate) struct Control {
    /// Next sequence number to publish (the ring's tail).
    pub tail: CachePadded<AtomicU64>,
    /// Next sequence number a work-queue consumer takes.
    pub wq_head: CachePadded<AtomicU64>,
    /// Bit `c` set: consumer place `c` is active and receives broadcasts.
    pub consumers: CachePadded<AtomicU32>,
    /// Futex word bumped on every publish (and on close) while somebody waits for it.
    pub published_event: CachePadded<AtomicU32>,
    /// Places waiting for `published_event` (see [`waiter_bit`]): bits, not a count, so a dead
    /// waiter's registration is removed exactly, with its place.
    pub published_waiters: AtomicU64,
    /// Futex word bumped whenever a slot becomes free while somebody waits for it.
    pub freed_event: CachePadded<AtomicU32>,
    pub freed_waiters: AtomicU64,
    /// Set once by the creator's `close`.
    pub closed: CachePadded<AtomicU32>,
    /// Buffers published, and buffers reclaimed before every consumer saw them.
    pub published: CachePadded<AtomicU64>,
    pub dropped: AtomicU64,
    /// `FUTEX_WAKE` system calls made by notifiers (what waiting costs the other side).
    pub wakes: AtomicU64,
    /// Set by `persist()`: the pool outlives its creator, which is then not needed alive.
    pub persistent: AtomicU32,
    /// The slot freed most recently, which producers try first: its bytes are likely still in
    /// cache. Only a hint (the slot states are the truth), so a stale, torn or hostile value costs
    /// one failed compare-and-swap, and a crash between freeing and hinting loses nothing.
    pub warm: CachePadded<AtomicU32>,
    /// Places spinning before they sleep (bits as in [`waiter_bit`], cleaned with the place): at
    /// most one fewer than the CPUs, so spinners never keep the peer they wait for off a CPU.
    pub spinners: CachePadded<AtomicU64>,
    /// Spins refused because that many places were spinning already.
    pub spin_refused: AtomicU64,
}

/// The bit of a place in an event's waiter mask: consumers 0..24, producers 24..56.
pub(crate) fn waiter_bit(producer: bool, index: usize) -> u64 {
    1 << (if producer { MAX_CONSUMERS + index } else { index })
}

/// One consumer place.
#[repr(C)]
#[derive(Default)]
pub(crate) struct ConsumerRecord {
    pub state: AtomicU32,
    pub pid: AtomicU32,
    /// Next sequence number this consumer expects (broadcast).
    pub cursor: CachePadded<AtomicU64>,
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    /// Events this place waits for (`WAIT_*` bits), mirrored in the control block's masks.
    pub waiting: AtomicU32,
}

/// One producer place.
#[repr(C)]
#[derive(Default)]
pub(crate) struct ProducerRecord {
    pub state: AtomicU32,
    pub pid: AtomicU32,
    pub published: AtomicU64,
    /// Events this place waits for (`WAIT_*` bits), mirrored in the control block's masks.
    pub waiting: AtomicU32,
}

/// A record's `state`.
pub(crate) const PEER_FREE: u32 = 0;
pub(crate) const PEER_ACTIVE: u32 = 1;

/// A record's `waiting` bits.
pub(crate) const WAIT_PUBLISHED: u32 = 1;
pub(crate) const WAIT_FREED: u32 = 2;
/// The place's readiness handle is armed for the event (see `pool::readiness`); a notifier takes
/// the bit away when it writes the handle's byte.
pub(crate) const WAIT_PUBLISHED_FD: u32 = 4;
pub(crate) const WAIT_FREED_FD: u32 = 8;

/// Metadata of one slot, on cache lines of its own so that a producer filling one slot never
/// contends with a consumer reading its neighbour.
#[repr(C, align(128))]
#[derive(Default)]
pub(crate) struct SlotHeader {
    /// See [`crate::pool::slot_state`].
    pub state: AtomicU64,
    pub seq: AtomicU64,
    pub len: AtomicU64,
    pub timestamp: AtomicU64,
    pub dtype: AtomicU32,
    pub ndim: AtomicU32,
    pub shape: [AtomicU64; MAX_DIMS],
    pub meta_len: AtomicU32,
}

/// The validated shape of a segment: every offset and size, computed from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub slot_count: u32,
    pub slot_size: u64,
    pub meta_bytes: u32,
    pub mode: Mode,
    pub overflow: Overflow,
    pub lease_ns: u64,
    pub ring_len: u32,
    pub control: usize,
    pub consumers: usize,
    pub producers: usize,
    pub slots: usize,
    pub ring: usize,
    pub user_meta: usize,
    pub meta_stride: usize,
    pub data: usize,
    pub total: u64,
}

fn align(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

impl Geometry {
    /// Lays out a segment for these parameters, or says which one is out of range.
    pub fn compute(
        slot_count: u32,
        slot_size: u64,
        meta_bytes: u32,
        mode: Mode,
        overflow: Overflow,
        lease_ns: u64,
    ) -> Result<Geometry> {
        if slot_count == 0 || slot_count > MAX_SLOTS {
            return Err(Error::invalid(format!("slots must be 1..={MAX_SLOTS}, not {slot_count}")));
        }
        if slot_size == 0 || slot_size > MAX_SLOT_SIZE {
            return Err(Error::invalid(format!("slot size must be 1..={MAX_SLOT_SIZE} bytes, not {slot_size}")));
        }
        if meta_bytes as usize > MAX_META_BYTES {
            return Err(Error::invalid(format!("meta_bytes must be at most {MAX_META_BYTES}, not {meta_bytes}")));
        }
        let slot_size = (slot_size as usize).div_ceil(PAGE) as u64 * PAGE as u64;
        let n = slot_count as usize;
        let ring_len = slot_count.next_power_of_two();
        let control = align(size_of::<Header>(), 128);
        let consumers = align(control + size_of::<Control>(), 128);
        let producers = align(consumers + MAX_CONSUMERS * size_of::<ConsumerRecord>(), 128);
        let slots = align(producers + MAX_PRODUCERS * size_of::<ProducerRecord>(), 128);
        let slot_stride = size_of::<SlotHeader>();
        let ring = align(slots + n * slot_stride, 128);
        let user_meta = align(ring + ring_len as usize * 8, 128);
        let meta_stride = align(meta_bytes as usize, 8);
        let data = align(user_meta + n * meta_stride, PAGE);
        let total = (data as u64)
            .checked_add(slot_size.checked_mul(n as u64).ok_or_else(|| Error::invalid("pool too large"))?)
            .ok_or_else(|| Error::invalid("pool too large"))?;
        if total > isize::MAX as u64 {
            return Err(Error::invalid("pool too large for this address space"));
        }
        Ok(Geometry {
            slot_count,
            slot_size,
            meta_bytes,
            mode,
            overflow,
            lease_ns,
            ring_len,
            control,
            consumers,
            producers,
            slots,
            ring,
            user_meta,
            meta_stride,
            data,
            total,
        })
    }

    /// Fills a zeroed header for this geometry.
    pub fn write_header(&self, header: &Header) {
        use crate::sync::Ordering::Relaxed;
        header.version.store(LAYOUT_VERSION, Relaxed);
        header.header_size.store(size_of::<Header>() as u32, Relaxed);
        header.total_size.store(self.total, Relaxed);
        header.slot_count.store(self.slot_count, Relaxed);
        header.mode.store(self.mode.code(), Relaxed);
        header.slot_size.store(self.slot_size, Relaxed);
        header.meta_bytes.store(self.meta_bytes, Relaxed);
        header.overflow.store(self.overflow.code(), Relaxed);
        header.lease_ns.store(self.lease_ns, Relaxed);
        header.data_offset.store(self.data as u64, Relaxed);
        // The magic goes last: a reader that sees it sees a complete header.
        header.magic.store(MAGIC, crate::sync::Ordering::Release);
    }

    /// Reads and validates a header from a segment of `file_size` bytes.
    pub fn read_header(header: &Header, file_size: u64) -> Result<Geometry> {
        use crate::sync::Ordering::{Acquire, Relaxed};
        let magic = header.magic.load(Acquire);
        if magic != MAGIC {
            return Err(Error::corrupted(format!("bad magic {magic:#018x}: not a shmpool segment")));
        }
        let version = header.version.load(Relaxed);
        if version != LAYOUT_VERSION {
            return Err(Error::corrupted(format!(
                "layout version {version}, this library reads version {LAYOUT_VERSION}"
            )));
        }
        let header_size = header.header_size.load(Relaxed);
        if header_size as usize != size_of::<Header>() {
            return Err(Error::corrupted(format!("header size {header_size}")));
        }
        let mode = header.mode.load(Relaxed);
        let mode = Mode::from_code(mode).ok_or_else(|| Error::corrupted(format!("unknown mode {mode}")))?;
        let overflow = header.overflow.load(Relaxed);
        let overflow = Overflow::from_code(overflow)
            .ok_or_else(|| Error::corrupted(format!("unknown overflow policy {overflow}")))?;
        let slot_size = header.slot_size.load(Relaxed);
        if slot_size % PAGE as u64 != 0 {
            return Err(Error::corrupted(format!("slot size {slot_size} is not page aligned")));
        }
        let lease_ns = header.lease_ns.load(Relaxed);
        let geometry = Geometry::compute(
            header.slot_count.load(Relaxed),
            slot_size,
            header.meta_bytes.load(Relaxed),
            mode,
            overflow,
            lease_ns,
        )
        .map_err(|e| Error::corrupted(format!("header: {e}")))?;
        let total = header.total_size.load(Relaxed);
        let data = header.data_offset.load(Relaxed);
        if total != geometry.total || data != geometry.data as u64 {
            return Err(Error::corrupted(format!(
                "header says {total} bytes with data at {data}, its configuration needs {} with data at {}",
                geometry.total, geometry.data
            )));
        }
        if file_size < total {
            return Err(Error::corrupted(format!("segment is {file_size} bytes, header needs {total}")));
        }
        if lease_ns == 0 {
            return Err(Error::corrupted("lease of 0 ns"));
        }
        Ok(geometry)
    }
}

/// Encoding of a publish-ring entry: 48 bits of sequence number and 16 bits of slot index.
pub(crate) mod ring_entry {
    pub const SEQ_BITS: u32 = 48;
    pub const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
    /// Slot index of an entry that holds no slot yet.
    pub const NO_SLOT: u64 = 0xFFFF;

    pub fn pack(seq: u64, slot: u64) -> u64 {
        ((seq & SEQ_MASK) << 16) | (slot & 0xFFFF)
    }
    /// The entry at position `pos` of a fresh ring of `len` entries: "sequence `pos - len`, no slot".
    pub fn initial(pos: u64, len: u64) -> u64 {
        pack(pos.wrapping_sub(len), NO_SLOT)
    }
    pub fn seq_matches(entry: u64, seq: u64) -> bool {
        entry >> 16 == seq & SEQ_MASK
    }
    pub fn slot(entry: u64) -> u64 {
        entry & 0xFFFF
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_data_is_page_aligned() {
        let g = Geometry::compute(3, 5000, 256, Mode::Broadcast, Overflow::Block, 1).unwrap();
        assert_eq!(g.slot_size, 8192);
        assert_eq!(g.data % PAGE, 0);
        assert_eq!(g.ring_len, 4);
        assert_eq!(g.total, g.data as u64 + 3 * 8192);
    }

    #[test]
    fn out_of_range_configurations_are_refused() {
        let c = |n, s, m| Geometry::compute(n, s, m, Mode::Broadcast, Overflow::Block, 1);
        assert!(c(0, 4096, 0).is_err());
        assert!(c(MAX_SLOTS + 1, 4096, 0).is_err());
        assert!(c(1, 0, 0).is_err());
        assert!(c(1, MAX_SLOT_SIZE + 1, 0).is_err());
        assert!(c(1, 4096, MAX_META_BYTES as u32 + 1).is_err());
    }

    #[test]
    fn ring_entries_round_trip() {
        let e = ring_entry::pack(123_456_789, 42);
        assert!(ring_entry::seq_matches(e, 123_456_789));
        assert!(!ring_entry::seq_matches(e, 123_456_790));
        assert_eq!(ring_entry::slot(e), 42);
        assert!(ring_entry::seq_matches(ring_entry::initial(1, 4), 1u64.wrapping_sub(4)));
    }
}
