//! The host/worker protocol across processes: this test binary re-executes itself as the worker.
//! Every transport echoes messages; negotiation, authentication, liveness, shutdown and the
//! `namespace` backend are checked against real processes.

#[path = "../../../tests/common/mod.rs"]
mod common;

use common::*;
use shmpool_protocol::Error;
use shmpool_protocol::{
    connect_env, Backend, ConnConfig, Connection, Listener, Options, Payload, Protocol, SendBuf, WorkerProcess,
    NAMESPACE_DIR, PROTOCOL_ENV, SECRET_ENV,
};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SLOT: usize = 1 << 20;

/// Small pools and fast heartbeats, so that tests are quick and light; a peer is dead after 1 s
/// of silence (not less: on a loaded machine a live process can go unscheduled for a few 100 ms).
fn options() -> Options {
    Options { slots: 4, slot_size: SLOT as u64, heartbeat_ms: 100, missed_heartbeats: 10, ..Options::default() }
}

fn err(e: Error) -> String {
    e.to_string()
}

#[test]
fn child() {
    child_main(|role, _args| {
        // A worker may ask for larger slots than the host (see `a_side_asking_for_larger_slots_gets_them`).
        let slot_size = std::env::var("TEST_SLOT_SIZE").map_or(SLOT as u64, |v| v.parse().unwrap());
        // Patient on its side: the host's options decide how fast a silent worker is found dead.
        let config = ConnConfig { options: Options { slot_size, ..patient() }, ..ConnConfig::default() };
        let conn = connect_env(&config).map_err(err)?;
        if role == "second-wrong-secret" {
            // The main channel is fine; a second one with a wrong secret must be refused.
            std::env::set_var(SECRET_ENV, "00".repeat(32));
            let e = connect_env(&config).expect_err("a wrong secret was accepted");
            if !matches!(e, Error::Auth(_)) {
                return Err(format!("expected an authentication error, got {e}"));
            }
        }
        echo(&conn)
    });
}

/// Echoes every message; `exit` exits the process, `whoami` answers with the pool directory.
fn echo(conn: &Connection) -> Result<(), String> {
    loop {
        let msg = match conn.recv(None) {
            Ok(m) => m,
            Err(Error::Disconnected(_)) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        match &msg.header[..] {
            b"exit" => std::process::exit(0),
            // Replies with copies (not views of what came): this side's pools must hold them.
            b"copy" => {
                let copies: Vec<Vec<u8>> = msg.buffers.iter().map(|b| b.to_vec()).collect();
                conn.send(b"copy", copies.iter().map(|c| SendBuf::Bytes(c)).collect()).map_err(err)?;
            }
            b"whoami" => {
                let dir = std::env::var("SHMPOOL_DIR").unwrap_or_default();
                conn.send(format!("{dir} {}", conn.protocol()).as_bytes(), vec![]).map_err(err)?;
            }
            _ => {
                let bufs = msg.buffers.iter().map(|b| SendBuf::Bytes(b)).collect();
                conn.send(&msg.header, bufs).map_err(err)?;
            }
        }
    }
}

struct Session {
    conn: Connection,
    worker: WorkerProcess,
    _dir: TempDir,
}

fn host_config(protocols: &str, dir: &TempDir) -> ConnConfig {
    ConnConfig {
        protocols: Some(shmpool_protocol::parse_protocols(protocols).unwrap()),
        options: options(),
        directory: Some(dir.path().to_path_buf()),
        ..ConnConfig::default()
    }
}

fn worker_command(listener: &Listener, backend: &Backend, role: &str, env: &[(&str, &str)]) -> Command {
    let base = child_command("child", role, &[]);
    let mut argv = vec![base.get_program().to_string_lossy().into_owned()];
    argv.extend(base.get_args().map(|a| a.to_string_lossy().into_owned()));
    let mut vars = listener.worker_env();
    vars.extend(base.get_envs().filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string()))));
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut cmd = backend.command(&argv, &vars, listener.directory()).unwrap();
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
    cmd
}

fn start_with(protocols: &str, backend: Backend, role: &str, env: &[(&str, &str)]) -> Result<Session, Error> {
    start_configured(protocols, options(), backend, role, env)
}

