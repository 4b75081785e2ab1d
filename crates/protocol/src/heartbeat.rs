//! Liveness: every byte received counts as a sign of life; an idle side sends a heartbeat frame
//! every interval; a peer silent for `missed` intervals is dead.
//!
//! The connection's reader thread reads through [`Watched`], whose socket has a short read timeout:
//! each timeout is a chance to send a heartbeat and to check the peer's silence.

use super::stream::Stream;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Clocks of one connection.
pub(crate) struct Liveness {
    start: Instant,
    interval: Duration,
    dead_after: Duration,
    last_recv: AtomicU64,
    last_send: AtomicU64,
    /// Set when this side closes: the reader stops at its next timeout.
    pub closed: AtomicBool,
}

impl Liveness {
    pub fn new(interval: Duration, dead_after: Duration) -> Liveness {
        Liveness {
            start: Instant::now(),
            interval,
            dead_after,
            last_recv: AtomicU64::new(0),
            last_send: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn received(&self) {
        self.last_recv.store(self.now(), Relaxed);
    }

    pub fn sent(&self) {
        self.last_send.store(self.now(), Relaxed);
    }

    fn since(&self, at: &AtomicU64) -> Duration {
        Duration::from_nanos(self.now().saturating_sub(at.load(Relaxed)))
    }

    /// How often the reader wakes up to check.
    pub fn tick(&self) -> Duration {
        (self.interval / 4).clamp(Duration::from_millis(5), Duration::from_millis(250))
    }

    /// The socket's write timeout: a write blocked this long means the peer stopped reading.
    pub fn dead_after(&self) -> Duration {
        self.dead_after
    }
}

/// A reader that turns read timeouts into heartbeats and silence into an error.
pub(crate) struct Watched<'a, F: FnMut(bool)> {
    pub stream: Stream,
    pub live: &'a Liveness,
    /// Runs at every read timeout with whether a heartbeat is due (it sends one if the writer is
    /// free, and flushes pending releases).
    pub tick: F,
}

impl<F: FnMut(bool)> Read for Watched<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.stream.read(buf) {
                Ok(n) => {
                    self.live.received();
                    return Ok(n);
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if self.live.closed.load(Relaxed) {
                        return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "closed by this side"));
                    }
                    let silent = self.live.since(&self.live.last_recv);
                    if silent >= self.live.dead_after {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the peer sent nothing for {silent:.1?} (missed heartbeats)"),
                        ));
                    }
                    (self.tick)(self.live.since(&self.live.last_send) >= self.live.interval);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
