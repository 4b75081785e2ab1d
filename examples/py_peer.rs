//! A Rust peer for the Python bindings' cross-language tests (bindings/python/tests).
//!
//! ```text
//! py_peer produce NAME DIR COUNT          # opens the pool, publishes COUNT f32 [4, 16] buffers:
//!                                         #   element k of buffer i = i * 1000 + k, meta "rust:i"
//! py_peer consume NAME DIR COUNT SECS     # opens the pool, joins, prints "ready", then one line
//!                                         #   per buffer: seq dtype shape nbytes bytesum meta
//! ```

use shmpool::{DType, Pool};
use std::io::Write;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: py_peer produce NAME DIR COUNT | consume NAME DIR COUNT SECS";
    let [cmd, name, dir, count, rest @ ..] = args.as_slice() else {
        return Err(usage.into());
    };
    let pool = Pool::open_in(name, Some(dir.as_ref()))?;
    let count: u64 = count.parse()?;
    match (cmd.as_str(), rest) {
        ("produce", []) => {
            let producer = pool.producer()?;
            for i in 0..count {
                let mut buf = producer.acquire(Some(Duration::from_secs(10)))?;
                for (k, chunk) in buf[..64 * 4].chunks_exact_mut(4).enumerate() {
                    chunk.copy_from_slice(&((i * 1000 + k as u64) as f32).to_ne_bytes());
                }
                buf.set_dtype(DType::F32);
                buf.set_shape(&[4, 16])?;
                buf.set_len(64 * 4)?;
                buf.set_user_meta(format!("rust:{i}").as_bytes())?;
                buf.publish()?;
            }
        }
        ("consume", [secs]) => {
            let timeout = Duration::from_secs_f64(secs.parse()?);
            let mut consumer = pool.consumer()?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "ready")?;
            out.flush()?;
            for _ in 0..count {
                let buf = consumer.recv(Some(timeout))?;
                let shape: Vec<String> = buf.shape().iter().map(u64::to_string).collect();
                let sum: u64 = buf.iter().map(|&b| u64::from(b)).sum();
                let meta = String::from_utf8_lossy(buf.user_meta()).into_owned();
                writeln!(out, "{} {} {} {} {} {}", buf.seq(), buf.dtype(), shape.join("x"), buf.len(), sum, meta)?;
                out.flush()?;
            }
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
