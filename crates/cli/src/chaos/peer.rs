//! The processes `chaos` starts and kills: creators, producers, consumers (fast and slow) and
//! garbage collectors, each looping until killed. Every failure they see that crash recovery
//! should have prevented ends them with an error, which `chaos` reports.

use super::rng::Rng;
use super::{spec, Spec};
use crate::{pattern, CliResult, Failure, EXIT_MISMATCH};
use clap::Args;
use shmpool::{Config, Error, Pool};
use std::path::Path;
use std::time::Duration;

/// How long a blocked call waits before it looks around again.
const WAIT: Option<Duration> = Some(Duration::from_millis(500));

#[derive(Args)]
pub struct PeerArgs {
    /// creator, producer, consumer, slow-consumer or gc.
    role: String,
    /// The pool (chaos NAME plus the suffix of its mode and overflow).
    pool: String,
    /// Index of the pool's spec in `chaos::SPECS`.
    #[arg(long)]
    spec: usize,
    #[arg(long)]
    seed: u64,
}

/// Builds the argument list of a peer (after the hidden subcommand's name).
pub fn args(role: &str, pool: &str, spec: usize, seed: u64) -> Vec<String> {
    vec![role.into(), pool.into(), "--spec".into(), spec.to_string(), "--seed".into(), seed.to_string()]
}

pub fn run(dir: Option<&Path>, args: &PeerArgs) -> CliResult {
    die_with_parent();
    let spec = spec(args.spec)?;
    let mut rng = Rng::new(args.seed);
    match args.role.as_str() {
        "creator" => loop {
            match Pool::create(&args.pool, &config(dir, spec)) {
                Ok(pool) => produce(&pool, &mut rng)?,
                // A live creator, or a live producer keeping the pool going: not ours to take.
                Err(Error::AlreadyExists { .. }) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(e.into()),
            }
        },
        "producer" => loop {
            produce(&open(dir, &args.pool)?, &mut rng)?;
        },
        "consumer" | "slow-consumer" => loop {
            consume(&open(dir, &args.pool)?, &mut rng, args.role == "slow-consumer")?;
        },
        "gc" => loop {
            Pool::gc(dir)?;
            Pool::list(dir)?;
            std::thread::sleep(Duration::from_micros(rng.below(5000)));
        },
        other => Err(Failure::error(format!("unknown chaos role {other}"))),
    }
}

/// The pool configuration of `spec`: small slots, a short lease so recovery is quick.
pub fn config(dir: Option<&Path>, spec: &Spec) -> Config {
    crate::admin::config_in(dir, 4, 4096).mode(spec.mode).overflow(spec.overflow).lease(Duration::from_millis(100))
}

/// Opens the pool, waiting for a creator to make it.
fn open(dir: Option<&Path>, name: &str) -> CliResult<Pool> {
    loop {
        match Pool::open_in(name, dir) {
            Ok(pool) => return Ok(pool),
            Err(Error::NotFound { .. }) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Publishes patterned buffers until the pool is closed.
fn produce(pool: &Pool, rng: &mut Rng) -> CliResult {
    let producer = pool.producer()?;
    for index in 0u64.. {
        match producer.acquire(WAIT) {
            Ok(mut buf) => {
                pattern::fill(&mut buf, index);
                if rng.below(8) == 0 {
                    std::thread::sleep(Duration::from_micros(rng.below(300)));
                }
                match buf.publish() {
                    Ok(_) => {}
                    Err(Error::Closed) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
            Err(Error::Timeout) => {}
            Err(Error::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(Duration::from_micros(200 + rng.below(800)));
    }
    Ok(())
}

/// Receives and verifies buffers until the pool is closed; a slow consumer holds each a while, so
/// block-overflow producers fill the pool and wait.
fn consume(pool: &Pool, rng: &mut Rng, slow: bool) -> CliResult {
    let mut consumer = pool.consumer()?;
    loop {
        match consumer.recv(WAIT) {
            Ok(buf) => {
                pattern::check(&buf).map_err(|e| Failure::new(EXIT_MISMATCH, e))?;
                let hold = if slow { 2000 + rng.below(8000) } else { rng.below(200) };
                std::thread::sleep(Duration::from_micros(hold));
            }
            Err(Error::Timeout) => {}
            // The creator died: wait for its restart, which takes the pool over.
            Err(Error::Orphaned) => std::thread::sleep(Duration::from_millis(10)),
            Err(Error::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Peers never outlive `chaos`, however it ends.
fn die_with_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
}
