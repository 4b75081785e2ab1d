//! Orphaned pools and restarting creators: a creator killed without closing its pool leaves
//! consumers that drain and then get `Orphaned` within the lease (never a wait forever), and a
//! restarted creator takes the pool over (same configuration) or replaces it (another one).

mod common;

use common::*;
use shmpool::{Config, Error, Pool};
use std::path::Path;
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_millis(300);

fn config(dir: &Path, slots: u32) -> Config {
    Config::new(slots, 4096).lease(LEASE).directory(dir)
}

#[test]
fn child() {
    child_main(|role, args| {
        let dir = Path::new(&args[0]);
        if role == "big-creator" {
            let _pool = Pool::create("big", &Config::new(5, 1 << 20).directory(dir)).map_err(|e| e.to_string())?;
            println!("PUBLISHED");
            std::thread::sleep(Duration::from_secs(60));
            return Ok(());
        }
        let slots: u32 = args[1].parse().unwrap();
        let count: u32 = args[2].parse().unwrap();
        let pool = Pool::create("restart", &config(dir, slots)).map_err(|e| format!("create: {e}"))?;
        if role == "persisted-creator" {
            pool.persist();
        }
        let producer = pool.producer().map_err(|e| e.to_string())?;
        while pool.stats().consumers == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 0..count {
            let mut buf = producer.acquire(secs(10)).map_err(|e| e.to_string())?;
            buf[..4].copy_from_slice(&i.to_le_bytes());
            buf.set_len(4).unwrap();
            buf.publish().map_err(|e| e.to_string())?;
        }
        println!("PUBLISHED");
        // Wait to be killed, like a producer in the middle of its work.
        std::thread::sleep(Duration::from_secs(60));
        Ok(())
    });
}

fn start(role: &str, dir: &TempDir, slots: u32, count: u32) -> std::process::Child {
    spawn_child(role, &[dir.path().display().to_string(), slots.to_string(), count.to_string()])
}

fn signal(child: &mut std::process::Child, sig: libc::c_int) {
    // SAFETY: kill has no memory effects; the pid is our child.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    let _ = child.wait();
}

fn open_consumer(dir: &TempDir) -> (Pool, shmpool::Consumer) {
    let mut pool = None;
    wait_until(Duration::from_secs(10), "the pool to appear", || {
        pool = Pool::open_in("restart", Some(dir.path())).ok();
        pool.is_some()
    });
    let pool = pool.unwrap();
    let consumer = pool.consumer().unwrap();
    (pool, consumer)
}

fn receive(consumer: &mut shmpool::Consumer, n: u32) -> Vec<u32> {
    (0..n)
        .map(|_| {
            let buf = consumer.recv(secs(10)).expect("a published buffer");
            u32::from_le_bytes(buf[..4].try_into().unwrap())
        })
        .collect()
}

fn wait_published(child: &mut std::process::Child) {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.as_mut().unwrap()).lines();
    // The test harness may print its own lines first.
    let found = lines.any(|l| l.is_ok_and(|l| l.trim() == "PUBLISHED"));
    assert!(found, "the creator exited before publishing");
}

