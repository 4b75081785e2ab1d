//! The broker, workers and clients as real processes over real sockets: load balancing, service
//! names, MMI, bounded queues, malformed input.

mod common;

use common::*;
use shmpool_farm::{Error, Part};
use std::collections::HashMap;
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn four_workers_share_400_requests_fairly_and_every_reply_matches() {
    let dir = TempDir::new("lb");
    let ep = dir.endpoint("broker");
    let _broker = broker(&ep, &[]);
    let _workers: Vec<Proc> = (0..4).map(|i| worker(&ep, "echo", &format!("w{i}"), &[])).collect();
    wait_status(&ep, 10 * SECOND, "4 workers", |s| workers_of(s, "echo") == 4);
    let mut client = client(&ep, 5 * SECOND, 1);
    let mut share: HashMap<String, u32> = HashMap::new();
    for i in 0..400u32 {
        let payload = format!("request {i}");
        let reply = client.request("echo", &[Part::bytes(payload.as_bytes())]).unwrap();
        assert_eq!(reply.len(), 2);
        assert_eq!(text(&reply[1]), payload, "reply {i} does not match its request");
        *share.entry(text(&reply[0])).or_default() += 1;
    }
    assert_eq!(share.len(), 4, "{share:?}");
    // One client at a time and least-recently-used dispatch: a strict rotation.
    assert!(share.values().all(|&n| n == 100), "unfair share: {share:?}");
}

#[test]
fn requests_reach_only_their_service_and_unknown_services_are_refused() {
    let dir = TempDir::new("svc");
    let ep = dir.endpoint("broker");
    let _broker = broker(&ep, &["--queue-deadline-ms", "300"]);
    let _workers = [
        worker(&ep, "alpha", "alpha-1", &[]),
        worker(&ep, "alpha", "alpha-2", &[]),
        worker(&ep, "beta", "beta-1", &[]),
        worker(&ep, "beta", "beta-2", &[]),
    ];
    wait_status(&ep, 10 * SECOND, "2+2 workers", |s| workers_of(s, "alpha") == 2 && workers_of(s, "beta") == 2);
    let mut client = client(&ep, 5 * SECOND, 1);
    for i in 0..40 {
        let service = if i % 2 == 0 { "alpha" } else { "beta" };
        let reply = client.request(service, &[Part::bytes(vec![i as u8])]).unwrap();
        assert!(text(&reply[0]).starts_with(service), "{service} answered by {}", text(&reply[0]));
        assert_eq!(reply[1].data(), [i as u8]);
    }
    let mmi = |client: &mut shmpool_farm::Client, service: &str, name: &str| {
        text(&client.request(service, &[Part::bytes(name)]).unwrap()[0])
    };
    assert_eq!(mmi(&mut client, "mmi.service", "alpha"), "200");
    assert_eq!(mmi(&mut client, "mmi.service", "gamma"), "404");
    assert_eq!(mmi(&mut client, "mmi.nothing", "alpha"), "501");
    let started = std::time::Instant::now();
    match client.request("gamma", &[Part::bytes("x")]) {
        Err(Error::Refused { code, .. }) => assert_eq!(code, "503"),
        other => panic!("a request to a service without workers got {other:?}"),
    }
    assert!(started.elapsed() < 3 * SECOND);
}

#[test]
fn arrays_travel_with_dtype_and_shape() {
    let dir = TempDir::new("arrays");
    let ep = dir.endpoint("broker");
    let _broker = broker(&ep, &[]);
    let _worker = worker(&ep, "echo", "w", &[]);
    wait_status(&ep, 10 * SECOND, "a worker", |s| workers_of(s, "echo") == 1);
    let data: Vec<u8> = (0..512 * 512).flat_map(|i| (i as f32).to_ne_bytes()).collect();
    let parts = [
        Part::bytes("plane0"),
        Part::bytes("{\"run\": 1}"),
        Part::array(shmpool::DType::F32, &[1, 1, 512, 512], data.clone()),
    ];
    let reply = client(&ep, 5 * SECOND, 1).request("echo", &parts).unwrap();
    assert_eq!(reply.len(), 4);
    let array = reply[3].as_array().expect("an array part");
    assert_eq!((array.dtype, &array.shape[..]), (shmpool::DType::F32, &[1, 1, 512, 512][..]));
    assert!(array.data[..] == data[..]);
}

