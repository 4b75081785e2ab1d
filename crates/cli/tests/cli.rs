//! The `shmpool` command line, run as a separate process, each test in a private directory.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shmpool");

/// A private pool directory (on tmpfs when there is one), removed with its contents.
struct TestDir(PathBuf);

impl TestDir {
    fn new(test: &str) -> TestDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() { base.to_path_buf() } else { std::env::temp_dir() };
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("shmpool-cli-test-{}-{test}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    /// `shmpool ARGS… --dir DIR`.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).arg("--dir").arg(&self.0).env_remove("SHMPOOL_DIR");
        cmd
    }

    /// `shmpool ARGS…` with `SHMPOOL_DIR=DIR`.
    fn cmd_env(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).env("SHMPOOL_DIR", &self.0);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "shmpool {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    fn spawn(&self, args: &[&str]) -> Running {
        Running(Some(self.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()))
    }

    fn entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A background `shmpool`, killed if the test ends before it does.
struct Running(Option<Child>);

impl Running {
    /// Waits for it to exit (killing it and failing after `within`); returns its output.
    fn finish(mut self, within: Duration) -> Output {
        let child = self.0.take().unwrap();
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        match rx.recv_timeout(within) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                // SAFETY: signals our own child, not reaped yet (its waiter is still waiting).
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                panic!("shmpool did not exit within {within:?}");
            }
        }
    }

    fn kill9(&mut self) {
        let child = self.0.as_mut().unwrap();
        // SAFETY: signals our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) }, 0);
        child.wait().unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `condition` until it holds, failing the test after `within`.
fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn succeeded(out: &Output) -> bool {
    if !out.status.success() {
        eprintln!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn create_then_inspect_json_reports_shape_states_and_counters() {
    let dir = TestDir::new("inspect");
    let path = dir.ok(&[
        "create",
        "cam",
        "--slots",
        "4",
        "--slot-size",
        "5000",
        "--mode",
        "workqueue",
        "--overflow",
        "drop-oldest",
        "--meta-bytes",
        "128",
    ]);
    assert_eq!(Path::new(path.trim()), dir.0.join("shmpool.cam"));
    let info = dir.json(&["inspect", "cam", "--json"]);
    for key in [
        "name",
        "slots",
        "slot_size",
        "mode",
        "overflow",
        "free",
        "writing",
        "ready",
        "reading",
        "published",
        "dropped",
        "closed",
        "peers",
    ] {
        assert!(info.get(key).is_some(), "inspect --json lacks {key}: {info}");
    }
    assert_eq!(info["name"], "cam");
    assert_eq!(info["slots"], 4);
    assert_eq!(info["slot_size"], 8192);
    assert_eq!(info["meta_bytes"], 128);
    assert_eq!((info["mode"].as_str(), info["overflow"].as_str()), (Some("workqueue"), Some("drop-oldest")));
    assert_eq!((info["free"].as_u64(), info["writing"].as_u64()), (Some(4), Some(0)));
    assert_eq!((info["ready"].as_u64(), info["reading"].as_u64()), (Some(0), Some(0)));
    assert_eq!((info["published"].as_u64(), info["dropped"].as_u64()), (Some(0), Some(0)));
    assert_eq!(info["closed"], false);
    assert_eq!(info["peers"], Value::Array(vec![]));
    // The human form names the pool too, and SHMPOOL_DIR works like --dir.
    let text = dir.cmd_env(&["inspect", "cam"]).output().unwrap();
    assert!(succeeded(&text) && String::from_utf8_lossy(&text.stdout).contains("4 slots x 8192 bytes"));
    // A second create of a live-or-persisted name fails only if in use; an invalid name always does.
    assert!(!dir.run(&["create", "bad/name", "--slots", "1", "--slot-size", "1"]).status.success());
}

#[test]
fn broadcast_produce_to_two_verifying_consumers() {
    let dir = TestDir::new("broadcast");
    dir.ok(&["create", "bc", "--slots", "4", "--slot-size", "20000"]);
    let consumers: Vec<Running> =
        (0..2).map(|_| dir.spawn(&["consume", "bc", "--count", "300", "--verify", "--timeout", "20"])).collect();
    wait_until(Duration::from_secs(10), "two consumers", || {
        dir.json(&["inspect", "bc", "--json"])["peers"].as_array().unwrap().len() == 2
    });
    let info = dir.json(&["inspect", "bc", "--json"]);
    for peer in info["peers"].as_array().unwrap() {
        assert_eq!((peer["role"].as_str(), peer["alive"].as_bool()), (Some("consumer"), Some(true)));
        for key in ["pid", "place", "count", "dropped"] {
            assert!(peer[key].is_u64(), "peer lacks {key}: {peer}");
        }
    }
    let produced = dir.run(&["produce", "bc", "--count", "300", "--size", "12345"]);
    assert!(succeeded(&produced));
    for consumer in consumers {
        assert!(succeeded(&consumer.finish(Duration::from_secs(20))));
    }
    let info = dir.json(&["inspect", "bc", "--json"]);
    assert_eq!(info["published"], 300);
    assert_eq!(info["free"], 4);
}

#[test]
fn workqueue_produce_to_a_verifying_consumer_with_print() {
    let dir = TestDir::new("workqueue");
    dir.ok(&["create", "wq", "--slots", "8", "--slot-size", "4096", "--mode", "workqueue"]);
    let producer = dir.spawn(&["produce", "wq", "--count", "200", "--size", "64"]);
    let out = dir.run(&["consume", "wq", "--count", "200", "--verify", "--print", "--timeout", "20"]);
    assert!(succeeded(&out));
    assert!(succeeded(&producer.finish(Duration::from_secs(20))));
    let lines: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
    assert_eq!(lines.len(), 200);
    assert!(lines[0].starts_with("seq=0 len=64 ts="), "{}", lines[0]);
    assert!(lines[199].starts_with("seq=199 len=64 ts="), "{}", lines[199]);
    assert!(lines[0].ends_with(" dtype=u8 shape=(64,) meta="), "{}", lines[0]);
}

#[test]
fn consume_prints_metadata_and_verify_rejects_a_foreign_pattern() {
    let dir = TestDir::new("foreign");
    let config = shmpool::Config::new(4, 4096).directory(&dir.0).mode(shmpool::Mode::WorkQueue);
    let pool = shmpool::Pool::create("frames", &config).unwrap();
    let producer = pool.producer().unwrap();
    for fill in [0u8, 0] {
        let mut buf = producer.acquire(None).unwrap();
        buf[..64].fill(fill);
        buf.set_len(64).unwrap();
        buf.set_dtype(shmpool::DType::U8);
        buf.set_shape(&[1080, 1920, 3]).unwrap();
        buf.set_user_meta(b"video/x-raw, format=RGB").unwrap();
        buf.set_timestamp(42);
        buf.publish().unwrap();
    }
    let line = dir.ok(&["consume", "frames", "--count", "1", "--print"]);
    assert_eq!(line, "seq=0 len=64 ts=42 dtype=u8 shape=(1080,1920,3) meta=video/x-raw, format=RGB\n");
    let out = dir.run(&["consume", "frames", "--count", "1", "--verify"]);
    assert_eq!(out.status.code(), Some(3), "exit code of a pattern mismatch");
    assert!(String::from_utf8_lossy(&out.stderr).contains("byte 8"));
}

#[test]
fn produce_creates_and_keeps_a_missing_pool_and_consume_times_out() {
    let dir = TestDir::new("autocreate");
    dir.ok(&["produce", "auto", "--count", "3", "--size", "100", "--rate", "1000"]);
    let info = dir.json(&["inspect", "auto", "--json"]);
    assert_eq!((info["slot_size"].as_u64(), info["mode"].as_str()), (Some(4096), Some("broadcast")));
    let started = Instant::now();
    let out = dir.run(&["consume", "auto", "--count", "1", "--timeout", "0.3"]);
    assert_eq!(out.status.code(), Some(2), "timeout exit code");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(dir.run(&["consume", "missing", "--timeout", "0.1"]).status.code(), Some(2));
}

#[test]
fn ls_json_lists_pools_and_rm_removes_one() {
    let dir = TestDir::new("ls");
    assert_eq!(dir.json(&["ls", "--json"]), Value::Array(vec![]));
    dir.ok(&["create", "a", "--slots", "2", "--slot-size", "4096"]);
    dir.ok(&["create", "b", "--slots", "2", "--slot-size", "4096"]);
    let list = dir.json(&["ls", "--json"]);
    assert_eq!(names(&list), ["a", "b"]);
    assert_eq!(list[0]["in_use"], false);
    assert!(list[0]["path"].as_str().unwrap().ends_with("shmpool.a"));
    dir.ok(&["rm", "a"]);
    assert_eq!(names(&dir.json(&["ls", "--json"])), ["b"]);
    assert!(!dir.run(&["inspect", "a"]).status.success());
    assert!(!dir.run(&["rm", "a"]).status.success());
}

#[test]
fn gc_removes_the_pool_of_a_creator_killed_with_sigkill() {
    let dir = TestDir::new("gc");
    dir.ok(&["create", "kept", "--slots", "2", "--slot-size", "4096"]);
    let mut creator = dir.spawn(&["produce", "orphan", "--size", "4096", "--rate", "100"]);
    wait_until(Duration::from_secs(10), "the producer's pool in use", || {
        dir.json(&["ls", "--json"]).as_array().unwrap().iter().any(|p| p["name"] == "orphan" && p["in_use"] == true)
    });
    // gc removes pools nobody has open, persisted or not, and leaves the one in use alone.
    assert!(dir.ok(&["gc"]).contains("removed kept"));
    assert_eq!(names(&dir.json(&["ls", "--json"])), ["orphan"]);
    creator.kill9();
    let list = dir.json(&["ls", "--json"]);
    assert!(list.as_array().unwrap().iter().all(|p| p["in_use"] == false), "{list}");
    let out = dir.ok(&["gc"]);
    assert_eq!(out.trim(), "removed orphan");
    assert_eq!(dir.json(&["ls", "--json"]), Value::Array(vec![]));
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
}

#[test]
fn bench_tiny_json_has_every_row() {
    let dir = TestDir::new("bench");
    let report = dir.json(&["bench", "--quick", "--tiny", "--json"]);
    for key in ["cpu_model", "cores", "kernel"] {
        assert!(report["machine"].get(key).is_some(), "machine lacks {key}");
    }
    let results = report["results"].as_array().unwrap();
    for name in ["shmpool-blocking", "shmpool-spin", "futex-pingpong", "pipe", "unix-socket"] {
        let rows: Vec<&Value> = results.iter().filter(|r| r["name"] == name).collect();
        assert_eq!(rows.len(), 3, "{name}: one row per payload");
        for row in rows {
            for key in ["payload_bytes", "p50_ns", "p99_ns", "msgs_per_s"] {
                assert!(row[key].is_number(), "{name} lacks {key}: {row}");
            }
            assert!(row["p50_ns"].as_u64().unwrap() > 0 && row["p99_ns"].as_u64() >= row["p50_ns"].as_u64());
            assert_eq!(row["bad_pages"], 0);
        }
    }
    assert!(dir.entries().is_empty(), "bench left {:?}", dir.entries());
}

#[test]
fn bench_compare_measures_every_transport_and_consumer_shape() {
    let dir = TestDir::new("bench-compare");
    let report = dir.json(&["bench", "--compare", "--tiny", "--rounds", "2", "--payload", "65536", "--json"]);
    let results = report["results"].as_array().unwrap();
    let names: Vec<&str> = results.iter().map(|r| r["name"].as_str().unwrap()).collect();
    for name in
        ["shmpool-blocking-bcast2", "shmpool-spin-bcast2", "shmpool-blocking-wq2", "shmpool-spin-wq2", "tcp-loopback"]
    {
        assert!(names.contains(&name), "no {name} row in {names:?}");
    }
    for row in results {
        assert_eq!(row["rounds"], 2, "{row}");
        assert_eq!(row["bad_pages"], 0, "{row}");
        assert!(row["deliver"]["p999_ns"].as_u64() >= row["deliver"]["p50_ns"].as_u64(), "{row}");
        assert!(row["cpu_per_msg_ns"].as_u64().unwrap() > 0, "{row}");
        let two = row["name"].as_str().unwrap().ends_with('2');
        assert_eq!(row["consumers"], if two { 2 } else { 1 }, "{row}");
    }
    assert!(dir.entries().is_empty(), "bench left {:?}", dir.entries());
}

#[test]
fn demo_for_one_second_prints_the_table_and_cleans_up() {
    let dir = TestDir::new("demo");
    let out = dir.ok(&["demo", "--seconds", "1"]);
    assert!(out.contains("frames/s") && out.contains("p99 latency"), "{out}");
    // Table rows: transport, consumers, frames/s, …
    let row = |name: &str| -> Vec<String> {
        out.lines()
            .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
            .find(|cells| cells.len() >= 7 && cells[0] == name && cells[2].parse::<f64>().is_ok())
            .unwrap_or_else(|| panic!("no {name} row: {out}"))
    };
    assert_eq!(row("shmpool")[1], "2");
    assert_eq!(row("pipe")[1], "1");
    for name in ["shmpool", "pipe"] {
        let frames_per_s: f64 = row(name)[2].parse().unwrap();
        assert!(frames_per_s > 0.0, "{name}: {frames_per_s} frames/s");
    }
    assert!(dir.entries().is_empty(), "demo left {:?}", dir.entries());
}

#[test]
fn broker_serves_and_reports_its_status() {
    let dir = TestDir::new("broker");
    let endpoint = format!("ipc://{}/broker.ipc", dir.0.display());
    let broker = dir.spawn(&["broker", "--bind", &endpoint]);
    // --status asks the running broker (its MMI status service); retried until it is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let out = dir.run(&["broker", "--bind", &endpoint, "--status"]);
        if out.status.success() {
            break serde_json::from_slice::<Value>(&out.stdout).unwrap();
        }
        assert!(Instant::now() < deadline, "no status: {}", String::from_utf8_lossy(&out.stderr));
    };
    assert!(status.get("services").is_some(), "{status}");
    // SIGTERM stops it cleanly (exit 0).
    let pid = broker.0.as_ref().unwrap().id();
    // SAFETY: signals our own child, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
    let out = broker.finish(Duration::from_secs(20));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("listening on"));
}

/// 300 random SIGKILLs, SIGTERMs and SIGSTOP/SIGCONTs of the peers of four pools (every mode and
/// overflow policy), including during create, open, gc and creator restarts: afterwards the pools
/// move on, and once all peers are gone nothing is held, no waiter is registered, gc leaves no file.
#[test]
fn chaos_300_kills_leave_nothing_behind() {
    let dir = TestDir::new("chaos");
    let out = dir.run(&["chaos", "ch", "--kills", "300", "--seed", "14"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "chaos failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("300 signals") && text.contains("gc left no file"), "{text}");
}

#[test]
fn stores_are_listed_inspected_and_collected() {
    use shmpool::store::{Decl, Store};
    let dir = TestDir::new("stores");
    let store = Store::open_in("job", Some(&dir.0)).unwrap();
    store.declare("image", &Decl::array(shmpool::DType::F32, &[-1, 4]).capacity(64)).unwrap();
    let mut w = store.write("image").unwrap();
    w.set_shape(&[2, 4]).unwrap();
    w.commit().unwrap();
    let held = store.read("image", None).unwrap();
    let stores = dir.json(&["ls", "--stores", "--json"]);
    assert_eq!((stores[0]["job"].as_str(), stores[0]["in_use"].as_bool()), (Some("job"), Some(true)), "{stores}");
    assert!(dir.ok(&["ls"]).contains("store job"));
    let r = dir.json(&["inspect", "--store", "job", "--json"]);
    let image = &r["variables"][0];
    assert_eq!(image["name"], "image", "{r}");
    assert_eq!((image["version"].as_u64(), image["readers"].as_u64()), (Some(1), Some(1)), "{r}");
    assert_eq!(image["shape"], serde_json::json!([2, 4]));
    assert!(dir.ok(&["inspect", "--store", "job"]).contains("image"));
    assert!(!succeeded(&dir.run(&["inspect", "--store", "nope"])));
    assert!(!dir.ok(&["gc"]).contains("removed store job"), "in use");
    drop((held, store));
    assert!(dir.ok(&["gc"]).contains("removed store job"));
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
}
