//! Readiness handles (`ready_fd`) waited on by `epoll` loops in separate processes: no lost
//! wake-up under random delays, nothing left behind by a killed waiter, no cost without one.

mod common;

use common::*;
use rand::Rng;
use shmpool::{Config, Consumer, Pool, Producer};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::time::Duration;

/// Buffers of the lost-wake-up hunt.
const HUNT: u32 = 100_000;
/// The longest any single wait of a test may take: a stall fails, it does not hang.
const WAIT_MS: i32 = 5_000;

/// A one-descriptor epoll set (level-triggered, as GLib and asyncio use).
struct Epoll(std::os::fd::OwnedFd);

impl Epoll {
    fn new(fd: RawFd) -> Epoll {
        // SAFETY: plain system calls; the new descriptor is owned by the returned value.
        unsafe {
            let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            assert!(ep >= 0);
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 0 };
            assert_eq!(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev), 0);
            Epoll(std::os::fd::FromRawFd::from_raw_fd(ep))
        }
    }

    /// Waits up to `ms` for readiness; `Err` on a timeout (a stall).
    fn wait(&self, ms: i32, what: &str) -> Result<(), String> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        loop {
            // SAFETY: `ev` is a valid buffer for one event.
            let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), &mut ev, 1, ms) };
            match n {
                1 => return Ok(()),
                0 => return Err(format!("{what}: no readiness within {ms} ms (lost wake-up)")),
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => continue,
                _ => return Err(format!("epoll_wait: {}", std::io::Error::last_os_error())),
            }
        }
    }
}

/// A random pause on either side of the hunt: mostly none, sometimes a spin, rarely a sleep, so
/// that every window between arming, checking and sleeping gets hit.
fn jitter(rng: &mut impl Rng) {
    match rng.gen_range(0..64) {
        0..=7 => {
            let until = std::time::Instant::now() + Duration::from_micros(rng.gen_range(0..30));
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        8 => std::thread::yield_now(),
        9 => std::thread::sleep(Duration::from_micros(rng.gen_range(0..200))),
        _ => {}
    }
}

/// Publishes `count` numbered buffers, waiting for free slots only through the producer's handle.
fn produce_via_epoll(producer: &Producer, count: u32) -> Result<(), String> {
    let fd = producer.ready_fd().map_err(|e| e.to_string())?;
    let epoll = Epoll::new(fd);
    let mut rng = rand::thread_rng();
    for i in 0..count {
        loop {
            jitter(&mut rng);
            if let Some(mut buf) = producer.try_acquire().map_err(|e| e.to_string())? {
                fill(&mut buf[..16], 1, i);
                buf.set_len(16).map_err(|e| e.to_string())?;
                buf.publish().map_err(|e| e.to_string())?;
                break;
            }
            jitter(&mut rng);
            epoll.wait(WAIT_MS, &format!("producer at buffer {i}"))?;
        }
    }
    Ok(())
}

/// Receives `count` numbered buffers in order, waiting only through the consumer's handle.
fn consume_via_epoll(consumer: &mut Consumer, count: u32) -> Result<(), String> {
    let epoll = Epoll::new(consumer.ready_fd().map_err(|e| e.to_string())?);
    let mut rng = rand::thread_rng();
    let mut next = 0;
    while next < count {
        jitter(&mut rng);
        while let Some(buf) = consumer.try_recv().map_err(|e| e.to_string())? {
            let (_, index) = check(&buf)?;
            if index != next {
                return Err(format!("got buffer {index}, expected {next}"));
            }
            next += 1;
            jitter(&mut rng);
        }
        if next < count {
            epoll.wait(WAIT_MS, &format!("consumer at buffer {next}"))?;
        }
    }
    Ok(())
}

/// Creates pool `name` in `dir`, arms a consumer's handle, and waits to be killed.
fn creator_armed(dir: &str, name: &str) -> Result<(), String> {
    let pool = Pool::create(name, &Config::new(2, 4096).directory(Path::new(dir))).map_err(|e| e.to_string())?;
    let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
    consumer.ready_fd().map_err(|e| e.to_string())?;
    if consumer.try_recv().map_err(|e| e.to_string())?.is_some() {
        return Err("nothing was published".into());
    }
    println!("ARMED");
    loop {
        std::thread::park();
    }
}

#[test]
fn child() {
    child_main(|role, args| {
        if role == "creator-armed" {
            return creator_armed(&args[0], &args[1]);
        }
        let pool = Pool::open_in(&args[1], Some(Path::new(&args[0]))).map_err(|e| e.to_string())?;
        match role {
            "epoll-producer" => {
                produce_via_epoll(&pool.producer().map_err(|e| e.to_string())?, args[2].parse().unwrap())
            }
            "armed-consumer" => {
                let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
                consumer.ready_fd().map_err(|e| e.to_string())?;
                if consumer.try_recv().map_err(|e| e.to_string())?.is_some() {
                    return Err("nothing was published".into());
                }
                println!("ARMED");
                loop {
                    std::thread::park();
                }
            }
            _ => Err(format!("unknown role {role}")),
        }
    });
}

#[test]
fn lost_wake_up_hunt_between_two_epoll_loops() {
    let dir = TempDir::new("ready-hunt");
    let pool = Pool::create("h", &Config::new(4, 4096).directory(dir.path())).unwrap();
    let mut consumer = pool.consumer().unwrap();
    let args = [dir.path().display().to_string(), "h".into(), HUNT.to_string()];
    let producer = spawn_child("epoll-producer", &args);
    let started = std::time::Instant::now();
    let received = consume_via_epoll(&mut consumer, HUNT);
    let (ok, text) = finish(producer, Duration::from_secs(60), "the epoll producer");
    received.unwrap();
    assert!(ok, "producer: {text}");
    let stats = pool.stats();
    eprintln!("{HUNT} buffers in {:?}, {} wake system calls", started.elapsed(), stats.wakes);
    assert_eq!(stats.published, u64::from(HUNT));
}

#[test]
fn producer_handle_becomes_readable_when_a_slot_is_freed() {
    let dir = TempDir::new("ready-freed");
    let pool = Pool::create("f", &Config::new(1, 4096).directory(dir.path())).unwrap();
    let producer = pool.producer().unwrap();
    let mut consumer = pool.consumer().unwrap();
    let epoll = Epoll::new(producer.ready_fd().unwrap());
    producer.try_acquire().unwrap().unwrap().publish().unwrap();
    assert!(producer.try_acquire().unwrap().is_none(), "the only slot is taken");
    assert!(epoll.wait(50, "no free slot").is_err(), "readable although no slot was freed");
    drop(consumer.try_recv().unwrap().unwrap());
    epoll.wait(WAIT_MS, "the freed slot").unwrap();
    assert!(producer.try_acquire().unwrap().is_some());
}

#[test]
fn a_handle_that_is_not_armed_costs_publishing_nothing() {
    let dir = TempDir::new("ready-idle");
    let pool = Pool::create("i", &Config::new(4, 4096).directory(dir.path())).unwrap();
    let producer = pool.producer().unwrap();
    let mut consumer = pool.consumer().unwrap();
    let _fd = consumer.ready_fd().unwrap();
    // The loop is busy with its buffers: each try_recv gives one, so the handle is never armed.
    for _ in 0..100 {
        producer.try_acquire().unwrap().unwrap().publish().unwrap();
        drop(consumer.try_recv().unwrap().unwrap());
    }
    assert_eq!(pool.stats().wakes, 0);
    // Armed, then several publications before the loop runs: one write in all.
    assert!(consumer.try_recv().unwrap().is_none());
    for _ in 0..3 {
        producer.try_acquire().unwrap().unwrap().publish().unwrap();
    }
    assert_eq!(pool.stats().wakes, 1);
}

fn fifos(dir: &Path) -> Vec<String> {
    let names = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned());
    names.filter(|n| n.contains(".ready.")).collect()
}

