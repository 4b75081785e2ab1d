//! Where the time of one message goes inside the library: one thread, one pool, no contention and
//! no sleeping, timing each step of acquire → publish → recv → release with CLOCK_MONOTONIC, minus
//! the cost of reading the clock. This is the floor under the cross-process numbers.

use super::shm::SPIN_BUDGET;
use super::TIMEOUT;
use crate::latency::Samples;
use crate::{affinity, CliResult, Failure};
use serde::Serialize;
use shmpool::{monotonic_ns, Config, Pool};
use std::path::Path;

/// Median nanoseconds per call of each step (the median clock read subtracted).
#[derive(Serialize)]
pub struct PathCosts {
    pub iterations: u64,
    pub clock_ns: u64,
    pub acquire_ns: u64,
    pub publish_ns: u64,
    pub recv_ns: u64,
    pub release_ns: u64,
    /// acquire + publish + recv + release.
    pub total_ns: u64,
}

/// Per-step samples; medians of them, less the clock's own cost.
struct Steps<const N: usize> {
    samples: [Samples; N],
    clock: Samples,
}

impl<const N: usize> Steps<N> {
    fn new(n: u64) -> Self {
        Steps { samples: std::array::from_fn(|_| Samples::with_capacity(n as usize)), clock: Samples::default() }
    }

    /// Records the gaps between consecutive timestamps, and one clock read.
    fn record(&mut self, stamps: [u64; N], end: u64) {
        for (k, samples) in self.samples.iter_mut().enumerate() {
            samples.push(stamps.get(k + 1).copied().unwrap_or(end) - stamps[k]);
        }
        let t = monotonic_ns();
        self.clock.push(monotonic_ns() - t);
    }

    fn medians(mut self) -> (u64, [u64; N]) {
        let clock = self.clock.summary().p50_ns;
        (clock, self.samples.each_mut().map(|s| s.summary().p50_ns.saturating_sub(clock)))
    }
}

pub fn measure(dir: &Path, iterations: u64) -> CliResult<PathCosts> {
    let pool = Pool::create("path", &Config::new(64, 64).directory(dir))?;
    let producer = pool.producer()?;
    let mut consumer = pool.consumer()?;
    let mut steps = Steps::<4>::new(iterations);
    for i in 0..iterations {
        let t0 = monotonic_ns();
        let mut buf = producer.acquire(None)?;
        buf[..8].copy_from_slice(&i.to_le_bytes());
        buf.set_len(64)?;
        let t1 = monotonic_ns();
        buf.publish()?;
        let t2 = monotonic_ns();
        let got = consumer.recv(None)?;
        let t3 = monotonic_ns();
        drop(got);
        steps.record([t0, t1, t2, t3], monotonic_ns());
    }
    let (clock_ns, [acquire_ns, publish_ns, recv_ns, release_ns]) = steps.medians();
    Ok(PathCosts {
        iterations,
        clock_ns,
        acquire_ns,
        publish_ns,
        recv_ns,
        release_ns,
        total_ns: acquire_ns + publish_ns + recv_ns + release_ns,
    })
}

/// One producer thread and one consumer thread, pinned to two CPUs, streaming 64-byte messages
/// with the spin of the `shmpool-spin` rows: the median time each side spends in each call. A side
/// whose calls include waiting for the other (recv finding nothing, acquire finding no free slot)
/// is not the bottleneck; the other side's times are what the messages cost.
#[derive(Serialize)]
pub struct CrossCore {
    pub messages: u64,
    pub cpus: [usize; 2],
    pub msgs_per_s: f64,
    pub acquire_ns: u64,
    pub publish_ns: u64,
    pub recv_ns: u64,
    pub release_ns: u64,
}

pub fn measure_cross_core(dir: &Path, messages: u64, cpus: [usize; 2], all_cpus: &[usize]) -> CliResult<CrossCore> {
    let pool = Pool::create("cross-core", &Config::new(64, 64).directory(dir))?;
    let mut producer = pool.producer()?;
    let mut consumer = pool.consumer()?;
    producer.set_spin(SPIN_BUDGET);
    consumer.set_spin(SPIN_BUDGET);
    let start = monotonic_ns();
    let receiving = std::thread::spawn(move || -> CliResult<[u64; 2]> {
        affinity::set_cpus(&[cpus[1]])?;
        let mut steps = Steps::<2>::new(messages);
        for _ in 0..messages {
            let t0 = monotonic_ns();
            let buf = consumer.recv(Some(TIMEOUT))?;
            let t1 = monotonic_ns();
            drop(buf);
            steps.record([t0, t1], monotonic_ns());
        }
        Ok(steps.medians().1)
    });
    let sending = (|| -> CliResult<[u64; 2]> {
        affinity::set_cpus(&[cpus[0]])?;
        let mut steps = Steps::<2>::new(messages);
        for i in 0..messages {
            let t0 = monotonic_ns();
            let mut buf = producer.acquire(Some(TIMEOUT))?;
            buf[..8].copy_from_slice(&i.to_le_bytes());
            buf.set_len(64)?;
            let t1 = monotonic_ns();
            buf.publish()?;
            steps.record([t0, t1], monotonic_ns());
        }
        Ok(steps.medians().1)
    })();
    let received = receiving.join().map_err(|_| Failure::error("receiving thread panicked"))?;
    let elapsed = (monotonic_ns() - start) as f64;
    affinity::set_cpus(all_cpus)?;
    let ([acquire_ns, publish_ns], [recv_ns, release_ns]) = (sending?, received?);
    Ok(CrossCore {
        messages,
        cpus,
        msgs_per_s: (messages as f64 / elapsed * 1e9).round(),
        acquire_ns,
        publish_ns,
        recv_ns,
        release_ns,
    })
}
