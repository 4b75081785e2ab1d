//! Producers and consumers in separate processes: both delivery modes, both overflow policies,
//! ordering, timeouts and closing.

mod common;

use common::*;
use shmpool::{Config, Error, Mode, Overflow, Pool};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

const SIZE: usize = 8192;

#[test]
fn child() {
    child_main(|role, args| {
        let dir = Path::new(&args[0]);
        if role == "consume-first" {
            // Started before the pool exists: waits for it, then receives one buffer. args: dir name
            let pool = Pool::open_timeout(&args[1], Some(dir), secs(20)).map_err(|e| e.to_string())?;
            let buf = pool.consumer().and_then(|mut c| c.recv(secs(20))).map_err(|e| e.to_string())?;
            check(&buf)?;
            return Ok(());
        }
        let pool = Pool::open_in(&args[1], Some(dir)).map_err(|e| e.to_string())?;
        match role {
            // args: dir name producer-id count
            "produce" => {
                let (id, count): (u32, u32) = (args[2].parse().unwrap(), args[3].parse().unwrap());
                let producer = pool.producer().map_err(|e| e.to_string())?;
                for i in 0..count {
                    let mut buf = producer.acquire(secs(20)).map_err(|e| format!("acquire {i}: {e}"))?;
                    fill(&mut buf[..SIZE], id, i);
                    buf.set_len(SIZE).unwrap();
                    buf.publish().map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            // Receives `count` buffers; checks content and per-producer order. args: dir name count
            "consume-ordered" => {
                let count: usize = args[2].parse().unwrap();
                let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
                let mut next = std::collections::HashMap::new();
                let mut last_seq = None;
                for _ in 0..count {
                    let buf = consumer.recv(secs(20)).map_err(|e| e.to_string())?;
                    let (p, i) = check(&buf)?;
                    let expected = next.entry(p).or_insert(0u32);
                    if i != *expected {
                        return Err(format!("producer {p}: got buffer {i}, expected {expected}"));
                    }
                    *expected += 1;
                    if last_seq.is_some_and(|s| buf.seq() <= s) {
                        return Err(format!("sequence {} after {last_seq:?}", buf.seq()));
                    }
                    last_seq = Some(buf.seq());
                }
                Ok(())
            }
            // Receives until Closed; prints "producer:index" per buffer. args: dir name
            "consume-until-closed" => {
                let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
                let mut seen = Vec::new();
                loop {
                    match consumer.recv(secs(20)) {
                        Ok(buf) => {
                            let (p, i) = check(&buf)?;
                            seen.push(format!("{p}:{i}"));
                        }
                        Err(Error::Closed) => break,
                        Err(e) => return Err(e.to_string()),
                    }
                }
                println!("RECEIVED {}", seen.join(","));
                Ok(())
            }
            // A slow consumer of a drop-oldest pool; prints received, dropped and whether the
            // sequence numbers only went up. args: dir name
            "consume-slowly" => {
                let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
                println!("JOINED");
                let (mut received, mut last, mut monotonic) = (0u64, None, true);
                loop {
                    match consumer.recv(secs(20)) {
                        Ok(buf) => {
                            check(&buf)?;
                            monotonic &= last.is_none_or(|l| buf.seq() > l);
                            last = Some(buf.seq());
                            received += 1;
                            std::thread::sleep(Duration::from_millis(1)); // slow work
                        }
                        Err(Error::Closed) => break,
                        Err(e) => return Err(e.to_string()),
                    }
                }
                println!("SLOW received={received} dropped={} monotonic={monotonic}", consumer.dropped());
                Ok(())
            }
            _ => Err(format!("unknown role {role}")),
        }
    });
}

fn args(dir: &TempDir, name: &str, rest: &[&str]) -> Vec<String> {
    let mut v = vec![dir.path().display().to_string(), name.to_string()];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

fn wait_consumers(pool: &Pool, n: u32) {
    wait_until(Duration::from_secs(20), "consumers to join", || pool.stats().consumers == n);
}

#[test]
fn broadcast_delivers_every_buffer_to_every_consumer_in_order() {
    let dir = TempDir::new("bcast");
    let pool = Pool::create("bcast", &Config::new(4, SIZE).directory(dir.path())).unwrap();
    let per_producer = 1500;
    let consumers: Vec<_> = (0..3)
        .map(|_| spawn_child("consume-ordered", &args(&dir, "bcast", &[&(2 * per_producer).to_string()])))
        .collect();
    wait_consumers(&pool, 3);
    let producers: Vec<_> = (0..2)
        .map(|p| spawn_child("produce", &args(&dir, "bcast", &[&p.to_string(), &per_producer.to_string()])))
        .collect();
    for p in producers {
        expect_success(p, Duration::from_secs(60), "producer");
    }
    for c in consumers {
        expect_success(c, Duration::from_secs(60), "consumer");
    }
    let stats = pool.stats();
    assert_eq!(stats.published, 2 * per_producer as u64);
    assert_eq!(stats.free, 4, "{stats:?}");
}

#[test]
fn work_queue_gives_each_buffer_to_exactly_one_consumer() {
    let dir = TempDir::new("wq");
    let config = Config::new(4, SIZE).directory(dir.path()).mode(Mode::WorkQueue);
    let pool = Pool::create("wq", &config).unwrap();
    let consumers: Vec<_> = (0..3).map(|_| spawn_child("consume-until-closed", &args(&dir, "wq", &[]))).collect();
    wait_consumers(&pool, 3);
    let per_producer = 1000u32;
    let producers: Vec<_> = (0..2)
        .map(|p| spawn_child("produce", &args(&dir, "wq", &[&p.to_string(), &per_producer.to_string()])))
        .collect();
    for p in producers {
        expect_success(p, Duration::from_secs(60), "producer");
    }
    wait_until(Duration::from_secs(20), "the queue to drain", || pool.stats().free == 4);
    pool.shutdown();
    let mut all = Vec::new();
    let mut shares = Vec::new();
    for c in consumers {
        let out = expect_success(c, Duration::from_secs(30), "consumer");
        let line = out.lines().find_map(|l| l.strip_prefix("RECEIVED ")).unwrap_or("").to_string();
        let got: Vec<String> = line.split(',').filter(|s| !s.is_empty()).map(String::from).collect();
        shares.push(got.len());
        all.extend(got);
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 2 * per_producer as usize, "duplicates or losses; shares {shares:?}");
    assert_eq!(unique.len(), all.len(), "a buffer went to two consumers");
}

#[test]
fn drop_oldest_never_blocks_the_producer_and_lagging_consumers_see_gaps() {
    let dir = TempDir::new("drop");
    let config = Config::new(4, SIZE).directory(dir.path()).overflow(Overflow::DropOldest);
    let pool = Pool::create("drop", &config).unwrap();
    let mut slow = spawn_child("consume-slowly", &args(&dir, "drop", &[]));
    wait_consumers(&pool, 1);
    let producer = pool.producer().unwrap();
    let total = 2000u32;
    let started = Instant::now();
    for i in 0..total {
        let mut buf = producer.acquire(Some(Duration::ZERO)).expect("drop-oldest never waits");
        fill(&mut buf[..SIZE], 0, i);
        buf.set_len(SIZE).unwrap();
        buf.publish().unwrap();
    }
    let publishing = started.elapsed();
    wait_until(Duration::from_secs(20), "the slow consumer to catch up", || pool.stats().ready == 0);
    pool.shutdown();
    let out = expect_success(std::mem::replace(&mut slow, spawn_noop()), Duration::from_secs(30), "slow consumer");
    let line = out.lines().find(|l| l.starts_with("SLOW ")).expect("report").to_string();
    let field = |k: &str| line.split_whitespace().find_map(|f| f.strip_prefix(k)).unwrap().to_string();
    let received: u64 = field("received=").parse().unwrap();
    let dropped: u64 = field("dropped=").parse().unwrap();
    assert_eq!(field("monotonic="), "true");
    assert!(dropped > 0, "a 1 ms/buffer consumer cannot keep up with {total} buffers in {publishing:?}");
    assert_eq!(received + dropped, total as u64, "{line}");
    assert!(pool.stats().dropped > 0);
}

fn spawn_noop() -> std::process::Child {
    std::process::Command::new("true").spawn().unwrap()
}

#[test]
fn blocking_calls_time_out() {
    let dir = TempDir::new("timeout");
    let pool = Pool::create("timeout", &Config::new(1, 4096).directory(dir.path())).unwrap();
    let mut consumer = pool.consumer().unwrap();
    let started = Instant::now();
    assert!(matches!(consumer.recv(Some(Duration::from_millis(100))), Err(Error::Timeout)));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(100) && waited < Duration::from_secs(5), "{waited:?}");
    let producer = pool.producer().unwrap();
    let held = producer.acquire(None).unwrap();
    let started = Instant::now();
    assert!(matches!(producer.acquire(Some(Duration::from_millis(100))), Err(Error::Timeout)));
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(matches!(producer.try_acquire(), Ok(None)));
    drop(held);
    assert!(producer.try_acquire().unwrap().is_some(), "dropping an unpublished buffer returns its slot");
}

#[test]
fn closing_lets_consumers_drain_then_reports_closed() {
    let dir = TempDir::new("close");
    let pool = Pool::create("close", &Config::new(4, SIZE).directory(dir.path())).unwrap();
    let consumer = spawn_child("consume-until-closed", &args(&dir, "close", &[]));
    wait_consumers(&pool, 1);
    let producer = pool.producer().unwrap();
    for i in 0..3 {
        let mut buf = producer.acquire(secs(5)).unwrap();
        fill(&mut buf[..SIZE], 9, i);
        buf.set_len(SIZE).unwrap();
        buf.publish().unwrap();
    }
    pool.shutdown();
    assert!(matches!(producer.acquire(secs(1)), Err(Error::Closed)));
    assert!(matches!(pool.consumer(), Err(Error::Closed)));
    let out = expect_success(consumer, Duration::from_secs(20), "consumer");
    assert!(out.contains("RECEIVED 9:0,9:1,9:2"), "{out}");
    assert!(!pool.path().exists(), "closing unlinks the name");
}

#[test]
fn a_live_pool_cannot_be_created_twice_but_a_stale_one_is_replaced() {
    let dir = TempDir::new("exists");
    let config = Config::new(2, 4096).directory(dir.path());
    let pool = Pool::create("dup", &config).unwrap();
    assert!(matches!(Pool::create("dup", &config), Err(Error::AlreadyExists { .. })));
    // A pool whose every handle is gone (as after kill -9 of all its users) is stale.
    pool.persist();
    drop(pool);
    // A child that another test forks holds every descriptor of this process until its exec.
    wait_until(Duration::from_secs(10), "nobody to hold the dropped pool", || {
        Pool::list(Some(dir.path())).unwrap().iter().all(|p| !p.in_use)
    });
    let replaced = Pool::create("dup", &config.clone().mode(Mode::WorkQueue)).unwrap();
    assert_eq!(replaced.mode(), Mode::WorkQueue);
    assert!(matches!(Pool::open_in("missing", Some(dir.path())), Err(Error::NotFound { .. })));
}

#[test]
fn creation_reports_a_full_file_system_up_front() {
    let dir = TempDir::new("space");
    let mount = dir.path().join("tiny");
    std::fs::create_dir_all(&mount).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mount)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "mounting a 1 MiB tmpfs needs root (tests run as root in CI)");
    let result = Pool::create("big", &Config::new(4, 1 << 20).directory(&mount));
    let _ = std::process::Command::new("umount").arg(&mount).status();
    match result {
        Err(Error::InsufficientSpace { needed, available, .. }) => {
            assert!(needed > 4 << 20 && available <= 1 << 20, "needed {needed}, available {available}");
        }
        other => panic!("expected InsufficientSpace, got {other:?}"),
    }
}