#[test]
fn a_vanished_client_leaves_no_queued_state_and_bounds_hold() {
    let dir = TempDir::new("bounds");
    let ep = dir.endpoint("broker");
    let _broker = broker(&ep, &["--queue-deadline-ms", "4000", "--max-queued", "3"]);
    {
        // Requests to a service nobody serves; the client gives up and vanishes.
        let mut gone = client(&ep, Duration::from_millis(300), 3);
        assert!(matches!(gone.request("nobody", &[Part::bytes("x")]), Err(Error::NoReply { .. })));
    }
    // Its three attempts wait in the queue, which is then full.
    wait_status(&ep, 2 * SECOND, "3 queued requests", |s| s["queued"] == 3);
    let mut c = client(&ep, 5 * SECOND, 1);
    match c.request("nobody", &[Part::bytes("y")]) {
        Err(Error::Refused { code, .. }) => assert_eq!(code, "507"),
        other => panic!("{other:?}"),
    }
    let s = wait_status(&ep, 10 * SECOND, "empty queues", |s| s["queued"] == 0 && s["queued_bytes"] == 0);
    assert!(s["services"].as_object().unwrap().is_empty(), "forgotten service kept: {s}");
    assert!(s["counters"]["refused"].as_u64().unwrap() >= 4, "{s}");
}

#[test]
fn malformed_messages_are_dropped_counted_and_disturb_nothing() {
    use shmpool_farm::transport::{Context, Frame};
    let dir = TempDir::new("malformed");
    let ep = dir.endpoint("broker");
    let _broker = broker(&ep, &[]);
    let _worker = worker(&ep, "echo", "w", &[]);
    wait_status(&ep, 10 * SECOND, "a worker", |s| workers_of(s, "echo") == 1);
    let ctx = Context::new();
    let rogue = ctx.dealer().unwrap();
    rogue.connect(&ep).unwrap();
    let bad: [&[&[u8]]; 5] = [
        &[b"garbage"],
        &[b"", b"MDPC02", b"echo", b"x"],
        &[b"", b"MDPC01", b""],
        &[b"", b"MDPW01", &[9]],
        &[b"", b"MDPW01", &[3], b"nobody"],
    ];
    for frames in bad {
        rogue.send(frames.iter().map(|f| Frame::from(*f)).collect()).unwrap();
    }
    // The rogue spoke MDPW01 wrongly: it is told DISCONNECT.
    assert!(rogue.wait_readable(5 * SECOND).unwrap(), "no DISCONNECT for a malformed worker message");
    let got: Vec<Vec<u8>> = rogue.recv().unwrap().iter().map(|f| f.to_vec()).collect();
    assert_eq!(got, vec![b"".to_vec(), b"MDPW01".to_vec(), vec![5]]);
    let s = wait_status(&ep, 5 * SECOND, "counted", |s| {
        s["counters"]["malformed"].as_object().map(|m| m.values().filter_map(|v| v.as_u64()).sum::<u64>()) == Some(5)
    });
    assert_eq!(workers_of(&s, "echo"), 1, "{s}");
    let reply = client(&ep, 5 * SECOND, 1).request("echo", &[Part::bytes("still fine")]).unwrap();
    assert_eq!(text(&reply[1]), "still fine");
}

#[test]
fn replies_from_another_thread_go_out_while_the_worker_waits_in_recv() {
    use shmpool_farm::{Request, ShmConfig, Worker, WorkerConfig};
    use std::time::Instant;
    let dir = TempDir::new("threads");
    let ep = dir.endpoint("broker");
    let _broker = broker(&ep, &[]);
    // Heartbeats every 5 s: a reply left waiting until the receiving thread's next beat would
    // take seconds.
    let shm = ShmConfig { enabled: false, ..ShmConfig::default() };
    let config = WorkerConfig { heartbeat: 5 * SECOND, shm, ..WorkerConfig::default() };
    let worker = Worker::connect(&ep, "echo", config).unwrap();
    wait_status(&ep, 10 * SECOND, "the worker", |s| workers_of(s, "echo") == 1);
    let (tx, rx) = std::sync::mpsc::channel::<Request>();
    std::thread::scope(|scope| {
        // Receives and hands requests over, then waits in `recv` again at once, until "stop".
        let worker = &worker;
        scope.spawn(move || loop {
            let request = worker.recv(Some(10 * SECOND)).unwrap().expect("a request within 10 s");
            let stop = request.parts()[0].data() == b"stop";
            tx.send(request).unwrap();
            if stop {
                break;
            }
        });
        // Replies once the receiving thread surely waits in `recv` again.
        scope.spawn(move || {
            for request in rx {
                std::thread::sleep(Duration::from_millis(20));
                let echo: Vec<Part> = request.parts().iter().map(|p| Part::bytes(p.data())).collect();
                request.reply(echo).unwrap();
            }
        });
        let mut client = client(&ep, 5 * SECOND, 1);
        for i in 0..20u8 {
            let started = Instant::now();
            let reply = client.request("echo", &[Part::bytes(vec![i])]).unwrap();
            assert_eq!(reply[0].data(), [i]);
            assert!(started.elapsed() < SECOND, "request {i} took {:?}", started.elapsed());
        }
        client.request("echo", &[Part::bytes("stop")]).unwrap();
    });
}
