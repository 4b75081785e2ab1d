//! The `shmpool broker` command (arguments and behaviour), for whichever binary hosts it.
//!
//! ```no_run
//! use clap::Parser;
//! use shmpool_farm::cli::BrokerArgs;
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     broker: BrokerArgs,
//! }
//! let cli = Cli::parse_from(["shmpool-broker", "--bind", "tcp://127.0.0.1:5555"]);
//! shmpool_farm::cli::broker(&cli.broker)?;
//! # Ok::<(), shmpool_farm::Error>(())
//! ```

use crate::mdp::MMI_STATUS;
use crate::{Broker, BrokerConfig, Client, ClientConfig, ShmConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Arguments of `shmpool broker`.
#[derive(Debug, Clone, clap::Args)]
#[command(about = "Run a Majordomo (7/MDP) broker, or ask a running one for its status")]
pub struct BrokerArgs {
    /// Endpoint to bind (repeatable): tcp://HOST:PORT, ipc:///PATH.
    #[arg(long, required = true, value_name = "ENDPOINT")]
    pub bind: Vec<String>,
    /// Instead of running a broker, print the status (JSON) of the one at the first --bind endpoint.
    #[arg(long)]
    pub status: bool,
    /// Heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub heartbeat_ms: u64,
    /// Missed heartbeats after which a worker is dead.
    #[arg(long, default_value_t = 3)]
    pub liveness: u32,
    /// How long a request waits for a worker of its service, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub queue_deadline_ms: u64,
    /// Most requests waiting for workers.
    #[arg(long, default_value_t = 10_000)]
    pub max_queued: usize,
    /// Most bytes of requests waiting for workers.
    #[arg(long, default_value_t = 1 << 30)]
    pub max_queued_bytes: usize,
    /// Directory of co-location challenges and pools (default: $SHMPOOL_DIR, else /dev/shm).
    #[arg(long, value_name = "DIR")]
    pub shm_dir: Option<std::path::PathBuf>,
}

/// The stop flag SIGINT and SIGTERM set.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM set a flag (checked by [`Broker::run`]) instead of killing the process.
pub fn stop_on_signals() -> &'static AtomicBool {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
    }
    &STOP
}

/// Runs `shmpool broker`: serves until SIGINT/SIGTERM, or prints a running broker's status.
pub fn broker(args: &BrokerArgs) -> crate::Result<()> {
    if args.status {
        // No arrays go this way: no co-location proof either.
        let shm = ShmConfig { enabled: false, ..ShmConfig::default() };
        let config = ClientConfig { timeout: Duration::from_secs(2), attempts: 1, shm, ..ClientConfig::default() };
        let mut client = Client::connect(&args.bind[0], config)?;
        let reply = client.request(std::str::from_utf8(MMI_STATUS).unwrap_or_default(), &[])?;
        let text = reply.first().map(|p| String::from_utf8_lossy(p.data()).into_owned()).unwrap_or_default();
        println!("{text}");
        return Ok(());
    }
    let config = BrokerConfig {
        heartbeat: Duration::from_millis(args.heartbeat_ms.max(1)),
        liveness: args.liveness.max(1),
        queue_deadline: Duration::from_millis(args.queue_deadline_ms),
        max_queued: args.max_queued,
        max_queued_bytes: args.max_queued_bytes,
        shm_dir: args.shm_dir.clone(),
        ..BrokerConfig::default()
    };
    let stop = stop_on_signals();
    let broker = Broker::bind(&args.bind, config)?;
    // One line on stdout once bound, so scripts (and tests) know when to start peers.
    println!("shmpool broker: listening on {}", broker.endpoints().join(" "));
    broker.run(stop)
}
