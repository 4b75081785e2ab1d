//! `shmpool`: create, inspect and exercise shared-memory buffer pools from the shell.
//!
//! Command groups live in their own modules: [`admin`] (create, ls, inspect, gc, rm), [`traffic`]
//! (produce, consume), [`demo`] and [`bench`]. The demo and the benchmark run their peers as child
//! processes of this same binary, through hidden subcommands.

mod admin;
mod affinity;
mod bench;
mod chaos;
mod demo;
mod fifo;
mod frame;
mod latency;
mod pattern;
mod peers;
mod progress;
mod scratch;
mod stores;
mod traffic;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code of a failure that is not one of the more specific ones below.
pub const EXIT_ERROR: u8 = 1;
/// Exit code of `consume` (and `produce`) when a wait ran out of time.
pub const EXIT_TIMEOUT: u8 = 2;
/// Exit code of `consume --verify` when a buffer does not hold the producer's pattern.
pub const EXIT_MISMATCH: u8 = 3;

/// Why a command failed, and the exit code that says so.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure { code, message: message.into() }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Failure::new(EXIT_ERROR, message)
    }
}

impl From<shmpool::Error> for Failure {
    fn from(e: shmpool::Error) -> Self {
        let code = if matches!(e, shmpool::Error::Timeout) { EXIT_TIMEOUT } else { EXIT_ERROR };
        Failure::new(code, e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::error(e.to_string())
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::error(format!("JSON: {e}"))
    }
}

pub type CliResult<T = ()> = Result<T, Failure>;

#[derive(Parser)]
#[command(name = "shmpool", version, about = "Zero-copy buffer pools in shared memory: manage, exercise, benchmark")]
struct Cli {
    /// Directory of the pools (default: $SHMPOOL_DIR, else /dev/shm).
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a pool and keep it; prints its path.
    Create(admin::CreateArgs),
    /// Publish patterned buffers (creating the pool if missing).
    Produce(traffic::ProduceArgs),
    /// Receive buffers, optionally verifying or printing them.
    Consume(traffic::ConsumeArgs),
    /// List the pools (and stores of named variables) of the directory.
    Ls(admin::LsArgs),
    /// Show a pool's shape, slot states, counters and peers (or a store's variables).
    Inspect(admin::InspectArgs),
    /// Remove pools and stores that no live process has open.
    Gc,
    /// Shut a pool down for its users and remove its name.
    Rm(admin::RmArgs),
    /// A Majordomo (7/MDP) broker on ZeroMQ for a farm of workers (`--status`: ask a running one).
    Broker(shmpool_farm::cli::BrokerArgs),
    /// 1080p RGB frames from one producer to two consumers, compared with a pipe.
    Demo(demo::DemoArgs),
    /// Latency and throughput of shmpool against futex, pipe and Unix-socket baselines.
    Bench(bench::BenchArgs),
    /// Kill random producers, consumers and waiters of four pools; check nothing leaked.
    Chaos(chaos::ChaosArgs),
    /// A process of `chaos` (internal).
    #[command(name = "__chaos-peer", hide = true)]
    ChaosPeer(chaos::PeerArgs),
    /// A process of `demo` (internal).
    #[command(name = "__demo-peer", hide = true)]
    DemoPeer(demo::PeerArgs),
    /// A receiving process of `bench` (internal).
    #[command(name = "__bench-peer", hide = true)]
    BenchPeer(bench::PeerArgs),
}

fn run(cli: Cli) -> CliResult {
    let dir = cli.dir.as_deref();
    match cli.command {
        Command::Create(args) => admin::create(dir, &args),
        Command::Produce(args) => traffic::produce(dir, &args),
        Command::Consume(args) => traffic::consume(dir, &args),
        Command::Ls(args) => admin::ls(dir, &args),
        Command::Inspect(args) => admin::inspect(dir, &args),
        Command::Gc => admin::gc(dir),
        Command::Rm(args) => admin::rm(dir, &args),
        Command::Broker(mut args) => {
            // The broker's pool directory is the command's --dir unless --shm-dir says otherwise.
            args.shm_dir = args.shm_dir.or_else(|| dir.map(PathBuf::from));
            shmpool_farm::cli::broker(&args).map_err(|e| Failure::error(e.to_string()))
        }
        Command::Demo(args) => demo::run(dir, &args),
        Command::Bench(args) => bench::run(dir, &args),
        Command::Chaos(args) => chaos::run(dir, &args),
        Command::ChaosPeer(args) => chaos::peer(dir, &args),
        Command::DemoPeer(args) => demo::peer(dir, &args),
        Command::BenchPeer(args) => bench::peer(dir, &args),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("shmpool: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
