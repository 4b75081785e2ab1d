//! Pools that grow: a sender's PoolSet and a receiver's PoolFollower, in one process and across
//! processes (a sender killed with -9 leaves no file once its follower is gone).

mod common;

use common::*;
use shmpool::{generation_name, Config, Mode, Pool, PoolFollower, PoolSet};
use std::path::Path;
use std::time::Duration;

const WAIT: Option<Duration> = Some(Duration::from_secs(5));

fn config(dir: &Path) -> Config {
    Config::new(4, 4096).mode(Mode::WorkQueue).directory(dir)
}

fn pool_files(dir: &Path) -> Vec<String> {
    Pool::list(Some(dir)).unwrap().into_iter().map(|e| e.name).collect()
}

/// Publishes `len` bytes of `byte` through the set; returns the generation.
fn send(set: &PoolSet, len: usize, byte: u8) -> u8 {
    let (generation, mut buf) = set.acquire(len, None).unwrap().expect("a slot");
    buf[..len].fill(byte);
    buf.set_len(len).unwrap();
    buf.publish().unwrap();
    generation
}

#[test]
fn child() {
    child_main(|role, args| match role {
        // Grows a set to a 64 KiB generation, publishes into it, says so, then waits to be killed.
        "grow-and-hang" => {
            let dir = Path::new(&args[0]);
            let set = PoolSet::create("victim", &config(dir), 1 << 20).map_err(|e| e.to_string())?;
            send(&set, 50_000, 7);
            println!("grown");
            std::thread::sleep(Duration::from_secs(60));
            Ok(())
        }
        other => Err(format!("unknown role {other}")),
    });
}

#[test]
fn grows_by_size_and_the_follower_follows() {
    let dir = TempDir::new("grow-size");
    let set = PoolSet::create("s", &config(dir.path()), 1 << 20).unwrap();
    let follower = PoolFollower::new("s", Some(dir.path()));
    let mut held = Vec::new();
    for (len, want_gen, want_slot) in [(100, 0, 4096), (10_000, 1, 16384), (300_000, 2, 512 << 10), (5000, 2, 0)] {
        let generation = send(&set, len, len as u8);
        assert_eq!(generation, want_gen, "{len} bytes");
        let got = follower.recv(generation, WAIT).unwrap();
        assert_eq!(got.len(), len);
        assert!(got.iter().all(|&b| b == len as u8));
        if want_slot != 0 {
            assert_eq!(set.stats().slot_size, want_slot);
        }
        held.push(got);
    }
    assert_eq!(set.stats().grown, 2);
    assert!(set.acquire((1 << 20) + 1, None).unwrap().is_none(), "past the maximum");
    // Old generations stay while their buffers are held, and go once released.
    assert_eq!(set.stats().live, 3);
    held.clear();
    set.trim();
    assert_eq!(set.stats().live, 1);
    assert_eq!(pool_files(dir.path()), [generation_name("s", 2)]);
    // The follower lets go of retired generations on its next use.
    send(&set, 10, 1);
    drop(follower.recv(2, WAIT).unwrap());
    assert_eq!(follower.open_generations(), [2]);
    drop(set);
    drop(follower);
    assert!(pool_files(dir.path()).is_empty(), "{:?}", pool_files(dir.path()));
}

#[test]
fn grows_in_slots_when_all_are_held_within_the_budget() {
    let dir = TempDir::new("grow-count");
    let mut set = PoolSet::create("c", &config(dir.path()), 8192).unwrap();
    set.set_max_bytes(4 * 4096 + 8 * 4096);
    let follower = PoolFollower::new("c", Some(dir.path()));
    let mut held = Vec::new();
    for i in 0..12 {
        let generation = send(&set, 1000, i);
        held.push(follower.recv(generation, WAIT).unwrap());
    }
    let stats = set.stats();
    assert_eq!((stats.generation, stats.slots, stats.live), (1, 8, 2));
    // Everything held and the budget spent: no slot (the caller sends another way).
    assert!(set.acquire(1000, None).unwrap().is_none());
    drop(held.split_off(4)); // frees the 8 slots of generation 1
    assert_eq!(send(&set, 1000, 99), 1);
    assert!(held.iter().enumerate().all(|(i, b)| b[0] == i as u8), "held buffers unchanged");
}

#[test]
fn a_killed_sender_leaves_nothing_after_the_follower() {
    let dir = TempDir::new("grow-kill");
    let mut child = child_command("child", "grow-and-hang", &[dir.path().display().to_string()]).spawn().unwrap();
    let follower = PoolFollower::new("victim", Some(dir.path()));
    wait_until(Duration::from_secs(20), "the child to grow its set", || {
        pool_files(dir.path()).contains(&generation_name("victim", 1))
    });
    // A published buffer of the grown generation is readable, then the sender dies.
    let generation = 1;
    let got = follower.recv(generation, WAIT).unwrap();
    assert_eq!((got.len(), got[0]), (50_000, 7));
    kill9(&mut child);
    assert_eq!(got[49_999], 7, "the mapping outlives the sender");
    drop(got);
    drop(follower);
    assert!(pool_files(dir.path()).is_empty(), "{:?}", pool_files(dir.path()));
}