fn start_configured(
    protocols: &str,
    options: Options,
    backend: Backend,
    role: &str,
    env: &[(&str, &str)],
) -> Result<Session, Error> {
    let dir = TempDir::new("proto");
    let listener = Listener::bind(ConnConfig { options, ..host_config(protocols, &dir) })?;
    let mut worker = WorkerProcess::spawn(worker_command(&listener, &backend, role, env))?;
    let conn = listener.accept(Duration::from_secs(20), &mut || worker.check_running())?;
    Ok(Session { conn, worker, _dir: dir })
}

fn start(protocols: &str) -> Session {
    start_with(protocols, Backend::Process, "echo", &[]).unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
}

const ALL: [(&str, Protocol); 4] =
    [("tcp", Protocol::Tcp), ("unix", Protocol::Unix), ("tcp,shm", Protocol::Shm), ("unix,shm", Protocol::Shm)];

#[test]
fn echo_on_every_transport() {
    for (list, expected) in ALL {
        let s = start(list);
        assert_eq!(s.conn.protocol(), expected, "{list}");
        let (small, slot, big) = (pattern(10, 1), pattern(SLOT, 2), pattern(3 * SLOT + 5, 3));
        s.conn.send(b"hello", vec![small[..].into(), slot[..].into(), big[..].into()]).unwrap();
        let first = s.conn.recv(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(first.header, b"hello");
        assert_eq!(first.buffers.len(), 3);
        assert_eq!((&*first.buffers[0], &*first.buffers[1], &*first.buffers[2]), (&small[..], &slot[..], &big[..]));
        let shared: Vec<bool> = first.buffers.iter().map(|b| b.is_shared()).collect();
        let shm = expected == Protocol::Shm;
        assert_eq!(shared, [false, shm, shm], "{list}: small inline, larger than a slot in a grown pool");
        if expected == Protocol::Shm {
            // The worker echoed the view it received: the bytes came back as our own slot.
            assert!(matches!(first.buffers[1], Payload::Lent(_)));
        }

        // A buffer allocated in place travels without a copy; views outlive later receives.
        let mut alloc = s.conn.alloc(4096).unwrap();
        assert_eq!(alloc.is_shared(), expected == Protocol::Shm);
        alloc.copy_from_slice(&pattern(4096, 9));
        s.conn.send(b"again", vec![alloc.into()]).unwrap();
        let second = s.conn.recv(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(&*second.buffers[0], &pattern(4096, 9)[..]);
        assert_eq!(&*first.buffers[1], &slot[..], "{list}: the first view changed");
        s.conn.close();
        drop(second);
    }
}

#[test]
fn many_messages_keep_order_and_slots_recycle() {
    let s = start("tcp,shm");
    assert_eq!(s.conn.protocol(), Protocol::Shm);
    for i in 0..40u8 {
        let data = pattern(SLOT / 2, i);
        s.conn.send(&[i], vec![data[..].into()]).unwrap();
        let m = s.conn.recv(Some(Duration::from_secs(10))).unwrap();
        assert_eq!((m.header[0], &*m.buffers[0]), (i, &data[..]));
        // Lent slots come back released: with 4 slots, 40 messages still all go through the pool.
        assert!(matches!(m.buffers[0], Payload::Lent(_)), "message {i} was copied");
    }
}

#[test]
fn lendable_slots_go_and_come_back_without_copies() {
    let s = start("tcp,shm");
    for i in 0..20u8 {
        // The slot returns to the pool once the worker's echo and ours are gone: wait for it.
        let mut slot = None;
        wait_until(Duration::from_secs(5), "a free slot", || {
            slot = s.conn.alloc_lendable(SLOT / 2).ok();
            slot.is_some()
        });
        let mut slot = slot.unwrap();
        slot.copy_from_slice(&pattern(SLOT / 2, i));
        s.conn.send(&[i], vec![SendBuf::Bytes(&slot)]).unwrap();
        let m = s.conn.recv(Some(Duration::from_secs(10))).unwrap();
        // The worker sent back the view of our slot it got: it is our own memory again.
        assert!(matches!(m.buffers[0], Payload::Lent(_)), "message {i} was copied");
        assert_eq!(m.buffers[0].as_ptr(), slot.as_ptr());
        assert_eq!(&*m.buffers[0], &pattern(SLOT / 2, i)[..]);
    }
    // Larger than a slot: the pools grow for it.
    let big = s.conn.alloc_lendable(SLOT + 1).unwrap();
    assert_eq!((big.len(), s.conn.stats().slot_size), (SLOT + 1, 2 * SLOT as u64));
    let max = s.conn.options().max_slot_size as usize;
    assert!(matches!(s.conn.alloc_lendable(max + 1), Err(Error::InvalidArgument(_))), "past the maximum");
}

#[test]
fn negotiation_matrix() {
    // A worker whose own list lacks shm refuses the offer: the connection stays on the fallback.
    for (list, fallback) in [("tcp,shm", Protocol::Tcp), ("unix,shm", Protocol::Unix)] {
        let s = start_with(list, Backend::Process, "echo", &[(PROTOCOL_ENV, fallback.name())]).unwrap();
        assert_eq!(s.conn.protocol(), fallback, "{list} with a worker limited to {fallback}");
    }
    // Offers go last first: with tcp,unix,shm the worker is offered shm first and takes it.
    assert_eq!(start("tcp,unix,shm").conn.protocol(), Protocol::Shm);
    // tcp,unix: the connection moves to a Unix socket.
    let s = start("tcp,unix");
    assert_eq!(s.conn.protocol(), Protocol::Unix);
    s.conn.send(b"x", vec![pattern(100_000, 1)[..].into()]).unwrap();
    assert_eq!(&*s.conn.recv(Some(Duration::from_secs(10))).unwrap().buffers[0], &pattern(100_000, 1)[..]);
    // An unknown name is a clear error on the host...
    let e = ConnConfig { protocols: None, ..ConnConfig::default() };
    assert!(e.protocol_list().is_ok());
    let e = shmpool_protocol::parse_protocols("tcp,shm,rdma").unwrap_err().to_string();
    assert!(e.contains("unknown protocol \"rdma\""), "{e}");
    // ...and on the worker, which exits with it.
    let Err(e) = start_with("tcp,shm", Backend::Process, "echo", &[(PROTOCOL_ENV, "tcp,bogus")]) else {
        panic!("a worker with an unknown protocol connected")
    };
    assert!(matches!(e, Error::Disconnected(_)), "{e}");
}

#[test]
fn worker_that_cannot_map_the_pools_stays_on_tcp() {
    // The namespace backend shows the worker its own directory; a worker whose SHMPOOL_DIR points
    // to an empty directory cannot open the pools: it says so and the connection stays on tcp.
    let dir = TempDir::new("proto-nomap");
    let listener = Listener::bind(host_config("tcp,shm", &dir)).unwrap();
    let empty = TempDir::new("proto-empty");
    let mut cmd = worker_command(&listener, &Backend::Process, "echo", &[]);
    cmd.env("SHMPOOL_DIR", empty.path());
    let mut worker = WorkerProcess::spawn(cmd).unwrap();
    let conn = listener.accept(Duration::from_secs(20), &mut || worker.check_running()).unwrap();
    assert_eq!(conn.protocol(), Protocol::Tcp);
    conn.send(b"whoami", vec![]).unwrap();
    let m = conn.recv(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(String::from_utf8(m.header).unwrap(), format!("{} tcp", empty.path().display()));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the offered pools were removed");
}

#[test]
fn wrong_secret_is_refused_on_both_sides() {
    let dir = TempDir::new("proto-auth");
    let listener = Listener::bind(host_config("tcp,shm", &dir)).unwrap();
    let mut cmd = worker_command(&listener, &Backend::Process, "echo", &[]);
    cmd.env(SECRET_ENV, "ab".repeat(32)).stderr(Stdio::piped());
    let mut worker = WorkerProcess::spawn(cmd).unwrap();
    let e = listener.accept(Duration::from_secs(20), &mut || Ok(())).unwrap_err();
    assert!(matches!(e, Error::Auth(_)), "{e}");
    assert!(e.to_string().contains("authentication failed"), "{e}");
    let status = worker.shutdown(Duration::from_secs(10)).unwrap();
    assert!(!status.success());
    let mut text = String::new();
    std::io::Read::read_to_string(worker.child().stderr.as_mut().unwrap(), &mut text).unwrap();
    assert!(text.contains("authentication failed"), "worker said: {text}");
}

#[test]
fn wrong_secret_is_refused_on_a_second_channel() {
    let dir = TempDir::new("proto-auth2");
    let listener = Listener::bind(host_config("tcp,shm", &dir)).unwrap();
    let mut worker =
        WorkerProcess::spawn(worker_command(&listener, &Backend::Process, "second-wrong-secret", &[])).unwrap();
    let conn = listener.accept(Duration::from_secs(20), &mut || worker.check_running()).unwrap();
    let e = listener.accept_with(&[Protocol::Tcp], Duration::from_secs(20), &mut || Ok(())).unwrap_err();
    assert!(matches!(e, Error::Auth(_)), "{e}");
    // The main channel still works.
    conn.send(b"ping", vec![]).unwrap();
    assert_eq!(conn.recv(Some(Duration::from_secs(10))).unwrap().header, b"ping");
}

#[test]
fn timeout_waiting_for_a_worker() {
    let dir = TempDir::new("proto-wait");
    let listener = Listener::bind(host_config("tcp", &dir)).unwrap();
    let t = Instant::now();
    let e = listener.accept(Duration::from_millis(300), &mut || Ok(())).unwrap_err();
    assert!(matches!(e, Error::Timeout) && t.elapsed() < Duration::from_secs(2), "{e}");
    // A worker that dies before connecting is noticed at once.
    let mut worker = WorkerProcess::spawn(Command::new("true")).unwrap();
    let t = Instant::now();
    let e = listener.accept(Duration::from_secs(20), &mut || worker.check_running()).unwrap_err();
    assert!(matches!(e, Error::Disconnected(_)) && t.elapsed() < Duration::from_secs(2), "{e}");
}

/// Runs `recv` in a thread and returns its error and how long it took.
fn pending_recv(s: &Session, trigger: impl FnOnce()) -> (Error, Duration) {
    std::thread::scope(|scope| {
        let t = scope.spawn(|| {
            let start = Instant::now();
            (s.conn.recv(None).unwrap_err(), start)
        });
        std::thread::sleep(Duration::from_millis(50));
        let at = Instant::now();
        trigger();
        let (e, _) = t.join().unwrap();
        (e, at.elapsed())
    })
}

#[test]
fn worker_exit_and_kill_fail_pending_and_later_calls() {
    for list in ["tcp", "unix,shm"] {
        let s = start(list);
        let (e, took) = pending_recv(&s, || s.conn.send(b"exit", vec![]).unwrap());
        assert!(matches!(e, Error::Disconnected(_)) && took < Duration::from_secs(1), "{list}: {e} after {took:?}");
        assert!(matches!(s.conn.send(b"x", vec![]), Err(Error::Disconnected(_))));
        assert!(matches!(s.conn.recv(Some(Duration::from_secs(1))), Err(Error::Disconnected(_))));
        assert!(matches!(s.conn.alloc(4096), Err(Error::Disconnected(_))));
        assert!(matches!(s.conn.alloc_lendable(4096), Err(Error::Disconnected(_))));

        let mut s = start(list);
        let pid = s.worker.id() as i32;
        let (e, took) = pending_recv(&s, || {
            // SAFETY: kill has no memory effects; `pid` is our child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
        assert!(matches!(e, Error::Disconnected(_)) && took < Duration::from_secs(1), "{list}: {e} after {took:?}");
        s.worker.shutdown(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn stopped_worker_is_found_dead_by_heartbeats() {
    for list in ["tcp", "tcp,shm"] {
        let mut s = start(list);
        // Idle for longer than the dead-peer window: the connection stays alive.
        assert!(matches!(s.conn.recv(Some(Duration::from_millis(1500))), Err(Error::Timeout)));
        s.conn.send(b"alive", vec![]).unwrap();
        assert_eq!(s.conn.recv(Some(Duration::from_secs(5))).unwrap().header, b"alive");
        let pid = s.worker.id() as i32;
        let (e, took) = pending_recv(&s, || {
            // SAFETY: kill has no memory effects; `pid` is our child.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
        });
        assert!(e.to_string().contains("missed heartbeats"), "{e}");
        assert!(took < Duration::from_secs(5), "found after {took:?}");
        s.worker.child().kill().unwrap();
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        s.worker.shutdown(Duration::from_secs(5)).unwrap();
    }
}

/// Whether `fd` becomes readable within `ms` milliseconds.
fn readable(fd: i32, ms: i32) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: `pfd` is one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) == 1 }
}

#[test]
fn readiness_descriptor_wakes_a_loop_for_each_reply_and_for_the_end() {
    for list in ["unix", "tcp,shm"] {
        let s = start(list);
        let fd = s.conn.ready_fd().unwrap();
        assert_eq!(s.conn.ready_fd().unwrap(), fd, "one descriptor per connection");
        assert!(s.conn.try_recv().unwrap().is_none(), "{list}: nothing sent yet");
        assert!(!readable(fd, 0), "{list}: readable before anything came");
        for i in 0..50u8 {
            s.conn.send(&[i], vec![pattern(SLOT / 4, i)[..].into()]).unwrap();
            assert!(readable(fd, 10_000), "{list}: no readiness for reply {i}");
            // After readiness, try until nothing: spurious readiness is allowed, a lost reply not.
            let mut got = Vec::new();
            while let Some(m) = s.conn.try_recv().unwrap() {
                got.push(m);
            }
            assert!(got.len() <= 1, "{list}: one reply per request");
            if let Some(m) = got.pop() {
                assert_eq!((m.header[0], &*m.buffers[0]), (i, &pattern(SLOT / 4, i)[..]));
            } else {
                // Spurious: the reply must come with the next readiness.
                assert!(readable(fd, 10_000), "{list}: reply {i} lost");
                assert_eq!(s.conn.try_recv().unwrap().expect("reply").header, [i]);
            }
            assert!(!readable(fd, 0) || s.conn.try_recv().unwrap().is_none(), "{list}: an extra message");
        }
        // The worker's end makes the descriptor readable and `try_recv` tell it.
        s.conn.send(b"exit", vec![]).unwrap();
        assert!(readable(fd, 10_000), "{list}: no readiness for the end");
        let deadline = Instant::now() + Duration::from_secs(10);
        let e = loop {
            match s.conn.try_recv() {
                Err(e) => break e,
                Ok(Some(m)) => panic!("{list}: an unexpected message {:?}", m.header),
                Ok(None) => {
                    assert!(Instant::now() < deadline, "{list}: the end never came");
                    readable(fd, 1_000);
                }
            }
        };
        assert!(matches!(e, Error::Disconnected(_)), "{list}: {e}");
    }
}

#[test]
fn host_closes_before_or_after_a_receive() {
    for list in ["tcp", "tcp,shm"] {
        // After: a received view stays valid after close; the worker exits cleanly.
        let mut s = start(list);
        s.conn.send(b"x", vec![pattern(SLOT, 5)[..].into()]).unwrap();
        let m = s.conn.recv(Some(Duration::from_secs(10))).unwrap();
        s.conn.close();
        assert_eq!(&*m.buffers[0], &pattern(SLOT, 5)[..]);
        assert!(matches!(s.conn.recv(Some(Duration::from_secs(1))), Err(Error::Disconnected(_))));
        assert!(s.worker.shutdown(Duration::from_secs(5)).unwrap().success());
        // Before: a pending receive in another thread ends.
        let mut s = start(list);
        let (e, took) = pending_recv(&s, || s.conn.close());
        assert!(matches!(e, Error::Disconnected(_)) && took < Duration::from_secs(1), "{e}");
        assert!(s.worker.shutdown(Duration::from_secs(5)).unwrap().success());
    }
}

#[test]
fn size_limits_are_enforced_on_send() {
    let s = start("tcp,shm");
    let max = s.conn.options().max_buffers as usize;
    let many: Vec<SendBuf<'_>> = (0..=max).map(|_| SendBuf::Bytes(b"x")).collect();
    assert!(matches!(s.conn.send(b"", many), Err(Error::InvalidArgument(_))));
    assert!(s.conn.is_alive());
}

#[test]
fn namespace_worker_upgrades_to_shm_through_the_shared_directory() {
    // Starting on a Unix socket works too.
    let s = start_with("unix,shm", Backend::Namespace, "echo", &[]).expect("unshare needs root");
    assert_eq!(s.conn.protocol(), Protocol::Shm);
    drop(s);
    let s = start_with("tcp,shm", Backend::Namespace, "echo", &[]).expect("unshare needs root");
    assert_eq!(s.conn.protocol(), Protocol::Shm);
    s.conn.send(b"whoami", vec![]).unwrap();
    let m = s.conn.recv(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(String::from_utf8(m.header).unwrap(), format!("{NAMESPACE_DIR} shm"));
    let data = pattern(SLOT, 4);
    s.conn.send(b"echo", vec![data[..].into()]).unwrap();
    let m = s.conn.recv(Some(Duration::from_secs(10))).unwrap();
    assert!(m.buffers[0].is_shared());
    assert_eq!(&*m.buffers[0], &data[..]);
}

#[test]
fn graceful_shutdown_then_kill() {
    let mut s = start("tcp");
    s.conn.close();
    assert!(s.worker.shutdown(Duration::from_secs(5)).unwrap().success());
    // A worker that does not exit by itself is terminated after the grace period.
    let mut w = WorkerProcess::spawn({
        let mut c = Command::new("sleep");
        c.arg("60");
        c
    })
    .unwrap();
    let t = Instant::now();
    let status = w.shutdown(Duration::from_millis(100)).unwrap();
    assert!(!status.success() && t.elapsed() < Duration::from_secs(3));
}

/// Patient heartbeats for the tests that move tens of MiB (on a loaded machine, a debug build).
fn patient() -> Options {
    Options { heartbeat_ms: 1000, missed_heartbeats: 5, ..options() }
}

/// `len` bytes marked on every page (cheap to make, even unoptimised, for large buffers).
fn marked(len: usize, seed: u8) -> Vec<u8> {
    let mut v = vec![seed; len];
    for (i, at) in (0..len).step_by(4096).enumerate() {
        v[at] = (i as u8).wrapping_add(seed);
    }
    v
}

fn pool_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn buffers_of_any_size_up_to_the_maximum_travel_in_shared_memory() {
    let s = start_configured("tcp,shm", patient(), Backend::Process, "echo", &[]).unwrap();
    for len in [4096, SLOT, 16 << 20, 24_883_200, 64 << 20] {
        let data = marked(len, len as u8);
        s.conn.send(b"echo", vec![data[..].into()]).unwrap();
        let m = s.conn.recv(Some(Duration::from_secs(20))).unwrap();
        assert!(matches!(m.buffers[0], Payload::Lent(_)), "{len} bytes were not a view of our slot");
        assert!(*m.buffers[0] == data[..], "{len} bytes changed");
        // The worker's own pools grow too, for copies it makes.
        s.conn.send(b"copy", vec![data[..].into()]).unwrap();
        let m = s.conn.recv(Some(Duration::from_secs(20))).unwrap();
        assert!(matches!(m.buffers[0], Payload::Shared(_)), "{len} bytes were not a slot of the worker's pools");
        assert!(*m.buffers[0] == data[..], "{len} bytes changed");
    }
    let stats = s.conn.stats();
    assert_eq!((stats.spilled_buffers, stats.shm_buffers), (0, 10), "{stats:?}");
    assert_eq!(stats.slot_size, 64 << 20, "{stats:?}");
    assert!(stats.pools_grown >= 3, "{stats:?}");
}

#[test]
fn a_side_asking_for_larger_slots_gets_them() {
    // The worker asks for 32 MiB slots, the host for 1 MiB: the larger wish wins.
    let env = [("TEST_SLOT_SIZE", "33554432")];
    let s = start_configured("tcp,shm", patient(), Backend::Process, "echo", &env).unwrap();
    assert_eq!(s.conn.options().slot_size, 32 << 20);
    let data = marked(24 << 20, 1);
    s.conn.send(b"echo", vec![data[..].into()]).unwrap();
    assert!(s.conn.recv(Some(Duration::from_secs(20))).unwrap().buffers[0].is_shared());
    assert_eq!(s.conn.stats().pools_grown, 0, "the first pools were large enough");
}

#[test]
fn past_the_maximum_a_buffer_goes_on_the_socket_counted() {
    let options = Options { max_slot_size: 2 * SLOT as u64, ..patient() };
    let s = start_configured("tcp,shm", options, Backend::Process, "echo", &[]).unwrap();
    assert_eq!(s.conn.options().max_slot_size, 2 * SLOT as u64, "the smaller maximum of both sides");
    let (fits, over) = (marked(2 * SLOT, 1), marked(2 * SLOT + 1, 2));
    s.conn.send(b"echo", vec![fits[..].into(), over[..].into()]).unwrap();
    let m = s.conn.recv(Some(Duration::from_secs(20))).unwrap();
    assert_eq!((m.buffers[0].is_shared(), m.buffers[1].is_shared()), (true, false));
    assert!(*m.buffers[1] == over[..]);
    let stats = s.conn.stats();
    assert_eq!((stats.spilled_buffers, stats.spilled_bytes), (1, over.len() as u64), "{stats:?}");
}

#[test]
fn killing_the_worker_while_a_grown_pool_is_in_use_leaves_no_file() {
    let mut s = start_configured("tcp,shm", patient(), Backend::Process, "echo", &[]).unwrap();
    let data = marked(5 * SLOT, 3);
    s.conn.send(b"copy", vec![data[..].into()]).unwrap();
    let m = s.conn.recv(Some(Duration::from_secs(20))).unwrap();
    assert!(matches!(m.buffers[0], Payload::Shared(_)));
    let dir = s._dir.path().to_path_buf();
    assert!(!pool_files(&dir).is_empty(), "the worker's grown pool has a name");
    let pid = s.worker.id() as i32;
    let (e, _) = pending_recv(&s, || {
        // SAFETY: kill has no memory effects; `pid` is our child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    assert!(matches!(e, Error::Disconnected(_)), "{e}");
    assert!(*m.buffers[0] == data[..], "the view outlives the worker");
    s.worker.shutdown(Duration::from_secs(5)).unwrap();
    drop(m);
    s.conn.close();
    drop(s.conn);
    assert!(pool_files(&dir).is_empty(), "{:?}", pool_files(&dir));
}

/// Podman settings for a machine like the test machine (itself a container: a lower hard rlimit
/// than podman's defaults, cgroups v1/v2 hybrid, which crun refuses): runc and modest ulimits.
const CONTAINERS_CONF: &str =
    "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\n";

/// An image imported from a tarball of a minimal root filesystem: this test binary and the
/// libraries it links, at the same paths. Removed when dropped.
struct Image(String);

impl Image {
    fn build(work: &std::path::Path) -> Image {
        let root = work.join("rootfs");
        let exe = std::env::current_exe().unwrap();
        let ldd = Command::new("ldd").arg(&exe).output().unwrap();
        let libs = String::from_utf8(ldd.stdout).unwrap();
        let files = libs.split_whitespace().filter(|w| w.starts_with('/')).map(std::path::PathBuf::from);
        for file in files.chain([exe]) {
            let to = root.join(file.strip_prefix("/").unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&file, &to).unwrap();
        }
        let tar = work.join("rootfs.tar");
        let ok = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap();
        assert!(ok.success(), "tar failed");
        let name = format!("localhost/shmpool-test-{}:latest", std::process::id());
        let out = Command::new("podman").arg("import").arg(&tar).arg(&name).output().unwrap();
        assert!(out.status.success(), "podman import: {}", String::from_utf8_lossy(&out.stderr));
        Image(name)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "-f", &self.0]).output();
    }
}

#[test]
fn podman_worker_upgrades_to_shm_through_the_shared_directory() {
    if Command::new("podman").arg("--version").output().is_err() {
        eprintln!("podman is not installed: skipped (scripts/setup.sh installs podman and runc)");
        return;
    }
    let work = TempDir::new("podman");
    let conf = work.path().join("containers.conf");
    std::fs::write(&conf, CONTAINERS_CONF).unwrap();
    let image = Image::build(work.path());
    // Only the pool directory and the network are shared with the container.
    let backend = Backend::Podman { image: image.0.clone() };
    let env = [("CONTAINERS_CONF", conf.to_str().unwrap())];
    let mut s = start_configured("tcp,shm", patient(), backend, "echo", &env).unwrap();
    assert_eq!(s.conn.protocol(), Protocol::Shm);
    let data = marked(3 * SLOT, 5); // larger than a slot: the pools grow, across the container
    for header in [&b"echo"[..], b"copy"] {
        s.conn.send(header, vec![data[..].into()]).unwrap();
        let m = s.conn.recv(Some(Duration::from_secs(20))).unwrap();
        assert!(m.buffers[0].is_shared() && *m.buffers[0] == data[..]);
    }
    s.conn.close();
    assert!(s.worker.shutdown(Duration::from_secs(20)).unwrap().success());
}
