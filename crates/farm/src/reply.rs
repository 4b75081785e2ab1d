//! Replies through shared memory between co-located peers. A proven client owns a reply pool
//! (work-queue mode, the client its only consumer) and appends a *reply-to* frame to each
//! attempt of a request: `REPLY_TO_MAGIC`, the attempt's id (u64 LE), the pool's name. A
//! co-located worker opens that pool as a producer, writes each big reply array into a slot,
//! publishes it with `(attempt id, part index)` as the slot's user metadata, and the REPLY
//! carries a descriptor of the slot instead of the data. The client receives from its pool until
//! it has the slots of that attempt; slots of other attempts (a worker that died before sending
//! its REPLY, a late answer to an attempt given up) are released as they come.
//!
//! The reply's whole body follows in one more slot, its *envelope* (the frames: descriptors of the
//! array slots and the small parts), published last, and the REPLY that goes through the broker
//! carries only a *delivered* frame naming the attempt (`DELIVERED_MAGIC`, attempt id). The client
//! waits on its ZeroMQ socket and on its reply pool at once: the envelope wakes it through the
//! pool's futex and readiness pipe, two libzmq hops (worker → broker → client) before the REPLY
//! would, and the REPLY still tells the broker that the worker is free. A delivered frame of an
//! older attempt is skipped; one of the current attempt whose envelope is not (yet) there makes the
//! client wait for the envelope like for any slot. A worker that cannot place the envelope (no
//! free slot, a body bigger than a slot) sends the body in the REPLY.
//!
//! Slot ownership is the core's: a published slot belongs to the pool until the client receives
//! it, and the client's view ([`Payload::Slot`]) holds it until dropped; a worker killed while
//! writing leaves a slot the core reclaims from the dead producer. A worker that cannot open or
//! fill the pool sends bytes; a client that cannot find a slot its REPLY names sends the request
//! again asking for bytes ([`crate::ClientStats::replies_resent_inline`]): no reply is lost.
//!
//! The broker never lets a reply-to frame reach a worker of another host than the client's (it
//! is removed) and refuses one from a client that proved no host.

use crate::part::{array_bytes, Array, Part, Payload};
use crate::shm::{own_receiving_pool, ready_fd, Descriptor, PoolCache, ShmConfig, DESC_MAGIC, POOL_PREFIX};
use crate::transport::Frame;
use shmpool::{Consumer, DType, Pool, Producer, ReadBuf, WriteBuf, MAX_DIMS};
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

/// First bytes of a reply-to frame.
pub const REPLY_TO_MAGIC: &[u8] = b"\xffSPR1";
/// First bytes of the body of a REPLY whose frames wait in the client's reply pool (an envelope),
/// followed by the attempt id (u64 LE).
pub const DELIVERED_MAGIC: &[u8] = b"\xffSPC1";
/// User metadata of a reply slot: attempt id (u64 LE) and part index (u32 LE).
const SLOT_META: usize = 12;
/// The part index of an envelope slot: the encoded frames of the reply's body, each a u32 LE
/// length then the bytes.
const ENVELOPE: u32 = u32::MAX;
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

/// The `(attempt, part)` of a received reply slot (untrusted: any co-located writer of the pool).
fn read_slot_meta(buf: &ReadBuf) -> Option<(u64, u32)> {
    let meta = buf.user_meta();
    let attempt = u64::from_le_bytes(meta.get(..8)?.try_into().ok()?);
    let part = u32::from_le_bytes(meta.get(8..SLOT_META)?.try_into().ok()?);
    Some((attempt, part))
}

/// The REPLY body of a reply delivered in the client's pool.
pub fn delivered_frame(attempt: u64) -> Frame {
    Frame::from([DELIVERED_MAGIC, &attempt.to_le_bytes()].concat())
}

/// The attempt a REPLY body says was delivered in the client's pool, if it is such a body.
pub fn delivered<F: AsRef<[u8]>>(body: &[F]) -> Option<u64> {
    let [frame] = body else { return None };
    let id = frame.as_ref().strip_prefix(DELIVERED_MAGIC)?;
    Some(u64::from_le_bytes(id.try_into().ok()?))
}

