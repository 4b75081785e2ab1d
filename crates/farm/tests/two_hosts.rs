//! Two hosts on one machine: network namespaces A and B joined by a veth pair (10.231.0.1 and
//! 10.231.0.2), each host's processes in a mount namespace of its own with a fresh tmpfs on
//! `/dev/shm`. Host A runs the broker, workers and a client; host B workers and a client. A's peers
//! prove they share the broker's directory, B's peers that they share B's: descriptors travel
//! between peers of one host, through the broker on A, and bytes between hosts. Every reply is
//! checked by the client program. Needs root and `ip`; skips (passing) otherwise.

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
fn peers_of_one_host_exchange_descriptors_through_a_broker_on_either_host() {
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
    // Each host runs a worker of "echo" and one of a service only it serves; the clients run one
    // after the other (B's, then A's), so that every route is known in advance.
    let workers = |host: &str| {
        format!(
            "{worker} --connect {ep} --service echo --tag {host} --heartbeat-ms 500 >/dev/null &\n\
             {worker} --connect {ep} --service only-{host} --tag {host} --heartbeat-ms 500 >/dev/null &\n"
        )
    };
    let client = |service: &str, workers: u32| {
        format!(
            "{client} --connect {ep} --service {service} --events 40 --planes 1 --side 64 \
             --wait-workers {workers} --timeout-ms 5000 || exit 98\n"
        )
    };
    let mut host_a = HostShell::start(
        &hosts.a,
        &format!(
            "{broker} --bind {ep} --heartbeat-ms 500 >/dev/null &\n{}\
             i=0; while [ ! -f {done} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n{}{}\
             {broker} --bind {ep} --status\n",
            workers("a"),
            client("only-b", 1),
            client("echo", 2),
            done = done.display()
        ),
    );
    let mut host_b = HostShell::start(
        &hosts.b,
        &format!("{}{}{}touch {}\n", workers("b"), client("echo", 2), client("only-a", 1), done.display()),
    );
    let b = host_b.json_lines(Duration::from_secs(60));
    let a = host_a.json_lines(Duration::from_secs(60));
    drop((host_a, host_b));
    let _ = std::fs::remove_dir_all(&dir);
    drop(hosts);
    let [b_echo, b_only_a] = &b[..] else { panic!("host B printed {b:?}") };
    let [a_only_b, a_echo, status] = &a[..] else { panic!("host A printed {a:?}") };
    let c = &status["counters"];
    eprintln!("B: {b_echo}\n   {b_only_a}\nA: {a_only_b}\n   {a_echo}\nbroker: {c}");
    // (parts sent as descriptors, resent as bytes, reply parts through shared memory, replies
    // delivered whole in the reply pool, served by).
    let route = |r: &Value| {
        let n = |k: &str| r[k].as_u64().unwrap();
        assert_eq!((n("slots_held"), n("reply_slots_held")), (0, 0), "{r}");
        (
            n("shared_parts"),
            n("resent_inline"),
            n("shared_reply_parts"),
            n("shared_replies"),
            r["served_by"].to_string(),
        )
    };
    // B's client and B's worker share B's /dev/shm; the broker on A cannot see it, yet forwards
    // the requests' descriptors, and the confirmations of replies delivered in B's reply pool.
    assert_eq!(route(b_echo), (40, 0, 40, 40, r#"{"b":40}"#.into()));
    // To A's worker, B's descriptors are refused by the broker and resent as bytes; after a
    // refusal, B's client sends bytes at once for a second.
    let (shared, resent, shared_reply_parts, shared_replies, served) = route(b_only_a);
    // (At most one refusal a second: fewer than 40 unless the 40 requests took 39 s.)
    assert!(shared >= 1 && shared == resent && resent < 40 && shared_reply_parts + shared_replies == 0, "{b_only_a}");
    assert_eq!(served, r#"{"a":40}"#);
    // A's client shares the broker's directory: the broker sends B's worker the bytes, and A's
    // worker the descriptors.
    assert_eq!(route(a_only_b), (40, 0, 0, 0, r#"{"b":40}"#.into()));
    assert_eq!(route(a_echo), (40, 0, 40, 40, r#"{"a":40}"#.into()));
    let n = |k: &str| c[k].as_u64().unwrap();
    assert_eq!(n("descriptors_forwarded_off_host"), 40, "{c}");
    assert_eq!(n("descriptors_forwarded"), 80, "{c}");
    assert_eq!((n("descriptors_inlined"), n("descriptors_refused")), (40, resent), "{c}");
    // Requests to A's workers (A's echo, B's resent as bytes) are handed over through their
    // request pools; B's workers cannot offer the broker one.
    assert_eq!(n("pooled_requests"), 80, "{c}");
    assert_eq!(
        (status["colocated_peers"].as_u64(), status["off_host_site_peers"].as_u64()),
        (Some(4), Some(4)),
        "{status}"
    );
}
