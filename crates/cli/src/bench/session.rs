//! The two loops of a row: the sender's (parent) and the receiver's (child).
//!
//! Latency phase, one message in flight: the sender stamps message `i`, takes `t0` (CLOCK_MONOTONIC)
//! and sends; the receiver gets it (`t_deliver`), touches it (header plus one stamp per 4 KiB page,
//! `t_touched`), releases it, acknowledges; the sender waits for the acknowledgement before the next
//! message. One-way latency = `t_touched - t0`, both clocks being the machine's one monotonic clock.
//! Then a throughput phase: the sender streams messages without waiting for acknowledgements for a
//! fixed time; the receiver touches and releases each. A message with index [`frame::STOP`] ends
//! each phase.

use super::transport::{RecvSide, SendSide};
use crate::frame::{self, STOP};
use crate::latency::{Samples, Summary};
use crate::CliResult;
use serde::{Deserialize, Serialize};
use shmpool::monotonic_ns;
use std::time::{Duration, Instant};

/// How long and how much to measure.
#[derive(Clone, Copy)]
pub struct Plan {
    pub warmup: u64,
    /// Latency phase: at most this many messages after the warm-up …
    pub max_messages: u64,
    /// … and no more than this long once `min_messages` are in.
    pub latency_time: Duration,
    pub min_messages: u64,
    /// Throughput phase length.
    pub stream_time: Duration,
    /// Latency phase: the sender keeps its CPU busy this long before each message (an experiment:
    /// a big payload's stamping, without the payload).
    pub sender_busy: Duration,
}

/// What the receiver measured.
#[derive(Default, Serialize, Deserialize)]
pub struct ReceiverReport {
    /// `t_touched - t0`: the one-way latency.
    pub latency: Summary,
    /// `t_deliver - t0`: until the receive call returned.
    pub deliver: Summary,
    /// `t_touched - t_deliver`: reading the header and page stamps.
    pub touch: Summary,
    /// The release call (slot or mailbox back to the sender).
    pub release: Summary,
    pub bad_pages: u64,
    /// Messages received in the throughput phase, and when (ns) the STOP message came.
    pub streamed: u64,
    pub stream_end_ns: u64,
    /// Median rate over windows of [`WINDOW`] streamed messages (0 if there was no full window):
    /// the rate while both sides run, less sensitive to other processes taking the CPUs.
    pub window_msgs_per_s: f64,
    /// CPU time (user + system, getrusage) of this process in the latency phase (warm-up
    /// included) and in the throughput phase, and the messages it received in the latency phase.
    #[serde(default)]
    pub cpu_latency_ns: u64,
    #[serde(default)]
    pub cpu_stream_ns: u64,
    #[serde(default)]
    pub latency_received: u64,
}

/// Messages per throughput window.
pub const WINDOW: u64 = 64;

/// What the sender measured.
pub struct SenderReport {
    /// Waiting for room (a slot, the mailbox) before filling.
    pub acquire: Summary,
    /// From calling `send` to `t0`: waiting for room and stamping.
    pub prepare: Summary,
    /// From `t0` to the send call's return (publish, write, copy and wake).
    pub send: Summary,
    pub stream_start_ns: u64,
    /// CPU time of the sending process in each phase, and the messages it sent in each.
    pub cpu_latency_ns: u64,
    pub cpu_stream_ns: u64,
    pub latency_sent: u64,
    pub stream_sent: u64,
}

/// CPU time (user + system) this process has used, in nanoseconds.
pub fn cpu_ns() -> u64 {
    // SAFETY: rusage is plain data; an all-zero value is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a writable rusage; RUSAGE_SELF is always a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

pub fn send(side: &mut dyn SendSide, plan: &Plan) -> CliResult<SenderReport> {
    let n = plan.max_messages as usize;
    let (mut acquire, mut prepare, mut send) =
        (Samples::with_capacity(n), Samples::with_capacity(n), Samples::with_capacity(n));
    let mut measured_since = None;
    let cpu_start = cpu_ns();
    let mut latency_sent = 0;
    for i in 0.. {
        if i >= plan.warmup {
            let since = *measured_since.get_or_insert_with(Instant::now);
            let done = i - plan.warmup;
            if done >= plan.max_messages || (done >= plan.min_messages && since.elapsed() >= plan.latency_time) {
                latency_sent = i;
                break;
            }
        }
        if !plan.sender_busy.is_zero() {
            let until = Instant::now() + plan.sender_busy;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        let start = monotonic_ns();
        let sent = side.send(i)?;
        let returned = monotonic_ns();
        side.wait_ack()?;
        if i >= plan.warmup {
            acquire.push(sent.acquire_ns);
            prepare.push(sent.t0 - start);
            send.push(returned - sent.t0);
        }
    }
    side.send(STOP)?;
    side.wait_ack()?;
    let cpu_latency_ns = cpu_ns() - cpu_start;

    side.start_streaming();
    let cpu_start = cpu_ns();
    let stream_start_ns = monotonic_ns();
    let end = Instant::now() + plan.stream_time;
    let mut i = 0u64;
    while Instant::now() < end {
        for _ in 0..16 {
            side.send(i)?;
            i += 1;
        }
    }
    side.send(STOP)?;
    Ok(SenderReport {
        acquire: acquire.summary(),
        prepare: prepare.summary(),
        send: send.summary(),
        stream_start_ns,
        cpu_latency_ns,
        cpu_stream_ns: cpu_ns() - cpu_start,
        latency_sent,
        stream_sent: i,
    })
}

pub fn receive(side: &mut dyn RecvSide, warmup: u64) -> CliResult<ReceiverReport> {
    let mut report = ReceiverReport::default();
    let (mut latency, mut deliver, mut touch, mut release) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default());
    let cpu_start = cpu_ns();
    loop {
        let data = side.recv()?;
        let delivered = monotonic_ns();
        let touched = frame::touch(data);
        let touched_at = monotonic_ns();
        side.release()?;
        let released = monotonic_ns();
        side.ack()?;
        if touched.index == STOP {
            break;
        }
        report.latency_received += 1;
        report.bad_pages += touched.bad_pages;
        if touched.index >= warmup {
            latency.push(touched_at.saturating_sub(touched.sent_at));
            deliver.push(delivered.saturating_sub(touched.sent_at));
            touch.push(touched_at - delivered);
            release.push(released - touched_at);
        }
    }
    report.cpu_latency_ns = cpu_ns() - cpu_start;
    let cpu_start = cpu_ns();
    let mut windows = Samples::default();
    let mut window_start = None;
    loop {
        let touched = frame::touch(side.recv()?);
        side.release()?;
        if touched.index == STOP {
            report.stream_end_ns = monotonic_ns();
            report.cpu_stream_ns = cpu_ns() - cpu_start;
            break;
        }
        report.bad_pages += touched.bad_pages;
        if report.streamed % WINDOW == 0 {
            let now = monotonic_ns();
            if let Some(start) = window_start.replace(now) {
                windows.push(now - start);
            }
        }
        report.streamed += 1;
    }
    let window_ns = windows.summary().p50_ns;
    if window_ns > 0 {
        report.window_msgs_per_s = (WINDOW as f64 * 1e9 / window_ns as f64).round();
    }
    (report.latency, report.deliver, report.touch, report.release) =
        (latency.summary(), deliver.summary(), touch.summary(), release.summary());
    Ok(report)
}
