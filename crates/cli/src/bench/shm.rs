//! The shmpool rows: a data pool (sender produces, receivers consume; broadcast, or a work queue
//! for the `-wq2` rows) and a small ack pool the other way. Spin rows set a bounded spin on every
//! producer and consumer.

use super::transport::{RecvSide, SendSide, Sent, Setup};
use super::TIMEOUT;
use crate::{frame, CliResult};
use shmpool::{monotonic_ns, Config, Consumer, Mode, Pool, Producer, ReadBuf};
use std::time::Duration;

/// How long a spinning side spins before it sleeps.
pub const SPIN_BUDGET: Duration = Duration::from_millis(1);
const DATA: &str = "data";
const ACKS: &str = "acks";
const GO: &str = "go";
const ACK_BYTES: usize = 8;

/// Slots of the data pool: enough to stream small messages without waiting on every one.
pub fn data_slots(payload: usize) -> u32 {
    match payload {
        0..=65_536 => 64,
        65_537..=1_048_576 => 16,
        _ => 8,
    }
}

fn spin(setup: &Setup) -> Duration {
    if setup.kind.spins() {
        SPIN_BUDGET
    } else {
        Duration::ZERO
    }
}

/// The pools, created by the parent (their creator: they go away with it).
pub struct Pools {
    data: Pool,
    acks: Pool,
    go: Pool,
}

impl Pools {
    pub fn create(setup: &Setup) -> CliResult<Pools> {
        let mode = if setup.kind.work_queue() { Mode::WorkQueue } else { Mode::Broadcast };
        let data_config = Config::new(data_slots(setup.payload), setup.payload).mode(mode);
        let data = Pool::create(DATA, &data_config.directory(&setup.dir))?;
        let acks = Pool::create(ACKS, &Config::new(4, ACK_BYTES).directory(&setup.dir))?;
        let go = Pool::create(GO, &Config::new(1, ACK_BYTES).directory(&setup.dir))?;
        Ok(Pools { data, acks, go })
    }
}

pub struct Sender {
    producer: Producer,
    acks: Consumer,
    /// Work-queue rows: tells the receivers that every one of them has its end-of-phase message.
    go: Producer,
    payload: usize,
    consumers: usize,
    work_queue: bool,
    /// The last message sent was a STOP.
    stopping: bool,
    /// Time each acquire (the latency phase; streaming reads the clock once per message, as
    /// every transport does).
    time_acquire: bool,
}

impl Sender {
    pub fn new(pools: Pools, setup: &Setup) -> CliResult<Sender> {
        let mut producer = pools.data.producer()?;
        let mut acks = pools.acks.consumer()?;
        producer.set_spin(spin(setup));
        acks.set_spin(spin(setup));
        let go = pools.go.producer()?;
        let (consumers, work_queue) = (setup.kind.consumers(), setup.kind.work_queue());
        Ok(Sender {
            producer,
            acks,
            go,
            payload: setup.payload,
            consumers,
            work_queue,
            stopping: false,
            time_acquire: true,
        })
    }

    fn publish(&mut self, index: u64) -> CliResult<Sent> {
        let start = if self.time_acquire { monotonic_ns() } else { 0 };
        let mut buf = self.producer.acquire(Some(TIMEOUT))?;
        let acquire_ns = if self.time_acquire { monotonic_ns() - start } else { 0 };
        frame::stamp(&mut buf[..self.payload], index);
        buf.set_len(self.payload)?;
        let t0 = monotonic_ns();
        frame::set_sent_at(&mut buf, t0);
        buf.set_timestamp(t0);
        buf.publish()?;
        Ok(Sent { t0, acquire_ns })
    }
}

impl SendSide for Sender {
    /// A STOP goes to every consumer: once in broadcast, once per consumer in a work queue.
    fn send(&mut self, index: u64) -> CliResult<Sent> {
        self.stopping = index == frame::STOP;
        let copies = if self.stopping && self.work_queue { self.consumers } else { 1 };
        let sent = self.publish(index)?;
        for _ in 1..copies {
            self.publish(index)?;
        }
        Ok(sent)
    }

    /// Every consumer acknowledges a broadcast message; in a work queue, the one that took it
    /// (every one for the STOPs, after which they may go on).
    fn wait_ack(&mut self) -> CliResult {
        let wanted = if self.work_queue && !self.stopping { 1 } else { self.consumers };
        for _ in 0..wanted {
            self.acks.recv(Some(TIMEOUT))?;
        }
        if self.work_queue && self.stopping {
            let mut buf = self.go.acquire(Some(TIMEOUT))?;
            buf.set_len(ACK_BYTES)?;
            buf.publish()?;
        }
        Ok(())
    }

    fn start_streaming(&mut self) {
        self.time_acquire = false;
    }
}

pub struct Receiver {
    consumer: Consumer,
    acks: Producer,
    held: Option<ReadBuf>,
    /// Work-queue rows: waits for the sender's go after a STOP, so that this consumer does not
    /// take the STOP meant for another.
    go: Option<Consumer>,
    after_stop: bool,
}

impl Receiver {
    pub fn open(setup: &Setup) -> CliResult<Receiver> {
        let mut consumer = Pool::open_in(DATA, Some(&setup.dir))?.consumer()?;
        let mut acks = Pool::open_in(ACKS, Some(&setup.dir))?.producer()?;
        consumer.set_spin(spin(setup));
        acks.set_spin(spin(setup));
        let go = match setup.kind.work_queue() {
            true => Some(Pool::open_in(GO, Some(&setup.dir))?.consumer()?),
            false => None,
        };
        Ok(Receiver { consumer, acks, held: None, go, after_stop: false })
    }
}

impl RecvSide for Receiver {
    fn recv(&mut self) -> CliResult<&[u8]> {
        if let (true, Some(go)) = (std::mem::take(&mut self.after_stop), &mut self.go) {
            go.recv(Some(TIMEOUT))?;
        }
        let buf: &ReadBuf = self.held.insert(self.consumer.recv(Some(TIMEOUT))?);
        self.after_stop = frame::index(buf) == frame::STOP;
        Ok(&buf[..])
    }

    fn release(&mut self) -> CliResult {
        self.held = None;
        Ok(())
    }

    fn ack(&mut self) -> CliResult {
        let mut buf = self.acks.acquire(Some(TIMEOUT))?;
        buf.set_len(ACK_BYTES)?;
        buf.publish()?;
        Ok(())
    }
}
