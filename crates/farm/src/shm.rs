//! Arrays through shared memory between peers of one host: a sender writes an array part into a
//! slot of its own shmpool pool, keeps the slot until the exchange ends, and sends a descriptor
//! frame instead of the data; a receiver on the same host maps the pool and reads the slot in
//! place. Descriptors only ever go to peers that proved they share the pool directory
//! ([`crate::colocation`]); everyone else gets bytes.
//!
//! A descriptor frame is `DESC_MAGIC`, dtype (u8), ndim (u8), shape (u64 LE each), slot (u32 LE),
//! offset (u64 LE), length (u64 LE), then the pool's name (UTF-8).

use crate::part::{array_bytes, Array, Part, Payload};
use crate::transport::Frame;
use shmpool::{Config, Consumer, DType, Mode, Pool, Producer, WriteBuf, MAX_DIMS};
use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::time::Duration;

/// First bytes of a descriptor frame.
pub const DESC_MAGIC: &[u8] = b"\xffSPD1";
/// Prefix of the senders' pools: a descriptor naming any other pool (another application's, in
/// the same directory) is refused.
pub const POOL_PREFIX: &str = "farm-";

/// Shared-memory settings of a client or worker.
#[derive(Debug, Clone)]
pub struct ShmConfig {
    /// Use shared memory at all (after the co-location proof).
    pub enabled: bool,
    /// Array parts of at least this many bytes travel as descriptors; smaller ones inline.
    pub threshold: usize,
    /// Slots of the sender's pool (arrays of one request in flight at a time).
    pub slots: u32,
    /// Bytes per slot; bigger arrays travel inline.
    pub slot_size: usize,
    /// Directory of the pools and of the broker's challenge (`None`: `$SHMPOOL_DIR`, else `/dev/shm`).
    pub directory: Option<PathBuf>,
}

impl Default for ShmConfig {
    fn default() -> Self {
        ShmConfig { enabled: true, threshold: 4096, slots: 8, slot_size: 4 << 20, directory: None }
    }
}

impl ShmConfig {
    /// The directory used: explicit, else `$SHMPOOL_DIR`, else `/dev/shm` (as the core does).
    pub fn dir(&self) -> PathBuf {
        resolve_dir(self.directory.clone())
    }
}

/// The pool directory: `explicit`, else `$SHMPOOL_DIR`, else `/dev/shm`.
pub fn resolve_dir(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os(shmpool::DIR_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(shmpool::DEFAULT_DIR))
}

/// A parsed descriptor (untrusted until the receiver maps it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub slot: u32,
    pub offset: u64,
    pub len: u64,
    pub pool: String,
}

impl Descriptor {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = DESC_MAGIC.to_vec();
        out.push(self.dtype.code() as u8);
        out.push(self.shape.len() as u8);
        for d in &self.shape {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&self.slot.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(self.pool.as_bytes());
        out
    }

    /// Parses a descriptor frame; `None` if it is not one or is inconsistent.
    pub fn parse(frame: &[u8]) -> Option<Descriptor> {
        let rest = frame.strip_prefix(DESC_MAGIC)?;
        let [code, ndim, rest @ ..] = rest else { return None };
        let dtype = DType::from_code(u32::from(*code))?;
        let ndim = usize::from(*ndim);
        if ndim > MAX_DIMS || rest.len() < ndim * 8 + 20 {
            return None;
        }
        let u64_at = |i: usize| rest.get(i..i + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        let shape = (0..ndim).map(|i| u64_at(i * 8)).collect::<Option<Vec<u64>>>()?;
        let at = ndim * 8;
        let slot = u32::from_le_bytes(rest.get(at..at + 4)?.try_into().ok()?);
        let (offset, len) = (u64_at(at + 4)?, u64_at(at + 12)?);
        let pool = std::str::from_utf8(rest.get(at + 20..)?).ok()?.to_string();
        (array_bytes(dtype, &shape)? as u64 == len && !pool.is_empty()).then_some(Descriptor {
            dtype,
            shape,
            slot,
            offset,
            len,
            pool,
        })
    }
}

/// Whether a message body holds frames of shared memory: descriptors or a reply-to
/// ([`crate::reply`]).
pub fn has_descriptors<F: AsRef<[u8]>>(body: &[F]) -> bool {
    body.iter().any(|f| crate::reply::is_shm_frame(f.as_ref()))
}

/// The sender's side: a pool of its own, created at the first shared part.
pub struct Outbox {
    config: ShmConfig,
    producer: Option<(Pool, Producer)>,
}

/// A part placed in the sender's pool: the descriptor to send and the slot, kept until the
/// exchange ends (`None`: the part holds its slot itself, [`Payload::Writable`]).
pub struct Placed {
    pub descriptor: Vec<u8>,
    _slot: Option<WriteBuf>,
}

impl Outbox {
    pub fn new(config: ShmConfig) -> Outbox {
        Outbox { config, producer: None }
    }