#[test]
fn a_killed_armed_waiter_leaves_no_cost() {
    let dir = TempDir::new("ready-kill");
    let pool = Pool::create("k", &Config::new(4, 4096).directory(dir.path())).unwrap();
    let mut child = spawn_child("armed-consumer", &[dir.path().display().to_string(), "k".into()]);
    wait_until(Duration::from_secs(10), "the child to arm its handle", || pool.stats().waiters == 1);
    kill9(&mut child);
    assert_eq!(pool.reap(), 1, "the dead consumer is reaped");
    let stats = pool.stats();
    assert_eq!(stats.waiters, 0, "the dead waiter's arming went with its place: {stats:?}");

    let wakes = stats.wakes;
    let producer = pool.producer().unwrap();
    let mut consumer = pool.consumer().unwrap();
    for _ in 0..50 {
        producer.acquire(secs(5)).unwrap().publish().unwrap();
        drop(consumer.recv(secs(5)).unwrap());
    }
    assert_eq!(pool.stats().wakes, wakes, "publishing made wake system calls for a dead waiter");
    assert_eq!(fifos(dir.path()).len(), 1, "the place's FIFO stays for its next holder");
    pool.shutdown();
    assert_eq!(fifos(dir.path()), Vec::<String>::new(), "closing the pool removes its FIFOs");
}

#[test]
fn a_killed_armed_waiter_costs_at_most_one_write_before_it_is_reaped() {
    let dir = TempDir::new("ready-kill-unreaped");
    let pool = Pool::create("u", &Config::new(4, 4096).directory(dir.path())).unwrap();
    let mut child = spawn_child("armed-consumer", &[dir.path().display().to_string(), "u".into()]);
    wait_until(Duration::from_secs(10), "the child to arm its handle", || pool.stats().waiters == 1);
    kill9(&mut child);
    let wakes = pool.stats().wakes;
    let producer = pool.producer().unwrap();
    for _ in 0..4 {
        producer.try_acquire().unwrap().unwrap().publish().unwrap();
    }
    assert_eq!(pool.stats().wakes, wakes + 1, "one byte for the arming, none after");
}

#[test]
fn gc_removes_the_fifos_of_a_pool_whose_creator_died() {
    let dir = TempDir::new("ready-gc");
    let mut child = spawn_child("creator-armed", &[dir.path().display().to_string(), "g".into()]);
    wait_until(Duration::from_secs(10), "the child to arm", || fifos(dir.path()).len() == 1);
    kill9(&mut child);
    let live = Pool::create("live", &Config::new(2, 4096).directory(dir.path())).unwrap();
    let handle = live.consumer().unwrap();
    handle.ready_fd().unwrap();
    assert_eq!(Pool::gc(Some(dir.path())).unwrap(), vec!["g".to_string()]);
    assert_eq!(fifos(dir.path()), vec![".shmpool.live.ready.c0".to_string()], "only the dead pool's FIFO goes");
}