/// Bytes of the envelope of `body`, if it fits in `capacity` (and every frame in a u32).
pub(crate) fn envelope_len<F: AsRef<[u8]>>(body: &[F], capacity: usize) -> Option<usize> {
    let len = body
        .iter()
        .map(|f| f.as_ref().len())
        .try_fold(0usize, |n, len| n.checked_add(4)?.checked_add((len <= u32::MAX as usize).then_some(len)?))?;
    (len <= capacity).then_some(len)
}

/// Writes `body` as an envelope into `out` (exactly [`envelope_len`] bytes).
pub(crate) fn encode_envelope<F: AsRef<[u8]>>(body: &[F], out: &mut [u8]) {
    let mut at = 0;
    for frame in body {
        let frame = frame.as_ref();
        out[at..at + 4].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        out[at + 4..at + 4 + frame.len()].copy_from_slice(frame);
        at += 4 + frame.len();
    }
}

/// The frames of an envelope; `None` if it is malformed or has more than `max_frames`.
pub fn decode_envelope(mut bytes: &[u8], max_frames: usize) -> Option<Vec<Frame>> {
    let mut body = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let frame = bytes.get(4..4usize.checked_add(len)?)?;
        if body.len() == max_frames {
            return None;
        }
        body.push(Frame::from(frame));
        bytes = &bytes[4 + len..];
    }
    Some(body)
}

/// The client's side: its reply pool, created at the first proven attempt.
pub struct ReplyInbox {
    config: ShmConfig,
    pool: Option<(Pool, Consumer)>,
    /// Slots of the current attempt received before they were looked for (an envelope and the
    /// array slots published before it).
    early: Vec<ReadBuf>,
}

/// A REPLY named a slot the client could not find: ask for bytes.
#[derive(Debug)]
pub struct MissingSlot;

impl ReplyInbox {
    pub fn new(config: ShmConfig) -> ReplyInbox {
        ReplyInbox { config, pool: None, early: Vec::new() }
    }

    /// The reply-to frame of `attempt`, creating the pool if needed (`None` if it cannot be).
    pub fn reply_to(&mut self, attempt: u64) -> Option<Frame> {
        if self.pool.is_none() {
            // Co-located workers of other users cannot write into it (0644) and send bytes.
            self.pool = Some(own_receiving_pool(&self.config, "-r", |c| c.meta_bytes(SLOT_META))?);
        }
        let pool = self.pool.as_ref()?.0.name().to_string();
        Some(Frame::from(ReplyTo { attempt, pool }.encode()))
    }

    /// The reply pool, once created (for statistics).
    pub fn pool(&self) -> Option<&Pool> {
        self.pool.as_ref().map(|(p, _)| p)
    }