    /// Copies `array` into a free slot, if it is big enough to be worth it, fits, and a slot is
    /// free; an array already written in a slot of this pool is described as it is.
    pub fn place(&mut self, array: &Array) -> Option<Placed> {
        let len = array.data.len();
        if !self.config.enabled || len < self.config.threshold || len > self.config.slot_size {
            return None;
        }
        if let Payload::Writable { buf, pool, .. } = &array.data {
            let ours = self.pool().is_some_and(|p| p.name() == pool.name());
            return ours.then(|| Placed { descriptor: self.describe(array, buf.slot_index()), _slot: None });
        }
        let mut slot = self.producer()?.acquire(Some(Duration::ZERO)).ok()?;
        slot[..len].copy_from_slice(&array.data);
        Some(Placed { descriptor: self.describe(array, slot.slot_index()), _slot: Some(slot) })
    }

    /// An array of `dtype` and `shape` in a free slot, to be written in place and sent without a
    /// copy; `None` if shared memory is off, the array is small or too big, or no slot is free.
    pub fn alloc(&mut self, dtype: DType, shape: &[u64]) -> Option<Array> {
        let len = array_bytes(dtype, shape)?;
        if !self.config.enabled || len < self.config.threshold || len > self.config.slot_size || shape.len() > MAX_DIMS
        {
            return None;
        }
        let buf = self.producer()?.acquire(Some(Duration::ZERO)).ok()?;
        let pool = self.pool()?.clone();
        Some(Array { dtype, shape: shape.to_vec(), data: Payload::Writable { buf, len, pool } })
    }

    /// The descriptor of `array` in slot `slot` of this pool.
    fn describe(&self, array: &Array, slot: usize) -> Vec<u8> {
        let pool = self.pool().map(|p| p.name().to_string()).unwrap_or_default();
        let len = array.data.len() as u64;
        Descriptor { dtype: array.dtype, shape: array.shape.clone(), slot: slot as u32, offset: 0, len, pool }.encode()
    }

    /// The producer of this sender's pool, created at the first use.
    fn producer(&mut self) -> Option<&Producer> {
        if self.producer.is_none() {
            let pool = own_pool(&self.config, "", |c| c)?;
            let producer = pool.producer().ok()?;
            self.producer = Some((pool, producer));
        }
        self.producer.as_ref().map(|(_, producer)| producer)
    }

