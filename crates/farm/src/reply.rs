//! Replies through shared memory between co-located peers. A proven client owns a reply pool
//! (work-queue mode, the client its only consumer) and appends a *reply-to* frame to each
//! attempt of a request: `REPLY_TO_MAGIC`, the attempt's id (u64 LE), the pool's name. A
//! co-located worker opens that pool as a producer, writes each big reply array into a slot,
//! publishes it with `(attempt id, part index)` as the slot's user metadata, and the REPLY
//! carries a descriptor of the slot instead of the data. The client receives from its pool until
//! it has the slots of that attempt; slots of other attempts (a worker that died before sending
//! its REPLY, a late answer to an attempt given up) are released as they come.
//!
//! Slot ownership is the core's: a published slot belongs to the pool until the client receives
//! it, and the client's view ([`Payload::Slot`]) holds it until dropped; a worker killed while
//! writing leaves a slot the core reclaims from the dead producer. A worker that cannot open or
//! fill the pool sends bytes; a client that cannot find a slot its REPLY names sends the request
//! again asking for bytes ([`crate::ClientStats::replies_resent_inline`]): no reply is lost.
//!
//! The broker never lets a reply-to frame reach a worker of another host than the client's (it
//! is removed) and refuses one from a client that proved no host.

use crate::part::{Array, Part, Payload};
use crate::shm::{own_pool, Descriptor, PoolCache, ShmConfig, DESC_MAGIC, POOL_PREFIX};
use crate::transport::Frame;
use shmpool::{Consumer, Pool, Producer};
use std::time::{Duration, Instant};

/// First bytes of a reply-to frame.
pub const REPLY_TO_MAGIC: &[u8] = b"\xffSPR1";
/// User metadata of a reply slot: attempt id (u64 LE) and part index (u32 LE).
const SLOT_META: usize = 12;
/// How long a client waits for a slot its REPLY names (published before the REPLY was sent, so
/// normally there at once).
const SLOT_WAIT: Duration = Duration::from_millis(200);

/// Where a co-located worker may write the reply of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub attempt: u64,
    pub pool: String,
}

impl ReplyTo {
    pub fn encode(&self) -> Vec<u8> {
        [REPLY_TO_MAGIC, &self.attempt.to_le_bytes(), self.pool.as_bytes()].concat()
    }

    /// Parses a reply-to frame; `None` if it is not one or names no farm pool.
    pub fn parse(frame: &[u8]) -> Option<ReplyTo> {
        let rest = frame.strip_prefix(REPLY_TO_MAGIC)?;
        let attempt = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
        let pool = std::str::from_utf8(rest.get(8..)?).ok()?;
        pool.starts_with(POOL_PREFIX).then(|| ReplyTo { attempt, pool: pool.to_string() })
    }

    /// Splits the reply-to frame (the last one, if any) off a request body.
    pub fn take(body: &mut Vec<Frame>) -> Option<ReplyTo> {
        let reply_to = ReplyTo::parse(body.last()?)?;
        body.pop();
        Some(reply_to)
    }
}

fn slot_meta(attempt: u64, part: u32) -> [u8; SLOT_META] {
    let mut meta = [0; SLOT_META];
    meta[..8].copy_from_slice(&attempt.to_le_bytes());
    meta[8..].copy_from_slice(&part.to_le_bytes());
    meta
}

/// The client's side: its reply pool, created at the first proven attempt.
pub struct ReplyInbox {
    config: ShmConfig,
    pool: Option<(Pool, Consumer)>,
}

/// A REPLY named a slot the client could not find: ask for bytes.
#[derive(Debug)]
pub struct MissingSlot;

impl ReplyInbox {
    pub fn new(config: ShmConfig) -> ReplyInbox {
        ReplyInbox { config, pool: None }
    }

    /// The reply-to frame of `attempt`, creating the pool if needed (`None` if it cannot be).
    pub fn reply_to(&mut self, attempt: u64) -> Option<Frame> {
        if self.pool.is_none() {
            // Co-located workers of other users cannot write into it (0644) and send bytes.
            let pool = own_pool(&self.config, "-r", |c| c.meta_bytes(SLOT_META))?;
            let consumer = pool.consumer().ok()?;
            self.pool = Some((pool, consumer));
        }
        let pool = self.pool.as_ref()?.0.name().to_string();
        Some(Frame::from(ReplyTo { attempt, pool }.encode()))
    }

