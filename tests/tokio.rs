//! `recv_async` / `acquire_async` on a current-thread tokio runtime, against peers in other
//! processes: everything arrives in order, and dropping pending futures loses nothing.
//! Runs with `cargo test -p shmpool --features tokio --test tokio`.

mod common;

use common::*;
use rand::Rng;
use shmpool::{Config, Pool};
use std::path::Path;
use std::time::Duration;

/// The longest a single await of a test may take.
const AWAIT_LIMIT: Duration = Duration::from_secs(10);
/// Longer than that: the futures re-check every lease, which would hide a lost wake-up.
const LONG_LEASE: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn child() {
    child_main(|role, args| {
        let pool = Pool::open_in(&args[1], Some(Path::new(&args[0]))).map_err(|e| e.to_string())?;
        let count: u32 = args[2].parse().unwrap();
        let mut rng = rand::thread_rng();
        match role {
            // Publishes `count` numbered buffers, pausing at random so the receiver often waits.
            "producer" => {
                let producer = pool.producer().map_err(|e| e.to_string())?;
                for i in 0..count {
                    let mut buf = producer.acquire(secs(10)).map_err(|e| e.to_string())?;
                    fill(&mut buf[..64], 1, i);
                    buf.set_len(64).map_err(|e| e.to_string())?;
                    buf.publish().map_err(|e| e.to_string())?;
                    // Longer than tokio's 1 ms timer tick, so the receiver's timeouts do fire.
                    if rng.gen_range(0..8) == 0 {
                        std::thread::sleep(Duration::from_micros(rng.gen_range(0..3000)));
                    }
                }
                Ok(())
            }
            // Receives `count` numbered buffers in order (blocking), pausing at random.
            "consumer" => {
                let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
                println!("JOINED");
                for i in 0..count {
                    let buf = consumer.recv(secs(10)).map_err(|e| e.to_string())?;
                    if check(&buf)? != (1, i) {
                        return Err(format!("buffer {i} out of order"));
                    }
                    // Longer than tokio's 1 ms timer tick, so the receiver's timeouts do fire.
                    if rng.gen_range(0..8) == 0 {
                        std::thread::sleep(Duration::from_micros(rng.gen_range(0..3000)));
                    }
                }
                Ok(())
            }
            _ => Err(format!("unknown role {role}")),
        }
    });
}

/// Receives `count` buffers with `recv_async`; with `cancel`, most receives first start a future
/// that a short timeout drops while it is pending.
fn receive_from_another_process(tag: &str, count: u32, cancel: bool) {
    let dir = TempDir::new(tag);
    let pool = Pool::create("t", &Config::new(4, 4096).directory(dir.path()).lease(LONG_LEASE)).unwrap();
    let mut consumer = pool.consumer().unwrap();
    let producer = spawn_child("producer", &[dir.path().display().to_string(), "t".into(), count.to_string()]);
    let mut cancelled = 0;
    runtime().block_on(async {
        let mut rng = rand::thread_rng();
        for i in 0..count {
            if cancel && rng.gen_range(0..2) == 0 {
                let pause = Duration::from_micros(rng.gen_range(0..200));
                if let Ok(buf) = tokio::time::timeout(pause, consumer.recv_async()).await {
                    assert_eq!(check(&buf.unwrap()).unwrap(), (1, i));
                    continue;
                }
                cancelled += 1;
            }
            let buf = tokio::time::timeout(AWAIT_LIMIT, consumer.recv_async()).await.expect("recv_async stalled");
            assert_eq!(check(&buf.unwrap()).unwrap(), (1, i), "buffer {i}");
        }
    });
    expect_success(producer, Duration::from_secs(60), "the producer");
    if cancel {
        assert!(cancelled > 0, "no future was dropped while pending");
    }
    assert_eq!(consumer.received(), u64::from(count));
}

#[test]
fn recv_async_receives_10000_buffers_from_another_process_in_order() {
    receive_from_another_process("tokio-recv", 10_000, false);
}

#[test]
fn dropping_pending_recv_async_futures_loses_nothing() {
    receive_from_another_process("tokio-cancel", 3_000, true);
}

#[test]
fn acquire_async_feeds_a_consumer_in_another_process_and_cancelling_it_loses_no_slot() {
    let dir = TempDir::new("tokio-acquire");
    let pool = Pool::create("a", &Config::new(2, 4096).directory(dir.path()).lease(LONG_LEASE)).unwrap();
    let count = 3_000u32;
    let consumer = spawn_child("consumer", &[dir.path().display().to_string(), "a".into(), count.to_string()]);
    wait_until(Duration::from_secs(10), "the consumer to join", || pool.stats().consumers == 1);
    let producer = pool.producer().unwrap();
    let mut cancelled = 0;
    runtime().block_on(async {
        let mut rng = rand::thread_rng();
        for i in 0..count {
            let mut buf = loop {
                let pause = Duration::from_micros(rng.gen_range(0..100));
                match tokio::time::timeout(pause, producer.acquire_async()).await {
                    Ok(buf) => break buf.unwrap(),
                    Err(_) => cancelled += 1,
                }
            };
            fill(&mut buf[..64], 1, i);
            buf.set_len(64).unwrap();
            buf.publish().unwrap();
        }
    });
    let (ok, text) = finish(consumer, Duration::from_secs(60), "the consumer");
    assert!(ok, "consumer: {text}");
    assert!(cancelled > 0, "no acquire_async was dropped while pending");
    let stats = pool.stats();
    assert_eq!((stats.free, stats.writing), (2, 0), "a dropped acquire_async kept a slot: {stats:?}");
}