    /// The pool, once created (for statistics).
    pub fn pool(&self) -> Option<&Pool> {
        self.producer.as_ref().map(|(p, _)| p)
    }
}

/// A new pool of this peer's own, for peers of its host to read: `farm-<pid>-<random><suffix>`
/// (peers recognise such names, and unlink those of dead owners), work-queue mode, mode 0644
/// (co-located peers of other users may read it, not write it), `tune` for the rest.
pub fn own_pool(config: &ShmConfig, suffix: &str, tune: impl FnOnce(Config) -> Config) -> Option<Pool> {
    let name = format!("{POOL_PREFIX}{}-{}{suffix}", std::process::id(), crate::colocation::random_hex(6).ok()?);
    let base = Config::new(config.slots, config.slot_size).mode(Mode::WorkQueue).directory(config.dir());
    Pool::create(&name, &tune(base).permissions(0o644)).ok()
}

/// A pool of this peer's own that only it receives from (a reply or request pool), and its
/// consumer, whose readiness descriptor is opened before the first `try_recv`, so that each one
/// finding nothing arms it ([`ready_fd`]).
pub fn own_receiving_pool(
    config: &ShmConfig,
    suffix: &str,
    tune: impl FnOnce(Config) -> Config,
) -> Option<(Pool, Consumer)> {
    let pool = own_pool(config, suffix, tune)?;
    let consumer = pool.consumer().ok()?;
    consumer.ready_fd().ok()?;
    Some((pool, consumer))
}

/// The readiness descriptor of `consumer`: readable when a slot may have arrived.
pub fn ready_fd(consumer: &Consumer) -> Option<BorrowedFd<'_>> {
    let fd = consumer.ready_fd().ok()?;
    // SAFETY: a consumer keeps its readiness descriptor open, and the same, for its whole life;
    // the borrow of `consumer` keeps it alive.
    Some(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Pools of other peers opened by name, each with what this peer uses it through (a bounded
/// cache): a miss first forgets the pools whose owner `alive` says is gone, and unlinks the name
/// such an owner, killed before it could, left behind (names are the owners' own: `farm-…`).
pub struct PoolCache<T> {
    dir: PathBuf,
    alive: fn(&Pool) -> bool,
    pools: HashMap<String, (Pool, T)>,
}

/// Most peers' pools a peer keeps open (mappings in use stay alive through their payloads).
const MAX_OPEN_POOLS: usize = 64;

impl<T> PoolCache<T> {
    pub fn new(dir: PathBuf, alive: fn(&Pool) -> bool) -> Self {
        PoolCache { dir, alive, pools: HashMap::new() }
    }

    /// The pool `name` and its companion, opened (then `attach`ed) on a miss.
    pub fn get(&mut self, name: &str, attach: impl FnOnce(&Pool) -> Result<T, String>) -> Result<&(Pool, T), String> {
        if !self.pools.contains_key(name) {
            let pool = Pool::open_in(name, Some(&self.dir)).map_err(|e| format!("pool {name}: {e}"))?;
            let with = attach(&pool)?;
            self.prune();
            if self.pools.len() >= MAX_OPEN_POOLS {
                self.pools.clear();
            }
            self.pools.insert(name.to_string(), (pool, with));
        }
        self.pools.get(name).ok_or_else(|| format!("pool {name}: not cached"))
    }

    fn prune(&mut self) {
        let alive = self.alive;
        self.pools.retain(|_, (pool, _)| {
            let alive = alive(pool);
            if !alive {
                let _ = std::fs::remove_file(pool.path());
            }
            alive
        });
    }
}

/// The receiver's side: the senders' pools it opened.
pub struct Inbox {
    pools: PoolCache<()>,
}

impl Inbox {
    pub fn new(dir: PathBuf) -> Inbox {
        // A sender's pool is worth keeping while it has a live producer (its mapping would keep the
        // memory otherwise).
        let alive = |pool: &Pool| pool.stats().peers.iter().any(|p| p.role == shmpool::Role::Producer && p.alive);
        Inbox { pools: PoolCache::new(dir, alive) }
    }

    /// Maps the part a descriptor frame names: an array whose data is read in place.
    pub fn map(&mut self, frame: &[u8]) -> Result<Part, String> {
        let d = Descriptor::parse(frame).ok_or("a malformed descriptor")?;
        if !d.pool.starts_with(POOL_PREFIX) {
            return Err(format!("a descriptor names pool {:?}, not a farm sender's", d.pool));
        }
        let pool = self.pools.get(&d.pool, |_| Ok(()))?.0.clone();
        pool.slot_region(d.slot, d.offset, d.len).map_err(|e| format!("pool {}: {e}", d.pool))?;
        Ok(Part::Array(Array {
            dtype: d.dtype,
            shape: d.shape,
            data: Payload::Shared { pool, slot: d.slot, offset: d.offset, len: d.len },
        }))
    }

    /// The array frame (inline bytes) a descriptor frame stands for: the copy made on a hop to a
    /// peer that cannot map the pool.
    pub fn inline(&mut self, frame: &[u8]) -> Result<Frame, String> {
        Ok(self.map(frame)?.to_frame())
    }
}

/// A directory of its own for a unit test (which removes it), and a configuration using it.
#[cfg(test)]
pub(crate) fn test_dir(tag: &str) -> (PathBuf, ShmConfig) {
    let dir = std::env::temp_dir().join(format!("shmpool-farm-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = ShmConfig { directory: Some(dir.clone()), ..ShmConfig::default() };
    (dir, config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_forget_the_pools_of_senders_that_are_gone() {
        let (dir, config) = test_dir("prune");
        let array = |n: u8| Array { dtype: DType::U8, shape: vec![8192], data: Payload::Owned(vec![n; 8192]) };
        let mut inbox = Inbox::new(dir.clone());
        let mut first = Outbox::new(config.clone());
        let placed = first.place(&array(1)).unwrap();
        assert_eq!(inbox.map(&placed.descriptor).unwrap().data(), &[1; 8192][..]);
        drop(placed);
        drop(first); // the sender goes away (its producer with it)
        let mut second = Outbox::new(config);
        let placed = second.place(&array(2)).unwrap();
        assert_eq!(inbox.map(&placed.descriptor).unwrap().data(), &[2; 8192][..]);
        assert_eq!(inbox.pools.pools.len(), 1, "the first sender's pool is still cached");
        // Another application's pool in the same directory is out of reach.
        let other = Pool::create("not-farm", &Config::new(1, 4096).directory(&dir)).unwrap();
        let d = Descriptor { dtype: DType::U8, shape: vec![8], slot: 0, offset: 0, len: 8, pool: other.name().into() };
        assert!(inbox.map(&d.encode()).is_err());
        drop((placed, second));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn descriptors_round_trip_and_reject_inconsistency() {
        let d = Descriptor { dtype: DType::F32, shape: vec![2, 3], slot: 7, offset: 0, len: 24, pool: "p".into() };
        let bytes = d.encode();
        assert_eq!(Descriptor::parse(&bytes), Some(d.clone()));
        for n in 0..bytes.len() {
            assert_eq!(Descriptor::parse(&bytes[..n]), None, "prefix of {n} bytes");
        }
        let wrong_len = Descriptor { len: 25, ..d.clone() }.encode();
        assert_eq!(Descriptor::parse(&wrong_len), None);
        let no_name = Descriptor { pool: String::new(), ..d }.encode();
        assert_eq!(Descriptor::parse(&no_name), None);
    }
}