    /// The reply pool, once created (for statistics).
    pub fn pool(&self) -> Option<&Pool> {
        self.pool.as_ref().map(|(p, _)| p)
    }

    /// Whether `frame` is a descriptor of a slot of this client's reply pool.
    fn names_our_pool(&self, frame: &[u8]) -> Option<Descriptor> {
        let pool = self.pool()?;
        Descriptor::parse(frame).filter(|d| d.pool == pool.name())
    }

    /// The reply's parts, the arrays of our pool's slots received from it (views held until
    /// dropped); the second value counts them.
    pub fn collect(&mut self, body: Vec<Frame>, attempt: u64) -> Result<(Vec<Part>, u64), MissingSlot> {
        let wanted: Vec<Option<Descriptor>> = body.iter().map(|f| self.names_our_pool(f)).collect();
        let count = wanted.iter().flatten().count();
        let mut slots: Vec<Option<shmpool::ReadBuf>> = wanted.iter().map(|_| None).collect();
        if count > 0 {
            self.receive(attempt, &wanted, &mut slots, count)?;
        }
        let pool = self.pool().cloned();
        let parts = body
            .into_iter()
            .zip(wanted.into_iter().zip(slots))
            .map(|(frame, found)| match (found, &pool) {
                ((Some(d), Some(buf)), Some(pool)) => Part::Array(Array {
                    dtype: d.dtype,
                    shape: d.shape,
                    data: Payload::Slot { buf, pool: pool.clone() },
                }),
                _ => Part::from_frame(frame),
            })
            .collect();
        Ok((parts, count as u64))
    }

    /// Receives slots until every wanted one of `attempt` is there; releases the others.
    fn receive(
        &mut self,
        attempt: u64,
        wanted: &[Option<Descriptor>],
        slots: &mut [Option<shmpool::ReadBuf>],
        mut missing: usize,
    ) -> Result<(), MissingSlot> {
        let (_, consumer) = self.pool.as_mut().ok_or(MissingSlot)?;
        let deadline = Instant::now() + SLOT_WAIT;
        while missing > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            let buf = match consumer.try_recv() {
                Ok(Some(buf)) => buf,
                Ok(None) if !left.is_zero() => match consumer.recv(Some(left)) {
                    Ok(buf) => buf,
                    Err(_) => return Err(MissingSlot),
                },
                _ => return Err(MissingSlot),
            };
            let meta = buf.user_meta();
            let part = meta.get(8..SLOT_META).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
            let ours = meta.get(..8) == Some(&attempt.to_le_bytes()[..]);
            let index = part.map(|p| p as usize).filter(|&i| ours && i < wanted.len());
            let fits = index.and_then(|i| wanted[i].as_ref().map(|d| (i, d))).filter(|(i, d)| {
                slots[*i].is_none() && d.slot as usize == buf.slot_index() && d.offset == 0 && d.len == buf.len() as u64
            });
            if let Some((i, _)) = fits {
                slots[i] = Some(buf);
                missing -= 1;
            } // else: a stale slot, released here
        }
        Ok(())
    }

    /// Releases slots published for attempts given up (a late reply, a worker that died before
    /// its REPLY): called before each request so that none stays held.
    pub fn drain(&mut self) {
        if let Some((_, consumer)) = self.pool.as_mut() {
            while let Ok(Some(_stale)) = consumer.try_recv() {}
        }
    }
}

/// The worker's side: the clients' reply pools it opened as a producer.
pub struct ReplyOutbox {
    config: ShmConfig,
    pools: PoolCache<Producer>,
}

impl ReplyOutbox {
    pub fn new(config: ShmConfig) -> ReplyOutbox {
        // A reply pool is worth keeping while its creator, the client, lives.
        let pools = PoolCache::new(config.dir(), |pool| pool.stats().creator_alive);
        ReplyOutbox { config, pools }
    }

