//! The raw futex ping-pong baseline: a one-message mailbox in a shared page. The sender copies the
//! payload in, bumps `sent` and wakes; the receiver reads it in place, bumps `acked` and wakes.
//! Every bump is followed by a FUTEX_WAKE system call (no waiter bookkeeping): the plain cost of a
//! futex hand-over, through the crate's own futex calls (`shmpool::__private::futex`).

use super::transport::{RecvSide, SendSide, Sent, Setup};
use super::TIMEOUT;
use crate::{frame, CliResult, Failure};
use shmpool::__private::futex;
use shmpool::monotonic_ns;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering::*};
use std::time::{Duration, Instant};

const FILE: &str = "futex";
/// Offsets of the two counters (separate cache lines) and of the payload.
const SENT: usize = 0;
const ACKED: usize = 128;
const PAYLOAD: usize = frame::PAGE;

/// A shared mapping of the mailbox file.
pub struct Region {
    base: *mut u8,
    len: usize,
}

impl Region {
    fn map(path: &Path, len: usize, create: bool) -> CliResult<Region> {
        let file = if create {
            let file = File::options().read(true).write(true).create_new(true).open(path)?;
            file.set_len(len as u64)?;
            file
        } else {
            File::options().read(true).write(true).open(path)?
        };
        // SAFETY: a fresh shared mapping of `len` bytes of a file at least that long; the kernel
        // picks the address.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(Region { base: base.cast(), len })
    }

    fn len_for(setup: &Setup) -> usize {
        PAYLOAD + setup.payload.div_ceil(frame::PAGE) * frame::PAGE
    }

    pub fn create(setup: &Setup) -> CliResult<Region> {
        Region::map(&setup.dir.join(FILE), Region::len_for(setup), true)
    }

    fn open(setup: &Setup) -> CliResult<Region> {
        Region::map(&setup.dir.join(FILE), Region::len_for(setup), false)
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: `offset` is SENT or ACKED, 4-byte aligned and inside the first page of a mapping
        // that lives as long as `self`; other processes touch it only atomically.
        unsafe { &*self.base.add(offset).cast::<AtomicU32>() }
    }

    fn payload(&self) -> *mut u8 {
        // SAFETY: PAYLOAD is within the mapping (`len_for` adds it).
        unsafe { self.base.add(PAYLOAD) }
    }

    /// Waits until `ready(value of the word)`, sleeping on the futex; returns that value.
    fn wait_for(&self, offset: usize, ready: impl Fn(u32) -> bool) -> CliResult<u32> {
        let deadline = Instant::now() + TIMEOUT;
        let word = self.word(offset);
        loop {
            let v = word.load(Acquire);
            if ready(v) {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                return Err(Failure::error("futex peer did not answer"));
            }
            futex::wait(word, v, Duration::from_millis(100));
        }
    }

    fn post(&self, offset: usize, value: u32) {
        let word = self.word(offset);
        word.store(value, Release);
        futex::wake(word);
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; no reference into it outlives `self`.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

pub struct Sender {
    region: Region,
    buf: Vec<u8>,
    sent: u32,
}

impl Sender {
    pub fn new(region: Region, setup: &Setup) -> Sender {
        Sender { region, buf: vec![0; setup.payload], sent: 0 }
    }
}

impl SendSide for Sender {
    fn send(&mut self, index: u64) -> CliResult<Sent> {
        let start = monotonic_ns();
        let sent = self.sent;
        self.region.wait_for(ACKED, |acked| acked == sent)?;
        let acquire_ns = monotonic_ns() - start;
        frame::stamp(&mut self.buf, index);
        let t0 = monotonic_ns();
        frame::set_sent_at(&mut self.buf, t0);
        // SAFETY: the receiver acknowledged every message, so it does not read the payload area
        // until `sent` moves; the area holds at least `buf.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.buf.as_ptr(), self.region.payload(), self.buf.len()) };
        self.sent = sent.wrapping_add(1);
        self.region.post(SENT, self.sent);
        Ok(Sent { t0, acquire_ns })
    }

    fn wait_ack(&mut self) -> CliResult {
        let sent = self.sent;
        self.region.wait_for(ACKED, |acked| acked == sent)?;
        Ok(())
    }
}

pub struct Receiver {
    region: Region,
    payload: usize,
    seen: u32,
}

impl Receiver {
    pub fn open(setup: &Setup) -> CliResult<Receiver> {
        Ok(Receiver { region: Region::open(setup)?, payload: setup.payload, seen: 0 })
    }
}

impl RecvSide for Receiver {
    fn recv(&mut self) -> CliResult<&[u8]> {
        let seen = self.seen;
        self.seen = self.region.wait_for(SENT, |sent| sent != seen)?;
        // SAFETY: the sender does not write the payload area again until we post `acked`
        // (in `release`), and the slice's borrow of `self` ends before that.
        Ok(unsafe { std::slice::from_raw_parts(self.region.payload(), self.payload) })
    }

    fn release(&mut self) -> CliResult {
        self.region.post(ACKED, self.seen);
        Ok(())
    }

    fn ack(&mut self) -> CliResult {
        Ok(())
    }
}
