//! A segment with garbage in it gives `Corrupted` errors: never a panic, a hang or an access
//! outside the mapping.

mod common;

use common::*;
use shmpool::__private::{offsets, slot_state};
use shmpool::{Config, Error, Pool};
use std::os::unix::fs::FileExt;
use std::time::Duration;

fn poke(pool: &Pool, offset: usize, bytes: &[u8]) {
    let file = std::fs::OpenOptions::new().write(true).open(pool.path()).unwrap();
    file.write_all_at(bytes, offset as u64).unwrap();
}

fn expect_corrupted<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) -> String {
    match result {
        Err(Error::Corrupted(msg)) => msg,
        other => panic!("{what}: expected Corrupted, got {other:?}"),
    }
}

/// Header fields at their byte offsets, each with a value `open` must refuse.
const HEADER_GARBAGE: &[(&str, usize, &[u8])] = &[
    ("magic", 0, b"NOTAPOOL"),
    ("version", 8, &[99, 0, 0, 0]),
    ("header size", 12, &[1, 0, 0, 0]),
    ("total size", 16, &[0, 0, 0, 0, 0, 0, 0, 1]),
    ("slot count zero", 24, &[0, 0, 0, 0]),
    ("slot count huge", 24, &[0xff, 0xff, 0xff, 0x7f]),
    ("mode", 28, &[7, 0, 0, 0]),
    ("slot size unaligned", 32, &[1, 0x10, 0, 0, 0, 0, 0, 0]),
    ("slot size huge", 32, &[0, 0, 0, 0, 0, 0, 0, 0x10]),
    ("meta bytes", 40, &[0xff, 0xff, 0xff, 0xff]),
    ("overflow", 44, &[9, 0, 0, 0]),
    ("lease", 48, &[0, 0, 0, 0, 0, 0, 0, 0]),
    ("data offset", 56, &[1, 0, 0, 0, 0, 0, 0, 0]),
];

#[test]
fn open_refuses_every_damaged_header_field() {
    let dir = TempDir::new("hdr");
    for (i, (what, offset, bytes)) in HEADER_GARBAGE.iter().enumerate() {
        let name = format!("hdr{i}");
        let pool = Pool::create(&name, &Config::new(2, 4096).directory(dir.path())).unwrap();
        pool.persist();
        poke(&pool, *offset, bytes);
        let msg = expect_corrupted(Pool::open_in(&name, Some(dir.path())), what);
        assert!(!msg.is_empty());
    }
}

#[test]
fn open_refuses_a_truncated_segment() {
    let dir = TempDir::new("trunc");
    let pool = Pool::create("t", &Config::new(2, 4096).directory(dir.path())).unwrap();
    pool.persist();
    let file = std::fs::OpenOptions::new().write(true).open(pool.path()).unwrap();
    file.set_len(4096).unwrap();
    let msg = expect_corrupted(Pool::open_in("t", Some(dir.path())), "truncated");
    assert!(msg.contains("bytes"), "{msg}");
    file.set_len(10).unwrap();
    expect_corrupted(Pool::open_in("t", Some(dir.path())), "tiny");
}

#[test]
fn a_ring_entry_naming_a_slot_out_of_range_is_corrupted() {
    let dir = TempDir::new("ring");
    let pool = Pool::create("r", &Config::new(2, 4096).directory(dir.path())).unwrap();
    let mut consumer = pool.consumer().unwrap();
    let o = offsets(&pool);
    // Entry for sequence 0 naming slot 999.
    poke(&pool, o.ring, &((999u64) & 0xffff).to_le_bytes());
    expect_corrupted(consumer.try_recv(), "ring slot index");
}

#[test]
fn slot_states_naming_no_producer_are_corrupted() {
    let dir = TempDir::new("state");
    let pool = Pool::create("s", &Config::new(2, 4096).directory(dir.path())).unwrap();
    let producer = pool.producer().unwrap();
    let o = offsets(&pool);
    for k in 0..2 {
        poke(&pool, o.slots + k * o.slot_stride, &(slot_state::WRITING | 200).to_le_bytes());
    }
    expect_corrupted(producer.acquire(Some(Duration::from_millis(50))), "owner out of range");
}

/// Publishes one buffer, damages one metadata field of its slot, and expects recv to refuse it
/// and give the slot back.
fn damaged_metadata(field_offset: usize, bytes: &[u8]) -> String {
    let dir = TempDir::new("meta");
    let pool = Pool::create("m", &Config::new(1, 4096).directory(dir.path()).meta_bytes(16)).unwrap();
    let mut consumer = pool.consumer().unwrap();
    let producer = pool.producer().unwrap();
    let mut buf = producer.acquire(secs(1)).unwrap();
    buf.set_len(100).unwrap();
    buf.publish().unwrap();
    poke(&pool, offsets(&pool).slots + field_offset, bytes);
    let msg = expect_corrupted(consumer.try_recv(), "metadata");
    assert_eq!(pool.stats().free, 1, "a refused buffer is released");
    msg
}

#[test]
fn damaged_slot_metadata_is_refused_and_released() {
    // SlotHeader: state 0, seq 8, len 16, timestamp 24, dtype 32, ndim 36, shape 40.., meta_len 104
    assert!(damaged_metadata(16, &u64::MAX.to_le_bytes()).contains("length"));
    assert!(damaged_metadata(32, &99u32.to_le_bytes()).contains("dtype"));
    assert!(damaged_metadata(36, &9u32.to_le_bytes()).contains("dimensions"));
    assert!(damaged_metadata(104, &17u32.to_le_bytes()).contains("metadata"));
}

#[test]
fn random_garbage_in_the_shared_state_never_panics_or_hangs() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let dir = TempDir::new("fuzz");
    for round in 0..40 {
        let name = format!("f{round}");
        let pool = Pool::create(&name, &Config::new(4, 4096).directory(dir.path())).unwrap();
        let mut consumer = pool.consumer().unwrap();
        let producer = pool.producer().unwrap();
        let o = offsets(&pool);
        let mut garbage = vec![0u8; o.data - o.control];
        rng.fill(&mut garbage[..]);
        poke(&pool, o.control, &garbage);
        // Whatever each call returns, it returns promptly and without panicking.
        let started = std::time::Instant::now();
        for _ in 0..4 {
            let _ = producer.acquire(Some(Duration::from_millis(5))).map(|b| b.publish());
            let _ = consumer.recv(Some(Duration::from_millis(5)));
            let _ = pool.stats();
            let _ = pool.reap();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "round {round} took {:?}", started.elapsed());
    }
}

#[test]
fn sequence_numbers_at_the_end_of_their_range_do_not_overflow() {
    let dir = TempDir::new("seqmax");
    let pool = Pool::create("q", &Config::new(2, 4096).directory(dir.path())).unwrap();
    let mut consumer = pool.consumer().unwrap();
    let producer = pool.producer().unwrap();
    // A hostile ring tail at the top of the range drags the consumer's cursor there.
    poke(&pool, offsets(&pool).control, &u64::MAX.to_le_bytes());
    for _ in 0..3 {
        let _ = consumer.try_recv();
        let _ = producer.try_acquire().map(|b| b.map(|b| b.publish()));
    }
}
