//! `bench`: one-way latency and throughput of shmpool (blocking and spinning) against a raw futex
//! ping-pong, a pipe and a Unix socket, two processes each, for 64 B, 1 MiB and 8 MiB payloads.
//! The method is described in [`session`]; the output in [`report`].

mod futex;
mod path;
mod report;
mod session;
mod shm;
mod stream;
mod transport;

use crate::affinity;
use crate::peers::{say, Peers};
use crate::scratch::ScratchDir;
use crate::{CliResult, Failure};
use clap::Args;
use report::{Method, Row};
use session::Plan;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use transport::{Kind, Setup};

/// Longest wait of either side for the other.
pub const TIMEOUT: Duration = Duration::from_secs(10);
const PAYLOADS: [usize; 3] = [64, 1 << 20, 8 << 20];

#[derive(Args)]
pub struct BenchArgs {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// A shorter run (under a minute).
    #[arg(long)]
    quick: bool,
    /// A run of a few seconds for tests: numbers are not meaningful.
    #[arg(long, hide = true)]
    tiny: bool,
    /// Only this transport (for investigations; the ratios need every row).
    #[arg(long, hide = true, value_enum)]
    only: Option<Kind>,
    /// Only this payload size (for investigations).
    #[arg(long, hide = true, value_name = "BYTES")]
    payload: Option<usize>,
}

#[derive(Args)]
pub struct PeerArgs {
    #[arg(long, value_enum)]
    kind: Kind,
    #[arg(long)]
    payload: usize,
    #[arg(long)]
    warmup: u64,
    /// Pin to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
}

fn plan(args: &BenchArgs) -> Plan {
    let ms = Duration::from_millis;
    if args.tiny {
        Plan { warmup: 5, max_messages: 100, min_messages: 10, latency_time: ms(100), stream_time: ms(50) }
    } else if args.quick {
        Plan { warmup: 50, max_messages: 4_000, min_messages: 300, latency_time: ms(700), stream_time: ms(300) }
    } else {
        Plan { warmup: 200, max_messages: 30_000, min_messages: 2_000, latency_time: ms(4_000), stream_time: ms(1_500) }
    }
}

pub fn run(dir: Option<&Path>, args: &BenchArgs) -> CliResult {
    let plan = plan(args);
    let scratch = ScratchDir::new("bench", dir)?;
    let cpus = affinity::allowed_cpus();
    let pinned = (cpus.len() >= 2).then(|| [cpus[0], cpus[1]]);
    let method = Method::new(pinned);
    shm::settle_spin_decision(scratch.path())?;
    let started = Instant::now();
    let mut rows = Vec::new();
    let payloads = PAYLOADS.iter().copied().filter(|&p| args.payload.is_none_or(|only| only == p));
    for payload in payloads.chain(args.payload.filter(|p| !PAYLOADS.contains(p))) {
        for kind in Kind::ALL.into_iter().filter(|&k| args.only.is_none_or(|only| only == k)) {
            let row = run_row(kind, payload, &plan, scratch.path(), pinned, &cpus)?;
            eprintln!("bench: {}", report::row_line(&row));
            rows.push(row);
        }
    }
    let messages = if args.tiny { 1_000 } else { 200_000 };
    let path = path::measure(scratch.path(), messages)?;
    let cross = match pinned {
        Some(pair) => Some(path::measure_cross_core(scratch.path(), messages, pair, &cpus)?),
        None => None,
    };
    eprintln!("bench: {:.1} s", started.elapsed().as_secs_f64());
    if args.json {
        report::print_json(&method, &rows, &path, cross.as_ref())
    } else {
        report::print_table(&method, &rows, &path, cross.as_ref());
        Ok(())
    }
}

fn run_row(
    kind: Kind,
    payload: usize,
    plan: &Plan,
    scratch: &Path,
    pin: Option<[usize; 2]>,
    cpus: &[usize],
) -> CliResult<Row> {
    let dir: PathBuf = scratch.join(format!("{}-{payload}", kind.name()));
    std::fs::create_dir(&dir)?;
    let setup = Setup { kind, dir, payload };
    let prepared = transport::prepare(&setup)?;
    let mut peers = Peers::new();
    let mut args = vec![
        "__bench-peer".to_string(),
        "--kind".into(),
        kind.name(),
        "--payload".into(),
        payload.to_string(),
        "--warmup".into(),
        plan.warmup.to_string(),
        "--dir".into(),
        setup.dir.display().to_string(),
    ];
    if let Some([_, theirs]) = pin {
        args.extend(["--cpu".to_string(), theirs.to_string()]);
    }
    let child = peers.spawn(&format!("{} receiver", kind.name()), &args)?;
    if let Some([ours, _]) = pin {
        affinity::set_cpus(&[ours])?;
    }
    let measured = measure(&mut peers, child, prepared, &setup, plan);
    if pin.is_some() {
        affinity::set_cpus(cpus)?;
    }
    let (sender, receiver) = measured?;
    peers.wait_all(Instant::now() + TIMEOUT)?;
    Ok(Row::new(kind, payload, pin.is_some(), &sender, &receiver))
}

fn measure(
    peers: &mut Peers,
    child: usize,
    prepared: transport::Prepared,
    setup: &Setup,
    plan: &Plan,
) -> CliResult<(session::SenderReport, session::ReceiverReport)> {
    let mut side = transport::connect_sender(prepared, setup, || peers.is_running(child))?;
    peers.expect(child, "ready", Instant::now() + TIMEOUT)?;
    let sender = session::send(side.as_mut(), plan)?;
    let json = peers.expect(child, "result", Instant::now() + TIMEOUT)?;
    Ok((sender, serde_json::from_str(&json)?))
}

pub fn peer(dir: Option<&Path>, args: &PeerArgs) -> CliResult {
    let dir = dir.ok_or_else(|| Failure::error("--dir is required"))?;
    if let Some(cpu) = args.cpu {
        shm::settle_spin_decision(dir)?;
        affinity::set_cpus(&[cpu])?;
    }
    let setup = Setup { kind: args.kind, dir: dir.to_path_buf(), payload: args.payload };
    let mut side = transport::open_receiver(&setup)?;
    say("ready")?;
    let report = session::receive(side.as_mut(), args.warmup)?;
    say(&format!("result {}", serde_json::to_string(&report)?))
}
