//! Blocking pool calls that a GStreamer flush or state change can interrupt.
//!
//! The pool's calls block on futexes with a timeout; the elements wait in short steps and check a
//! flag that `unlock()` / `flush_start()` set, so a pipeline never hangs on a full pool or a quiet
//! producer.

use shmpool::{Consumer, Error, Producer, ReadBuf, WriteBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long one wait step lasts: the delay before a flush is noticed.
pub const STEP: Duration = Duration::from_millis(50);

/// Why a wait ended without a buffer.
#[derive(Debug)]
pub enum Interrupted {
    /// The element is flushing or stopping.
    Flushing,
    /// The pool failed (closed, corrupted, …).
    Pool(Error),
}

/// A free slot of `producer`, waiting until one frees up or `stop` is set.
pub fn acquire(producer: &Producer, stop: &AtomicBool) -> Result<WriteBuf, Interrupted> {
    loop {
        if stop.load(Ordering::Acquire) {
            return Err(Interrupted::Flushing);
        }
        match producer.acquire(Some(STEP)) {
            Ok(buf) => return Ok(buf),
            Err(Error::Timeout) => continue,
            Err(e) => return Err(Interrupted::Pool(e)),
        }
    }
}

/// One step of receiving: a buffer, `None` if nothing came within [`STEP`], or why not.
pub fn recv_step(consumer: &mut Consumer, stop: &AtomicBool) -> Result<Option<ReadBuf>, Interrupted> {
    if stop.load(Ordering::Acquire) {
        return Err(Interrupted::Flushing);
    }
    match consumer.recv(Some(STEP)) {
        Ok(buf) => Ok(Some(buf)),
        Err(Error::Timeout) => Ok(None),
        Err(e) => Err(Interrupted::Pool(e)),
    }
}
