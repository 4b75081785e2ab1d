//! `shmpool-farm-worker`: a worker that answers every request with its tag followed by the
//! request's parts (arrays stay arrays). Used by the tests, the demos and the benchmark.

use clap::Parser;
use shmpool_farm::{Part, ShmConfig, Worker, WorkerConfig};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "shmpool-farm-worker", version)]
struct Cli {
    /// The broker's endpoint.
    #[arg(long)]
    connect: String,
    /// The service to serve.
    #[arg(long)]
    service: String,
    /// The first part of every reply (default: the process id).
    #[arg(long)]
    tag: Option<String>,
    /// Heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// First reconnection delay in milliseconds (doubles up to 32 s).
    #[arg(long, default_value_t = 1000)]
    reconnect_ms: u64,
    /// Time to spend on each request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Reply with only the last part of the request (SSNet's worker returns one plane).
    #[arg(long)]
    last_only: bool,
    /// Append one part per received array: "shared" if it was read in place in a pool mapping,
    /// else "inline".
    #[arg(long)]
    report_shared: bool,
    /// Kill this process (SIGKILL) after writing the first reply, before sending it: a worker
    /// crashing with its reply in a client's reply pool (for the tests).
    #[arg(long)]
    crash_before_send: bool,
    /// Directory of pools and co-location challenges (default: $SHMPOOL_DIR, else /dev/shm).
    #[arg(long)]
    shm_dir: Option<std::path::PathBuf>,
    /// Never use shared memory (as a worker on another host).
    #[arg(long)]
    no_shm: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = WorkerConfig {
        heartbeat: Duration::from_millis(cli.heartbeat_ms.max(1)),
        reconnect_min: Duration::from_millis(cli.reconnect_ms.max(1)),
        shm: ShmConfig { enabled: !cli.no_shm, directory: cli.shm_dir.clone(), ..ShmConfig::default() },
        ..WorkerConfig::default()
    };
    let tag = cli.tag.unwrap_or_else(|| std::process::id().to_string());
    let stop = shmpool_farm::cli::stop_on_signals();
    let worker = match Worker::connect(&cli.connect, &cli.service, config) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("shmpool-farm-worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("shmpool-farm-worker: serving {}", cli.service);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let request = match worker.recv(Some(Duration::from_millis(100))) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("shmpool-farm-worker: {e}");
                return ExitCode::FAILURE;
            }
        };
        std::thread::sleep(Duration::from_millis(cli.delay_ms));
        let echoed = if cli.last_only { request.parts().len().saturating_sub(1) } else { 0 };
        let arrays = request.parts().iter().filter_map(Part::as_array);
        let report: Vec<Part> = match cli.report_shared {
            true => arrays.map(|a| Part::bytes(if a.data.is_shared() { "shared" } else { "inline" })).collect(),
            false => Vec::new(),
        };
        // The request's parts themselves (views of the message or of the client's slot) go back:
        // encoding the reply is their one copy.
        let (mut parts, replier) = request.split();
        let mut reply = vec![Part::bytes(tag.as_bytes())];
        reply.extend(parts.drain(echoed..));
        reply.extend(report);
        let staged = replier.stage(reply);
        if cli.crash_before_send {
            // SAFETY: plain syscall signalling this very process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        if let Err(e) = staged.send() {
            eprintln!("shmpool-farm-worker: {e}");
        }
    }
    ExitCode::SUCCESS
}
