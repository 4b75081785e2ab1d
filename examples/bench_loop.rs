//! The acquire → publish → recv → release loop in one thread (one producer, one consumer), the
//! Rust twin of `examples/c/bench_loop.c`; `scripts/bench-c.sh` runs both and compares.
//!
//! ```text
//! cargo run --release --example bench_loop -- [ITERATIONS] [ROUNDS]
//! ```
//! Prints the best and median thread-CPU nanoseconds per iteration over ROUNDS rounds.

use shmpool::{Config, Pool};

/// CPU time of this thread in nanoseconds: on a shared machine, time spent preempted is not counted.
fn thread_cpu_ns() -> f64 {
    // SAFETY: timespec is plain data filled by clock_gettime.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid clock id and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

fn main() -> shmpool::Result<()> {
    let mut args = std::env::args().skip(1);
    let iterations: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = std::env::temp_dir().join(format!("shmpool-bench-loop-rs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| shmpool::Error::InvalidArgument(e.to_string()))?;
    let pool = Pool::create("bench-loop", &Config::new(4, 4096).directory(&dir))?;
    let producer = pool.producer()?;
    let mut consumer = pool.consumer()?;
    let mut results = Vec::new();
    let mut sum = 0u64;
    for round in 0..=rounds {
        let start = thread_cpu_ns();
        for i in 0..iterations {
            let mut buf = producer.acquire(None)?;
            buf[0] = i as u8;
            buf.set_len(64)?;
            buf.publish()?;
            let got = consumer.recv(None)?;
            sum += u64::from(got[0]);
            drop(got);
        }
        let ns = (thread_cpu_ns() - start) / iterations as f64;
        if round > 0 {
            results.push(ns); // round 0 warms up
        }
    }
    results.sort_by(f64::total_cmp);
    println!(
        "rust loop: best {:.1} ns/iter, median {:.1} ns/iter (thread CPU time) ({iterations} iterations x {rounds} rounds, checksum {sum})",
        results[0],
        results[results.len() / 2]
    );
    drop((producer, consumer, pool));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
