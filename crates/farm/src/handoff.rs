//! Requests handed to a co-located worker through a pool of its own instead of ZeroMQ: one
//! libzmq hop (three thread wake-ups) less on the way of every request.
//!
//! A worker proven to see the broker's directory creates a *request pool* at each connection
//! (`farm-<pid>-<random>-q`, work-queue mode, the worker its only consumer) and offers it after
//! the proof: `["queue", pool name]` to `mmi.shmpool`. The broker opens it as a producer (only for
//! a peer of its own directory: it cannot open the pools of another site) and answers "200". For
//! each request it then gives that worker, it publishes an envelope in a slot (the client's
//! address, then the body's frames, encoded as a reply envelope, [`crate::reply`]) instead of
//! sending a REQUEST; the worker waits on its socket and on the pool's readiness descriptor at
//! once. READY, heartbeats, REPLY and DISCONNECT stay on ZeroMQ, and so does a request that does
//! not fit in a slot or finds none free. A plain MDP broker answers "501" to the offer, and
//! nothing changes.
//!
//! The pool lives as long as the connection: a reconnected worker offers a new one, so a request
//! handed to an earlier session is never mistaken for one of the current session. A worker that
//! dies takes its pool with it (the broker removes the name a killed worker left when it forgets
//! the worker), and a request in it is served again by the client's retry (or re-queued by the
//! broker), as one sent to a dead worker over ZeroMQ is.

use crate::mdp::Limits;
use crate::reply::{decode_envelope, encode_envelope, envelope_len};
use crate::shm::{own_receiving_pool, ready_fd, ShmConfig, POOL_PREFIX};
use crate::transport::Frame;
use shmpool::{Consumer, Pool, Producer};
use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

/// The first frame of the offer of a request pool (on `mmi.shmpool`).
pub const OFFER: &[u8] = b"queue";
/// Suffix of request pools' names.
const SUFFIX: &str = "-q";
/// Slots of a request pool, and their size: requests hold descriptors and small parts.
const SLOTS: u32 = 16;
const SLOT_SIZE: usize = 64 << 10;

/// The worker's side: its request pool, for one connection.
pub struct RequestPool {
    pool: Pool,
    consumer: Consumer,
}

impl RequestPool {
    /// A new request pool in `config`'s directory (`None` if it cannot be made).
    pub fn create(config: &ShmConfig) -> Option<RequestPool> {
        let config = ShmConfig { slots: SLOTS, slot_size: SLOT_SIZE, ..config.clone() };
        let (pool, consumer) = own_receiving_pool(&config, SUFFIX, |c| c)?;
        Some(RequestPool { pool, consumer })
    }

    /// The pool's name, to offer to the broker.
    pub fn name(&self) -> &str {
        self.pool.name()
    }

    /// A descriptor that becomes readable when a request may have arrived.
    pub fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        ready_fd(&self.consumer)
    }

    /// The next request handed over (client address, body), if one is there; when none is,
    /// [`RequestPool::ready_fd`] is armed. Malformed envelopes (from any writer of the pool: it
    /// is 0644, so only processes of this user) are dropped.
    pub fn take(&mut self, limits: &Limits) -> Option<(Vec<u8>, Vec<Frame>)> {
        while let Ok(Some(slot)) = self.consumer.try_recv() {
            let Some(mut frames) = decode_envelope(&slot, limits.max_frames.saturating_add(1)) else { continue };
            if frames.is_empty() || frames.iter().map(|f| f.len()).sum::<usize>() > limits.max_bytes {
                continue;
            }
            let client = frames.remove(0).to_vec();
            return Some((client, frames));
        }
        None
    }
}

/// The broker's side: the request pools offered by workers of its directory, by peer.
pub struct RequestPools {
    dir: PathBuf,
    pools: HashMap<Vec<u8>, (Pool, Producer)>,
    max: usize,
}

impl RequestPools {
    /// At most `max` pools are kept (one per registered worker).
    pub fn new(dir: PathBuf, max: usize) -> RequestPools {
        RequestPools { dir, pools: HashMap::new(), max }
    }

