//! What `bench` prints: the machine, the method, one row per transport and payload, and the
//! ratios the performance goals are about.

use super::path::{CrossCore, PathCosts};
use super::session::{ReceiverReport, SenderReport};
use super::shm::{data_slots, SPIN_BUDGET};
use super::transport::Kind;
use super::PAYLOADS;
use crate::latency::{format_ns, Summary};
use crate::CliResult;
use serde::Serialize;

#[derive(Serialize)]
pub struct Machine {
    cpu_model: String,
    cores: usize,
    kernel: String,
    clocksource: String,
    memory_gib: f64,
    load_average: String,
    shmpool_version: &'static str,
    build: &'static str,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

impl Machine {
    fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu_model: field("model name").unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            clocksource: read_trimmed("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            load_average: read_trimmed("/proc/loadavg"),
            shmpool_version: shmpool::VERSION,
            build: if cfg!(debug_assertions) { "debug" } else { "release" },
        }
    }
}

/// How the numbers were taken, printed with them.
#[derive(Serialize)]
pub struct Method {
    latency: &'static str,
    touch: &'static str,
    throughput: &'static str,
    spin: String,
    pinned_cpus: Option<[usize; 2]>,
    shmpool_slots: String,
    baselines: &'static str,
}

impl Method {
    pub fn new(pinned: Option<[usize; 2]>) -> Method {
        Method {
            latency: "one-way, one message in flight: receiver's CLOCK_MONOTONIC after touching the message minus the \
                      sender's just before its send call (publish / write / copy+wake); the receiver then acknowledges \
                      over the same transport and the sender waits for that before the next message",
            touch: "the receiver reads the 16-byte header and an 8-byte stamp on every 4 KiB page and checks them, \
                    in place (shmpool, futex) or in its own buffer after reading it whole (pipe, socket)",
            throughput: "msgs_per_s: the sender streams messages without waiting for acknowledgements (the futex \
                         mailbox holds one message, so its rate is a ping-pong rate); counted by the receiver; \
                         window_msgs_per_s: median rate over 64-message windows (while both processes run)",
            spin: format!(
                "shmpool-spin: Producer::set_spin and Consumer::set_spin of {} µs on both sides (the core's \
                 spin-or-not decision taken before pinning)",
                SPIN_BUDGET.as_micros()
            ),
            pinned_cpus: pinned,
            shmpool_slots: PAYLOADS.map(|p| format!("{} slots for {}", data_slots(p), payload_name(p))).join(", "),
            baselines: "futex-pingpong: one-message mailbox in a shared page, payload copied in, FUTEX_WAKE on every \
                        hand-over; pipe: FIFO enlarged to /proc/sys/fs/pipe-max-size; unix-socket: SOCK_STREAM with \
                        default buffers",
        }
    }
}

#[derive(Serialize)]
pub struct Breakdown {
    acquire_p50_ns: u64,
    prepare_p50_ns: u64,
    send_p50_ns: u64,
    deliver_p50_ns: u64,
    touch_p50_ns: u64,
    release_p50_ns: u64,
}

#[derive(Serialize)]
pub struct Row {
    name: String,
    payload_bytes: usize,
    /// Receiving processes, and whether each message went to one of them (work queue).
    consumers: usize,
    work_queue: bool,
    /// One-way latency until the receiver has read every page's stamp (the slowest receiver's
    /// percentiles when there are several).
    p50_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
    /// Hand-off latency: until the receive call returned with the whole message readable.
    deliver: Summary,
    msgs_per_s: f64,
    /// Payload bytes per second in the throughput phase (msgs_per_s × payload).
    gb_per_s: f64,
    /// CPU time (user + system, getrusage) of all the row's processes per message: latency phase
    /// (one message in flight, so waiting is included: what spinning burns) and throughput phase.
    cpu_per_msg_ns: u64,
    cpu_per_msg_stream_ns: u64,
    /// Median rate over 64-message windows of the throughput phase.
    window_msgs_per_s: f64,
    samples: usize,
    /// Rounds measured; the row is the one with the median hand-off p50.
    rounds: usize,
    /// Every round's hand-off p50, lowest first: the spread tells machine variance from a change.
    round_p50s_ns: Vec<u64>,
    pinned: bool,
    bad_pages: u64,
    breakdown: Breakdown,
}

