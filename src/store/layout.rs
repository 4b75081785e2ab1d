//! The store's table file: a header, then one fixed-size entry per variable. Every field is an
//! atomic, because every process of the job maps the table read/write and any of them may be
//! buggy or malicious: what is read here is checked before it is used (see `var.rs`).
//!
//! An entry holds the declaration (name, kind, dtype, declared dims, capacity, number of version
//! buffers), the `latest` word (version number and buffer index, published last) and, per version
//! buffer, its version number, shape and a bit mask of the reader places holding it.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};

/// "SHMPSTOR", little endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMPSTOR");
/// Bumped whenever the table's layout changes.
pub(crate) const LAYOUT_VERSION: u32 = 2;

/// Variables per store.
pub const MAX_VARS: usize = 64;
/// Open store handles per store (the holders masks are 64 bits wide).
pub const MAX_PLACES: usize = 64;
/// Most version buffers per variable.
pub const MAX_VERSIONS: usize = 8;
/// Fewest version buffers per variable: the latest, one a reader may still hold, one to fill.
pub const MIN_VERSIONS: usize = 3;
/// Longest variable name, in bytes.
pub const MAX_NAME: usize = 63;
/// Dimensions of an array variable.
pub use crate::pool::layout::MAX_DIMS;
/// Largest capacity of a variable, in bytes (a sanity bound on what the table may claim).
pub const MAX_CAPACITY: u64 = 1 << 40;

/// Entry states.
pub(crate) const FREE: u32 = 0;
pub(crate) const READY: u32 = 2;

/// Lock bytes of the table file (OFD locks, see `liveness`): byte 0 is the attach lock (shared,
/// held by every open handle), then the declaration lock, the reader places, the writer locks.
pub(crate) const DECLARE_BYTE: u64 = 1;
pub(crate) fn place_byte(place: usize) -> u64 {
    2 + place as u64
}
pub(crate) fn writer_byte(var: usize) -> u64 {
    2 + MAX_PLACES as u64 + var as u64
}

#[repr(C)]
pub(crate) struct Header {
    pub magic: AtomicU64,
    pub layout: AtomicU32,
    pub max_vars: AtomicU32,
    pub max_versions: AtomicU32,
    pub entry_size: AtomicU32,
    /// Bumped (futex) whenever a variable is declared.
    pub declared: AtomicU32,
    _pad: AtomicU32,
    /// Bit `p`: reader place `p` waits for a declaration (see `wait.rs`).
    pub declared_waiters: AtomicU64,
    _reserved: [AtomicU64; 3],
}

/// One version buffer's state.
#[repr(C)]
pub(crate) struct Slot {
    /// Version held (0: none, being filled or reclaimed).
    pub seq: AtomicU64,
    /// Bit `p`: reader place `p` holds this buffer.
    pub holders: AtomicU64,
    /// Payload length in bytes.
    pub len: AtomicU64,
    pub ndims: AtomicU32,
    _pad: AtomicU32,
    pub shape: [AtomicU64; MAX_DIMS],
}

#[repr(C)]
pub(crate) struct Entry {
    pub state: AtomicU32,
    /// Bumped by every declaration of this entry, part of the data file's name.
    pub generation: AtomicU32,
    pub kind: AtomicU32,
    pub dtype: AtomicU32,
    pub ndims: AtomicU32,
    pub versions: AtomicU32,
    pub name_len: AtomicU32,
    _pad: AtomicU32,
    pub name: [AtomicU64; (MAX_NAME + 1) / 8],
    pub dims: [AtomicI64; MAX_DIMS],
    pub capacity: AtomicU64,
    /// `version << 8 | buffer` of the latest published version; 0 before the first.
    pub latest: AtomicU64,
    /// Bumped (futex) on every publication.
    pub published: AtomicU32,
    /// Bumped (futex) when a reader lets go of a buffer (a writer may be waiting for one).
    pub freed: AtomicU32,
    /// Bit `p`: reader place `p` waits for a publication (see `wait.rs`).
    pub published_waiters: AtomicU64,
    /// Bit `p`: reader place `p` (a writer) waits for a freed buffer.
    pub freed_waiters: AtomicU64,
    pub slots: [Slot; MAX_VERSIONS],
}

pub(crate) const TABLE_BYTES: usize = size_of::<Header>() + MAX_VARS * size_of::<Entry>();

/// Packs a version number and a buffer index into a `latest` word.
pub(crate) fn encode_latest(version: u64, slot: usize) -> u64 {
    (version << 8) | slot as u64
}

/// Unpacks a `latest` word: (version, buffer index).
pub(crate) fn decode_latest(word: u64) -> (u64, usize) {
    (word >> 8, (word & 0xff) as usize)
}

/// Writes `name` into an entry's name words (zero padded).
pub(crate) fn store_name(entry: &Entry, name: &str) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut bytes = [0u8; MAX_NAME + 1];
    bytes[..name.len()].copy_from_slice(name.as_bytes());
    for (word, chunk) in entry.name.iter().zip(bytes.chunks_exact(8)) {
        word.store(u64::from_le_bytes(chunk.try_into().expect("8 bytes")), Relaxed);
    }
    entry.name_len.store(name.len() as u32, Relaxed);
}

/// Reads an entry's name; `None` if its length or bytes are not a valid name.
pub(crate) fn load_name(entry: &Entry) -> Option<String> {
    use std::sync::atomic::Ordering::Relaxed;
    let len = entry.name_len.load(Relaxed) as usize;
    if len > MAX_NAME {
        return None;
    }
    let mut bytes = [0u8; MAX_NAME + 1];
    for (word, chunk) in entry.name.iter().zip(bytes.chunks_exact_mut(8)) {
        chunk.copy_from_slice(&word.load(Relaxed).to_le_bytes());
    }
    let name = std::str::from_utf8(&bytes[..len]).ok()?;
    super::decl::check_name(name).ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_words_round_trip() {
        assert_eq!(decode_latest(encode_latest(12345, 7)), (12345, 7));
        assert_eq!(decode_latest(0), (0, 0));
    }

    // The table stays small, and entries start 8-aligned after the header.
    const _: () = assert!(TABLE_BYTES < 256 << 10 && size_of::<Header>() == 64);
}
