//! One-way hand-off latency of `recv_async` (tokio, current-thread runtime) against the blocking
//! `recv`, in one run: a producer process (this program, re-executed) publishes to a consumer
//! process (this one), 64 B and 8 MiB.
//!
//! ```text
//! cargo run --release --features tokio --example async_handoff -- [--messages N] [--rounds R] [--json PATH]
//! ```
//!
//! One buffer in flight (a one-slot pool): the producer takes the slot once the consumer released
//! it, waits a pause (so the consumer is asleep: every hand-off is a real wake-up), writes its
//! CLOCK_MONOTONIC into the first 8 bytes and publishes. Latency = the consumer's clock when the
//! receive returned minus that stamp. Each round measures every cell once, alternating the APIs,
//! and the samples of all rounds are pooled; the table prints p50/p99 and tokio / blocking, and
//! the median (lowest–highest) of the rounds' p50 ratios: the two APIs of a round ran back to
//! back, so that ratio is the least disturbed by a shared machine's load.
//!
//! tokio's own cost, measured the same way in every round: an 8-byte stamp through a Unix
//! socket, a blocking `read` against tokio's `readable().await` + `try_read`.

use shmpool::{monotonic_ns, Config, Consumer, Pool};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

/// What a hand-off goes through: a pool slot of that many bytes, or (the baseline) a Unix socket.
#[derive(Clone, Copy)]
enum Via {
    Pool(usize),
    Socket,
}

/// The rows measured: (label, what).
const ROWS: [(&str, Via); 3] = [("64 B", Via::Pool(64)), ("8 MiB", Via::Pool(8 << 20)), ("socket", Via::Socket)];
/// The producer's pause before each publication: longer than any spinning, so waiters sleep.
const PAUSE: Duration = Duration::from_micros(300);
/// The longest any single wait of the benchmark may take before it is called a failure.
const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq)]
enum Api {
    Blocking,
    Tokio,
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Api::Blocking => "recv",
            Api::Tokio => "recv_async",
        }
    }
}

struct Options {
    messages: usize,
    rounds: usize,
    json: Option<PathBuf>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options { messages: 1_000, rounds: 6, json: None };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--messages" => o.messages = value()?.parse().map_err(|e| format!("--messages: {e}"))?,
            "--rounds" => o.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--json" => o.json = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    if o.messages == 0 || o.rounds == 0 {
        return Err("--messages and --rounds must be positive".into());
    }
    Ok(o)
}

