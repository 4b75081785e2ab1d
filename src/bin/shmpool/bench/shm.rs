//! The shmpool rows: a broadcast data pool (sender produces, receiver consumes) and a small ack
//! pool the other way. Spin rows set a bounded spin on every producer and consumer.

use super::transport::{RecvSide, SendSide, Sent, Setup};
use super::TIMEOUT;
use crate::{frame, CliResult};
use shmpool::{monotonic_ns, Config, Consumer, Pool, Producer, ReadBuf};
use std::path::Path;
use std::time::Duration;

/// How long a spinning side spins before it sleeps.
pub const SPIN_BUDGET: Duration = Duration::from_millis(1);
const DATA: &str = "data";
const ACKS: &str = "acks";
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

/// Makes the core's once-per-process "is spinning useful?" decision while this process may still
/// run on every CPU. The core takes that decision from the affinity mask at its first spin and
/// never spins in a process pinned to one CPU, even when the peer is pinned to another; so each
/// side calls this before pinning itself. `dir` must not hold a pool named `spin-probe`.
pub fn settle_spin_decision(dir: &Path) -> CliResult {
    let pool = Pool::create("spin-probe", &Config::new(1, ACK_BYTES).directory(dir))?;
    let mut probe = pool.consumer()?;
    probe.set_spin(Duration::from_nanos(1));
    match probe.recv(Some(Duration::from_nanos(1))) {
        Ok(_) | Err(shmpool::Error::Timeout) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The two pools, created by the parent (their creator: they go away with it).
pub struct Pools {
    data: Pool,
    acks: Pool,
}

impl Pools {
    pub fn create(setup: &Setup) -> CliResult<Pools> {
        let data = Pool::create(DATA, &Config::new(data_slots(setup.payload), setup.payload).directory(&setup.dir))?;
        let acks = Pool::create(ACKS, &Config::new(4, ACK_BYTES).directory(&setup.dir))?;
        Ok(Pools { data, acks })
    }
}

pub struct Sender {
    producer: Producer,
    acks: Consumer,
    payload: usize,
}

impl Sender {
    pub fn new(pools: Pools, setup: &Setup) -> CliResult<Sender> {
        let mut producer = pools.data.producer()?;
        let mut acks = pools.acks.consumer()?;
        producer.set_spin(spin(setup));
        acks.set_spin(spin(setup));
        Ok(Sender { producer, acks, payload: setup.payload })
    }
}

impl SendSide for Sender {
    fn send(&mut self, index: u64) -> CliResult<Sent> {
        let start = monotonic_ns();
        let mut buf = self.producer.acquire(Some(TIMEOUT))?;
        let acquire_ns = monotonic_ns() - start;
        frame::stamp(&mut buf[..self.payload], index);
        buf.set_len(self.payload)?;
        let t0 = monotonic_ns();
        frame::set_sent_at(&mut buf, t0);
        buf.set_timestamp(t0);
        buf.publish()?;
        Ok(Sent { t0, acquire_ns })
    }

    fn wait_ack(&mut self) -> CliResult {
        self.acks.recv(Some(TIMEOUT))?;
        Ok(())
    }
}

pub struct Receiver {
    consumer: Consumer,
    acks: Producer,
    held: Option<ReadBuf>,
}

impl Receiver {
    pub fn open(setup: &Setup) -> CliResult<Receiver> {
        let mut consumer = Pool::open_in(DATA, Some(&setup.dir))?.consumer()?;
        let mut acks = Pool::open_in(ACKS, Some(&setup.dir))?.producer()?;
        consumer.set_spin(spin(setup));
        acks.set_spin(spin(setup));
        Ok(Receiver { consumer, acks, held: None })
    }
}

impl RecvSide for Receiver {
    fn recv(&mut self) -> CliResult<&[u8]> {
        let buf: &ReadBuf = self.held.insert(self.consumer.recv(Some(TIMEOUT))?);
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
