//! Shared by the integration tests: private pool directories, child processes that are this same
//! test binary re-executed in a role, and waiting on conditions with deadlines.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable that turns a re-executed test binary into a child in a role.
pub const ROLE_ENV: &str = "SHMPOOL_TEST_ROLE";

/// A private directory for pools, removed (with anything left in it) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("shmpool-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `role` if this process is a child (call it from a `#[test] fn child()` in each test file);
/// exits the process with the role's result so the harness's own output does not matter.
pub fn child_main(run: impl FnOnce(&str, &[String]) -> Result<(), String>) {
    let Ok(role) = std::env::var(ROLE_ENV) else { return };
    let args: Vec<String> = std::env::var("SHMPOOL_TEST_ARGS")
        .unwrap_or_default()
        .split('\u{1f}')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    match run(&role, &args) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("child {role} failed: {e}");
            std::process::exit(3);
        }
    }
}

/// The command that re-executes this test binary as a child in `role` with `args`.
pub fn child_command(test_file_child_fn: &str, role: &str, args: &[String]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test_file_child_fn, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE_ENV, role)
        .env("SHMPOOL_TEST_ARGS", args.join("\u{1f}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

pub fn spawn_child(role: &str, args: &[String]) -> Child {
    child_command("child", role, args).spawn().expect("spawn child")
}

/// Polls `cond` until it holds or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits for a child to exit within `limit`; kills it and fails otherwise. Returns its output.
pub fn finish(mut child: Child, limit: Duration, what: &str) -> (bool, String) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            return (status.success(), text);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what} did not finish within {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Like `finish`, and fails unless the child succeeded.
pub fn expect_success(child: Child, limit: Duration, what: &str) -> String {
    let (ok, text) = finish(child, limit, what);
    assert!(ok, "{what} failed: {text}");
    text
}

pub fn kill9(child: &mut Child) {
    // SAFETY: kill has no memory effects; the pid is our live (or zombie) child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = child.wait();
}

/// The payload pattern of buffer `index` from producer `producer`: a header then bytes derived from
/// both, so a reader can check it got exactly that buffer, whole.
pub fn fill(buf: &mut [u8], producer: u32, index: u32) {
    buf[..4].copy_from_slice(&producer.to_le_bytes());
    buf[4..8].copy_from_slice(&index.to_le_bytes());
    for (i, b) in buf[8..].iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(31).wrapping_add(index).wrapping_add(producer * 7) as u8;
    }
}

/// Checks a buffer filled by `fill`; returns (producer, index).
pub fn check(buf: &[u8]) -> Result<(u32, u32), String> {
    if buf.len() < 8 {
        return Err(format!("buffer of {} bytes", buf.len()));
    }
    let producer = u32::from_le_bytes(buf[..4].try_into().unwrap());
    let index = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    for (i, &b) in buf[8..].iter().enumerate() {
        let want = (i as u32).wrapping_mul(31).wrapping_add(index).wrapping_add(producer * 7) as u8;
        if b != want {
            return Err(format!("producer {producer} buffer {index}: byte {} is {b}, want {want}", i + 8));
        }
    }
    Ok((producer, index))
}

pub fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}
