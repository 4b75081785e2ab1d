//! Shared memory between co-located peers: descriptors instead of bytes after the co-location
//! proof, no payload copy in the broker, no slot left held, bytes for peers that cannot map.
//! Each test keeps its pools and challenges in a private directory (`--shm-dir`).

mod common;

use common::*;
use shmpool::DType;
use shmpool_farm::{Client, ClientConfig, Error, Part, ShmConfig};
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);

fn shm_client(endpoint: &str, dir: &std::path::Path) -> Client {
    let shm = ShmConfig { directory: Some(dir.to_path_buf()), ..ShmConfig::default() };
    Client::connect(endpoint, ClientConfig { timeout: 5 * SECOND, attempts: 1, shm, ..ClientConfig::default() })
        .unwrap()
}

fn plane(seed: u32) -> Vec<u8> {
    (0..16 * 1024u32).flat_map(|i| ((i ^ seed) as f32).to_ne_bytes()).collect()
}

/// Files left in `dir` other than the broker's socket.
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    let names = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
    names.filter(|n| n != "broker").collect()
}

#[test]
fn co_located_arrays_travel_as_descriptors_read_in_place_and_no_slot_stays_held() {
    let dir = TempDir::new("zerocopy");
    let ep = dir.endpoint("broker");
    let d = dir.0.display().to_string();
    let broker_proc = broker(&ep, &["--shm-dir", &d]);
    let worker_proc = worker(&ep, "echo", "w", &["--shm-dir", &d, "--report-shared"]);
    wait_status(&ep, 10 * SECOND, "a co-located worker", |s| workers_of(s, "echo") == 1 && s["colocated_peers"] == 1);
    let mut client = shm_client(&ep, &dir.0);
    for i in 0..1000u32 {
        let data = plane(i);
        let parts = [Part::bytes(format!("event {i}")), Part::array(DType::F32, &[1, 128, 128], data.clone())];
        let reply = client.request("echo", &parts).unwrap();
        assert_eq!(reply.len(), 4, "request {i}");
        assert_eq!(text(&reply[1]), format!("event {i}"));
        let echoed = reply[2].as_array().expect("the array, echoed");
        assert!(echoed.shape == [1, 128, 128] && echoed.data[..] == data[..], "request {i}: wrong data");
        assert!(echoed.data.is_shared(), "request {i}: the reply array is not a view of the reply pool");
        assert_eq!(text(&reply[3]), "shared", "request {i}: the worker did not read the array in place");
    }
    let stats = client.stats();
    assert_eq!((stats.shared_parts, stats.resent_inline), (1000, 0), "{stats:?}");
    assert_eq!((stats.shared_reply_parts, stats.inline_reply_parts, stats.replies_resent_inline), (1000, 3000, 0));
    assert_eq!(stats.shared_replies, 1000, "every reply came whole through the reply pool");
    for pool in [client.pool().expect("the client's pool"), client.reply_pool().expect("the reply pool")] {
        let pool = pool.stats();
        assert_eq!((pool.writing, pool.reading, pool.ready, pool.free), (0, 0, 0, pool.slots), "after 1,000 requests");
    }
    let s = status(&ep);
    // The requests' descriptors; the replies' travel in their envelopes, the broker sees only
    // the confirmations.
    assert_eq!(s["counters"]["descriptors_forwarded"], 1000, "{s}");
    assert_eq!(s["counters"]["replies"], 1000, "{s}");
    // Handed to the worker through its request pool, none as a REQUEST.
    assert_eq!(s["counters"]["pooled_requests"], 1000, "{s}");
    assert_eq!(s["counters"]["descriptors_inlined"], 0, "{s}");
    drop(client);
    assert!(worker_proc.terminate(), "the worker did not stop cleanly on SIGTERM");
    assert!(broker_proc.terminate(), "the broker did not stop cleanly on SIGTERM");
    assert!(leftovers(&dir.0).is_empty(), "left in the pool directory: {:?}", leftovers(&dir.0));
}

#[test]
fn a_worker_that_cannot_see_the_directory_gets_bytes_from_the_broker() {
    let dir = TempDir::new("elsewhere");
    let other = TempDir::new("elsewhere-other-host");
    let ep = dir.endpoint("broker");
    let d = dir.0.display().to_string();
    let _broker = broker(&ep, &["--shm-dir", &d]);
    // Its pool directory is another one: it fails the proof, like a worker on another host.
    let _far = worker(&ep, "echo", "far", &["--shm-dir", &other.0.display().to_string(), "--report-shared"]);
    wait_status(&ep, 10 * SECOND, "the far worker", |s| workers_of(s, "echo") == 1);
    let mut client = shm_client(&ep, &dir.0);
    for i in 0..20 {
        let data = plane(i);
        let reply = client.request("echo", &[Part::array(DType::F32, &[16, 1024], data.clone())]).unwrap();
        assert!(reply[1].as_array().unwrap().data[..] == data[..]);
        assert_eq!(text(&reply[2]), "inline");
    }
    assert_eq!(client.stats().shared_parts, 20, "the client sent descriptors to its co-located broker");
    let s = status(&ep);
    assert_eq!(
        (s["counters"]["descriptors_inlined"].as_u64(), s["colocated_peers"].as_u64()),
        (Some(20), Some(1)),
        "{s}"
    );
}