#[test]
fn permissions_default_to_owner_only_and_are_configurable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("perm");
    let a = Pool::create("a", &Config::new(1, 4096).directory(dir.path())).unwrap();
    assert_eq!(std::fs::metadata(a.path()).unwrap().permissions().mode() & 0o777, 0o600);
    let b = Pool::create("b", &Config::new(1, 4096).directory(dir.path()).permissions(0o660)).unwrap();
    assert_eq!(std::fs::metadata(b.path()).unwrap().permissions().mode() & 0o777, 0o660);
}

#[test]
fn the_directory_comes_from_shmpool_dir() {
    let dir = TempDir::new("envdir");
    let path = {
        // Only this test sets the variable; the others pass directories explicitly.
        std::env::set_var(shmpool::DIR_ENV, dir.path());
        let pool = Pool::create("from-env", &Config::new(1, 4096));
        std::env::remove_var(shmpool::DIR_ENV);
        pool.unwrap().path().to_path_buf()
    };
    assert!(path.starts_with(dir.path()), "{path:?}");
}

#[test]
fn a_consumer_started_before_the_pool_waits_for_it() {
    let dir = TempDir::new("open-timeout");
    let child = spawn_child("consume-first", &[dir.path().display().to_string(), "late".into()]);
    // Give the child time to start waiting; correctness does not depend on it.
    std::thread::sleep(Duration::from_millis(100));
    let pool = Pool::create("late", &Config::new(2, SIZE).directory(dir.path())).unwrap();
    let producer = pool.producer().unwrap();
    wait_until(Duration::from_secs(20), "the child's consumer", || pool.stats().consumers == 1);
    let mut buf = producer.acquire(secs(5)).unwrap();
    fill(&mut buf[..SIZE], 0, 0);
    buf.set_len(SIZE).unwrap();
    buf.publish().unwrap();
    expect_success(child, Duration::from_secs(20), "consume-first");
    let start = Instant::now();
    let missing = Pool::open_timeout("never", Some(dir.path()), Some(Duration::from_millis(100)));
    assert!(matches!(missing, Err(Error::NotFound { .. })), "{missing:?}");
    assert!(start.elapsed() >= Duration::from_millis(100));
}