    /// Writes `array` (part `index` of the reply) into a slot of the client's pool and publishes
    /// it; the descriptor frame to send instead of the data, or `None` (send bytes) if the array
    /// is small or too big, or the pool cannot be opened or has no free slot.
    pub fn place(&mut self, to: &ReplyTo, index: usize, array: &Array) -> Option<Vec<u8>> {
        let len = array.data.len();
        if !self.config.enabled || len < self.config.threshold {
            return None;
        }
        let (pool, producer) = self.pools.get(&to.pool, |pool| pool.producer().map_err(|e| e.to_string())).ok()?;
        if len > pool.slot_size() {
            return None;
        }
        let mut slot = producer.try_acquire().ok()??;
        slot[..len].copy_from_slice(&array.data);
        slot.set_len(len).ok()?;
        slot.set_dtype(array.dtype);
        slot.set_shape(&array.shape).ok()?;
        slot.set_user_meta(&slot_meta(to.attempt, u32::try_from(index).ok()?)).ok()?;
        let descriptor = Descriptor {
            dtype: array.dtype,
            shape: array.shape.clone(),
            slot: slot.slot_index() as u32,
            offset: 0,
            len: len as u64,
            pool: pool.name().to_string(),
        };
        slot.publish().ok()?;
        Some(descriptor.encode())
    }
}

/// Whether a frame is one of shared memory's (a descriptor or a reply-to).
pub fn is_shm_frame(frame: &[u8]) -> bool {
    frame.starts_with(DESC_MAGIC) || frame.starts_with(REPLY_TO_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmpool::DType;

    #[test]
    fn reply_to_frames_round_trip_and_name_only_farm_pools() {
        let r = ReplyTo { attempt: 7, pool: "farm-1-ab-r".into() };
        let frame = r.encode();
        assert_eq!(ReplyTo::parse(&frame), Some(r));
        for n in 0..REPLY_TO_MAGIC.len() + 8 {
            assert_eq!(ReplyTo::parse(&frame[..n]), None, "prefix of {n} bytes");
        }
        assert_eq!(ReplyTo::parse(&ReplyTo { attempt: 1, pool: "other".into() }.encode()), None);
    }

    #[test]
    fn replies_are_views_of_the_clients_slots_and_stale_slots_are_released() {
        let dir = std::env::temp_dir().join(format!("shmpool-farm-reply-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = ShmConfig { directory: Some(dir.clone()), ..ShmConfig::default() };
        let array = |n: u8| Array { dtype: DType::U8, shape: vec![2, 4096], data: Payload::Owned(vec![n; 8192]) };
        let mut inbox = ReplyInbox::new(config.clone());
        let mut outbox = ReplyOutbox::new(config);
        // Attempt 1 is answered but its REPLY never arrives; attempt 2's reply is collected.
        let stale = outbox.place(&reply_to(&mut inbox, 1), 0, &array(1)).unwrap();
        let fresh = outbox.place(&reply_to(&mut inbox, 2), 1, &array(2)).unwrap();
        assert!(Descriptor::parse(&stale).is_some());
        let body = vec![Frame::from("tag"), Frame::from(fresh)];
        let (parts, shared) = inbox.collect(body, 2).unwrap();
        assert_eq!((parts.len(), shared), (2, 1));
        let got = parts[1].as_array().unwrap();
        assert!(got.data.is_shared() && got.data[..] == [2; 8192][..] && got.shape == [2, 4096]);
        let stats = inbox.pool().unwrap().stats();
        assert_eq!((stats.reading, stats.ready, stats.free), (1, 0, stats.slots - 1), "the stale slot is released");
        drop(parts);
        assert_eq!(inbox.pool().unwrap().stats().free, stats.slots);
        // A REPLY naming a slot that never came: the client asks for bytes.
        let forged = Descriptor {
            dtype: DType::U8,
            shape: vec![8],
            slot: 0,
            offset: 0,
            len: 8,
            pool: reply_to(&mut inbox, 3).pool,
        };
        assert!(inbox.collect(vec![Frame::from(forged.encode())], 3).is_err());
        drop((inbox, outbox));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn reply_to(inbox: &mut ReplyInbox, attempt: u64) -> ReplyTo {
        ReplyTo::parse(&inbox.reply_to(attempt).unwrap()).unwrap()
    }
}
