//! Latency samples, their percentiles, and how to print nanoseconds.

use serde::{Deserialize, Serialize};

/// Percentiles of a set of samples (nanoseconds).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ns: u64,
    pub p99_ns: u64,
    #[serde(default)]
    pub p999_ns: u64,
}

impl Summary {
    /// The worst of several receivers' summaries, percentile by percentile (counts added): what
    /// the slowest consumer of a broadcast saw.
    pub fn worst_of<'a>(all: impl IntoIterator<Item = &'a Summary>) -> Summary {
        all.into_iter().fold(Summary::default(), |w, s| Summary {
            count: w.count + s.count,
            p50_ns: w.p50_ns.max(s.p50_ns),
            p99_ns: w.p99_ns.max(s.p99_ns),
            p999_ns: w.p999_ns.max(s.p999_ns),
        })
    }
}

/// Collects samples; summarises them at the end.
#[derive(Default)]
pub struct Samples(Vec<u64>);

impl Samples {
    pub fn with_capacity(n: usize) -> Self {
        Samples(Vec::with_capacity(n))
    }

    pub fn push(&mut self, ns: u64) {
        self.0.push(ns);
    }

    pub fn summary(&mut self) -> Summary {
        let n = self.0.len();
        if n == 0 {
            return Summary::default();
        }
        self.0.sort_unstable();
        let at = |per_mille: usize| self.0[(n * per_mille / 1000).min(n - 1)];
        Summary { count: n, p50_ns: at(500), p99_ns: at(990), p999_ns: at(999) }
    }
}

/// `850 ns`, `31.2 µs`, `4.10 ms`, `1.20 s`.
pub fn format_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_a_hundred() {
        let mut s = Samples::default();
        (1..=100).rev().for_each(|v| s.push(v));
        let sum = s.summary();
        assert_eq!((sum.count, sum.p50_ns, sum.p99_ns), (100, 51, 100));
        assert_eq!(Samples::default().summary().count, 0);
        assert_eq!(format_ns(31_200), "31.2 µs");
    }
}