impl Row {
    /// One row from the sender's report and its receivers' (one each, several for multi-consumer
    /// rows: a broadcast's rate is its slowest receiver's, a work queue's the sum of them all).
    pub fn new(kind: Kind, payload: usize, pinned: bool, s: &SenderReport, rs: &[ReceiverReport]) -> Row {
        let rate = |r: &ReceiverReport| {
            let seconds = r.stream_end_ns.saturating_sub(s.stream_start_ns) as f64 / 1e9;
            if seconds > 0.0 {
                r.streamed as f64 / seconds
            } else {
                0.0
            }
        };
        let combine = |f: &dyn Fn(&ReceiverReport) -> f64| {
            let each = rs.iter().map(f);
            if kind.work_queue() {
                each.sum()
            } else {
                each.fold(f64::INFINITY, f64::min)
            }
        };
        let msgs_per_s = combine(&rate).round();
        let per_msg = |cpu: u64, msgs: u64| cpu.checked_div(msgs).unwrap_or(0);
        let latency = Summary::worst_of(rs.iter().map(|r| &r.latency));
        let deliver = Summary::worst_of(rs.iter().map(|r| &r.deliver));
        let p50 = |f: &dyn Fn(&ReceiverReport) -> &Summary| Summary::worst_of(rs.iter().map(f)).p50_ns;
        Row {
            name: kind.name(),
            payload_bytes: payload,
            consumers: rs.len(),
            work_queue: kind.work_queue(),
            p50_ns: latency.p50_ns,
            p99_ns: latency.p99_ns,
            p999_ns: latency.p999_ns,
            deliver,
            msgs_per_s,
            gb_per_s: msgs_per_s * payload as f64 / 1e9,
            cpu_per_msg_ns: per_msg(
                s.cpu_latency_ns + rs.iter().map(|r| r.cpu_latency_ns).sum::<u64>(),
                s.latency_sent,
            ),
            cpu_per_msg_stream_ns: per_msg(
                s.cpu_stream_ns + rs.iter().map(|r| r.cpu_stream_ns).sum::<u64>(),
                s.stream_sent,
            ),
            window_msgs_per_s: combine(&|r| r.window_msgs_per_s).round(),
            samples: latency.count,
            rounds: 1,
            round_p50s_ns: vec![deliver.p50_ns],
            pinned,
            bad_pages: rs.iter().map(|r| r.bad_pages).sum(),
            breakdown: Breakdown {
                acquire_p50_ns: s.acquire.p50_ns,
                prepare_p50_ns: s.prepare.p50_ns,
                send_p50_ns: s.send.p50_ns,
                deliver_p50_ns: p50(&|r| &r.deliver),
                touch_p50_ns: p50(&|r| &r.touch),
                release_p50_ns: p50(&|r| &r.release),
            },
        }
    }
}

impl Row {
    /// The round with the median hand-off p50 (the lower middle for an even count).
    pub fn median_of(mut rounds: Vec<Row>) -> Row {
        let n = rounds.len();
        assert!(n > 0, "a row is measured at least once");
        rounds.sort_by_key(|r| r.deliver.p50_ns);
        let spread = rounds.iter().map(|r| r.deliver.p50_ns).collect();
        let mut row = rounds.swap_remove((n - 1) / 2);
        row.rounds = n;
        row.round_p50s_ns = spread;
        row
    }
}

