//! [`ConnStats`]: what a connection sent where, so that a buffer that missed shared memory is
//! visible, not silent.

use super::handshake::Options;
use shmpool::SetStats;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of one side of a connection ([`Connection::stats`](crate::Connection::stats)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnStats {
    /// Buffers sent through the pools (copied into a slot, a slot filled in place, or lent).
    pub shm_buffers: u64,
    pub shm_bytes: u64,
    /// Buffers sent on the socket: small ones (under the inline threshold, or no pools)...
    pub socket_buffers: u64,
    pub socket_bytes: u64,
    /// ...and, on `shm`, large ones that found no slot: larger than the maximum slot size, or
    /// every slot held with the pools' budget spent (included in `socket_*` too).
    pub spilled_buffers: u64,
    pub spilled_bytes: u64,
    /// The sending pools now: their generation, slot size and slots (0 without pools).
    pub generation: u8,
    pub slot_size: u64,
    pub slots: u32,
    /// The negotiated maximum slot size.
    pub max_slot_size: u64,
    /// Pools created after the first, and bytes of the live ones.
    pub pools_grown: u64,
    pub pool_bytes: u64,
    /// Slots of this side's pools not free: being filled, on their way, or held by either side.
    pub slots_in_use: u32,
}

/// The running counts behind [`ConnStats`].
#[derive(Default)]
pub(crate) struct Counters {
    shm: [AtomicU64; 2],
    socket: [AtomicU64; 2],
    spilled: [AtomicU64; 2],
}

fn add(pair: &[AtomicU64; 2], len: usize) {
    pair[0].fetch_add(1, Relaxed);
    pair[1].fetch_add(len as u64, Relaxed);
}

impl Counters {
    pub fn shm(&self, len: usize) {
        add(&self.shm, len);
    }

    /// A buffer on the socket; `spilled`: it should have gone through the pools.
    pub fn socket(&self, len: usize, spilled: bool) {
        add(&self.socket, len);
        if spilled {
            add(&self.spilled, len);
        }
    }

    pub fn snapshot(&self, options: &Options, pools: Option<SetStats>) -> ConnStats {
        let get = |pair: &[AtomicU64; 2]| (pair[0].load(Relaxed), pair[1].load(Relaxed));
        let ((shm_buffers, shm_bytes), (socket_buffers, socket_bytes), (spilled_buffers, spilled_bytes)) =
            (get(&self.shm), get(&self.socket), get(&self.spilled));
        let none = SetStats { generation: 0, slot_size: 0, slots: 0, live: 0, bytes: 0, grown: 0, in_use: 0 };
        let pools = pools.unwrap_or(none);
        ConnStats {
            shm_buffers,
            shm_bytes,
            socket_buffers,
            socket_bytes,
            spilled_buffers,
            spilled_bytes,
            generation: pools.generation,
            slot_size: pools.slot_size as u64,
            slots: pools.slots,
            max_slot_size: options.max_slot_size,
            pools_grown: pools.grown,
            pool_bytes: pools.bytes,
            slots_in_use: pools.in_use,
        }
    }
}
