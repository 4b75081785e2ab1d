//! The `shm` transport's pools: a growing set per direction (`shmpool::PoolSet`), in work-queue
//! mode, in a directory both ends can see. The host creates both sets' first pools; each sender
//! grows its own set when a buffer does not fit (up to the negotiated `max_slot_size`) and the
//! receiver follows (`shmpool::PoolFollower`). Buffers are published in the order their frames are
//! written, so the receiver's next buffer of a generation is always the one the frame's descriptor
//! names (checked: slot and seq).
//!
//! A side that holds a received slot can send (part of) it back without a copy: the descriptor
//! then names a slot of the receiver's own pool ("lent"), and the receiver releases it later.

use super::frame::Wire;
use super::handshake::Options;
use crate::{Error, Result};
use shmpool::{generation_name, Config, Mode, Pool, PoolFollower, PoolSet, ReadBuf, WriteBuf};
use std::path::Path;
use std::time::Duration;

/// The sending half: this side's set of the pools the peer consumes (it grows them).
pub(crate) struct ShmTx {
    pub set: PoolSet,
}

/// The receiving half: follows the set of pools the peer produces into.
pub(crate) struct ShmRx {
    pub follower: PoolFollower,
}

/// Both halves of one end of an `shm` connection.
pub(crate) struct Pair {
    pub tx: ShmTx,
    pub rx: ShmRx,
    /// The first pools (the host created both; their names go once the worker attached).
    first: [Pool; 2],
}

/// Base names of the two pool sets of a connection, as the host sends them to the worker.
pub(crate) struct Names {
    pub to_worker: String,
    pub to_host: String,
}

/// The host creates the first pool of both sets in `dir` and takes its ends.
pub(crate) fn create(dir: &Path, options: &Options) -> Result<(Pair, Names)> {
    let tag = super::auth::random_hex(6)?;
    let names = Names { to_worker: format!("conn-{tag}-h2w"), to_host: format!("conn-{tag}-w2h") };
    let config = Config::new(options.slots, options.slot_size as usize).mode(Mode::WorkQueue).directory(dir);
    let out = Pool::create(&generation_name(&names.to_worker, 0), &config)?;
    let back = Pool::create(&generation_name(&names.to_host, 0), &config)?;
    let follower = PoolFollower::new(&names.to_host, Some(dir));
    follower.adopt(0, back.clone());
    let pair = Pair {
        tx: ShmTx { set: PoolSet::adopt(&names.to_worker, out.clone(), max_slot(options))? },
        rx: ShmRx { follower },
        first: [out, back],
    };
    Ok((pair, names))
}

fn max_slot(options: &Options) -> usize {
    usize::try_from(options.max_slot_size).unwrap_or(usize::MAX)
}

/// The worker opens both first pools in its view of the directory and takes the other ends.
pub(crate) fn attach(dir: &Path, names: &Names, options: &Options) -> Result<Pair> {
    let incoming = Pool::open_in(&generation_name(&names.to_worker, 0), Some(dir))?;
    let outgoing = Pool::open_in(&generation_name(&names.to_host, 0), Some(dir))?;
    let follower = PoolFollower::new(&names.to_worker, Some(dir));
    follower.adopt(0, incoming.clone());
    Ok(Pair {
        rx: ShmRx { follower },
        tx: ShmTx { set: PoolSet::adopt(&names.to_host, outgoing.clone(), max_slot(options))? },
        first: [incoming, outgoing],
    })
}

impl Pair {
    /// Removes the first pools' names: the worker has attached, nobody else may.
    pub fn unlink(&self) {
        for pool in &self.first {
            let _ = std::fs::remove_file(pool.path());
        }
    }
}

impl ShmTx {
    /// A free slot for `len` bytes (growing the pools if need be; waiting up to `wait` for one of
    /// the current pool first), or `None` past the maximum or the budget.
    pub fn take(&self, len: usize, wait: Option<Duration>) -> Result<Option<(u8, WriteBuf)>> {
        Ok(self.set.acquire(len, wait)?)
    }

    /// Publishes the first `len` bytes of `buf`, a slot of generation `gen`: the descriptor to send.
    pub fn publish(gen: u8, mut buf: WriteBuf, len: usize) -> Result<Wire<'static>> {
        buf.set_len(len)?;
        let slot = buf.slot_index() as u32;
        let seq = buf.publish()?.ok_or(Error::Pool(shmpool::Error::Closed))?;
        Ok(Wire::Slot { gen, slot, len: len as u64, seq })
    }
}

impl ShmRx {
    /// Takes the buffer a descriptor names (published before its frame was written).
    pub fn take(&self, gen: u8, slot: u32, len: u64, seq: u64) -> Result<ReadBuf> {
        let buf = self.follower.recv(gen, Some(Duration::from_secs(2))).map_err(|e| {
            Error::Protocol(format!("a frame names slot {slot} of pool {gen} but no buffer is published there ({e})"))
        })?;
        if buf.slot_index() as u32 != slot || buf.seq() != seq || buf.len() as u64 != len {
            return Err(Error::Protocol(format!(
                "a frame names slot {slot} seq {seq} ({len} bytes) of pool {gen}, it gave slot {} seq {} ({} bytes)",
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
