//! Slots lent to GStreamer as memory, and taken back when such a buffer reaches the sink.
//!
//! [`Leases::lend`] wraps a slot being written ([`shmpool::WriteBuf`]) in a `gst::Memory` whose
//! bytes are the slot itself, so upstream elements write the frame straight into shared memory.
//! When the buffer arrives at `shmpoolsink`, [`Leases::reclaim`] recognises the memory by its
//! address and hands the `WriteBuf` back for publishing, with no copy. A memory that is freed
//! without reaching the sink drops its `WriteBuf`, which returns the slot to the pool.

use shmpool::{Pool, WriteBuf};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// One lent slot: its `WriteBuf` until the sink publishes it.
struct Lease {
    buf: Mutex<Option<WriteBuf>>,
}

/// The slots of one producer currently lent out as memory, by the address of their bytes.
#[derive(Default)]
pub struct Leases {
    by_addr: Mutex<HashMap<usize, Arc<Lease>>>,
}

impl Leases {
    /// Wraps the slot `buf` of `pool` as a writable memory of the slot's whole capacity.
    pub fn lend(self: &Arc<Self>, pool: &Pool, mut buf: WriteBuf) -> gst::Memory {
        let bytes: &mut [u8] = &mut buf;
        let (data, len) = (bytes.as_mut_ptr(), bytes.len());
        let lease = Arc::new(Lease { buf: Mutex::new(Some(buf)) });
        self.by_addr.lock().unwrap_or_else(PoisonError::into_inner).insert(data as usize, lease.clone());
        gst::Memory::from_mut_slice(SlotMemory { lease, leases: self.clone(), _pool: pool.clone(), data, len })
    }

    /// The slot that `buffer`'s only memory wraps, if it is one of ours not yet published.
    pub fn reclaim(&self, buffer: &gst::BufferRef) -> Option<WriteBuf> {
        if buffer.n_memory() != 1 {
            return None;
        }
        let addr = buffer.map_readable().ok()?.as_ptr() as usize;
        let lease = self.by_addr.lock().unwrap_or_else(PoisonError::into_inner).get(&addr).cloned()?;
        let buf = lease.buf.lock().unwrap_or_else(PoisonError::into_inner).take();
        buf.filter(|b| buffer.size() <= b.capacity())
    }

    /// How many slots are lent out now.
    #[cfg(test)]
    pub fn outstanding(&self) -> usize {
        self.by_addr.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// The owner GStreamer keeps inside a lent memory.
struct SlotMemory {
    lease: Arc<Lease>,
    leases: Arc<Leases>,
    /// Keeps the mapping that `data` points into alive.
    _pool: Pool,
    data: *mut u8,
    len: usize,
}

// SAFETY: `data` points into the pool's shared mapping, which is valid from any thread as long as
// `_pool` lives; every other field is Send.
unsafe impl Send for SlotMemory {}

impl AsRef<[u8]> for SlotMemory {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `data..data+len` is one slot inside the mapping kept alive by `_pool`; any byte
        // pattern is a valid u8.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

impl AsMut<[u8]> for SlotMemory {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_ref`; the slot was taken for writing when lent, and GStreamer only
        // writes a memory it holds the sole writable reference to.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }
}

impl Drop for SlotMemory {
    fn drop(&mut self) {
        let mut by_addr = self.leases.by_addr.lock().unwrap_or_else(PoisonError::into_inner);
        // The address may already belong to a newer lease of the same slot: only remove our own.
        if by_addr.get(&(self.data as usize)).is_some_and(|l| Arc::ptr_eq(l, &self.lease)) {
            by_addr.remove(&(self.data as usize));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmpool::Config;

    fn pool(name: &str) -> (Pool, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("gstshmpool-lease-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        (Pool::create(name, &Config::new(2, 4096).directory(&dir)).unwrap(), dir)
    }

    #[test]
    fn a_lent_slot_is_reclaimed_once_and_freed_with_its_memory() {
        gst::init().unwrap();
        let (pool, dir) = pool("reclaim");
        let producer = pool.producer().unwrap();
        let leases = Arc::new(Leases::default());
        let mut buffer = gst::Buffer::new();
        buffer.get_mut().unwrap().append_memory(leases.lend(&pool, producer.try_acquire().unwrap().unwrap()));
        buffer.get_mut().unwrap().set_size(100);
        assert_eq!(pool.stats().writing, 1);
        let buf = leases.reclaim(&buffer).expect("our slot");
        assert!(leases.reclaim(&buffer).is_none(), "reclaimed twice");
        drop(buf);
        drop(buffer);
        assert_eq!((leases.outstanding(), pool.stats().free), (0, 2));
        let foreign = gst::Buffer::from_slice(vec![0u8; 100]);
        assert!(leases.reclaim(&foreign).is_none());
        drop(pool);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dropping_an_unpublished_memory_returns_the_slot() {
        gst::init().unwrap();
        let (pool, dir) = pool("drop");
        let leases = Arc::new(Leases::default());
        let memory = leases.lend(&pool, pool.producer().unwrap().try_acquire().unwrap().unwrap());
        assert_eq!(pool.stats().free, 1);
        drop(memory);
        assert_eq!((leases.outstanding(), pool.stats().free), (0, 2));
        drop(pool);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
