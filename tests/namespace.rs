//! Peers in separate "containers": PID, mount and IPC namespaces made with `unshare`, with their
//! own empty `/dev/shm`, sharing nothing but the pool directory, bind-mounted at another path.
//! Data flows and liveness holds in both directions, although PIDs mean nothing across them.

mod common;

use common::*;
use shmpool::{Config, Pool, Role};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Inside the namespace the pool directory is visible only at this path.
const INSIDE_DIR: &str = "/mnt/shmpool-pool";

const NS_SCRIPT: &str = r#"set -e
mount -t tmpfs tmpfs /mnt
mkdir -p /mnt/shmpool-pool
mount --bind "$POOL_DIR" /mnt/shmpool-pool
mount -t tmpfs tmpfs /dev/shm
export SHMPOOL_DIR=/mnt/shmpool-pool
exec "$0" child --exact --nocapture --test-threads=1 -q"#;

fn in_namespace(dir: &TempDir, role: &str, args: &[String]) -> Child {
    Command::new("unshare")
        .args(["--pid", "--fork", "--mount", "--ipc", "--kill-child=SIGKILL", "--", "sh", "-c", NS_SCRIPT])
        .arg(std::env::current_exe().unwrap())
        .env("POOL_DIR", dir.path())
        .env(ROLE_ENV, role)
        .env("SHMPOOL_TEST_ARGS", args.join("\u{1f}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) must be installed; the tests run as root")
}

#[test]
fn child() {
    child_main(|role, args| {
        let name = &args[0];
        match role {
            // In the namespace: receive `count` buffers, then hold one more forever.
            "ns-consumer" => {
                let dir = std::env::var("SHMPOOL_DIR").unwrap();
                if dir != INSIDE_DIR || std::fs::read_dir("/dev/shm").unwrap().next().is_some() {
                    return Err("not in the expected namespace".into());
                }
                let pool = Pool::open(name).map_err(|e| e.to_string())?;
                let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
                let count: u32 = args[1].parse().unwrap();
                for i in 0..count {
                    let buf = consumer.recv(secs(20)).map_err(|e| e.to_string())?;
                    if check(&buf)? != (1, i) {
                        return Err(format!("buffer {i} out of order"));
                    }
                }
                let _held = consumer.recv(secs(20)).map_err(|e| e.to_string())?;
                loop {
                    std::thread::park();
                }
            }
            // Outside: take a slot and keep writing it forever.
            "hold-writing" => {
                let pool = Pool::open_in(name, Some(Path::new(&args[1]))).map_err(|e| e.to_string())?;
                let producer = pool.producer().map_err(|e| e.to_string())?;
                let _writing = producer.acquire(secs(5)).map_err(|e| e.to_string())?;
                loop {
                    std::thread::park();
                }
            }
            // In the namespace: see the outside producer alive, then see it dead and its slot freed.
            "ns-watch" => {
                let pool = Pool::open(name).map_err(|e| e.to_string())?;
                let producer_alive =
                    |pool: &Pool| pool.stats().peers.iter().any(|p| p.role == Role::Producer && p.alive);
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while !(producer_alive(&pool) && pool.stats().writing == 1) {
                    if std::time::Instant::now() > deadline {
                        return Err("never saw the producer alive".into());
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                std::fs::write(Path::new(INSIDE_DIR).join("saw-alive"), b"").map_err(|e| e.to_string())?;
                loop {
                    pool.reap();
                    let stats = pool.stats();
                    if stats.writing == 0 && stats.free == stats.slots && !producer_alive(&pool) {
                        return Ok(());
                    }
                    if std::time::Instant::now() > deadline {
                        return Err(format!("never saw the producer die: {stats:?}"));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            // In the namespace: receive `count` buffers in order, waiting only with poll(2) on
            // the consumer's readiness handle.
            "ns-ready-consumer" => {
                let pool = Pool::open(name).map_err(|e| e.to_string())?;
                let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
                let fd = consumer.ready_fd().map_err(|e| e.to_string())?;
                let count: u32 = args[1].parse().unwrap();
                let mut next = 0;
                while next < count {
                    while let Some(buf) = consumer.try_recv().map_err(|e| e.to_string())? {
                        if check(&buf)? != (1, next) {
                            return Err(format!("buffer {next} out of order"));
                        }
                        next += 1;
                    }
                    let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                    // SAFETY: one valid pollfd; the consumer keeps `fd` open.
                    if next < count && unsafe { libc::poll(&mut poll, 1, 10_000) } == 0 {
                        return Err(format!("no readiness at buffer {next}"));
                    }
                }
                Ok(())
            }
            _ => Err(format!("unknown role {role}")),
        }
    });
}

#[test]
fn a_consumer_in_another_container_waits_through_its_readiness_handle() {
    let dir = TempDir::new("ns-ready");
    let pool = Pool::create("nsr", &Config::new(2, 8192).directory(dir.path())).unwrap();
    let count = 500u32;
    let inside = in_namespace(&dir, "ns-ready-consumer", &["nsr".to_string(), count.to_string()]);
    wait_until(Duration::from_secs(20), "the namespaced consumer to join", || pool.stats().consumers == 1);
    let producer = pool.producer().unwrap();
    for i in 0..count {
        let mut buf = producer.acquire(secs(20)).unwrap();
        fill(&mut buf[..64], 1, i);
        buf.set_len(64).unwrap();
        buf.publish().unwrap();
        if i % 16 == 0 {
            // Let the consumer drain and arm its handle, so that publishing has to wake it.
            wait_until(Duration::from_secs(20), "the consumer to arm", || pool.stats().waiters == 1);
        }
    }
    expect_success(inside, Duration::from_secs(30), "the namespaced consumer");
    assert!(pool.stats().wakes > 0, "the consumer was woken through its handle");
}

#[test]
fn a_consumer_in_another_container_receives_and_its_death_frees_its_slots() {
    let dir = TempDir::new("ns-consumer");
    let config = Config::new(2, 8192).directory(dir.path()).lease(Duration::from_millis(100));
    let pool = Pool::create("ns", &config).unwrap();
    let count = 200u32;
    let mut inside = in_namespace(&dir, "ns-consumer", &["ns".to_string(), count.to_string()]);
    wait_until(Duration::from_secs(20), "the namespaced consumer to join", || pool.stats().consumers == 1);
    let peer = pool.stats().peers.into_iter().find(|p| p.role == Role::Consumer).unwrap();
    assert!(peer.alive);
    assert_ne!(peer.pid, inside.id(), "its PID is from its own namespace");
    let producer = pool.producer().unwrap();
    for i in 0..=count {
        let mut buf = producer.acquire(secs(20)).unwrap();
        fill(&mut buf[..8192], 1, i);
        buf.set_len(8192).unwrap();
        buf.publish().unwrap();
    }
    wait_until(Duration::from_secs(20), "the consumer to hold its last buffer", || {
        let s = pool.stats();
        s.reading == 1 && s.ready == 0
    });
    kill9(&mut inside);
    // Its held slot and its place come back although no PID of it is meaningful here.
    wait_until(Duration::from_secs(5), "the dead consumer's slot to be freed", || {
        pool.reap();
        let s = pool.stats();
        s.free == 2 && s.consumers == 0
    });
    let mut buf = producer.acquire(secs(1)).unwrap();
    buf.set_len(0).unwrap();
    assert_eq!(buf.publish().unwrap(), None, "no consumer is left to deliver to");
}

#[test]
fn a_producer_dying_outside_is_seen_from_inside() {
    let dir = TempDir::new("ns-watch");
    let config = Config::new(2, 8192).directory(dir.path()).lease(Duration::from_millis(100));
    let pool = Pool::create("watch", &config).unwrap();
    let mut outside = spawn_child("hold-writing", &["watch".to_string(), dir.path().display().to_string()]);
    wait_until(Duration::from_secs(20), "the producer to take a slot", || pool.stats().writing == 1);
    let inside = in_namespace(&dir, "ns-watch", &["watch".to_string()]);
    wait_until(Duration::from_secs(20), "the watcher to see the producer", || dir.path().join("saw-alive").exists());
    kill9(&mut outside);
    expect_success(inside, Duration::from_secs(30), "the namespaced watcher");
    assert_eq!(pool.stats().writing, 0);
}
