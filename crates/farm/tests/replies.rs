//! Replies through the client's reply pool: a co-located worker's reply arrays arrive as views of
//! the client's slots, and neither a worker killed after writing its reply nor a client killed
//! while holding a reply view leaves a slot (or a pool) behind for good.

mod common;

use common::*;
use shmpool::DType;
use shmpool_farm::{Client, ClientConfig, Part, ShmConfig, Worker, WorkerConfig};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

fn shm_client(endpoint: &str, dir: &Path, timeout: Duration, attempts: u32) -> Client {
    let shm = ShmConfig { directory: Some(dir.to_path_buf()), ..ShmConfig::default() };
    Client::connect(endpoint, ClientConfig { timeout, attempts, shm, ..ClientConfig::default() }).unwrap()
}

fn plane(seed: u32) -> Vec<u8> {
    (0..16 * 1024u32).flat_map(|i| ((i ^ seed) as f32).to_ne_bytes()).collect()
}

/// Sends one array and checks the echo: a view of the reply pool; returns the worker's tag.
fn echo_shared(client: &mut Client, seed: u32) -> String {
    let data = plane(seed);
    let reply = client.request("echo", &[Part::array(DType::F32, &[16, 1024], data.clone())]).unwrap();
    let echoed = reply[1].as_array().expect("an array");
    assert!(echoed.data[..] == data[..], "request {seed}: wrong data");
    assert!(echoed.data.is_shared(), "request {seed}: the reply is not a view of the reply pool");
    text(&reply[0])
}

/// Names of pools in `dir` made by process `pid`.
fn pools_of(dir: &Path, pid: u32) -> Vec<String> {
    let prefix = format!("shmpool.farm-{pid}-");
    let names = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
    names.filter(|n| n.starts_with(&prefix)).collect()
}

#[test]
fn a_worker_killed_after_writing_its_reply_leaves_no_slot_held() {
    let dir = TempDir::new("reply-crash");
    let ep = dir.endpoint("broker");
    let _broker = broker(&ep, &["--heartbeat-ms", "200"]);
    // The first worker (least recently used: it gets the first request) writes the reply into
    // the client's pool, publishes it, and is killed before sending the REPLY.
    let mut crashing = worker(&ep, "echo", "crash", &["--crash-before-send", "--heartbeat-ms", "200"]);
    wait_status(&ep, 10 * SECOND, "the first worker", |s| workers_of(s, "echo") == 1);
    let _ok = worker(&ep, "echo", "ok", &["--heartbeat-ms", "200"]);
    wait_status(&ep, 10 * SECOND, "both workers", |s| workers_of(s, "echo") == 2 && s["colocated_peers"] == 2);
    let mut client = shm_client(&ep, &dir.0, SECOND, 3);
    assert_eq!(echo_shared(&mut client, 0), "ok", "the retry (or the re-queued request) is served by the other");
    let status = crashing.child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    for i in 1..=50 {
        assert_eq!(echo_shared(&mut client, i), "ok");
    }
    let stats = client.stats();
    assert_eq!(stats.shared_reply_parts, 51, "{stats:?}");
    let pool = client.reply_pool().unwrap().clone();
    pool.reap(); // a slot the dead worker was still writing would be reclaimed here
    client.request("echo", &[Part::bytes("drain")]).unwrap(); // releases slots of attempts given up
    let s = pool.stats();
    assert_eq!((s.writing, s.ready, s.reading, s.free), (0, 0, 0, s.slots), "slots held: {s:?}");
}