    /// A descriptor that becomes readable when a slot may have arrived in the reply pool (armed by
    /// [`ReplyInbox::envelope_arrived`] finding the pool empty); `None` before the pool exists.
    pub fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        ready_fd(&self.pool.as_ref()?.1)
    }

    /// Whether the envelope of `attempt` is here: takes the slots the pool holds now (those of
    /// `attempt` are kept, the others released) and, if it holds none, arms [`Self::ready_fd`].
    pub fn envelope_arrived(&mut self, attempt: u64) -> bool {
        if let Some((_, consumer)) = self.pool.as_mut() {
            while let Ok(Some(buf)) = consumer.try_recv() {
                if read_slot_meta(&buf).is_some_and(|(a, _)| a == attempt) {
                    self.early.push(buf);
                }
            }
        }
        self.early.iter().any(|buf| read_slot_meta(buf) == Some((attempt, ENVELOPE)))
    }

    /// Whether `frame` is a descriptor of a slot of this client's reply pool.
    fn names_our_pool(&self, frame: &[u8]) -> Option<Descriptor> {
        let pool = self.pool()?;
        Descriptor::parse(frame).filter(|d| d.pool == pool.name())
    }

    /// The reply's parts, the arrays of our pool's slots received from it (views held until
    /// dropped); the second value counts them. A body that says it was delivered is read from
    /// the envelope of `attempt` (at most `max_frames` frames).
    pub fn collect(
        &mut self,
        body: Vec<Frame>,
        attempt: u64,
        max_frames: usize,
    ) -> Result<(Vec<Part>, u64), MissingSlot> {
        let deadline = Instant::now() + SLOT_WAIT;
        let body = match delivered(&body) {
            Some(id) if id == attempt => {
                let envelope = self.slot(attempt, ENVELOPE, None, deadline)?;
                decode_envelope(&envelope, max_frames).ok_or(MissingSlot)?
            }
            _ => body,
        };
        let pool = self.pool().cloned();
        let mut shared = 0;
        let mut parts = Vec::with_capacity(body.len());
        for (i, frame) in body.into_iter().enumerate() {
            let part = match (self.names_our_pool(&frame), &pool) {
                (Some(d), Some(pool)) => {
                    let index = u32::try_from(i).map_err(|_| MissingSlot)?;
                    let buf = self.slot(attempt, index, Some(d.slot as usize), deadline)?;
                    if d.offset != 0 || d.len != buf.len() as u64 {
                        return Err(MissingSlot);
                    }
                    shared += 1;
                    Part::Array(Array {
                        dtype: d.dtype,
                        shape: d.shape,
                        data: Payload::Slot { buf, pool: pool.clone() },
                    })
                }
                _ => Part::from_frame(frame),
            };
            parts.push(part);
        }
        Ok((parts, shared))
    }

    /// The slot published for part `part` of `attempt` (in slot `index`, if given): received
    /// already, or received by `deadline`. Slots of other attempts are released as they come.
    fn slot(
        &mut self,
        attempt: u64,
        part: u32,
        index: Option<usize>,
        deadline: Instant,
    ) -> Result<ReadBuf, MissingSlot> {
        let wanted =
            |buf: &ReadBuf| read_slot_meta(buf) == Some((attempt, part)) && index.is_none_or(|i| i == buf.slot_index());
        loop {
            if let Some(at) = self.early.iter().position(wanted) {
                return Ok(self.early.swap_remove(at));
            }
            let (_, consumer) = self.pool.as_mut().ok_or(MissingSlot)?;
            let left = deadline.saturating_duration_since(Instant::now());
            let buf = match consumer.try_recv() {
                Ok(Some(buf)) => buf,
                Ok(None) if !left.is_zero() => consumer.recv(Some(left)).map_err(|_| MissingSlot)?,
                _ => return Err(MissingSlot),
            };
            if read_slot_meta(&buf).is_some_and(|(a, _)| a == attempt) {
                self.early.push(buf);
            } // else: a stale slot, released here
        }
    }

    /// Releases slots published for attempts given up (a late reply, a worker that died before
    /// its REPLY): called before each request so that none stays held.
    pub fn drain(&mut self) {
        self.early.clear();
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

    /// A writable array of `dtype` and `shape` in a free slot of the reply pool `to` names, to be
    /// filled in place and published by [`ReplyOutbox::place`] with no copy; `None` if shared
    /// memory is off, the array is small or too big, or the pool cannot be opened or has no free
    /// slot.
    pub fn alloc(&mut self, to: &ReplyTo, dtype: DType, shape: &[u64]) -> Option<Array> {
        let len = array_bytes(dtype, shape)?;
        if !self.config.enabled || len < self.config.threshold || shape.len() > MAX_DIMS {
            return None;
        }
        let (pool, producer) = self.producer(to)?;
        if len > pool.slot_size() {
            return None;
        }
        let buf = producer.try_acquire().ok()??;
        Some(Array { dtype, shape: shape.to_vec(), data: Payload::Writable { buf, len, pool: pool.clone() } })
    }

    /// The frame of `array`, part `index` of the reply: a descriptor of the slot of the client's
    /// pool it is published in (with the attempt and `index` as the slot's metadata), else its
    /// bytes. An array from [`ReplyOutbox::alloc`] for this pool is published as it is; any other
    /// is copied into a slot if it is big enough to be worth it, fits, and a slot is free.
    pub fn place(&mut self, to: &ReplyTo, index: usize, array: Array) -> Frame {
        let Array { dtype, shape, data } = array;
        let len = data.len();
        let (mut slot, copied_from) = match data {
            Payload::Writable { buf, pool, .. } if pool.name() == to.pool => (buf, None),
            data => match self.copy_in(to, &data) {
                Some(slot) => (slot, Some(data)),
                None => return Part::Array(Array { dtype, shape, data }).to_frame(),
            },
        };
        slot.set_dtype(dtype);
        let labelled = slot.set_len(len).and_then(|()| slot.set_shape(&shape)).is_ok()
            && u32::try_from(index).is_ok_and(|i| slot.set_user_meta(&slot_meta(to.attempt, i)).is_ok());
        if !labelled {
            // Not a pool made by a client of ours (too little metadata): the bytes go inline.
            let data = copied_from.unwrap_or_else(|| Payload::Owned(slot[..len].to_vec()));
            return Part::Array(Array { dtype, shape, data }).to_frame();
        }
        let slot_index = slot.slot_index() as u32;
        let descriptor =
            Descriptor { dtype, shape, slot: slot_index, offset: 0, len: len as u64, pool: to.pool.clone() };
        match (slot.publish(), copied_from) {
            (Err(_), Some(data)) => Part::Array(Array { dtype, shape: descriptor.shape, data }).to_frame(),
            // A slot written in place and lost with the pool: the client, finding no slot for
            // this descriptor, asks again for bytes.
            _ => Frame::from(descriptor.encode()),
        }
    }

    /// A free slot of the pool `to` names holding a copy of `data`, if worth it and possible.
    fn copy_in(&mut self, to: &ReplyTo, data: &[u8]) -> Option<WriteBuf> {
        if !self.config.enabled || data.len() < self.config.threshold {
            return None;
        }
        let (pool, producer) = self.producer(to)?;
        if data.len() > pool.slot_size() {
            return None;
        }
        let mut slot = producer.try_acquire().ok()??;
        slot[..data.len()].copy_from_slice(data);
        Some(slot)
    }

    /// The client's pool `to` names, opened as a producer at the first use.
    fn producer(&mut self, to: &ReplyTo) -> Option<&(Pool, Producer)> {
        self.pools.get(&to.pool, |pool| pool.producer().map_err(|e| e.to_string())).ok()
    }

    /// Publishes `body`, a staged reply's frames, as the envelope of the attempt `to` names; the
    /// REPLY body to send instead, or `None` (send `body` itself) if shared memory is off, no slot
    /// is free or the body does not fit in one.
    pub fn deliver(&mut self, to: &ReplyTo, body: &[Frame]) -> Option<Vec<Frame>> {
        if !self.config.enabled {
            return None;
        }
        let (pool, producer) = self.producer(to)?;
        let len = envelope_len(body, pool.slot_size())?;
        let mut slot = producer.try_acquire().ok()??;
        encode_envelope(body, &mut slot[..len]);
        slot.set_len(len).ok()?;
        slot.set_dtype(DType::U8);
        slot.set_shape(&[len as u64]).ok()?;
        slot.set_user_meta(&slot_meta(to.attempt, ENVELOPE)).ok()?;
        slot.publish().ok()?;
        Some(vec![delivered_frame(to.attempt)])
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
        let (dir, mut inbox, mut outbox) = client_and_worker("reply");
        let array = |n: u8| Array { dtype: DType::U8, shape: vec![2, 4096], data: Payload::Owned(vec![n; 8192]) };
        // Attempt 1 is answered but its REPLY never arrives; attempt 2's reply is collected.
        let stale = outbox.place(&reply_to(&mut inbox, 1), 0, array(1));
        let fresh = outbox.place(&reply_to(&mut inbox, 2), 1, array(2));
        assert!(Descriptor::parse(&stale).is_some());
        let body = vec![Frame::from("tag"), fresh];
        let (parts, shared) = inbox.collect(body, 2, 1024).unwrap();
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
        assert!(inbox.collect(vec![Frame::from(forged.encode())], 3, 1024).is_err());
        drop((inbox, outbox));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_delivered_reply_is_read_from_its_envelope() {
        let (dir, mut inbox, mut outbox) = client_and_worker("envelope");
        let to = reply_to(&mut inbox, 5);
        let array = Array { dtype: DType::U8, shape: vec![8192], data: Payload::Owned(vec![5; 8192]) };
        let body = vec![Frame::from("tag"), outbox.place(&to, 1, array)];
        assert!(!inbox.envelope_arrived(5), "an array slot is not the envelope");
        let confirmation = outbox.deliver(&to, &body).unwrap();
        assert_eq!(delivered(&confirmation), Some(5));
        assert!(inbox.envelope_arrived(5));
        let (parts, shared) = inbox.collect(confirmation, 5, 1024).unwrap();
        assert_eq!((parts.len(), shared, parts[0].data()), (2, 1, &b"tag"[..]));
        assert!(parts[1].as_array().unwrap().data.is_shared() && parts[1].data() == [5; 8192]);
        drop(parts);
        let stats = inbox.pool().unwrap().stats();
        assert_eq!(stats.free, stats.slots, "the envelope and the array slot are released");
        // A body bigger than a slot goes in the REPLY.
        assert!(outbox.deliver(&to, &[Frame::from(vec![0; 4 << 20])]).is_none());
        drop((inbox, outbox));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reply_array_written_in_place_is_published_as_it_is() {
        let (dir, mut inbox, mut outbox) = client_and_worker("in-place");
        let to = reply_to(&mut inbox, 3);
        let mut part = Part::Array(outbox.alloc(&to, DType::U16, &[64, 64]).unwrap());
        part.data_mut().unwrap().fill(9);
        let Part::Array(array) = part else { unreachable!() };
        let Payload::Writable { buf, .. } = &array.data else { panic!("not in a slot") };
        let slot = buf.slot_index() as u32;
        let frame = outbox.place(&to, 0, array);
        assert_eq!(
            Descriptor::parse(&frame).map(|d| (d.slot, d.shape)),
            Some((slot, vec![64, 64])),
            "copied elsewhere"
        );
        let (parts, shared) = inbox.collect(vec![frame], 3, 1024).unwrap();
        assert_eq!((shared, parts[0].data()), (1, &[9; 8192][..]));
        // Too small for a slot, or no reply pool: zeros in their frame.
        assert!(outbox.alloc(&to, DType::U8, &[16]).is_none());
        drop((parts, inbox, outbox));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn envelopes_round_trip_and_reject_truncation_and_too_many_frames() {
        let body = vec![Frame::from("tag"), Frame::empty(), Frame::from(vec![7; 100])];
        let mut bytes = vec![0; envelope_len(&body, 1 << 20).unwrap()];
        encode_envelope(&body, &mut bytes);
        let back = decode_envelope(&bytes, 3).unwrap();
        assert!(back.iter().zip(&body).all(|(a, b)| a[..] == b[..]) && back.len() == 3);
        assert!(decode_envelope(&bytes, 2).is_none(), "more frames than allowed");
        assert_eq!(envelope_len(&body, bytes.len() - 1), None, "bigger than the slot");
        for n in 1..bytes.len() {
            let whole_frames = [7, 11].contains(&n); // cut between frames: a shorter body
            assert_eq!(decode_envelope(&bytes[..n], 3).is_some(), whole_frames, "prefix of {n} bytes");
        }
        assert_eq!(delivered(&[delivered_frame(9)]), Some(9));
        assert_eq!(delivered(&[delivered_frame(9), Frame::empty()]), None);
        assert_eq!(delivered(&[Frame::from(&delivered_frame(9)[..12])]), None);
        // Neither is taken for an error reply, nor an error reply for a confirmation.
        assert!(crate::mdp::parse_error(&[delivered_frame(9)]).is_none());
        assert_eq!(delivered(&crate::mdp::error_body("409", "x")), None);
        assert_eq!(delivered(&[Frame::from([crate::mdp::ERROR_MAGIC, &[0; 8]].concat())]), None);
    }

    /// A directory of its own (removed by the test), a client's side and a worker's side in it.
    fn client_and_worker(tag: &str) -> (std::path::PathBuf, ReplyInbox, ReplyOutbox) {
        let (dir, config) = crate::shm::test_dir(tag);
        (dir, ReplyInbox::new(config.clone()), ReplyOutbox::new(config))
    }

    fn reply_to(inbox: &mut ReplyInbox, attempt: u64) -> ReplyTo {
        ReplyTo::parse(&inbox.reply_to(attempt).unwrap()).unwrap()
    }
}
