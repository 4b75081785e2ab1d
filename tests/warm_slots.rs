//! Warm slots: a producer gets back the slot freed most recently (its bytes are still in cache),
//! every slot stays reachable, and drop-oldest still reclaims the oldest publication. Checked by
//! which slot each acquire returns, with the consumer in another process where it matters.

mod common;

use common::*;
use shmpool::{Config, Overflow, Pool};
use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::time::Duration;

#[test]
fn child() {
    child_main(|role, args| {
        let pool = Pool::open_in(&args[1], Some(Path::new(&args[0]))).map_err(|e| e.to_string())?;
        let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
        println!("READY");
        let count: u32 = args[2].parse().map_err(|_| "bad count")?;
        match role {
            "consumer" => {
                for i in 0..count {
                    let got = consumer.recv(secs(10)).map_err(|e| e.to_string())?;
                    let (_, index) = check(&got)?;
                    if index != i {
                        return Err(format!("got buffer {index}, want {i}"));
                    }
                }
                Ok(())
            }
            _ => Err(format!("unknown role {role}")),
        }
    });
}

#[test]
fn with_one_buffer_in_flight_the_producer_gets_the_same_slot_back() {
    let dir = TempDir::new("warm-one");
    let pool = Pool::create("w", &Config::new(4, 8192).directory(dir.path())).unwrap();
    let rounds = 100u32;
    let child = spawn_child("consumer", &[dir.path().display().to_string(), "w".into(), rounds.to_string()]);
    wait_until(Duration::from_secs(10), "the consumer to join", || pool.stats().consumers == 1);
    let producer = pool.producer().unwrap();
    // Free all four in a known order: slot 1 goes back last, so it is the warm one.
    let mut all: Vec<_> = (0..4).map(|_| producer.try_acquire().unwrap().unwrap()).collect();
    all.sort_by_key(|b| [2, 0, 3, 1].iter().position(|&k| k == b.slot_index()));
    drop(all);
    let mut used = BTreeSet::new();
    for i in 0..rounds {
        // One in flight: the previous buffer is back before the next is taken.
        wait_until(Duration::from_secs(10), "the consumer to release", || pool.stats().free == 4);
        let mut buf = producer.acquire(secs(10)).unwrap();
        used.insert(buf.slot_index());
        fill(&mut buf, 0, i);
        buf.publish().unwrap();
    }
    expect_success(child, Duration::from_secs(20), "the consumer");
    assert_eq!(used, BTreeSet::from([1]), "one buffer in flight did not stay in the slot freed last");
}

#[test]
fn with_several_in_flight_the_working_set_is_reused_and_every_slot_stays_reachable() {
    let dir = TempDir::new("warm-several");
    let slots = 8;
    let pool = Pool::create("w", &Config::new(slots, 4096).directory(dir.path())).unwrap();
    let mut consumer = pool.consumer().unwrap();
    let producer = pool.producer().unwrap();
    let (in_flight, rounds) = (3, 200u32);
    let mut held = VecDeque::new();
    let mut used = BTreeSet::new();
    for i in 0..rounds {
        let mut buf = producer.try_acquire().unwrap().expect("a free slot");
        used.insert(buf.slot_index());
        fill(&mut buf, 0, i);
        buf.publish().unwrap();
        let got = consumer.try_recv().unwrap().expect("the buffer just published");
        assert_eq!(check(&got).unwrap(), (0, i), "delivery stays in publication order");
        held.push_back(got);
        if held.len() > in_flight {
            held.pop_front();
        }
    }
    // The consumer holds 3 and the producer writes 1: four warm slots, the rest untouched.
    assert_eq!(used.len(), in_flight + 1, "slots used: {used:?}");
    drop(held);
    // No slot starves: all of them can still be taken at once.
    let all: Vec<_> = (0..slots).map(|_| producer.try_acquire().unwrap().expect("a free slot")).collect();
    let distinct: BTreeSet<_> = all.iter().map(|b| b.slot_index()).collect();
    assert_eq!(distinct.len(), slots as usize);
}

#[test]
fn drop_oldest_still_reclaims_the_oldest_publication() {
    let dir = TempDir::new("warm-drop");
    let config = Config::new(3, 4096).overflow(Overflow::DropOldest).directory(dir.path());
    let pool = Pool::create("w", &config).unwrap();
    let mut consumer = pool.consumer().unwrap();
    let producer = pool.producer().unwrap();
    // Free one slot after a round so that the warm hint names a slot that is then republished.
    let mut buf = producer.try_acquire().unwrap().unwrap();
    fill(&mut buf, 0, 0);
    buf.publish().unwrap();
    drop(consumer.try_recv().unwrap().unwrap());
    for i in 1..=5 {
        let mut buf = producer.try_acquire().unwrap().expect("drop-oldest always finds a slot");
        fill(&mut buf, 0, i);
        buf.publish().unwrap();
    }
    // Three slots hold the three newest; 1 and 2 were dropped, oldest first.
    let got: Vec<u32> = std::iter::from_fn(|| consumer.try_recv().unwrap().map(|b| check(&b).unwrap().1)).collect();
    assert_eq!(got, vec![3, 4, 5]);
    assert_eq!(pool.stats().dropped, 2);
}