/// The producer process: `--produce NAME DIR SIZE COUNT`.
fn produce(name: &str, dir: &Path, size: usize, count: usize) -> shmpool::Result<()> {
    let pool = Pool::open_timeout(name, Some(dir), Some(DEADLINE))?;
    let producer = pool.producer()?;
    for _ in 0..count {
        let mut buf = producer.acquire(Some(DEADLINE))?;
        std::thread::sleep(PAUSE);
        buf[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
        buf.set_len(size)?;
        buf.publish()?;
    }
    Ok(())
}

/// The baseline's producer process: `--produce-socket PATH COUNT`.
fn produce_socket(path: &Path, count: usize) -> std::io::Result<()> {
    let mut socket = UnixStream::connect(path)?;
    for _ in 0..count {
        std::thread::sleep(PAUSE);
        socket.write_all(&monotonic_ns().to_le_bytes())?;
    }
    Ok(())
}

/// The latency of a received buffer: now minus the producer's stamp (0 if the stamp is bad).
fn latency(buf: &[u8]) -> u64 {
    let stamp = buf.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
    monotonic_ns().saturating_sub(stamp)
}

/// Receives `count` buffers with `api`, pushing their latencies.
fn receive(consumer: &mut Consumer, api: Api, count: usize, rt: &tokio::runtime::Runtime, out: &mut Vec<u64>) {
    match api {
        Api::Blocking => {
            for _ in 0..count {
                let buf = consumer.recv(Some(DEADLINE)).expect("recv");
                out.push(latency(&buf));
            }
        }
        Api::Tokio => rt.block_on(async {
            for _ in 0..count {
                let buf = tokio::time::timeout(DEADLINE, consumer.recv_async())
                    .await
                    .expect("recv_async timed out")
                    .expect("recv_async");
                out.push(latency(&buf));
            }
        }),
    }
}

/// Receives `count` stamps from `socket` with `api` (the baseline), pushing their latencies.
fn receive_socket(socket: UnixStream, api: Api, count: usize, rt: &tokio::runtime::Runtime, out: &mut Vec<u64>) {
    let mut stamp = [0u8; 8];
    match api {
        Api::Blocking => {
            let mut socket = socket;
            socket.set_read_timeout(Some(DEADLINE)).expect("timeout");
            for _ in 0..count {
                socket.read_exact(&mut stamp).expect("read");
                out.push(latency(&stamp));
            }
        }
        Api::Tokio => rt.block_on(async {
            socket.set_nonblocking(true).expect("non-blocking");
            let socket = tokio::net::UnixStream::from_std(socket).expect("tokio socket");
            for _ in 0..count {
                // The stamp is written at once: one readiness, one read, as a pool hand-off.
                loop {
                    tokio::time::timeout(DEADLINE, socket.readable())
                        .await
                        .expect("readable timed out")
                        .expect("readable");
                    match socket.try_read(&mut stamp) {
                        Ok(8) => break,
                        Ok(n) => panic!("a partial stamp of {n} bytes"),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(e) => panic!("read: {e}"),
                    }
                }
                out.push(latency(&stamp));
            }
        }),
    }
}

/// One cell: a fresh one-slot pool (or socket), a producer process, `count` hand-offs.
fn cell(dir: &Path, via: Via, api: Api, count: usize, rt: &tokio::runtime::Runtime, out: &mut Vec<u64>) {
    let mut producer = Command::new(std::env::current_exe().expect("current_exe"));
    match via {
        Via::Pool(size) => {
            let name = format!("handoff-{size}-{}", api.name());
            let pool = Pool::create(&name, &Config::new(1, size).directory(dir)).expect("pool");
            let mut consumer = pool.consumer().expect("consumer");
            producer.args(["--produce", &name]).arg(dir).args([size.to_string(), count.to_string()]);
            let mut child = producer.spawn().expect("producer process");
            receive(&mut consumer, api, count, rt, out);
            assert!(child.wait().expect("producer").success(), "the producer failed");
        }
        Via::Socket => {
            let path = dir.join(format!("socket-{}", api.name()));
            let listener = UnixListener::bind(&path).expect("socket");
            producer.arg("--produce-socket").arg(&path).arg(count.to_string());
            let mut child = producer.spawn().expect("producer process");
            let (socket, _) = listener.accept().expect("accept");
            receive_socket(socket, api, count, rt, out);
            assert!(child.wait().expect("producer").success(), "the producer failed");
            let _ = std::fs::remove_file(&path);
        }
    }
}

fn percentile(sorted: &[u64], per_mille: usize) -> u64 {
    sorted[(sorted.len() * per_mille / 1000).min(sorted.len() - 1)]
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, path, count] = args.as_slice() {
        if flag == "--produce-socket" {
            let count = count.parse().unwrap_or(0);
            return match produce_socket(Path::new(path), count) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("producer: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    }
    if args.first().map(String::as_str) == Some("--produce") {
        let parsed = match args.as_slice() {
            [_, name, dir, size, count] => size.parse().ok().zip(count.parse().ok()).map(|sc| (name, dir, sc)),
            _ => None,
        };
        let Some((name, dir, (size, count))) = parsed else {
            eprintln!("usage: --produce NAME DIR SIZE COUNT");
            return ExitCode::FAILURE;
        };
        return match produce(name, Path::new(dir), size, count) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("producer: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match parse(args.into_iter()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("async_handoff: {e}");
            return ExitCode::from(2);
        }
    };
    let base = if Path::new(shmpool::DEFAULT_DIR).is_dir() {
        PathBuf::from(shmpool::DEFAULT_DIR)
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("shmpool-async-handoff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");

    let apis = [Api::Blocking, Api::Tokio];
    let mut samples = vec![Vec::new(); ROWS.len() * apis.len()];
    let mut round_p50s = vec![Vec::new(); ROWS.len() * apis.len()];
    for round in 0..options.rounds {
        for (s, &(_, via)) in ROWS.iter().enumerate() {
            // Alternate which API goes first, so that neither always gets the warmer machine.
            for k in 0..apis.len() {
                let a = (k + round) % apis.len();
                let mut got = Vec::with_capacity(options.messages);
                cell(&dir, via, apis[a], options.messages, &rt, &mut got);
                got.sort_unstable();
                round_p50s[s * apis.len() + a].push(percentile(&got, 500));
                samples[s * apis.len() + a].extend(got);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "one-way hand-off, {} messages x {} rounds per cell, {} µs pause, producer and consumer in two processes",
        options.messages,
        options.rounds,
        PAUSE.as_micros()
    );
    println!(
        "{:<7} {:>14} {:>14} {:>16} {:>16} {:>9} {:>9}  x p50 per round",
        "size", "recv p50", "recv p99", "recv_async p50", "recv_async p99", "x p50", "x p99"
    );
    let mut json = Vec::new();
    for (s, &(label, via)) in ROWS.iter().enumerate() {
        // The baseline's row is "socket" in the JSON, a pool's its payload size.
        let size = match via {
            Via::Pool(size) => size.to_string(),
            Via::Socket => "\"socket\"".into(),
        };
        let mut stats = Vec::new();
        for (a, api) in apis.iter().enumerate() {
            let v = &mut samples[s * apis.len() + a];
            v.sort_unstable();
            let (p50, p99) = (percentile(v, 500), percentile(v, 990));
            let rounds: Vec<String> = round_p50s[s * apis.len() + a].iter().map(u64::to_string).collect();
            json.push(format!(
                "{{\"size\": {size}, \"api\": \"{}\", \"count\": {}, \"p50_ns\": {p50}, \"p99_ns\": {p99}, \
                 \"round_p50_ns\": [{}]}}",
                api.name(),
                v.len(),
                rounds.join(", ")
            ));
            stats.push((p50, p99));
        }
        let (b, t) = (stats[0], stats[1]);
        let mut ratios: Vec<f64> = round_p50s[s * apis.len()]
            .iter()
            .zip(&round_p50s[s * apis.len() + 1])
            .map(|(&b, &t)| t as f64 / b.max(1) as f64)
            .collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "{label:<7} {:>11} ns {:>11} ns {:>13} ns {:>13} ns {:>8.2}x {:>8.2}x  {:.2}x ({:.2}-{:.2})",
            b.0,
            b.1,
            t.0,
            t.1,
            t.0 as f64 / b.0 as f64,
            t.1 as f64 / b.1 as f64,
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
    if let Some(path) = options.json {
        let text = format!("{{\"pause_us\": {}, \"rows\": [{}]}}\n", PAUSE.as_micros(), json.join(", "));
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("async_handoff: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
