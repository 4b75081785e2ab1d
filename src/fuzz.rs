//! The segment fuzzing harness, shared by the cargo-fuzz target (`fuzz/fuzz_targets/segment.rs`)
//! and the stable-Rust driver that runs in `cargo test` (`tests/segment_fuzz.rs`).
//!
//! An input is a flags byte (bit 0: work queue, bit 1: drop-oldest, bit 2: overwrite the header
//! too) and then bytes laid over a fresh pool's shared state, from its header (or just after it)
//! up to the slot data: control block, peer records, slot states, ring, user metadata. Whatever the
//! bytes, opening the pool and running receive, acquire, publish, release, reap and stats on it
//! must never panic, touch memory outside the mapping, or hang; errors are fine. The last bytes of
//! the input also choose the operations.

use crate::{Config, Mode, Overflow, Pool};
use std::path::PathBuf;
use std::time::Duration;

/// How many operations one input runs, per handle.
const OPS: usize = 24;

/// Runs one input. Panics only if the library does.
pub fn segment(input: &[u8]) {
    run(input);
    // Fuzzed bytes may mark the pool persisted or leave a place's readiness FIFO behind, so the
    // pool file can outlive its handles: remove the whole private directory.
    let _ = std::fs::remove_dir_all(dir());
}

fn run(input: &[u8]) {
    let (&flags, bytes) = input.split_first().unwrap_or((&0, &[]));
    let config = Config::new(4, 4096)
        .mode(if flags & 1 != 0 { Mode::WorkQueue } else { Mode::Broadcast })
        .overflow(if flags & 2 != 0 { Overflow::DropOldest } else { Overflow::Block })
        .lease(Duration::from_millis(1))
        .directory(dir());
    let Ok(pool) = Pool::create("fuzz", &config) else { return };
    overwrite(&pool, bytes, flags & 4 != 0);
    let ops = &bytes[bytes.len().saturating_sub(OPS)..];
    if let Ok(opened) = Pool::open_in("fuzz", Some(&dir())) {
        exercise(&opened, ops);
    }
    exercise(&pool, ops);
}

/// A valid input: the shared state of a pool after some traffic, for mutation-based drivers.
pub fn seed(flags: u8) -> Vec<u8> {
    let config = Config::new(4, 4096)
        .mode(if flags & 1 != 0 { Mode::WorkQueue } else { Mode::Broadcast })
        .overflow(if flags & 2 != 0 { Overflow::DropOldest } else { Overflow::Block })
        .directory(dir());
    let Ok(pool) = Pool::create("fuzz-seed", &config) else { return vec![flags] };
    let (mut consumer, producer) = (pool.consumer().ok(), pool.producer().ok());
    let mut held = Vec::new();
    for i in 0..6u8 {
        if let Some(Ok(Some(mut buf))) = producer.as_ref().map(|p| p.try_acquire()) {
            buf[0] = i;
            let _ = buf.set_shape(&[1, 2, 3]);
            let _ = buf.set_user_meta(b"fuzz");
            let _ = buf.publish();
        }
        if let Some(Ok(Some(buf))) = consumer.as_mut().map(|c| c.try_recv()) {
            held.push(buf);
        }
        if held.len() > 1 {
            held.remove(0);
        }
    }
    let (base, _) = pool.mapping();
    let end = crate::__private::offsets(&pool).data;
    // SAFETY: the first `data` bytes of the mapping are the pool's shared state; only this thread
    // uses this new pool.
    let state = unsafe { std::slice::from_raw_parts(base, end) };
    let skip = size_of::<crate::pool::layout::Header>();
    let mut input = vec![flags];
    input.extend_from_slice(&state[skip..]);
    drop((held, consumer, producer, pool));
    let _ = std::fs::remove_dir(dir());
    input
}

/// A private directory of this process for the fuzzed pools.
fn dir() -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let dir = base.join(format!("shmpool-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Lays `bytes` over the pool's shared state (after the header unless `header`).
fn overwrite(pool: &Pool, bytes: &[u8], header: bool) {
    let (base, _) = pool.mapping();
    let start = if header { 0 } else { size_of::<crate::pool::layout::Header>() };
    let end = crate::__private::offsets(&pool.clone()).data;
    let n = bytes.len().min(end - start);
    // SAFETY: `start + n <= data offset <= mapping length`; no other thread or process uses this
    // fresh pool, so plain writes race with nothing.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.cast_mut().add(start), n) };
}

/// Runs the operations `ops` chooses on `pool`.
fn exercise(pool: &Pool, ops: &[u8]) {
    let _ = pool.stats();
    let mut consumer = pool.consumer().ok();
    let producer = pool.producer().ok();
    let mut held = Vec::new();
    for &op in ops {
        match op % 7 {
            0 | 1 => {
                let got = match consumer.as_mut() {
                    Some(c) if op % 7 == 0 => c.try_recv().ok().flatten(),
                    Some(c) => c.recv(Some(Duration::ZERO)).ok(),
                    None => None,
                };
                if let Some(buf) = got {
                    // Touch every byte the buffer claims, and its metadata.
                    let sum = buf.iter().fold(0u8, |a, &b| a.wrapping_add(b));
                    std::hint::black_box((sum, buf.user_meta().len(), buf.shape().len(), buf.dtype()));
                    held.push(buf);
                }
            }
            2 | 3 => {
                if let Some(Ok(Some(mut buf))) = producer.as_ref().map(|p| p.try_acquire()) {
                    let len = buf.len();
                    buf[len - 1] = op;
                    let _ = buf.set_len((op as usize * 37) % (len + 1));
                    if op % 7 == 2 {
                        let _ = buf.publish();
                    }
                }
            }
            4 => drop(held.pop()),
            5 => {
                pool.reap();
            }
            _ => {
                let _ = pool.stats();
            }
        }
    }
}
