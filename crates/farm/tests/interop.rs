//! Interoperability with a plain MDP/0.1 client and worker written with pyzmq only
//! (`tests/mdp_plain.py`), through our broker, both ways with our own worker and client.
//! Needs a Python with pyzmq: `$SHMPOOL_PYTHON`, else the workspace's `.venv`, else `python3`;
//! without one the test says so and passes (CI installs pyzmq: see the README).

mod common;

use common::*;
use shmpool_farm::{Client, ClientConfig, Part, ShmConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);

fn python_with_pyzmq() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    let candidates = std::env::var_os("SHMPOOL_PYTHON").map(PathBuf::from).into_iter().chain([venv, "python3".into()]);
    for python in candidates {
        let ok = Command::new(&python).args(["-c", "import zmq"]).stderr(Stdio::null()).status();
        if ok.is_ok_and(|s| s.success()) {
            return Some(python);
        }
    }
    None
}

fn script() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mdp_plain.py").display().to_string()
}

#[test]
fn plain_pyzmq_client_and_worker_interoperate_through_our_broker() {
    let Some(python) = python_with_pyzmq() else {
        // The test command sets SHMPOOL_TEST_STRICT: there, a missing part is a failure.
        assert!(std::env::var_os("SHMPOOL_TEST_STRICT").is_none(), "no Python with pyzmq");
        eprintln!("SKIPPED: no Python with pyzmq (set SHMPOOL_PYTHON or pip install pyzmq)");
        return;
    };
    let dir = TempDir::new("interop");
    let ep = dir.endpoint("broker");
    let _broker = broker(&ep, &[]);

    // A plain worker serves our client.
    let args = [script(), "worker".into(), ep.clone(), "pyecho".into()];
    let py_worker = Proc { child: Command::new(&python).args(args).stdout(Stdio::null()).spawn().unwrap() };
    wait_status(&ep, 10 * SECOND, "the plain worker", |s| workers_of(s, "pyecho") == 1);
    // Ours proves co-location: what it adds for co-located workers (a reply-to) never reaches
    // the plain worker.
    let shm = ShmConfig { directory: Some(dir.0.clone()), ..ShmConfig::default() };
    let config = ClientConfig { timeout: 5 * SECOND, attempts: 1, shm, ..ClientConfig::default() };
    let mut ours = Client::connect(&ep, config).unwrap();
    for i in 0..20u8 {
        let reply = ours.request("pyecho", &[Part::bytes("hello"), Part::bytes(vec![i; 100])]).unwrap();
        assert_eq!(reply.len(), 2, "the plain worker saw a frame it was not sent");
        assert_eq!(text(&reply[0]), "py:hello");
        assert_eq!(reply[1].data(), [&b"py:"[..], &[i; 100]].concat());
    }
    drop(py_worker);

    // Our worker serves a plain client (REQ socket, as in the spec).
    let _worker = worker(&ep, "echo", "rust", &[]);
    wait_status(&ep, 10 * SECOND, "our worker", |s| workers_of(s, "echo") == 1);
    let out = Command::new(&python).args([script(), "client".into(), ep.clone(), "echo".into(), "20".into()]).output();
    let out = out.unwrap();
    assert!(out.status.success(), "plain client failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok 20");
}
