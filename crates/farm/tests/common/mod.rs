//! Helpers of the farm's tests: the broker and workers as real child processes (killed and reaped
//! when dropped), a private directory per test, and waiting on the broker's status.
#![allow(dead_code)] // each test binary uses its own subset

use serde_json::Value;
use shmpool_farm::{Client, ClientConfig, Part, ShmConfig};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: plain syscall on our own child's pid (not yet reaped: we hold the Child).
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// SIGTERM, then waits (≤ 5 s) for the exit; true if it exited by itself with success.
    pub fn terminate(mut self) -> bool {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// SIGKILL and reap now.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT); // a stopped child must run to die promptly
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program args` and waits (≤ 10 s) for its first stdout line to contain `ready`.
fn spawn_ready(program: &str, args: &[String], ready: &str) -> Proc {
    let mut child =
        Command::new(program).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines {} // keep draining so the child never blocks on a full pipe
    });
    let proc = Proc { child };
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Some(Ok(line))) if line.contains(ready) => proc,
        other => panic!("{program} did not start: {other:?}"),
    }
}

/// A private directory for one test (removed on drop).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("shmpool-farm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// An `ipc://` endpoint in this directory.
    pub fn endpoint(&self, name: &str) -> String {
        format!("ipc://{}", self.0.join(name).display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `--shm-dir` of the test's private directory (where its `ipc://` endpoint lies) unless `extra`
/// names one: no test touches the real /dev/shm.
fn private_shm(endpoint: &str, extra: &[&str], args: &mut Vec<String>) {
    args.extend(extra.iter().map(|s| s.to_string()));
    let dir = endpoint.strip_prefix("ipc://").and_then(|p| std::path::Path::new(p).parent());
    if let (false, Some(dir)) = (extra.contains(&"--shm-dir"), dir) {
        args.extend(["--shm-dir".to_string(), dir.display().to_string()]);
    }
}

/// Starts a broker bound to `endpoint` with extra arguments.
pub fn broker(endpoint: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["--bind".to_string(), endpoint.to_string()];
    private_shm(endpoint, extra, &mut args);
    spawn_ready(env!("CARGO_BIN_EXE_shmpool-broker"), &args, "listening")
}

/// Starts a worker of `service` answering with `tag` first.
pub fn worker(endpoint: &str, service: &str, tag: &str, extra: &[&str]) -> Proc {
    let mut args: Vec<String> =
        ["--connect", endpoint, "--service", service, "--tag", tag].iter().map(|s| s.to_string()).collect();
    private_shm(endpoint, extra, &mut args);
    spawn_ready(env!("CARGO_BIN_EXE_shmpool-farm-worker"), &args, "serving")
}

/// The broker's `mmi.status`.
pub fn status(endpoint: &str) -> Value {
    // Without shared memory: no co-location proof for a status query.
    let shm = ShmConfig { enabled: false, ..ShmConfig::default() };
    let config = ClientConfig { timeout: Duration::from_secs(2), attempts: 1, shm, ..ClientConfig::default() };
    let mut client = Client::connect(endpoint, config).unwrap();
    let reply = client.request("mmi.status", &[]).expect("mmi.status");
    serde_json::from_slice(reply[0].data()).expect("status is JSON")
}

/// Waits (≤ `within`) until the broker's status satisfies `cond`; panics with the last status.
pub fn wait_status(endpoint: &str, within: Duration, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let s = status(endpoint);
        if cond(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Number of workers of `service` in a status.
pub fn workers_of(status: &Value, service: &str) -> u64 {
    status["services"][service]["workers"].as_u64().unwrap_or(0)
}

/// A client with `timeout` per attempt and `attempts` attempts, without shared memory (plain MDP).
pub fn client(endpoint: &str, timeout: Duration, attempts: u32) -> Client {
    let shm = ShmConfig { enabled: false, ..ShmConfig::default() };
    Client::connect(endpoint, ClientConfig { timeout, attempts, shm, ..ClientConfig::default() }).unwrap()
}

/// The text of a part.
pub fn text(part: &Part) -> String {
    String::from_utf8_lossy(part.data()).into_owned()
}
