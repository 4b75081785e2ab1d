//! From the processes' outputs to the numbers of one measurement, and the table of all of them.

/// Frames left out at the start (connection, first allocation, page faults of a fresh pool).
pub fn warmup(frames: usize) -> usize {
    (frames / 10).min(30)
}

/// What one process printed (see `roles`).
#[derive(Debug, Default)]
pub struct Printed {
    /// CLOCK_MONOTONIC per frame, 0 where the frame was not seen.
    pub times: Vec<u64>,
    pub cpu_ns: u64,
    /// The producer's copy count or a consumer's frame count.
    pub extra: u64,
}

impl Printed {
    pub fn parse(text: &str, extra: &str) -> Option<Printed> {
        let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' '));
        let times = field("times")?.split(',').map(|t| t.parse().ok()).collect::<Option<Vec<u64>>>()?;
        Some(Printed { times, cpu_ns: field("cpu_ns")?.parse().ok()?, extra: field(extra)?.parse().ok()? })
    }
}

/// The numbers of one measurement.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// The run did not end within the deadline.
    pub stalled: bool,
    /// A process of the run failed.
    pub failed: bool,
    pub fps: f64,
    /// Frames over the time from starting the producer to the exit of the last process: start-up
    /// (pool or socket, connections) and teardown included.
    pub wall_fps: f64,
    /// User + system time of the producer and every consumer per frame.
    pub cpu_ms: f64,
    /// From the sink's pad to the source's push, every frame of every consumer.
    pub p50_us: f64,
    pub p99_us: f64,
    /// Frames the sink copied.
    pub copies: u64,
    /// Frames some consumer did not get.
    pub lost: u64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64
}

/// The outcome of a finished run: frames from `warmup` on.
pub fn outcome(producer: &Printed, consumers: &[Printed]) -> Outcome {
    let frames = producer.times.len();
    let w = warmup(frames);
    let measured = frames.saturating_sub(w + 1).max(1) as f64;
    let mut lat = Vec::new();
    let mut lost = 0;
    for c in consumers {
        lost = lost.max(c.times.iter().filter(|&&t| t == 0).count() as u64);
        for (&sent, &got) in producer.times.iter().zip(&c.times).skip(w) {
            if sent > 0 && got > 0 {
                lat.push(got.saturating_sub(sent));
            }
        }
    }
    lat.sort_unstable();
    let first = consumers.iter().filter_map(|c| c.times.get(w).copied()).filter(|&t| t > 0).min().unwrap_or(0);
    let last = consumers.iter().filter_map(|c| c.times.last().copied()).max().unwrap_or(0);
    let cpu: u64 = producer.cpu_ns + consumers.iter().map(|c| c.cpu_ns).sum::<u64>();
    Outcome {
        stalled: false,
        failed: false,
        fps: if last > first { measured * 1e9 / (last - first) as f64 } else { f64::NAN },
        wall_fps: f64::NAN,
        cpu_ms: cpu as f64 / measured / 1e6,
        p50_us: percentile(&lat, 0.5) / 1e3,
        p99_us: percentile(&lat, 0.99) / 1e3,
        copies: producer.extra,
        lost,
    }
}

