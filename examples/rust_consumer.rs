//! Receives buffers from a pool and prints (and optionally checks) what arrived: the Rust end of
//! the C/C++/GStreamer cross-language tests (`scripts/test-c.sh`).
//!
//! ```text
//! cargo run --example rust_consumer -- NAME [--dir DIR] [--count N] [--wait-ms MS]
//!     [--expect-shape 1080,1920,3] [--expect-meta-prefix video/x-raw] [--increasing-ts]
//!     [--pattern] [--checksum] [--quiet]
//! ```
//! It opens the pool (retrying until `--wait-ms` passes), then receives until it has `--count`
//! buffers or the pool is closed and drained. Exits 1 if a check fails or fewer than `--count`
//! buffers arrived.

use shmpool::{Error, Pool};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Args {
    name: String,
    dir: Option<PathBuf>,
    count: Option<u64>,
    wait_ms: u64,
    expect_shape: Option<Vec<u64>>,
    expect_meta_prefix: Option<String>,
    increasing_ts: bool,
    pattern: bool,
    checksum: bool,
    quiet: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args { wait_ms: 10_000, ..Args::default() };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--dir" => args.dir = Some(value()?.into()),
            "--count" => args.count = Some(value()?.parse().map_err(|e| format!("--count: {e}"))?),
            "--wait-ms" => args.wait_ms = value()?.parse().map_err(|e| format!("--wait-ms: {e}"))?,
            "--expect-shape" => {
                let dims = value()?.split(',').map(|d| d.parse::<u64>()).collect::<Result<Vec<_>, _>>();
                args.expect_shape = Some(dims.map_err(|e| format!("--expect-shape: {e}"))?);
            }
            "--expect-meta-prefix" => args.expect_meta_prefix = Some(value()?),
            "--increasing-ts" => args.increasing_ts = true,
            "--pattern" => args.pattern = true,
            "--quiet" => args.quiet = true,
            "--checksum" => args.checksum = true,
            _ if args.name.is_empty() && !a.starts_with('-') => args.name = a,
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if args.name.is_empty() {
        return Err("usage: rust_consumer NAME [--dir DIR] [--count N] [--wait-ms MS] ...".into());
    }
    Ok(args)
}

/// The payload the C/C++/Rust test producers write: an 8-byte little-endian counter, then
/// `(counter + i) % 251` for every following byte i.
fn pattern_ok(data: &[u8]) -> Option<u64> {
    let k = u64::from_le_bytes(data.get(..8)?.try_into().ok()?);
    data.iter().enumerate().skip(8).all(|(i, &b)| u64::from(b) == (k + i as u64) % 251).then_some(k)
}

fn run(args: &Args) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_millis(args.wait_ms);
    let pool = loop {
        match Pool::open_in(&args.name, args.dir.as_deref()) {
            Ok(p) => break p,
            Err(Error::NotFound { .. }) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("opening {}: {e}", args.name)),
        }
    };
    let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
    drop(pool);
    println!("consumer ready");
    let mut received = 0u64;
    let mut last_ts = None;
    while args.count.is_none_or(|n| received < n) {
        let buf = match consumer.recv(Some(Duration::from_secs(20))) {
            Ok(b) => b,
            Err(Error::Closed) => break,
            Err(e) => return Err(format!("recv after {received} buffers: {e}")),
        };
        let meta = String::from_utf8_lossy(buf.user_meta()).into_owned();
        let shape: Vec<String> = buf.shape().iter().map(|d| d.to_string()).collect();
        if !args.quiet {
            println!(
                "seq={} ts={} dtype={} shape=({}) len={} meta={meta}",
                buf.seq(),
                buf.timestamp(),
                buf.dtype(),
                shape.join(","),
                buf.len()
            );
        }
        if let Some(want) = &args.expect_shape {
            if buf.shape() != want.as_slice() {
                return Err(format!("buffer {received}: shape {:?}, expected {want:?}", buf.shape()));
            }
            let elements: u64 = want.iter().product();
            if buf.len() as u64 != elements * buf.dtype().size() as u64 {
                return Err(format!("buffer {received}: {} bytes for shape {want:?}", buf.len()));
            }
        }
        if let Some(prefix) = &args.expect_meta_prefix {
            if !meta.starts_with(prefix.as_str()) {
                return Err(format!("buffer {received}: metadata {meta:?} does not start with {prefix:?}"));
            }
        }
        if args.increasing_ts {
            if last_ts.is_some_and(|t| buf.timestamp() <= t) {
                return Err(format!("buffer {received}: timestamp {} after {last_ts:?}", buf.timestamp()));
            }
            last_ts = Some(buf.timestamp());
        }
        if args.checksum {
            // FNV-1a of the payload: lets a test compare what two producers wrote.
            let hash =
                buf.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
            println!("buffer {received} checksum {hash:016x}");
        }
        if args.pattern {
            match pattern_ok(&buf) {
                Some(k) if k == received => {}
                other => return Err(format!("buffer {received}: bad payload (counter {other:?})")),
            }
        }
        received += 1;
    }
    Ok(received)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rust_consumer: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(n) if args.count.is_none_or(|c| n == c) => {
            println!("received {n}");
            ExitCode::SUCCESS
        }
        Ok(n) => {
            eprintln!("rust_consumer: received {n} buffers, expected {:?}", args.count);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("rust_consumer: {e}");
            ExitCode::FAILURE
        }
    }
}
