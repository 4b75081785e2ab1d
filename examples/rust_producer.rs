//! Creates a pool and publishes test buffers: the Rust end of the Rust → C++ test
//! (`scripts/test-c.sh`).
//!
//! ```text
//! cargo run --example rust_producer -- NAME --dir DIR [--count N] [--size BYTES] [--consumers K]
//! ```
//! Waits (up to 10 s) until `--consumers` consumers joined, publishes `--count` buffers of `--size`
//! bytes (an 8-byte little-endian counter, then `(counter + i) % 251`), dtype u8, shape (size),
//! metadata "rust-producer", timestamp = counter + 1, then closes the pool.

use shmpool::{Config, DType, Pool};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn run() -> Result<(), String> {
    let mut it = std::env::args().skip(1);
    let (mut name, mut dir, mut count, mut size, mut consumers) = (None, None::<PathBuf>, 100u64, 4096usize, 1u32);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--dir" => dir = Some(value()?.into()),
            "--count" => count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--size" => size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--consumers" => consumers = value()?.parse().map_err(|e| format!("--consumers: {e}"))?,
            _ if name.is_none() && !a.starts_with('-') => name = Some(a),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    let name = name.ok_or("usage: rust_producer NAME --dir DIR [--count N] [--size B] [--consumers K]")?;
    if size < 8 {
        return Err("--size must be at least 8".into());
    }
    let mut config = Config::new(4, size);
    if let Some(d) = dir {
        config = config.directory(d);
    }
    let pool = Pool::create(&name, &config).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.stats().consumers < consumers {
        if Instant::now() > deadline {
            return Err(format!("no {consumers} consumer(s) within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let producer = pool.producer().map_err(|e| e.to_string())?;
    for k in 0..count {
        let mut buf = producer.acquire(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        buf[..8].copy_from_slice(&k.to_le_bytes());
        for (i, b) in buf[..size].iter_mut().enumerate().skip(8) {
            *b = ((k + i as u64) % 251) as u8;
        }
        buf.set_len(size).map_err(|e| e.to_string())?;
        buf.set_dtype(DType::U8);
        buf.set_shape(&[size as u64]).map_err(|e| e.to_string())?;
        buf.set_user_meta(b"rust-producer").map_err(|e| e.to_string())?;
        buf.set_timestamp(k + 1);
        buf.publish().map_err(|e| e.to_string())?;
    }
    pool.shutdown();
    println!("published {count}");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rust_producer: {e}");
            ExitCode::FAILURE
        }
    }
}
