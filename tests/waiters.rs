//! A waiter killed while blocked leaves no registration behind: once its place is cleaned,
//! notifying costs no system call again.

mod common;

use common::*;
use shmpool::{Config, Mode, Pool, Role};
use std::path::Path;
use std::time::Duration;

#[test]
fn child() {
    child_main(|role, args| {
        let pool = Pool::open_in(&args[1], Some(Path::new(&args[0]))).map_err(|e| e.to_string())?;
        match role {
            "consumer" => {
                let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
                println!("READY");
                let _ = consumer.recv(None);
                Err("recv returned".into())
            }
            "producer" => {
                let producer = pool.producer().map_err(|e| e.to_string())?;
                // Fill the pool, then block for a free slot.
                while let Some(buf) = producer.try_acquire().map_err(|e| e.to_string())? {
                    buf.publish().map_err(|e| e.to_string())?;
                }
                println!("READY");
                let _ = producer.acquire(None);
                Err("acquire returned".into())
            }
            _ => Err(format!("unknown role {role}")),
        }
    });
}

fn blocked_peer_is_killed(role: &str, mode: Mode) {
    let dir = TempDir::new(&format!("waiters-{role}"));
    let pool = Pool::create("w", &Config::new(2, 4096).mode(mode).directory(dir.path())).unwrap();
    let mut child = spawn_child(role, &[dir.path().display().to_string(), "w".into()]);
    wait_until(Duration::from_secs(10), "the child to block", || pool.stats().waiters == 1);
    assert!(pool.stats().peers.iter().any(|p| p.waiting && p.alive));
    kill9(&mut child);
    assert_eq!(pool.reap(), 1, "the dead peer is reaped");
    let stats = pool.stats();
    assert_eq!(stats.waiters, 0, "the dead waiter's registration went with its place: {stats:?}");
    assert!(stats.peers.iter().all(|p| p.role != Role::Producer || !p.waiting));

    // Traffic with nobody blocked makes no wake system call.
    let wakes = stats.wakes;
    let producer = pool.producer().unwrap();
    let mut consumer = pool.consumer().unwrap();
    if mode == Mode::WorkQueue {
        while consumer.try_recv().unwrap().is_some() {}
    }
    for _ in 0..50 {
        producer.acquire(secs(5)).unwrap().publish().unwrap();
        drop(consumer.recv(secs(5)).unwrap());
    }
    assert_eq!(pool.stats().wakes, wakes, "notify made wake system calls for a dead waiter");
}

#[test]
fn a_killed_blocked_consumer_leaves_no_waiter() {
    blocked_peer_is_killed("consumer", Mode::Broadcast);
}

#[test]
fn a_killed_blocked_producer_leaves_no_waiter() {
    blocked_peer_is_killed("producer", Mode::WorkQueue);
}

#[test]
fn live_waiters_are_counted_and_woken() {
    let dir = TempDir::new("waiters-live");
    let pool = Pool::create("w", &Config::new(2, 4096).directory(dir.path())).unwrap();
    let child = spawn_child("consumer", &[dir.path().display().to_string(), "w".into()]);
    wait_until(Duration::from_secs(10), "the child to block", || pool.stats().waiters == 1);
    let before = pool.stats().wakes;
    pool.producer().unwrap().acquire(secs(5)).unwrap().publish().unwrap();
    assert!(pool.stats().wakes > before, "a blocked consumer costs a wake");
    // The child's recv returns, so it reports an error and exits; its place is then cleaned.
    let (ok, _) = finish(child, Duration::from_secs(10), "the woken consumer");
    assert!(!ok);
    pool.reap();
    assert_eq!(pool.stats().waiters, 0);
}
