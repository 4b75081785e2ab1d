//! Faults with real processes: a worker killed mid-request, a stopped worker, a restarted broker.

mod common;

use common::*;
use shmpool_farm::Part;
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);
const FAST: &[&str] = &["--heartbeat-ms", "200"];

#[test]
fn a_worker_killed_mid_request_is_replaced_by_another_within_the_retry_budget() {
    let dir = TempDir::new("kill9");
    let ep = dir.endpoint("broker");
    let _broker = broker(&ep, FAST);
    // The slow worker registers first, so it is the least recently used and gets the request.
    let slow = worker(&ep, "echo", "slow", &["--heartbeat-ms", "200", "--delay-ms", "60000"]);
    wait_status(&ep, 10 * SECOND, "the slow worker", |s| workers_of(s, "echo") == 1);
    let _fast = worker(&ep, "echo", "fast", FAST);
    wait_status(&ep, 10 * SECOND, "both workers", |s| workers_of(s, "echo") == 2);
    let endpoint = ep.clone();
    let asking = std::thread::spawn(move || {
        let started = Instant::now();
        let reply = client(&endpoint, SECOND, 3).request("echo", &[Part::bytes("job")]);
        (reply, started.elapsed())
    });
    wait_status(&ep, 10 * SECOND, "the slow worker busy", |s| s["services"]["echo"]["idle"] == 1);
    let slow_pid = slow.pid();
    assert_eq!(request_pools_of(&dir.0, slow_pid), 1, "the slow worker's request pool");
    slow.kill();
    let (reply, elapsed) = asking.join().unwrap();
    let reply = reply.expect("answered after the worker died");
    assert_eq!((text(&reply[0]), text(&reply[1])), ("fast".to_string(), "job".to_string()));
    assert!(elapsed < 3 * SECOND, "took {elapsed:?}");
    // The dead worker is gone after the heartbeat window (3 × 200 ms), and so is the name of the
    // request pool it could not remove.
    let s = wait_status(&ep, 5 * SECOND, "the dead worker dropped", |s| workers_of(s, "echo") == 1);
    // The job went to each worker through its request pool (to the fast one re-queued by the
    // broker, or sent again by the client, or both).
    assert!(s["counters"]["pooled_requests"].as_u64() >= Some(2), "{s}");
    assert_eq!(request_pools_of(&dir.0, slow_pid), 0);
}

/// How many request pools of process `pid` are in `dir`.
fn request_pools_of(dir: &std::path::Path, pid: i32) -> usize {
    let prefix = format!("shmpool.farm-{pid}-");
    let names = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
    names.filter(|n| n.starts_with(&prefix) && n.ends_with("-q")).count()
}

#[test]
fn a_stopped_worker_is_dropped_after_the_heartbeat_window_and_gets_no_work() {
    let dir = TempDir::new("sigstop");
    let ep = dir.endpoint("broker");
    let _broker = broker(&ep, FAST);
    let stopped = worker(&ep, "echo", "stopped", FAST);
    let _alive = worker(&ep, "echo", "alive", FAST);
    wait_status(&ep, 10 * SECOND, "both workers", |s| workers_of(s, "echo") == 2);
    stopped.signal(libc::SIGSTOP);
    let started = Instant::now();
    let s = wait_status(&ep, 5 * SECOND, "the stopped worker dropped", |s| workers_of(s, "echo") == 1);
    assert!(started.elapsed() >= Duration::from_millis(300), "dropped too early: {:?}", started.elapsed());
    assert_eq!(s["counters"]["expired_workers"], 1, "{s}");
    let mut client = client(&ep, 2 * SECOND, 1);
    for i in 0..20u8 {
        let reply = client.request("echo", &[Part::bytes(vec![i])]).unwrap();
        assert_eq!(text(&reply[0]), "alive");
    }
}

#[test]
fn workers_reconnect_to_a_restarted_broker_and_clients_succeed_again() {
    let dir = TempDir::new("restart");
    let ep = dir.endpoint("broker");
    let first = broker(&ep, FAST);
    let reconnect = ["--heartbeat-ms", "200", "--reconnect-ms", "200"];
    let _workers = [worker(&ep, "echo", "a", &reconnect), worker(&ep, "echo", "b", &reconnect)];
    wait_status(&ep, 10 * SECOND, "both workers", |s| workers_of(s, "echo") == 2);
    let mut client = client(&ep, SECOND, 5);
    assert_eq!(text(&client.request("echo", &[Part::bytes("before")]).unwrap()[1]), "before");
    first.kill();
    let _second = broker(&ep, FAST);
    wait_status(&ep, 10 * SECOND, "both workers back", |s| workers_of(s, "echo") == 2);
    for i in 0..10u8 {
        let reply = client.request("echo", &[Part::bytes(vec![i])]).expect("served after the restart");
        assert_eq!(reply[1].data(), [i]);
    }
}

#[test]
fn a_worker_without_broker_reconnects_with_exponential_backoff() {
    use shmpool_farm::{Worker, WorkerConfig};
    let dir = TempDir::new("backoff");
    let config = WorkerConfig {
        heartbeat: Duration::from_millis(20),
        reconnect_min: Duration::from_millis(50),
        ..WorkerConfig::default()
    };
    // Nobody is bound there: every session ends after 3 silent heartbeats (60 ms).
    let worker = Worker::connect(&dir.endpoint("nobody"), "echo", config).unwrap();
    let started = Instant::now();
    while worker.reconnects() < 6 {
        assert!(started.elapsed() < 10 * SECOND, "only {} reconnects", worker.reconnects());
        std::thread::sleep(Duration::from_millis(5));
    }
    // 6 sessions of 60 ms plus waits of 50, 100, 200, 400 and 800 ms: ≥ 1910 ms when doubling (a
    // constant 50 ms would take 610 ms).
    assert!(started.elapsed() >= Duration::from_millis(1800), "backoff not growing: {:?}", started.elapsed());
}

#[test]
fn a_worker_busy_longer_than_the_heartbeat_window_stays_registered_and_answers() {
    let dir = TempDir::new("busy");
    let ep = dir.endpoint("broker");
    let _broker = broker(&ep, FAST);
    // 2 s on the request: more than three times the broker's window (3 × 200 ms), during which
    // only the worker's background thread heartbeats.
    let _busy = worker(&ep, "echo", "busy", &["--heartbeat-ms", "200", "--delay-ms", "2000"]);
    wait_status(&ep, 10 * SECOND, "the worker", |s| workers_of(s, "echo") == 1);
    let started = Instant::now();
    // One attempt: the reply of a worker the broker dropped as dead would be refused, and the
    // client would time out.
    let reply = client(&ep, 10 * SECOND, 1).request("echo", &[Part::bytes("long job")]).expect("answered");
    assert_eq!((text(&reply[0]), text(&reply[1])), ("busy".to_string(), "long job".to_string()));
    assert!(started.elapsed() >= 2 * SECOND, "not busy: {:?}", started.elapsed());
    let s = status(&ep);
    assert_eq!((s["counters"]["expired_workers"].as_u64(), workers_of(&s, "echo")), (Some(0), 1), "{s}");
}