#[test]
fn descriptors_a_worker_cannot_map_are_resent_inline_and_the_request_is_served() {
    let dir = TempDir::new("nomap");
    let ep = dir.endpoint("broker");
    let d = dir.0.display().to_string();
    let _broker = broker(&ep, &["--shm-dir", &d]);
    let first = worker(&ep, "echo", "first", &["--shm-dir", &d, "--report-shared"]);
    wait_status(&ep, 10 * SECOND, "a worker", |s| workers_of(s, "echo") == 1);
    let mut client = shm_client(&ep, &dir.0);
    let reply = client.request("echo", &[Part::array(DType::F32, &[16, 1024], plane(1))]).unwrap();
    assert_eq!(text(&reply[2]), "shared");
    // The pool's name disappears (as if the directory were not shared after all); a new worker
    // (nothing cached) cannot open it.
    first.kill();
    std::fs::remove_file(client.pool().unwrap().path()).unwrap();
    let _second = worker(&ep, "echo", "second", &["--shm-dir", &d, "--report-shared"]);
    wait_status(&ep, 10 * SECOND, "the new worker alone", |s| workers_of(s, "echo") == 1 && s["colocated_peers"] == 2);
    let data = plane(2);
    let reply = client.request("echo", &[Part::array(DType::F32, &[16, 1024], data.clone())]).unwrap();
    assert_eq!(text(&reply[0]), "second");
    assert!(reply[1].as_array().unwrap().data[..] == data[..]);
    assert_eq!(text(&reply[2]), "inline");
    assert_eq!(client.stats().resent_inline, 1);
}

#[test]
fn descriptors_from_an_unproven_peer_are_refused() {
    use shmpool_farm::shm::Descriptor;
    let dir = TempDir::new("foreign");
    let ep = dir.endpoint("broker");
    let _broker = broker(&ep, &["--shm-dir", &dir.0.display().to_string()]);
    let _worker = worker(&ep, "echo", "w", &["--shm-dir", &dir.0.display().to_string()]);
    wait_status(&ep, 10 * SECOND, "a worker", |s| workers_of(s, "echo") == 1);
    // A client without shared memory (never proven) forges a descriptor part.
    let config = ClientConfig {
        timeout: 5 * SECOND,
        attempts: 1,
        shm: ShmConfig { enabled: false, ..ShmConfig::default() },
        ..ClientConfig::default()
    };
    let mut forger = Client::connect(&ep, config).unwrap();
    let forged = Descriptor { dtype: DType::U8, shape: vec![8], slot: 0, offset: 0, len: 8, pool: "victim".into() };
    match forger.request("echo", &[Part::bytes(forged.encode())]) {
        Err(Error::Refused { code, .. }) => assert_eq!(code, "403"),
        other => panic!("a forged descriptor got {other:?}"),
    }
    let s = status(&ep);
    assert_eq!(s["counters"]["malformed"]["foreign-descriptor"], 1, "{s}");
}

#[test]
fn arrays_written_in_place_in_the_clients_slots_are_sent_without_a_copy() {
    let dir = TempDir::new("inplace");
    let ep = dir.endpoint("broker");
    let _broker = broker(&ep, &[]);
    let _worker = worker(&ep, "echo", "w", &["--report-shared"]);
    wait_status(&ep, 10 * SECOND, "a co-located worker", |s| workers_of(s, "echo") == 1 && s["colocated_peers"] == 1);
    let mut client = shm_client(&ep, &dir.0);
    for i in 0..100u32 {
        let mut part = client.array(DType::F32, &[16, 1024]);
        assert!(part.as_array().unwrap().data.is_shared(), "request {i}: not in a slot of the client's pool");
        part.data_mut().expect("writable").copy_from_slice(&plane(i));
        let reply = client.request("echo", std::slice::from_ref(&part)).unwrap();
        assert!(reply[1].data() == part.data() && text(&reply[2]) == "shared", "request {i}");
        let pool = client.pool().unwrap().stats();
        assert_eq!(pool.writing, 1, "the part holds its slot until dropped");
        drop(part);
    }
    assert_eq!(client.stats().shared_parts, 100);
    let pool = client.pool().unwrap().stats();
    assert_eq!((pool.writing, pool.free), (0, pool.slots), "slots held after the parts were dropped");
    // Without shared memory the same call gives an ordinary array, sent as bytes.
    let mut plain = common::client(&ep, 5 * SECOND, 1);
    let mut part = plain.array(DType::F32, &[16, 1024]);
    part.data_mut().unwrap().copy_from_slice(&plane(7));
    assert!(!part.as_array().unwrap().data.is_shared());
    for _ in 0..3 {
        // Each request lends the same buffer to libzmq again.
        assert_eq!(plain.request("echo", std::slice::from_ref(&part)).unwrap()[1].data(), &plane(7)[..]);
    }
}
