//! A once-a-second progress line on stderr for long-running commands.

use std::time::{Duration, Instant};

pub struct Progress {
    label: &'static str,
    start: Instant,
    last_print: Instant,
    last_count: u64,
    /// Whether lines mention dropped buffers (consumers).
    drops: bool,
}

impl Progress {
    pub fn new(label: &'static str, drops: bool) -> Self {
        let now = Instant::now();
        Progress { label, start: now, last_print: now, last_count: 0, drops }
    }

    /// Prints `count` (and `dropped`, if any) when a second has passed since the last line.
    pub fn update(&mut self, count: u64, dropped: u64) {
        let elapsed = self.last_print.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let rate = (count - self.last_count) as f64 / elapsed.as_secs_f64();
            self.print(count, rate, dropped);
            self.last_print = Instant::now();
            self.last_count = count;
        }
    }

    /// Prints the final line: totals and the average rate.
    pub fn finish(&self, count: u64, dropped: u64) {
        let rate = count as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        self.print(count, rate, dropped);
    }

    fn print(&self, count: u64, rate: f64, dropped: u64) {
        if self.drops {
            eprintln!("{} {count} ({rate:.0}/s), dropped {dropped}", self.label);
        } else {
            eprintln!("{} {count} ({rate:.0}/s)", self.label);
        }
    }
}