#[test]
fn a_client_killed_while_holding_a_reply_view_leaves_nothing_behind() {
    let dir = TempDir::new("reply-holder");
    let ep = dir.endpoint("broker");
    let d = dir.0.display().to_string();
    let _broker = broker(&ep, &[]);
    let _worker = worker(&ep, "echo", "w", &[]);
    wait_status(&ep, 10 * SECOND, "a co-located worker", |s| workers_of(s, "echo") == 1 && s["colocated_peers"] == 1);
    let args = ["--connect", &ep, "--service", "echo", "--events", "5", "--planes", "1", "--side", "64"];
    let mut holder = Command::new(env!("CARGO_BIN_EXE_shmpool-farm-client"));
    holder.args(args).args(["--shm-dir", &d, "--hold"]).stdout(Stdio::piped());
    let mut holder = Proc { child: holder.spawn().unwrap() }; // killed on drop, also on a failure
    let pid = holder.child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = holder.child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let _ = tx.send(BufReader::new(stdout).lines().next());
    });
    let line = rx.recv_timeout(30 * SECOND).expect("the holding client's results").unwrap().unwrap();
    let result: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(result["shared_reply_parts"], 5, "{result}");
    assert_eq!((result["held_reply_views"].as_u64(), result["reply_slots_held"].as_u64()), (Some(1), Some(1)));
    assert_eq!(pools_of(&dir.0, pid).len(), 2, "its request and reply pools: {:?}", pools_of(&dir.0, pid));
    holder.kill(); // SIGKILL, with the view held
                   // The worker serves the next client through shared memory, and forgets the dead client's
                   // pools (removing their names) when it opens the new client's.
    let mut client = shm_client(&ep, &dir.0, 5 * SECOND, 1);
    for i in 0..20 {
        assert_eq!(echo_shared(&mut client, i), "w");
    }
    let deadline = Instant::now() + 10 * SECOND;
    while !pools_of(&dir.0, pid).is_empty() {
        assert!(Instant::now() < deadline, "left behind: {:?}", pools_of(&dir.0, pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = client.reply_pool().unwrap().stats();
    assert_eq!((s.ready, s.reading, s.free), (0, 0, s.slots), "{s:?}");
}

#[test]
fn a_worker_that_cannot_write_into_the_reply_pool_sends_bytes() {
    let dir = TempDir::new("reply-readonly");
    let ep = dir.endpoint("broker");
    let _broker = broker(&ep, &[]);
    let first = worker(&ep, "echo", "first", &[]);
    wait_status(&ep, 10 * SECOND, "a co-located worker", |s| workers_of(s, "echo") == 1 && s["colocated_peers"] == 1);
    let mut client = shm_client(&ep, &dir.0, 5 * SECOND, 1);
    client.request("echo", &[Part::bytes("create the pools")]).unwrap();
    assert_eq!(client.stats().shared_replies, 1, "the first worker delivered its reply in the pool");
    // The reply pool's name disappears (as for a worker not allowed to open it), and the next
    // worker never had it open: bytes come back.
    std::fs::remove_file(client.reply_pool().unwrap().path()).unwrap();
    assert!(first.terminate(), "the first worker leaves cleanly (DISCONNECT)");
    wait_status(&ep, 10 * SECOND, "the first worker gone", |s| workers_of(s, "echo") == 0);
    let _second = worker(&ep, "echo", "second", &[]);
    wait_status(&ep, 10 * SECOND, "the second worker", |s| workers_of(s, "echo") == 1);
    let data = plane(7);
    let reply = client.request("echo", &[Part::array(DType::F32, &[16, 1024], data.clone())]).unwrap();
    let echoed = reply[1].as_array().unwrap();
    assert!(echoed.data[..] == data[..] && !echoed.data.is_shared());
    assert_eq!(text(&reply[0]), "second");
    let stats = client.stats();
    assert_eq!((stats.shared_replies, stats.shared_reply_parts, stats.inline_reply_parts), (1, 0, 4), "{stats:?}");
}

#[test]
fn a_worker_computing_into_reply_arrays_sends_them_with_no_copy() {
    let dir = TempDir::new("reply-in-place");
    let ep = dir.endpoint("broker");
    let _broker = broker(&ep, &[]);
    let shm = ShmConfig { directory: Some(dir.0.clone()), ..ShmConfig::default() };
    let worker = Worker::connect(&ep, "negate", WorkerConfig { shm, ..WorkerConfig::default() }).unwrap();
    wait_status(&ep, 10 * SECOND, "a co-located worker", |s| workers_of(s, "negate") == 1 && s["colocated_peers"] == 1);
    let events = 200;
    std::thread::scope(|scope| {
        let served = scope.spawn(|| {
            let mut in_place = 0;
            while in_place < events {
                let Some(request) = worker.recv(Some(10 * SECOND)).unwrap() else { panic!("no request in 10 s") };
                // The client's event: name, metadata, a (1, 1, 64, 64) float32 plane; the reply is
                // the plane negated, computed straight into a slot of the client's reply pool.
                let plane = request.parts()[2].as_array().expect("a plane");
                let mut out = request.array(DType::F32, &plane.shape);
                let written = out.data_mut().expect("writable");
                for (to, from) in written.chunks_exact_mut(4).zip(plane.data.chunks_exact(4)) {
                    to.copy_from_slice(&(-f32::from_ne_bytes(from.try_into().unwrap())).to_ne_bytes());
                }
                in_place += u32::from(out.as_array().unwrap().data.is_shared());
                request.reply(vec![Part::bytes("negated"), out]).unwrap();
            }
            in_place
        });
        let out = Command::new(env!("CARGO_BIN_EXE_shmpool-farm-client"))
            .args(["--connect", &ep, "--service", "negate", "--events", &events.to_string(), "--planes", "1"])
            .args(["--side", "64", "--negated", "--shm-dir", &dir.0.display().to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(served.join().unwrap(), events, "every reply array was a slot of the client's reply pool");
        assert_eq!(
            (result["shared_reply_parts"].as_u64(), result["shared_replies"].as_u64()),
            (Some(200), Some(200)),
            "{result}"
        );
        assert_eq!(result["reply_slots_held"], 0, "{result}");
    });
}
