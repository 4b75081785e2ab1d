//! `bench`: one-way latency and throughput of shmpool (blocking and spinning) against a raw futex
//! ping-pong, a pipe and a Unix socket, two processes each, for 64 B, 1 MiB and 8 MiB payloads.
//! The method is described in [`session`]; the output in [`report`].

mod futex;
#[cfg(feature = "iceoryx2-bench")]
mod iceoryx;
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
/// `--compare`: the payloads of the published comparison (benches/run.sh), the last a 1920×1080
/// RGB frame.
const COMPARE_PAYLOADS: [usize; 5] = [64, 64 << 10, 1 << 20, 8 << 20, 1920 * 1080 * 3];

#[derive(Args)]
pub struct BenchArgs {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// A shorter run (under a minute).
    #[arg(long)]
    quick: bool,
    /// The comparison of benches/run.sh: every transport (shmpool with one and two consumers,
    /// broadcast and work queue; futex, pipe, Unix socket, TCP loopback; iceoryx2 when built with
    /// feature iceoryx2-bench) for 64 B, 64 KiB, 1 MiB, 8 MiB and 1080p RGB frames.
    #[arg(long)]
    compare: bool,
    /// Measure every row this many times, spread over the run (the time of one is divided among
    /// them), and keep each row's round with the median hand-off p50: a row is then not at the
    /// mercy of what else ran on the machine during its one slot.
    #[arg(long, default_value_t = 1, value_name = "N")]
    rounds: u32,
    /// The sender busy-waits this long before each latency message (for investigations: is a
    /// big payload's latency the payload, or the receiver's longer idle time?).
    #[arg(long, hide = true, default_value_t = 0, value_name = "MICROSECONDS")]
    sender_busy_us: u64,
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
    let plan = full_plan(args);
    let n = args.rounds.max(1);
    Plan {
        warmup: plan.warmup,
        max_messages: plan.max_messages / u64::from(n),
        min_messages: plan.min_messages / u64::from(n),
        latency_time: plan.latency_time / n,
        stream_time: plan.stream_time / n,
        sender_busy: Duration::from_micros(args.sender_busy_us),
    }
}

fn full_plan(args: &BenchArgs) -> Plan {
    let ms = Duration::from_millis;
    if args.tiny {
        Plan {
            warmup: 5,
            max_messages: 100,
            min_messages: 10,
            latency_time: ms(100),
            stream_time: ms(50),
            sender_busy: Duration::ZERO,
        }
    } else if args.quick {
        Plan {
            warmup: 50,
            max_messages: 4_000,
            min_messages: 300,
            latency_time: ms(700),
            stream_time: ms(300),
            sender_busy: Duration::ZERO,
        }
    } else {
        Plan {
            warmup: 200,
            max_messages: 30_000,
            min_messages: 2_000,
            latency_time: ms(4_000),
            stream_time: ms(1_500),
            sender_busy: Duration::ZERO,
        }
    }
}

pub fn run(dir: Option<&Path>, args: &BenchArgs) -> CliResult {
    let plan = plan(args);
    let scratch = ScratchDir::new("bench", dir)?;
    let cpus = affinity::allowed_cpus();
    let pinned = (cpus.len() >= 2).then(|| [cpus[0], cpus[1]]);
    let method = Method::new(pinned);
    let started = Instant::now();
    let (all_payloads, kinds): (&[usize], Vec<Kind>) =
        if args.compare { (&COMPARE_PAYLOADS, Kind::compared()) } else { (&PAYLOADS, Kind::ALL.to_vec()) };
    let payloads = all_payloads.iter().copied().filter(|&p| args.payload.is_none_or(|only| only == p));
    let cells: Vec<(usize, Kind)> = payloads
        .chain(args.payload.filter(|p| !all_payloads.contains(p)))
        .flat_map(|p| kinds.iter().copied().filter(|&k| args.only.is_none_or(|only| only == k)).map(move |k| (p, k)))
        .collect();
    let rounds = args.rounds.max(1);
    let mut measured: Vec<Vec<Row>> = cells.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (&(payload, kind), found) in cells.iter().zip(&mut measured) {
            let scratch = scratch.path().join(format!("round-{round}"));
            std::fs::create_dir_all(&scratch)?;
            let row = run_row(kind, payload, &plan, &scratch, pinned, &cpus)?;
            let label = if rounds > 1 { format!("[{round}/{rounds}] ") } else { String::new() };
            eprintln!("bench: {label}{}", report::row_line(&row));
            found.push(row);
        }
    }
    let rows: Vec<Row> = measured.into_iter().map(Row::median_of).collect();
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
    // Rows with several receivers are not pinned: three processes on two CPUs are the
    // scheduler's to place.
    let pin = pin.filter(|_| kind.consumers() == 1);
    if let Some([_, theirs]) = pin {
        args.extend(["--cpu".to_string(), theirs.to_string()]);
    }
    let children = (0..kind.consumers())
        .map(|c| peers.spawn(&format!("{} receiver {c}", kind.name()), &args))
        .collect::<CliResult<Vec<_>>>()?;
    if let Some([ours, _]) = pin {
        affinity::set_cpus(&[ours])?;
    }
    let measured = measure(&mut peers, &children, prepared, &setup, plan);
    if pin.is_some() {
        affinity::set_cpus(cpus)?;
    }
    let (sender, receivers) = measured?;
    peers.wait_all(Instant::now() + TIMEOUT)?;
    Ok(Row::new(kind, payload, pin.is_some(), &sender, &receivers))
}

fn measure(
    peers: &mut Peers,
    children: &[usize],
    prepared: transport::Prepared,
    setup: &Setup,
    plan: &Plan,
) -> CliResult<(session::SenderReport, Vec<session::ReceiverReport>)> {
    let mut side = transport::connect_sender(prepared, setup, || children.iter().all(|&c| peers.is_running(c)))?;
    for &child in children {
        peers.expect(child, "ready", Instant::now() + TIMEOUT)?;
    }
    let sender = session::send(side.as_mut(), plan)?;
    let mut receivers = Vec::new();
    for &child in children {
        let json = peers.expect(child, "result", Instant::now() + TIMEOUT)?;
        receivers.push(serde_json::from_str(&json)?);
    }
    Ok((sender, receivers))
}

pub fn peer(dir: Option<&Path>, args: &PeerArgs) -> CliResult {
    let dir = dir.ok_or_else(|| Failure::error("--dir is required"))?;
    if let Some(cpu) = args.cpu {
        affinity::set_cpus(&[cpu])?;
    }
    let setup = Setup { kind: args.kind, dir: dir.to_path_buf(), payload: args.payload };
    let mut side = transport::open_receiver(&setup)?;
    say("ready")?;
    let report = session::receive(side.as_mut(), args.warmup)?;
    say(&format!("result {}", serde_json::to_string(&report)?))
}
