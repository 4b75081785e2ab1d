//! The `shm` transport's pools: one per direction, in work-queue mode, created by the host in a
//! directory both ends can see. Buffers are published in the order their frames are written, so the
//! receiver's next buffer is always the one the frame's descriptor names (checked: slot and seq).
//!
//! A side that holds a received slot can send (part of) it back without a copy: the descriptor
//! then names a slot of the receiver's own pool ("lent"), and the receiver releases it later.

use super::frame::Wire;
use super::handshake::Options;
use crate::{Error, Result};
use shmpool::{Config, Consumer, Mode, Pool, Producer, ReadBuf, WriteBuf};
use std::path::Path;
use std::time::Duration;

/// The sending half: this side's producer of the pool the peer consumes.
pub(crate) struct ShmTx {
    pub pool: Pool,
    producer: Producer,
}

/// The receiving half: this side's consumer of the pool the peer produces into.
pub(crate) struct ShmRx {
    pub pool: Pool,
    consumer: Consumer,
}

/// Both halves of one end of an `shm` connection.
pub(crate) struct Pair {
    pub tx: ShmTx,
    pub rx: ShmRx,
}

/// Names of the two pools of a connection, as the host sends them to the worker.
pub(crate) struct Names {
    pub to_worker: String,
    pub to_host: String,
}

/// The host creates both pools in `dir` and takes its ends.
pub(crate) fn create(dir: &Path, options: &Options) -> Result<(Pair, Names)> {
    let tag = super::auth::random_hex(6)?;
    let names = Names { to_worker: format!("conn-{tag}-h2w"), to_host: format!("conn-{tag}-w2h") };
    let config = Config::new(options.slots, options.slot_size as usize).mode(Mode::WorkQueue).directory(dir);
    let out = Pool::create(&names.to_worker, &config)?;
    let back = Pool::create(&names.to_host, &config)?;
    let pair = Pair {
        tx: ShmTx { producer: out.producer()?, pool: out },
        rx: ShmRx { consumer: back.consumer()?, pool: back },
    };
    Ok((pair, names))
}

/// The worker opens both pools in its view of the directory and takes the other ends.
pub(crate) fn attach(dir: &Path, names: &Names) -> Result<Pair> {
    let incoming = Pool::open_in(&names.to_worker, Some(dir))?;
    let outgoing = Pool::open_in(&names.to_host, Some(dir))?;
    Ok(Pair {
        rx: ShmRx { consumer: incoming.consumer()?, pool: incoming },
        tx: ShmTx { producer: outgoing.producer()?, pool: outgoing },
    })
}

impl Pair {
    /// Removes both names: the worker has attached, nobody else may.
    pub fn unlink(&self) {
        for pool in [&self.tx.pool, &self.rx.pool] {
            let _ = std::fs::remove_file(pool.path());
        }
    }
}

impl ShmTx {
    pub fn slot_size(&self) -> usize {
        self.pool.slot_size()
    }

    /// A free slot now, if there is one.
    pub fn try_take(&self) -> Option<WriteBuf> {
        self.producer.try_acquire().ok().flatten()
    }

    /// A free slot within `timeout`, if one comes.
    pub fn take_within(&self, timeout: Duration) -> Option<WriteBuf> {
        self.producer.acquire(Some(timeout)).ok()
    }

    /// Publishes the first `len` bytes of `buf`: the descriptor to send.
    pub fn publish(mut buf: WriteBuf, len: usize) -> Result<Wire<'static>> {
        buf.set_len(len)?;
        let slot = buf.slot_index() as u32;
        let seq = buf.publish()?.ok_or(Error::Pool(shmpool::Error::Closed))?;
        Ok(Wire::Slot { slot, len: len as u64, seq })
    }
}

impl ShmRx {
    /// Takes the buffer a descriptor names (published before its frame was written).
    pub fn take(&mut self, slot: u32, len: u64, seq: u64) -> Result<ReadBuf> {
        let buf = self.consumer.recv(Some(Duration::from_secs(2))).map_err(|e| {
            Error::Protocol(format!("a frame names slot {slot} but no buffer is published in the pool ({e})"))
        })?;
        if buf.slot_index() as u32 != slot || buf.seq() != seq || buf.len() as u64 != len {
            return Err(Error::Protocol(format!(
                "a frame names slot {slot} seq {seq} ({len} bytes), the pool gave slot {} seq {} ({} bytes)",
                buf.slot_index(),
                buf.seq(),
                buf.len()
            )));
        }
        Ok(buf)
    }
}

/// Where `len` bytes at `offset` in slot `slot` of `pool` are in this process: `(slot start, bytes)`,
/// checked against the pool's geometry (the slot and offset come from the peer).
pub(crate) fn region(pool: &Pool, slot: u32, offset: u64, len: u64) -> Result<(*const u8, *const u8)> {
    let out_of_bounds =
        |_| Error::Protocol(format!("a lent buffer ({len} bytes at {offset} in slot {slot}) is out of bounds"));
    let start = pool.slot_region(slot, 0, 0).map_err(out_of_bounds)?.as_ptr();
    let bytes = pool.slot_region(slot, offset, len).map_err(out_of_bounds)?.as_ptr();
    Ok((start, bytes))
}