fn payload_name(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

fn rate(msgs_per_s: f64) -> String {
    if msgs_per_s >= 1e6 {
        format!("{:.2} M/s", msgs_per_s / 1e6)
    } else if msgs_per_s >= 1e3 {
        format!("{:.1} k/s", msgs_per_s / 1e3)
    } else {
        format!("{msgs_per_s:.0} /s")
    }
}

/// One row as a line of text.
pub fn row_line(r: &Row) -> String {
    format!(
        "{:<17} {:>7} {:>10} {:>10} {:>11} {:>11} {:>10} {:>10} {:>10} {:>10}",
        r.name,
        payload_name(r.payload_bytes),
        format_ns(r.p50_ns),
        format_ns(r.p99_ns),
        rate(r.msgs_per_s),
        rate(r.window_msgs_per_s),
        format_ns(r.breakdown.send_p50_ns),
        format_ns(r.breakdown.deliver_p50_ns),
        format_ns(r.breakdown.touch_p50_ns),
        format_ns(r.breakdown.release_p50_ns),
    ) + &spread(&r.round_p50s_ns)
}

/// `  rounds 1.2 µs–3.4 µs`: the lowest and highest round's hand-off p50 (nothing for one round).
fn spread(p50s: &[u64]) -> String {
    match (p50s.first(), p50s.last()) {
        (Some(lo), Some(hi)) if p50s.len() > 1 => format!("  rounds {}–{}", format_ns(*lo), format_ns(*hi)),
        _ => String::new(),
    }
}

#[derive(Serialize)]
struct Output<'a> {
    machine: Machine,
    method: &'a Method,
    results: &'a [Row],
    path_costs: &'a PathCosts,
    cross_core_stream: Option<&'a CrossCore>,
}

