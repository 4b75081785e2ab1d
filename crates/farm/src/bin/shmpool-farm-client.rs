//! `shmpool-farm-client`: sends SSNet-style events (per plane: a name, a metadata string and a
//! float32 array of 1×1×SIDE×SIDE) to a service, checks every reply (the worker's tag, then the
//! echoed parts, or only the last plane with `shmpool-farm-worker --last-only`), and prints one
//! JSON line of results: counts, events/s, round-trip p50/p99, how parts travelled. Used by the
//! tests and the benchmark.

use clap::Parser;
use shmpool::DType;
use shmpool_farm::{Client, ClientConfig, Part, ShmConfig};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "shmpool-farm-client", version)]
struct Cli {
    /// The broker's endpoint.
    #[arg(long)]
    connect: String,
    #[arg(long, default_value = "echo")]
    service: String,
    /// Events to send.
    #[arg(long, default_value_t = 100)]
    events: u32,
    /// Planes per event.
    #[arg(long, default_value_t = 3)]
    planes: u32,
    /// Side of each (1, 1, SIDE, SIDE) float32 plane.
    #[arg(long, default_value_t = 512)]
    side: u64,
    /// Expect only the last plane back (the worker runs with --last-only).
    #[arg(long)]
    last_only: bool,
    /// Expect only the last plane back, negated (a worker that computes its reply).
    #[arg(long)]
    negated: bool,
    /// Before sending, wait (≤ 30 s) until the service has this many workers.
    #[arg(long, default_value_t = 0)]
    wait_workers: u64,
    #[arg(long, default_value_t = 2500)]
    timeout_ms: u64,
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// Directory of pools and co-location challenges (default: $SHMPOOL_DIR, else /dev/shm).
    #[arg(long)]
    shm_dir: Option<std::path::PathBuf>,
    /// Never use shared memory.
    #[arg(long)]
    no_shm: bool,
    /// After printing the results, keep the last reply (views of reply slots included) until
    /// killed (for the tests).
    #[arg(long)]
    hold: bool,
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmpool-farm-client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    let shm = ShmConfig { enabled: !cli.no_shm, directory: cli.shm_dir.clone(), ..ShmConfig::default() };
    let config = ClientConfig {
        timeout: Duration::from_millis(cli.timeout_ms),
        attempts: cli.attempts,
        shm,
        ..ClientConfig::default()
    };
    let mut client = Client::connect(&cli.connect, config).map_err(|e| e.to_string())?;
    if cli.wait_workers > 0 {
        wait_workers(&cli.connect, &cli.service, cli.wait_workers)?;
    }
    let mut times = Vec::with_capacity(cli.events as usize);
    let mut served_by: BTreeMap<String, u32> = BTreeMap::new();
    let mut last = Vec::new();
    let cpu_before = cpu_seconds();
    for event in 0..cli.events {
        let parts = make_event(&mut client, event, cli.planes, cli.side);
        let sent = Instant::now();
        drop(std::mem::take(&mut last));
        let reply = client.request(&cli.service, &parts).map_err(|e| format!("event {event}: {e}"))?;
        times.push(sent.elapsed());
        check(&parts, &reply, cli).map_err(|e| format!("event {event}: {e}"))?;
        *served_by.entry(String::from_utf8_lossy(reply[0].data()).into_owned()).or_default() += 1;
        last = reply;
    }
    let cpu = cpu_seconds() - cpu_before;
    let held_replies = last.iter().filter(|p| p.as_array().is_some_and(|a| a.data.is_shared())).count();
    if !cli.hold {
        drop(std::mem::take(&mut last));
    }
    // Events/s of one client: 1 / mean round trip (building events is not timed).
    let elapsed: Duration = times.iter().sum();
    times.sort();
    let pct = |p: usize| times.get((times.len() * p / 100).min(times.len().saturating_sub(1))).copied();
    let us = |d: Option<Duration>| d.map(|d| d.as_micros() as u64).unwrap_or(0);
    let stats = client.stats();
    let held = client.pool().map(|p| p.stats()).map(|s| s.slots - s.free).unwrap_or(0);
    let reply_held = client.reply_pool().map(|p| p.stats()).map(|s| s.slots - s.free).unwrap_or(0);
    let out = serde_json::json!({
        "events": cli.events,
        "elapsed_s": elapsed.as_secs_f64(),
        "events_per_s": f64::from(cli.events) / elapsed.as_secs_f64(),
        "p50_us": us(pct(50)),
        "p99_us": us(pct(99)),
        "cpu_s": cpu,
        "shared_parts": stats.shared_parts,
        "inline_parts": stats.inline_parts,
        "resent_inline": stats.resent_inline,
        "slots_held": held,
        "shared_reply_parts": stats.shared_reply_parts,
        "shared_replies": stats.shared_replies,
        "inline_reply_parts": stats.inline_reply_parts,
        "replies_resent_inline": stats.replies_resent_inline,
        "reply_slots_held": reply_held,
        "held_reply_views": if cli.hold { held_replies } else { 0 },
        "served_by": served_by,
    });
    println!("{out}");
    if cli.hold {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        loop {
            std::thread::park(); // until killed, holding `last`
        }
    }
    Ok(())
}