/// Kills the creator with `sig` after it published 3 buffers: the consumer gets the 3, then
/// `Orphaned` within the lease; a restarted creator of the same shape takes the pool over and the
/// same consumer goes on receiving.
fn killed_creator_then_restart(sig: libc::c_int) {
    let dir = TempDir::new("orphan");
    let mut creator = start("creator", &dir, 4, 3);
    let (pool, mut consumer) = open_consumer(&dir);
    wait_published(&mut creator);
    signal(&mut creator, sig);
    let killed = Instant::now();
    assert_eq!(receive(&mut consumer, 3), [0, 1, 2], "what was published is drained");
    match consumer.recv(None) {
        Err(Error::Orphaned) => {}
        other => panic!("expected Orphaned, got {other:?}"),
    }
    let waited = killed.elapsed();
    assert!(waited <= LEASE + Duration::from_millis(250), "Orphaned after {waited:?}, lease {LEASE:?}");
    let stats = pool.stats();
    assert!(stats.orphaned && !stats.creator_alive && !stats.producer_alive, "{stats:?}");
    // A consumer that arrives now gets the same answer at once, not a wait forever.
    let mut late = Pool::open_in("restart", Some(dir.path())).unwrap().consumer().unwrap();
    assert!(matches!(late.recv(secs(5)), Err(Error::Orphaned)));

    // Restart with the same configuration: the pool is taken over, nobody reopens.
    let mut restarted = start("creator", &dir, 4, 2);
    wait_published(&mut restarted);
    assert_eq!(receive(&mut consumer, 2), [0, 1]);
    assert_eq!(receive(&mut late, 2), [0, 1]);
    let stats = pool.stats();
    assert!(!stats.orphaned && stats.creator_alive && stats.producer_alive, "{stats:?}");

    // Killed again, restarted with another shape: the old pool closes, consumers reopen.
    signal(&mut restarted, libc::SIGKILL);
    assert!(matches!(consumer.recv(secs(5)), Err(Error::Orphaned)));
    let mut reshaped = start("creator", &dir, 2, 1);
    // Orphaned until the new creator closes the old pool, then Closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match consumer.recv(secs(10)) {
            Err(Error::Closed) => break,
            Err(Error::Orphaned) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            other => panic!("expected Closed from the replaced pool, got {other:?}"),
        }
    }
    let (reopened, mut fresh) = open_consumer(&dir);
    assert_eq!(reopened.slots(), 2);
    wait_published(&mut reshaped);
    assert_eq!(receive(&mut fresh, 1), [0]);
    kill9(&mut reshaped);
}

#[test]
fn sigkill_of_the_creator_orphans_the_pool_and_a_restart_takes_it_over() {
    killed_creator_then_restart(libc::SIGKILL);
}

#[test]
fn sigterm_of_the_creator_orphans_the_pool_and_a_restart_takes_it_over() {
    killed_creator_then_restart(libc::SIGTERM);
}

#[test]
fn a_persisted_pool_waits_for_producers_and_is_not_taken_over() {
    let dir = TempDir::new("persisted");
    let mut creator = start("persisted-creator", &dir, 4, 1);
    let (pool, mut consumer) = open_consumer(&dir);
    wait_published(&mut creator);
    kill9(&mut creator);
    assert_eq!(receive(&mut consumer, 1), [0]);
    assert!(matches!(consumer.recv(Some(LEASE * 3)), Err(Error::Timeout)), "persisted: consumers wait");
    let stats = pool.stats();
    assert!(stats.persistent && !stats.orphaned && !stats.producer_alive, "{stats:?}");
    assert!(matches!(Pool::create("restart", &config(dir.path(), 4)), Err(Error::AlreadyExists { .. })));
}

#[test]
fn a_live_creator_is_never_taken_over() {
    let dir = TempDir::new("live");
    let pool = Pool::create("restart", &config(dir.path(), 4)).unwrap();
    let _consumer = Pool::open_in("restart", Some(dir.path())).unwrap().consumer().unwrap();
    assert!(matches!(Pool::create("restart", &config(dir.path(), 4)), Err(Error::AlreadyExists { .. })));
    assert!(!pool.stats().orphaned && pool.stats().creator_alive);
}

/// On an 8 MiB tmpfs, a 5 MiB pool whose creator was killed is replaced: the stale file goes
/// before the new one is reserved, so a restart never needs room for two pools.
#[test]
fn replacing_a_stale_pool_never_needs_twice_its_size() {
    let dir = TempDir::new("twice");
    let mount = dir.path().join("tmpfs");
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    assert!(mounted, "mounting an 8 MiB tmpfs needs root (tests run as root in CI)");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mount);
    let mut creator = spawn_child("big-creator", &[mount.display().to_string()]);
    wait_published(&mut creator);
    kill9(&mut creator);
    let pool = Pool::create("big", &Config::new(5, 1 << 20).directory(&mount));
    assert!(pool.is_ok(), "restart after kill -9 on a tmpfs too small for two pools: {pool:?}");
    drop(pool);
    assert!(Pool::list(Some(&mount)).unwrap().is_empty(), "no file left behind");
}
