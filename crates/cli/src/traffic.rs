//! `produce` and `consume`: move patterned buffers through a pool from the shell.

use crate::admin::config_in;
use crate::progress::Progress;
use crate::{pattern, CliResult, Failure, EXIT_ERROR, EXIT_MISMATCH, EXIT_TIMEOUT};
use clap::Args;
use shmpool::{DType, Error, Pool, ReadBuf};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ProduceArgs {
    /// Pool name.
    name: String,
    /// Buffers to publish (default: until interrupted).
    #[arg(long)]
    count: Option<u64>,
    /// Bytes per buffer (default: the slot size; at least 8).
    #[arg(long, value_name = "BYTES")]
    size: Option<usize>,
    /// Buffers per second (default: as fast as the pool allows).
    #[arg(long, value_name = "HZ")]
    rate: Option<f64>,
    /// Longest wait for a free slot.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
}

#[derive(Args)]
pub struct ConsumeArgs {
    /// Pool name.
    name: String,
    /// Buffers to receive, then exit 0 (default: until the pool is closed).
    #[arg(long)]
    count: Option<u64>,
    /// Longest wait for any single buffer (and for the pool to appear); exit 2 when exceeded.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
    /// Check the pattern `shmpool produce` writes; exit 3 on a mismatch.
    #[arg(long)]
    verify: bool,
    /// One line per buffer on stdout:
    /// `seq=N len=N ts=N dtype=NAME shape=(D0,D1,..) meta=TEXT` (meta last, to the end of the line).
    #[arg(long)]
    print: bool,
}

/// Slots of a pool `produce` creates when none exists.
const DEFAULT_SLOTS: u32 = 8;
/// Buffer size `produce` uses for a pool it creates when `--size` is not given.
const DEFAULT_SIZE: usize = 1 << 20;

fn seconds(secs: f64) -> CliResult<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| Failure::error(format!("invalid duration: {secs} s")))
}

/// Opens the pool, or creates and persists it with default slots of `size` bytes.
fn open_or_create(dir: Option<&Path>, name: &str, size: Option<usize>) -> CliResult<Pool> {
    loop {
        match Pool::open_in(name, dir) {
            Err(Error::NotFound { .. }) => {}
            other => return Ok(other?),
        }
        let config = config_in(dir, DEFAULT_SLOTS, size.unwrap_or(DEFAULT_SIZE));
        match Pool::create(name, &config) {
            Ok(pool) => {
                pool.persist();
                eprintln!("created {}", pool.path().display());
                return Ok(pool);
            }
            // Somebody else created it meanwhile: open theirs.
            Err(Error::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Opens the pool, waiting up to `timeout` for it to appear.
fn open_waiting(dir: Option<&Path>, name: &str, timeout: Duration) -> CliResult<Pool> {
    let deadline = Instant::now() + timeout;
    loop {
        match Pool::open_in(name, dir) {
            Err(e @ Error::NotFound { .. }) => {
                if Instant::now() >= deadline {
                    return Err(Failure::new(EXIT_TIMEOUT, e.to_string()));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return Ok(other?),
        }
    }
}

/// Sleeps so that calls come at most `hz` times a second, without drifting.
struct Pacer {
    period: Duration,
    next: Instant,
}

impl Pacer {
    fn new(hz: f64) -> CliResult<Self> {
        let period = if hz > 0.0 {
            seconds(1.0 / hz)?
        } else {
            return Err(Failure::error("--rate must be > 0"));
        };
        Ok(Pacer { period, next: Instant::now() })
    }

    fn wait(&mut self) {
        let now = Instant::now();
        if self.next > now {
            std::thread::sleep(self.next - now);
        }
        self.next = self.next.max(now - self.period) + self.period;
    }
}

pub fn produce(dir: Option<&Path>, args: &ProduceArgs) -> CliResult {
    let timeout = seconds(args.timeout)?;
    let pool = open_or_create(dir, &args.name, args.size)?;
    let size = args.size.unwrap_or(pool.slot_size());
    if size < pattern::MIN_LEN || size > pool.slot_size() {
        return Err(Failure::error(format!(
            "--size {size}: must be {} to {} (the slot size)",
            pattern::MIN_LEN,
            pool.slot_size()
        )));
    }
    let producer = pool.producer()?;
    let mut pacer = args.rate.map(Pacer::new).transpose()?;
    let mut progress = Progress::new("produced", false);
    let mut index = 0;
    while args.count.is_none_or(|n| index < n) {
        if let Some(pacer) = &mut pacer {
            pacer.wait();
        }
        let mut buf = producer.acquire(Some(timeout))?;
        pattern::fill(&mut buf[..size], index);
        buf.set_len(size)?;
        buf.set_dtype(DType::U8);
        buf.set_shape(&[size as u64])?;
        // The timestamp is CLOCK_MONOTONIC at publish (the default).
        buf.publish()?;
        index += 1;
        progress.update(index, 0);
    }
    progress.finish(index, 0);
    Ok(())
}

pub fn consume(dir: Option<&Path>, args: &ConsumeArgs) -> CliResult {
    let timeout = seconds(args.timeout)?;
    let pool = open_waiting(dir, &args.name, timeout)?;
    let mut consumer = pool.consumer()?;
    let mut progress = Progress::new("received", true);
    let mut out = std::io::stdout().lock();
    let mut received = 0;
    while args.count.is_none_or(|n| received < n) {
        let buf = match consumer.recv(Some(timeout)) {
            Ok(buf) => buf,
            Err(Error::Closed) if args.count.is_none() => break,
            Err(Error::Closed) => {
                return Err(Failure::new(EXIT_ERROR, format!("pool closed after {received} buffers")));
            }
            Err(Error::Timeout) => {
                return Err(Failure::new(
                    EXIT_TIMEOUT,
                    format!("no buffer within {} s (after {received} received)", args.timeout),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if args.verify {
            pattern::check(&buf).map_err(|m| Failure::new(EXIT_MISMATCH, format!("seq {}: {m}", buf.seq())))?;
        }
        if args.print {
            writeln!(out, "{}", describe(&buf))?;
        }
        received += 1;
        progress.update(received, consumer.dropped());
    }
    progress.finish(received, consumer.dropped());
    Ok(())
}

/// The `--print` line of a buffer.
fn describe(buf: &ReadBuf) -> String {
    let dims: Vec<String> = buf.shape().iter().map(u64::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(",")),
    };
    format!(
        "seq={} len={} ts={} dtype={} shape={} meta={}",
        buf.seq(),
        buf.len(),
        buf.timestamp(),
        buf.dtype(),
        shape,
        meta_text(buf.user_meta())
    )
}

/// User metadata as one line of text: invalid UTF-8 replaced, trailing NULs dropped, control
/// characters escaped.
fn meta_text(meta: &[u8]) -> String {
    let text = String::from_utf8_lossy(meta);
    text.trim_end_matches('\0')
        .chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::meta_text;

    #[test]
    fn meta_text_is_one_line() {
        assert_eq!(meta_text(b"video/x-raw, format=RGB\0\0"), "video/x-raw, format=RGB");
        assert_eq!(meta_text(b"a\nb\xff"), "a\\nb\u{fffd}");
    }
}
