//! The steady-state path acquire → publish → recv → release allocates nothing and copies nothing.

mod common;

use common::TempDir;
use shmpool::{Config, Mode, Pool};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts the allocations of each thread (tests run in parallel threads).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // try_with: the thread-local may be gone while a thread shuts down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn round_trip(mode: Mode) {
    let dir = TempDir::new(&format!("alloc-{mode:?}"));
    let pool = Pool::create("hot", &Config::new(4, 1 << 20).directory(dir.path()).mode(mode)).unwrap();
    let mut consumers = [pool.consumer().unwrap(), pool.consumer().unwrap()];
    let producer = pool.producer().unwrap();
    let step = |consumers: &mut [shmpool::Consumer; 2], i: u64| {
        let mut buf = producer.try_acquire().unwrap().unwrap();
        buf[..8].copy_from_slice(&i.to_le_bytes());
        buf.set_shape(&[1 << 20]).unwrap();
        buf.set_user_meta(b"caps").unwrap();
        buf.publish().unwrap();
        for consumer in consumers.iter_mut() {
            if let Some(got) = consumer.try_recv().unwrap() {
                assert_eq!(got[..8], i.to_le_bytes());
                assert_eq!(got.user_meta(), b"caps");
            }
        }
    };
    for i in 0..100 {
        step(&mut consumers, i); // warm up (thread-locals, lazily initialised statics)
    }
    let before = allocations();
    for i in 0..10_000 {
        step(&mut consumers, i);
    }
    let allocations = allocations() - before;
    assert_eq!(allocations, 0, "{mode:?}: {allocations} heap allocations in 10 000 round trips");
}

#[test]
fn the_hot_path_does_not_allocate_in_broadcast() {
    round_trip(Mode::Broadcast);
}

#[test]
fn the_hot_path_does_not_allocate_in_work_queue() {
    round_trip(Mode::WorkQueue);
}

#[test]
fn consumers_read_the_very_bytes_the_producer_wrote() {
    let dir = TempDir::new("zerocopy");
    let pool = Pool::create("zc", &Config::new(2, 8 << 20).directory(dir.path())).unwrap();
    let (base, len) = pool.mapping();
    let inside = |p: *const u8| p as usize >= base as usize && (p as usize) < base as usize + len;
    // Another handle (as another process would have) maps the same pages elsewhere.
    let other = Pool::open_in("zc", Some(dir.path())).unwrap();
    let mut consumer = other.consumer().unwrap();
    // Received buffers lie in the read-only mapping of the slot data.
    let (other_data, _) = other.read_mapping();
    let data_offset = shmpool::__private::offsets(&pool).data;
    let producer = pool.producer().unwrap();
    let mut buf = producer.acquire(None).unwrap();
    let written = buf.as_ptr();
    assert!(inside(written), "the write buffer is in the pool mapping");
    assert_eq!(written as usize % shmpool::PAGE, 0, "slot data is page aligned");
    buf[8 << 19] = 0xAB;
    let slot = buf.slot_index();
    buf.publish().unwrap();
    let got = consumer.recv(None).unwrap();
    assert_eq!(got.slot_index(), slot);
    assert_eq!(
        got.as_ptr() as usize - other_data as usize + data_offset,
        written as usize - base as usize,
        "same offset, no copy"
    );
    assert_eq!(got[8 << 19], 0xAB);
}
