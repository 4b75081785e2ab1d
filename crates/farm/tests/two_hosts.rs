//! Two hosts on one machine: network namespaces A and B joined by a veth pair (10.231.0.1 and
//! 10.231.0.2), each host's processes in a mount namespace of its own with a fresh tmpfs on
//! `/dev/shm`. Host A runs the broker, a worker and a client; host B a worker and a client.
//! A's client proves co-location with the broker and sends descriptors; B's client cannot and
//! sends bytes; descriptors reaching B's worker are replaced by bytes in the broker. Every reply
//! is checked by the client program. Needs root and `ip`; skips (passing) otherwise.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a command, true on success.
fn run(args: &[&str]) -> bool {
    let mut command = Command::new(args[0]);
    command.args(&args[1..]).stdout(Stdio::null()).stderr(Stdio::null());
    command.status().is_ok_and(|s| s.success())
}

/// The two namespaces and their link; deleted on drop (deleting a namespace deletes its veth end).
struct Hosts {
    a: String,
    b: String,
}

impl Hosts {
    fn create() -> Option<Hosts> {
        // SAFETY: plain syscall without arguments.
        if unsafe { libc::geteuid() } != 0 || !run(&["ip", "netns", "list"]) || !run(&["unshare", "--version"]) {
            return None;
        }
        let id = std::process::id() % 100_000;
        let hosts = Hosts { a: format!("shmfarm-a-{id}"), b: format!("shmfarm-b-{id}") };
        let (va, vb) = (format!("sfa{id}"), format!("sfb{id}"));
        let (a, b) = (hosts.a.as_str(), hosts.b.as_str());
        let steps: [&[&str]; 11] = [
            &["ip", "netns", "add", a],
            &["ip", "netns", "add", b],
            &["ip", "link", "add", &va, "type", "veth", "peer", "name", &vb],
            &["ip", "link", "set", &va, "netns", a],
            &["ip", "link", "set", &vb, "netns", b],
            &["ip", "-n", a, "addr", "add", "10.231.0.1/24", "dev", &va],
            &["ip", "-n", b, "addr", "add", "10.231.0.2/24", "dev", &vb],
            &["ip", "-n", a, "link", "set", &va, "up"],
            &["ip", "-n", b, "link", "set", &vb, "up"],
            &["ip", "-n", a, "link", "set", "lo", "up"],
            &["ip", "-n", b, "link", "set", "lo", "up"],
        ];
        for step in steps {
            if !run(step) {
                eprintln!("SKIPPED: {step:?} failed");
                return None; // `hosts` is dropped: what was made is deleted
            }
        }
        Some(hosts)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

/// A host's shell (in its network namespace and a new mount namespace) and everything it
/// started: one process group, killed on drop.
struct HostShell {
    child: Child,
}

impl HostShell {
    /// Runs `script` on host `ns` after mounting a fresh tmpfs on /dev/shm.
    fn start(ns: &str, script: &str) -> HostShell {
        let script = format!("mount -t tmpfs tmpfs /dev/shm || exit 97\n{script}");
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "sh", "-c", &script]);
        let child = command.process_group(0).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        HostShell { child }
    }

    /// The JSON lines the host printed before its shell exited (≤ `within`).
    fn json_lines(&mut self, within: Duration) -> Vec<Value> {
        let stdout = self.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with('{') {
                    let _ = tx.send(serde_json::from_str::<Value>(&line).unwrap());
                }
            }
        });
        let deadline = Instant::now() + within;
        let mut lines = Vec::new();
        while let Ok(v) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            lines.push(v);
        }
        lines
    }
}

impl Drop for HostShell {
    fn drop(&mut self) {
        // SAFETY: plain syscall; the group is the one this shell leads.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

#[test]
fn co_located_parts_travel_as_descriptors_and_parts_across_hosts_as_bytes() {
    let Some(hosts) = Hosts::create() else {
        // The test command sets SHMPOOL_TEST_STRICT: there, a missing part is a failure.
        assert!(std::env::var_os("SHMPOOL_TEST_STRICT").is_none(), "cannot make two hosts (root, ip, unshare)");
        eprintln!("SKIPPED: needs root, ip and unshare");
        return;
    };
    let dir = std::env::temp_dir().join(format!("shmpool-farm-hosts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let done = dir.join("b-done");
    let (broker, worker, client) = (
        env!("CARGO_BIN_EXE_shmpool-broker"),
        env!("CARGO_BIN_EXE_shmpool-farm-worker"),
        env!("CARGO_BIN_EXE_shmpool-farm-client"),
    );
    let ep = "tcp://10.231.0.1:5599";
    let client_args = "--service echo --events 40 --planes 1 --side 64 --wait-workers 2 --timeout-ms 5000";
    let mut host_a = HostShell::start(
        &hosts.a,
        &format!(
            "{broker} --bind {ep} --heartbeat-ms 500 >/dev/null &\n\
             {worker} --connect {ep} --service echo --tag a --heartbeat-ms 500 >/dev/null &\n\
             {client} --connect {ep} {client_args} || exit 98\n\
             i=0; while [ ! -f {done} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n\
             {broker} --bind {ep} --status\n",
            done = done.display()
        ),
    );
    let mut host_b = HostShell::start(
        &hosts.b,
        &format!(
            "{worker} --connect {ep} --service echo --tag b --heartbeat-ms 500 >/dev/null &\n\
             {client} --connect {ep} {client_args} || exit 98\n\
             touch {done}\n",
            done = done.display()
        ),
    );
    let b = host_b.json_lines(Duration::from_secs(60));
    let a = host_a.json_lines(Duration::from_secs(60));
    drop((host_a, host_b));
    let _ = std::fs::remove_dir_all(&dir);
    drop(hosts);
    let [client_b] = &b[..] else { panic!("host B printed {b:?}") };
    let [client_a, status] = &a[..] else { panic!("host A printed {a:?}") };
    eprintln!("client on A: {client_a}\nclient on B: {client_b}\nbroker: {}", status["counters"]);
    // Host A's client shares /dev/shm with the broker: its arrays went as descriptors.
    assert_eq!((client_a["shared_parts"].as_u64(), client_a["slots_held"].as_u64()), (Some(40), Some(0)), "{client_a}");
    // Host B's client does not: everything went as bytes.
    assert_eq!(
        (client_b["shared_parts"].as_u64(), client_b["inline_parts"].as_u64()),
        (Some(0), Some(120)),
        "{client_b}"
    );
    let c = &status["counters"];
    let (forwarded, inlined) =
        (c["descriptors_forwarded"].as_u64().unwrap(), c["descriptors_inlined"].as_u64().unwrap());
    // Replies: A's worker wrote those of A's client into its reply pool; B's client got bytes.
    let replies_a = client_a["shared_reply_parts"].as_u64().unwrap();
    assert!(replies_a > 0, "no reply of the co-located worker came through shared memory: {client_a}");
    assert_eq!(client_b["shared_reply_parts"].as_u64(), Some(0), "{client_b}");
    assert_eq!(forwarded + inlined, 40 + replies_a, "{status}");
    assert!(forwarded > replies_a, "no descriptor reached the co-located worker: {status}");
}
