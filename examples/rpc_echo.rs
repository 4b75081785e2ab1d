//! Round trip of a message echoing a 1 MiB and an 8 MiB float32 array through a worker process,
//! per transport: `shm` (array copied into a slot, or allocated in the slot and filled in place),
//! `unix` and `tcp`. The worker echoes what it received; on `shm` it lends the received slot back,
//! so nothing is copied on the way back.
//!
//! ```text
//! cargo run --release --example rpc_echo [ROUNDS]
//! ```

use shmpool_protocol::{connect_env, Backend, ConnConfig, Connection, Listener, SendBuf, WorkerProcess};
use std::time::{Duration, Instant};

const ROLE: &str = "SHMPOOL_RPC_ECHO_WORKER";
const SIZES: [(&str, usize); 2] = [("1 MiB", 1 << 20), ("8 MiB", 8 << 20)];

fn worker() -> shmpool_protocol::Result<()> {
    let conn = connect_env(&ConnConfig::default())?;
    loop {
        let msg = match conn.recv(None) {
            Ok(m) => m,
            Err(shmpool_protocol::Error::Disconnected(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        conn.send(&msg.header, msg.buffers.iter().map(|b| SendBuf::Bytes(b)).collect())?;
    }
}

/// How the host produces the array it sends.
#[derive(Clone, Copy, PartialEq)]
enum Fill {
    /// From an array in process memory (one copy into the slot on `shm`).
    Copy,
    /// Allocated in the slot and written there (only a stamp is written per round).
    InPlace,
}

fn round_trips(conn: &Connection, array: &[u8], fill: Fill, rounds: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds + 3 {
        let t = Instant::now();
        match fill {
            Fill::Copy => conn.send(b"echo", vec![array.into()]).unwrap(),
            Fill::InPlace => {
                let mut buf = conn.alloc(array.len()).unwrap();
                assert!(buf.is_shared(), "no free slot");
                buf[..8].copy_from_slice(&(i as u64).to_le_bytes());
                conn.send(b"echo", vec![buf.into()]).unwrap();
            }
        }
        let back = conn.recv(Some(Duration::from_secs(30))).unwrap();
        assert_eq!(back.buffers[0].len(), array.len());
        drop(back);
        if i >= 3 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    times
}

fn main() -> shmpool_protocol::Result<()> {
    if std::env::var_os(ROLE).is_some() {
        return worker();
    }
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let arrays: Vec<Vec<u8>> =
        SIZES.iter().map(|&(_, n)| (0..n / 4).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect()).collect();
    let exe = std::env::current_exe().expect("own path").display().to_string();
    let runs = [("shm (in place)", "tcp,shm", Fill::InPlace), ("shm (copy in)", "tcp,shm", Fill::Copy)];
    let runs = runs.into_iter().chain([("unix", "unix", Fill::Copy), ("tcp", "tcp", Fill::Copy)]);
    let mut medians = Vec::new();
    println!("{:<16}{:>14}{:>14}{:>14}{:>14}", "transport", "1 MiB p50", "1 MiB min", "8 MiB p50", "8 MiB min");
    for (name, list, fill) in runs {
        let config = ConnConfig { protocols: Some(shmpool_protocol::parse_protocols(list)?), ..ConnConfig::default() };
        let listener = Listener::bind(config)?;
        let mut env = listener.worker_env();
        env.push((ROLE.into(), "1".into()));
        let mut child =
            WorkerProcess::spawn(Backend::Process.command(std::slice::from_ref(&exe), &env, listener.directory())?)?;
        let conn = listener.accept(Duration::from_secs(20), &mut || child.check_running())?;
        let mut row = format!("{name:<16}");
        for array in &arrays {
            let t = round_trips(&conn, array, fill, rounds);
            row += &format!("{:>11.3} ms{:>11.3} ms", t[t.len() / 2].as_secs_f64() * 1e3, t[0].as_secs_f64() * 1e3);
            medians.push((name, t[t.len() / 2]));
        }
        println!("{row}");
        conn.close();
        child.shutdown(Duration::from_secs(5))?;
    }
    let median = |n: &str, i: usize| medians.iter().filter(|(m, _)| *m == n).nth(i).unwrap().1.as_secs_f64();
    for (i, (size, _)) in SIZES.iter().enumerate() {
        println!(
            "tcp / shm median, {size}: {:.1}x (in place), {:.1}x (copy in)",
            median("tcp", i) / median("shm (in place)", i),
            median("tcp", i) / median("shm (copy in)", i)
        );
    }
    Ok(())
}