/// The median of each number over the runs that did not stall or fail.
pub fn median(runs: &[Outcome]) -> Outcome {
    let ok: Vec<&Outcome> = runs.iter().filter(|o| !o.stalled && !o.failed).collect();
    let med = |f: fn(&Outcome) -> f64| {
        let mut v: Vec<f64> = ok.iter().map(|o| f(o)).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    // Without a run to take numbers from, say why: a stall if any run stalled.
    let stalled = ok.is_empty() && runs.iter().any(|o| o.stalled);
    Outcome {
        stalled,
        failed: ok.is_empty() && !stalled,
        fps: med(|o| o.fps),
        wall_fps: med(|o| o.wall_fps),
        cpu_ms: med(|o| o.cpu_ms),
        p50_us: med(|o| o.p50_us),
        p99_us: med(|o| o.p99_us),
        copies: ok.iter().map(|o| o.copies).max().unwrap_or(0),
        lost: ok.iter().map(|o| o.lost).max().unwrap_or(0),
    }
}

/// One row of the table.
pub fn row(label: &str, o: &Outcome) -> String {
    if o.stalled || o.failed {
        return format!("{label:<34} {}", if o.stalled { "STALL" } else { "FAILED" });
    }
    format!(
        "{label:<34} {:>7.0} {:>8.0} {:>9.3} {:>9.0} {:>9.0} {:>7} {:>5}",
        o.fps, o.wall_fps, o.cpu_ms, o.p50_us, o.p99_us, o.copies, o.lost
    )
}

/// The header over [`row`]s.
pub fn header() -> String {
    format!(
        "{:<34} {:>7} {:>8} {:>9} {:>9} {:>9} {:>7} {:>5}",
        "case / consumers / system", "fps", "wall fps", "CPU ms/f", "p50 us", "p99 us", "copies", "lost"
    )
}

/// The ratios ours / theirs of fps, wall fps, CPU, p50 and p99, each the median over `pairs` (two
/// runs of one repetition, measured one after the other, so that both saw about the same load);
/// pairs where either run stalled or failed are left out. With the pairs used; `None` without any.
pub fn paired_ratios(pairs: &[(Outcome, Outcome)]) -> Option<([f64; 5], usize)> {
    let ok: Vec<_> = pairs.iter().filter(|(a, b)| !(a.stalled || a.failed || b.stalled || b.failed)).collect();
    if ok.is_empty() {
        return None;
    }
    let fields: [fn(&Outcome) -> f64; 5] = [|o| o.fps, |o| o.wall_fps, |o| o.cpu_ms, |o| o.p50_us, |o| o.p99_us];
    let ratios = fields.map(|f| {
        let mut v: Vec<f64> = ok.iter().map(|(ours, theirs)| f(ours) / f(theirs)).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    });
    Some((ratios, ok.len()))
}

/// A row of [`paired_ratios`]: fps (higher is better), CPU and latency (lower is better).
pub fn ratios(label: &str, r: Option<([f64; 5], usize)>) -> String {
    match r {
        None => format!("{label:<34} no repetition without a stall or failure"),
        Some(([fps, wall, cpu, p50, p99], pairs)) => format!(
            "{label:<34} {fps:>6.2}x {wall:>7.2}x {cpu:>8.2}x {p50:>8.2}x {p99:>8.2}x  (median of {pairs} pairs)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_pairs_frames_by_sequence_and_skips_the_warmup() {
        let producer = Printed { times: (0..100).map(|i| 1000 + i * 100).collect(), cpu_ns: 900, extra: 3 };
        let consumer = Printed { times: (0..100).map(|i| 1010 + i * 100).collect(), cpu_ns: 90, extra: 100 };
        let o = outcome(&producer, &[consumer]);
        assert_eq!((o.p50_us, o.p99_us, o.copies, o.lost), (0.01, 0.01, 3, 0));
        assert!((o.fps - 1e7).abs() < 1.0, "{}", o.fps);
    }

    #[test]
    fn ratios_are_medians_over_the_pairs_without_a_stall() {
        let run =
            |fps: f64| Outcome { fps, wall_fps: fps, cpu_ms: 1.0, p50_us: 1.0, p99_us: 1.0, ..Outcome::default() };
        let stalled = Outcome { stalled: true, ..run(1.0) };
        let pairs = [(run(2.0), run(1.0)), (run(3.0), run(1.0)), (run(9.0), stalled), (run(1.0), run(2.0))];
        let (r, used) = paired_ratios(&pairs).unwrap();
        assert_eq!((r[0], r[2], used), (2.0, 1.0, 3));
        assert!(paired_ratios(&pairs[2..3]).is_none());
    }
}