/// CPU time (user + system) of this process so far, all threads, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only fills the struct it is given (zeroed plain data).
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// One event: per plane a name, a metadata string and a (1, 1, side, side) float32 array,
/// written in place (in a slot of the client's pool where shared memory is on).
fn make_event(client: &mut Client, event: u32, planes: u32, side: u64) -> Vec<Part> {
    let mut parts = Vec::new();
    for plane in 0..planes {
        let mut array = client.array(DType::F32, &[1, 1, side, side]);
        let data = array.data_mut().unwrap_or_default();
        for (i, value) in data.chunks_exact_mut(4).enumerate() {
            value.copy_from_slice(&((i as u32 ^ event ^ plane << 20) as f32).to_ne_bytes());
        }
        parts.push(Part::bytes(format!("event{event}-plane{plane}")));
        parts.push(Part::bytes(format!("{{\"event\": {event}, \"plane\": {plane}}}")));
        parts.push(array);
    }
    parts
}

/// The reply is the tag, then every part (or only the last, or the last negated) as sent.
fn check(sent: &[Part], reply: &[Part], cli: &Cli) -> Result<(), String> {
    let expected = if cli.last_only || cli.negated { &sent[sent.len().saturating_sub(1)..] } else { sent };
    if reply.len() != expected.len() + 1 {
        return Err(format!("{} parts in the reply, expected {}", reply.len(), expected.len() + 1));
    }
    for (i, (got, want)) in reply[1..].iter().zip(expected).enumerate() {
        let same_kind =
            got.as_array().map(|a| (a.dtype, a.shape.clone())) == want.as_array().map(|a| (a.dtype, a.shape.clone()));
        let same_data = match cli.negated {
            false => got.data() == want.data(),
            true => {
                let f32s = |b: &[u8]| {
                    b.chunks_exact(4).map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<_>>()
                };
                f32s(got.data()) == f32s(want.data()).into_iter().map(|v| -v).collect::<Vec<_>>()
            }
        };
        if !same_kind || !same_data {
            return Err(format!("part {i} of the reply differs from the request"));
        }
    }
    Ok(())
}

/// Waits until the broker reports `n` workers of `service`.
fn wait_workers(endpoint: &str, service: &str, n: u64) -> Result<(), String> {
    let shm = ShmConfig { enabled: false, ..ShmConfig::default() };
    let config = ClientConfig { timeout: Duration::from_secs(1), attempts: 1, shm, ..ClientConfig::default() };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let mut client = Client::connect(endpoint, config.clone()).map_err(|e| e.to_string())?;
        if let Ok(reply) = client.request("mmi.status", &[]) {
            let status: serde_json::Value = serde_json::from_slice(reply[0].data()).unwrap_or_default();
            if status["services"][service]["workers"].as_u64() >= Some(n) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("the broker did not report {n} workers of {service} within 30 s"))
}
