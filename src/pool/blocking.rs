//! The one blocking loop behind `acquire` and `recv`: try, spin within the budget, then sleep on
//! the Signaler's event, sweeping dead peers once a lease, until ready or out of time.

use super::Place;
use crate::signaler::{Spin, Waiter};
use crate::{Error, Result};
use std::time::{Duration, Instant};

/// What one attempt of a blocking operation found.
pub(crate) enum Attempt<T> {
    Ready(T),
    /// Nothing yet: sleep until notified.
    Pending,
    /// A peer is between two steps: retry soon.
    Busy,
}

/// Which event a blocked operation waits for.
#[derive(Clone, Copy)]
pub(crate) enum Event {
    Published,
    Freed,
}

impl Place {
    /// Runs `attempt` until it is ready, sleeping on `event` between tries, spinning first within
    /// `spin`'s budget, sweeping dead peers every lease, for at most `timeout` (`None`: no limit).
    pub(crate) fn block_on<T>(
        &self,
        event: Event,
        timeout: Option<Duration>,
        spin: &Spin,
        mut attempt: impl FnMut() -> Result<Attempt<T>>,
    ) -> Result<T> {
        let pool = &self.pool;
        if let Attempt::Ready(v) = attempt()? {
            return Ok(v);
        }
        // Not ready at once: a dead peer may be what holds us up, so check (at most once a lease).
        if pool.sweep_if_due() {
            if let Attempt::Ready(v) = attempt()? {
                return Ok(v);
            }
        }
        let start = Instant::now();
        let mut failure = None;
        // Spin only with a CPU to spare for the peer we wait for; otherwise sleep at once.
        let ticket = if spin.enabled() { self.admit_spinner() } else { None };
        let spun = ticket.as_ref().and_then(|_| {
            spin.run(|| match attempt() {
                Ok(Attempt::Ready(v)) => Some(Ok(v)),
                Ok(_) => None,
                Err(e) => {
                    failure = Some(e);
                    Some(Err(()))
                }
            })
        });
        drop(ticket);
        match spun {
            Some(Ok(v)) => return Ok(v),
            Some(Err(())) => return Err(failure.unwrap_or(Error::Closed)),
            None => {}
        }
        let control = pool.view.control();
        let _registration = self.register_waiter(event);
        let waiter = Waiter::registered(match event {
            Event::Published => &control.published_event,
            Event::Freed => &control.freed_event,
        });
        let mut last_check = start;
        loop {
            let remaining = match timeout {
                Some(t) => match t.checked_sub(start.elapsed()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return Err(Error::Timeout),
                },
                None => None,
            };
            let seen = waiter.observe();
            let nap = match attempt()? {
                Attempt::Ready(v) => return Ok(v),
                // Half a lease: an attempt then notices an orphaned pool within the lease.
                Attempt::Pending => pool.lease / 2,
                Attempt::Busy => Duration::from_micros(200),
            };
            waiter.sleep(seen, remaining.map_or(nap, |r| r.min(nap)));
            // Before touching the segment again: was the file shrunk while we slept?
            pool.check_intact()?;
            if last_check.elapsed() >= pool.lease {
                last_check = Instant::now();
                pool.sweep_if_due();
            }
        }
    }
}