pub fn print_json(method: &Method, rows: &[Row], path: &PathCosts, cross: Option<&CrossCore>) -> CliResult {
    let output =
        Output { machine: Machine::probe(), method, results: rows, path_costs: path, cross_core_stream: cross };
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

fn find(rows: &[Row], kind: Kind, payload: usize) -> Option<&Row> {
    rows.iter().find(|r| r.name == kind.name() && r.payload_bytes == payload)
}

fn ratio(a: Option<&Row>, b: Option<&Row>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.p50_ns > 0 => Some(a.p50_ns as f64 / b.p50_ns as f64),
        _ => None,
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

pub fn print_table(method: &Method, rows: &[Row], path: &PathCosts, cross: Option<&CrossCore>) {
    let m = Machine::probe();
    println!(
        "shmpool bench — {} ({} cores), Linux {}, clock {}, {} build",
        m.cpu_model, m.cores, m.kernel, m.clocksource, m.build
    );
    println!("latency: {}", method.latency);
    println!("touch: {}", method.touch);
    println!("throughput: {}", method.throughput);
    match method.pinned_cpus {
        Some([a, b]) => println!(
            "{}; every row: sender pinned to CPU {a}, receiver to CPU {b} (unpinned, the scheduler puts a blocking \
             pair on one core or on two from row to row: ~3 µs or ~30 µs here)",
            method.spin
        ),
        None => println!("{}; not pinned (fewer than 2 CPUs)", method.spin),
    }
    println!();
    println!(
        "{:<17} {:>7} {:>10} {:>10} {:>11} {:>11} {:>10} {:>10} {:>10} {:>10}",
        "transport", "payload", "p50", "p99", "msgs/s", "msgs/s*", "send p50", "deliver", "touch p50", "release"
    );
    let mut payloads: Vec<usize> = rows.iter().map(|r| r.payload_bytes).collect();
    payloads.sort_unstable();
    payloads.dedup();
    for payload in payloads {
        for r in rows.iter().filter(|r| r.payload_bytes == payload) {
            println!("{}", row_line(r));
        }
    }
    println!(
        "(msgs/s*: median rate over 64-message windows, i.e. while both processes run; send: sender's send call; \
         deliver: t0 until the receive call returned; touch: reading the stamps; all p50)"
    );
    print_ratios(rows);
    println!();
    println!(
        "library path, one thread, no contention (median of {} messages, clock read of {} ns subtracted):",
        path.iterations, path.clock_ns
    );
    println!(
        "  acquire {} ns + publish {} ns + recv {} ns + release {} ns = {} ns per message ({:.2} M msgs/s at most on one core)",
        path.acquire_ns,
        path.publish_ns,
        path.recv_ns,
        path.release_ns,
        path.total_ns,
        1e3 / path.total_ns.max(1) as f64
    );
    if let Some(c) = cross {
        println!(
            "two threads on CPUs {} and {}, spinning, streaming 64 B: {} (median per call, waiting included)",
            c.cpus[0],
            c.cpus[1],
            rate(c.msgs_per_s)
        );
        println!(
            "  producer: acquire {} ns, publish {} ns; consumer: recv {} ns, release {} ns",
            c.acquire_ns, c.publish_ns, c.recv_ns, c.release_ns
        );
    }
}

fn print_ratios(rows: &[Row]) {
    let fmt = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}"));
    println!();
    println!("{:<44} {:>8} {:>8} {:>8}", "ratios (p50)", "64 B", "1 MiB", "8 MiB");
    let per_payload = |label: &str, f: &dyn Fn(usize) -> String| {
        let cells: Vec<String> = PAYLOADS.iter().map(|&p| f(p)).collect();
        println!("{label:<44} {:>8} {:>8} {:>8}", cells[0], cells[1], cells[2]);
    };
    per_payload("shmpool-blocking / futex-pingpong", &|p| {
        fmt(ratio(find(rows, Kind::ShmpoolBlocking, p), find(rows, Kind::FutexPingpong, p)))
    });
    per_payload("shmpool-blocking / pipe", &|p| {
        fmt(ratio(find(rows, Kind::ShmpoolBlocking, p), find(rows, Kind::Pipe, p)))
    });
    per_payload("shmpool-spin / shmpool-blocking", &|p| {
        fmt(ratio(find(rows, Kind::ShmpoolSpin, p), find(rows, Kind::ShmpoolBlocking, p)))
    });
    per_payload("shmpool-spin p50", &|p| find(rows, Kind::ShmpoolSpin, p).map_or("-".into(), |r| format_ns(r.p50_ns)));
    let big = PAYLOADS[PAYLOADS.len() - 1];
    let small = PAYLOADS[0];
    println!();
    println!("{:<44} {:>8} {:>8}", "8 MiB p50 / 64 B p50", "total", "deliver");
    for kind in Kind::ALL {
        let (b, s) = (find(rows, kind, big), find(rows, kind, small));
        let deliver = match (b, s) {
            (Some(b), Some(s)) if s.breakdown.deliver_p50_ns > 0 => {
                format!("{:.2}", b.breakdown.deliver_p50_ns as f64 / s.breakdown.deliver_p50_ns as f64)
            }
            _ => "-".into(),
        };
        println!("{:<44} {:>8} {:>8}", kind.name(), fmt(ratio(b, s)), deliver);
    }
    println!();
    println!("goals");
    if let Some(r) = ratio(find(rows, Kind::ShmpoolBlocking, small), find(rows, Kind::FutexPingpong, small)) {
        println!("  blocking 64 B p50 <= 1.1 x futex ping-pong p50: {r:.2}  {}", verdict(r <= 1.1));
    }
    if let Some(spin) = find(rows, Kind::ShmpoolSpin, small) {
        println!(
            "  spin 64 B p50 <= 200 ns across cores:            {}  {}",
            format_ns(spin.p50_ns),
            verdict(spin.p50_ns <= 200)
        );
    }
    for kind in [Kind::ShmpoolBlocking, Kind::ShmpoolSpin] {
        if let Some(r) = ratio(find(rows, kind, big), find(rows, kind, small)) {
            println!("  {} 8 MiB p50 <= 1.2 x 64 B p50: {r:>10.2}  {}", kind.name(), verdict(r <= 1.2));
        }
    }
    for kind in [Kind::ShmpoolBlocking, Kind::ShmpoolSpin] {
        if let Some(r) = find(rows, kind, small) {
            println!(
                "  {} 64 B throughput >= 5 M msgs/s: {:>8} (windows: {})  {}",
                kind.name(),
                rate(r.msgs_per_s),
                rate(r.window_msgs_per_s),
                verdict(r.msgs_per_s >= 5e6)
            );
        }
    }
}