    /// Takes `peer`'s offer of the pool `name`: opened as a producer if it is a farm request
    /// pool; the answer to send.
    pub fn offer(&mut self, peer: &[u8], name: &[u8]) -> Frame {
        let name = std::str::from_utf8(name).ok().filter(|n| n.starts_with(POOL_PREFIX) && n.ends_with(SUFFIX));
        if self.pools.len() >= self.max && !self.pools.contains_key(peer) {
            return Frame::from("503");
        }
        match name.and_then(|name| open(&self.dir, name)) {
            Some(pool) => {
                self.pools.insert(peer.to_vec(), pool);
                Frame::from("200")
            }
            None => Frame::from("404"),
        }
    }

    /// Hands a request for `client` to `worker` through its pool; false if it has none, or the
    /// request does not fit or finds no free slot (then it goes as a REQUEST).
    pub fn hand_over(&mut self, worker: &[u8], client: &[u8], body: &[Frame]) -> bool {
        let Some((pool, producer)) = self.pools.get(worker) else { return false };
        let frames: Vec<&[u8]> = std::iter::once(client).chain(body.iter().map(|f| &f[..])).collect();
        let Some(len) = envelope_len(&frames, pool.slot_size()) else { return false };
        let Ok(Some(mut slot)) = producer.try_acquire() else { return false };
        encode_envelope(&frames, &mut slot[..len]);
        slot.set_len(len).is_ok() && slot.publish().is_ok()
    }

    /// Forgets the pool of `peer` (a removed worker).
    pub fn forget(&mut self, peer: &[u8]) {
        if let Some((pool, _)) = self.pools.remove(peer) {
            unlink_if_orphaned(&pool);
        }
    }

    /// Forgets the pools of peers that `known` no longer is.
    pub fn retain(&mut self, known: impl Fn(&[u8]) -> bool) {
        self.pools.retain(|peer, (pool, _)| {
            let keep = known(peer);
            if !keep {
                unlink_if_orphaned(pool);
            }
            keep
        });
    }
}

/// Removes the name of a request pool whose worker was killed before it could (a live worker
/// removes its own when its connection ends).
fn unlink_if_orphaned(pool: &Pool) {
    if !pool.stats().creator_alive {
        let _ = std::fs::remove_file(pool.path());
    }
}

fn open(dir: &Path, name: &str) -> Option<(Pool, Producer)> {
    let pool = Pool::open_in(name, Some(dir)).ok()?;
    let producer = pool.producer().ok()?;
    Some((pool, producer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_handed_over_arrive_whole_and_bad_offers_or_envelopes_are_refused() {
        let (dir, config) = crate::shm::test_dir("handoff");
        let limits = Limits::default();
        let mut worker = RequestPool::create(&config).unwrap();
        let mut broker = RequestPools::new(dir.clone(), 2);
        assert!(!broker.hand_over(b"w", b"c", &[]), "no pool offered yet");
        assert_eq!(&broker.offer(b"w", b"farm-1-x")[..], b"404", "not a request pool");
        assert_eq!(&broker.offer(b"w", b"farm-1-gone-q")[..], b"404", "no such pool");
        assert_eq!(&broker.offer(b"w", worker.name().as_bytes())[..], b"200");
        assert!(worker.take(&limits).is_none());
        let body = [Frame::from("name"), Frame::from(vec![7; 1000])];
        assert!(broker.hand_over(b"w", b"client-1", &body));
        let (client, got) = worker.take(&limits).unwrap();
        assert_eq!((&client[..], got.len(), &got[1][..]), (&b"client-1"[..], 2, &[7; 1000][..]));
        // Too big for a slot: it goes as a REQUEST.
        assert!(!broker.hand_over(b"w", b"client-1", &[Frame::from(vec![0; SLOT_SIZE])]));
        // Another writer's garbage is dropped, and the next request still arrives.
        let pool = Pool::open_in(worker.name(), Some(&dir)).unwrap();
        let producer = pool.producer().unwrap();
        let mut slot = producer.acquire(None).unwrap();
        slot[..3].copy_from_slice(&[9, 0, 0]);
        slot.set_len(3).unwrap();
        slot.publish().unwrap();
        assert!(broker.hand_over(b"w", b"client-2", &body));
        assert_eq!(worker.take(&limits).map(|(c, _)| c), Some(b"client-2".to_vec()));
        broker.forget(b"w");
        assert!(!broker.hand_over(b"w", b"client-3", &body), "forgotten with the worker");
        drop((producer, pool, worker, broker));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
