//! Pools that grow: a sender's [`PoolSet`] and a receiver's [`PoolFollower`].
//!
//! A pool's slot size and count are fixed when it is created. A [`PoolSet`] lifts that limit for
//! one sender: it is a series of pools ("generations") named `BASE-gN`. When a buffer does not fit
//! the current generation's slots, or every slot is held, the set creates the next generation
//! (slot size: the next power of two that fits, as iceoryx2 does for dynamic payloads; or twice
//! the slots), bounded by a maximum slot size and a byte budget. Every buffer names the generation
//! it lies in, so the receiver's [`PoolFollower`] opens a generation on first use and follows
//! without being told.
//!
//! Old generations stay until their last slot is free again, then the set closes them (which
//! unlinks the name and tells followers to drop their handles); a mapping lives on while anyone
//! still holds one of its buffers. A follower removes the set's files when dropped, so a sender
//! killed with -9 leaves nothing once its peer is gone (and [`Pool::gc`] removes them too).
//!
//! ```
//! use shmpool::{Config, Mode, PoolFollower, PoolSet};
//! # let dir = std::env::temp_dir().join(format!("shmpool-grow-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let config = Config::new(4, 4096).mode(Mode::WorkQueue).directory(&dir);
//! let set = PoolSet::create("frames", &config, 1 << 20)?;     // slots grow up to 1 MiB
//! let follower = PoolFollower::new("frames", Some(&dir));      // usually in another process
//! let (generation, mut buf) = set.acquire(100_000, None)?.expect("fits the maximum");
//! assert_eq!(generation, 1);                                    // a 128 KiB generation was made
//! buf[..3].copy_from_slice(b"big");
//! buf.set_len(100_000)?;
//! buf.publish()?;
//! let got = follower.recv(generation, None)?;                    // opens BASE-g1 on first use
//! assert_eq!((&got[..3], got.len()), (&b"big"[..], 100_000));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), shmpool::Error>(())
//! ```

use super::{layout::PAGE, segment, slot_state, Pool};
use crate::config::{resolve_dir, Config};
use crate::consumer::{Consumer, ReadBuf};
use crate::producer::{Producer, WriteBuf};
use crate::sync::Ordering::Acquire;
use crate::{Error, Result};
use std::collections::btree_map::{BTreeMap, Entry};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The most generations a set makes (a generation number is one byte on the wire).
pub const MAX_GENERATIONS: u32 = 256;

/// The name of generation `generation` of the set `base`.
pub fn generation_name(base: &str, generation: u8) -> String {
    format!("{base}-g{generation}")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many slots of `pool` are not free (written, published or held).
fn in_use(pool: &Pool) -> u32 {
    let view = &pool.inner.view;
    (0..view.geometry.slot_count).filter(|&k| !slot_state::is_free(view.slot(k as usize).state.load(Acquire))).count()
        as u32
}

struct Generation {
    index: u8,
    pool: Pool,
    producer: Producer,
}

struct SetState {
    /// Live generations, oldest first; the last is the current one.
    gens: Vec<Arc<Generation>>,
    grown: u64,
}

/// A snapshot of a [`PoolSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetStats {
    /// The current generation's number, slot size and slot count.
    pub generation: u8,
    pub slot_size: usize,
    pub slots: u32,
    /// Generations alive (the current one and old ones with slots still held).
    pub live: usize,
    /// Bytes of slots of the live generations.
    pub bytes: u64,
    /// Generations created after the first.
    pub grown: u64,
    /// Slots of the live generations that are not free (being written, published or held).
    pub in_use: u32,
}

/// The sending side of pools that grow (see the [module docs](self)). `Send + Sync`.
pub struct PoolSet {
    base: String,
    template: Config,
    max_slot_size: usize,
    max_bytes: u64,
    /// Bytes of the first generation: later ones by size keep close to it in slot count.
    first_bytes: u64,
    state: Mutex<SetState>,
}

impl PoolSet {
    /// Creates generation 0 of the set `base` (named [`generation_name`]`(base, 0)`) from
    /// `config`; later generations copy its settings with other slot sizes and counts, slots up to
    /// `max_slot_size` bytes.
    pub fn create(base: &str, config: &Config, max_slot_size: usize) -> Result<PoolSet> {
        let pool = Pool::create(&generation_name(base, 0), config)?;
        PoolSet::adopt(base, pool, max_slot_size)
    }

    /// Makes `pool` (created or opened by the caller as generation 0 of `base`) the start of a set.
    pub fn adopt(base: &str, pool: Pool, max_slot_size: usize) -> Result<PoolSet> {
        segment::check_name(&generation_name(base, u8::MAX))?;
        let directory = pool.path().parent().map(Path::to_path_buf).unwrap_or_else(|| resolve_dir(None));
        let template = Config::new(pool.slots(), pool.slot_size())
            .mode(pool.mode())
            .overflow(pool.overflow())
            .meta_bytes(pool.meta_bytes())
            .lease(pool.lease())
            .directory(directory);
        let first_bytes = pool.slots() as u64 * pool.slot_size() as u64;
        let max_slot_size = max_slot_size.max(pool.slot_size());
        let producer = pool.producer()?;
        let gen = Arc::new(Generation { index: 0, pool, producer });
        Ok(PoolSet {
            base: base.to_string(),
            template,
            max_slot_size,
            max_bytes: first_bytes.max(max_slot_size as u64 * 2) * 4,
            first_bytes,
            state: Mutex::new(SetState { gens: vec![gen], grown: 0 }),
        })
    }

    /// Bounds the bytes of all live generations together (default: four times the larger of the
    /// first generation and two of the largest slots). Past it the set does not grow.
    pub fn set_max_bytes(&mut self, bytes: u64) {
        self.max_bytes = bytes;
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The largest buffer the set can hold.
    pub fn max_slot_size(&self) -> usize {
        self.max_slot_size
    }

    /// A free slot of at least `len` bytes and its generation: from the current generation (waiting
    /// up to `wait` for one to be freed when `len` fits it), else from a new one. `None` when `len`
    /// exceeds the maximum slot size or the budget allows no new generation.
    pub fn acquire(&self, len: usize, wait: Option<Duration>) -> Result<Option<(u8, WriteBuf)>> {
        if len > self.max_slot_size {
            return Ok(None);
        }
        let (current, old) = {
            let st = lock(&self.state);
            (st.gens.last().expect("a set always has a generation").clone(), st.gens.len() > 1)
        };
        if len <= current.pool.slot_size() {
            let got = match wait {
                Some(t) => match current.producer.acquire(Some(t)) {
                    Ok(w) => Some(w),
                    Err(Error::Timeout) => None,
                    Err(e) => return Err(e),
                },
                None => current.producer.try_acquire()?,
            };
            if let Some(w) = got {
                if old {
                    // Old generations go as soon as they are idle, not only at the next growth.
                    self.trim();
                }
                return Ok(Some((current.index, w)));
            }
        }
        drop(current);
        self.grow(len)
    }

    /// Makes a generation that has a free slot for `len` bytes (unless another thread just did)
    /// and takes the slot.
    fn grow(&self, len: usize) -> Result<Option<(u8, WriteBuf)>> {
        let mut st = lock(&self.state);
        Self::retire_idle(&mut st);
        let current = st.gens.last().expect("a set always has a generation").clone();
        if len <= current.pool.slot_size() {
            if let Some(w) = current.producer.try_acquire()? {
                return Ok(Some((current.index, w)));
            }
        }
        let next = u32::from(current.index) + 1;
        if next >= MAX_GENERATIONS {
            return Ok(None);
        }
        let (slot_size, slots) = if len > current.pool.slot_size() {
            let size = len.checked_next_power_of_two().unwrap_or(usize::MAX).min(self.max_slot_size).max(PAGE);
            let slots = (self.first_bytes / size as u64).clamp(2, u64::from(self.template.slots.max(2)));
            (size, slots as u32)
        } else {
            (current.pool.slot_size(), (current.pool.slots() * 2).min(super::layout::MAX_SLOTS))
        };
        let live: u64 = st.gens.iter().map(|g| g.pool.slots() as u64 * g.pool.slot_size() as u64).sum();
        let room = self.max_bytes.saturating_sub(live) / slot_size as u64;
        let slots = slots.min(u32::try_from(room).unwrap_or(u32::MAX));
        if slots == 0 {
            return Ok(None);
        }
        let mut config = self.template.clone();
        config.slots = slots;
        config.slot_size = slot_size;
        let index = next as u8;
        let pool = match Pool::create(&generation_name(&self.base, index), &config) {
            Ok(p) => p,
            // A full file system is a limit like the budget: the caller sends some other way.
            Err(Error::InsufficientSpace { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let producer = pool.producer()?;
        let gen = Arc::new(Generation { index, pool, producer });
        st.gens.push(gen.clone());
        st.grown += 1;
        Ok(gen.producer.try_acquire()?.map(|w| (index, w)))
    }

    /// Closes old generations that nobody uses any more: every slot free and no thread waiting on
    /// them. Closing unlinks the name and tells followers to let go.
    fn retire_idle(st: &mut SetState) {
        let last = st.gens.len() - 1;
        let mut k = 0;
        st.gens.retain(|g| {
            k += 1;
            let old = k - 1 < last;
            let retire = old && Arc::strong_count(g) == 1 && in_use(&g.pool) == 0;
            if retire {
                g.pool.shutdown();
            }
            !retire
        });
    }

    /// The pool of live generation `generation` (to resolve references to its slots).
    pub fn pool(&self, generation: u8) -> Option<Pool> {
        lock(&self.state).gens.iter().find(|g| g.index == generation).map(|g| g.pool.clone())
    }

    /// Retires idle old generations now (acquiring does it too, when it grows).
    pub fn trim(&self) {
        Self::retire_idle(&mut lock(&self.state));
    }

    pub fn stats(&self) -> SetStats {
        let st = lock(&self.state);
        let current = st.gens.last().expect("a set always has a generation");
        SetStats {
            generation: current.index,
            slot_size: current.pool.slot_size(),
            slots: current.pool.slots(),
            live: st.gens.len(),
            bytes: st.gens.iter().map(|g| g.pool.slots() as u64 * g.pool.slot_size() as u64).sum(),
            grown: st.grown,
            in_use: st.gens.iter().map(|g| in_use(&g.pool)).sum(),
        }
    }
}

impl std::fmt::Debug for PoolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolSet").field("base", &self.base).field("stats", &self.stats()).finish()
    }
}

struct Followed {
    pool: Pool,
    consumer: Option<Consumer>,
}

/// The receiving side of a [`PoolSet`]: opens each generation on first use, receives from it and
/// drops its handles once the sender has retired it. `Send + Sync`.
pub struct PoolFollower {
    base: String,
    directory: PathBuf,
    gens: Mutex<BTreeMap<u8, Followed>>,
}

impl PoolFollower {
    /// Follows the set `base` in `directory` (default: `$SHMPOOL_DIR` or `/dev/shm`).
    pub fn new(base: &str, directory: Option<&Path>) -> PoolFollower {
        PoolFollower { base: base.to_string(), directory: resolve_dir(directory), gens: Mutex::new(BTreeMap::new()) }
    }

    /// Uses `pool`, already open, as generation `generation` (e.g. one whose name is gone).
    pub fn adopt(&self, generation: u8, pool: Pool) {
        lock(&self.gens).insert(generation, Followed { pool, consumer: None });
    }

    fn with<T>(&self, generation: u8, f: impl FnOnce(&mut Followed) -> Result<T>) -> Result<T> {
        let mut gens = lock(&self.gens);
        // The sender closes a generation only when nothing in it is pending or held.
        gens.retain(|_, g| !g.pool.is_closed());
        let followed = match gens.entry(generation) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let pool = Pool::open_in(&generation_name(&self.base, generation), Some(&self.directory))?;
                e.insert(Followed { pool, consumer: None })
            }
        };
        f(followed)
    }

    /// The pool of generation `generation`, opened if need be.
    pub fn pool(&self, generation: u8) -> Result<Pool> {
        self.with(generation, |g| Ok(g.pool.clone()))
    }

    /// Receives the next buffer of generation `generation` (work-queue sets: the one the sender
    /// published there next), waiting up to `timeout`.
    pub fn recv(&self, generation: u8, timeout: Option<Duration>) -> Result<ReadBuf> {
        self.with(generation, |g| {
            if g.consumer.is_none() {
                g.consumer = Some(g.pool.consumer()?);
            }
            g.consumer.as_mut().expect("set above").recv(timeout)
        })
    }

    /// Generations this side has open.
    pub fn open_generations(&self) -> Vec<u8> {
        lock(&self.gens).keys().copied().collect()
    }
}

impl Drop for PoolFollower {
    /// Removes the set's names: a sender that died cannot; a live one has closed the connection
    /// this follower served (its mappings stay valid either way).
    fn drop(&mut self) {
        lock(&self.gens).clear();
        let prefix = format!("{}{}-g", segment::PREFIX, self.base);
        let Ok(entries) = std::fs::read_dir(&self.directory) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else { continue };
            if rest.parse::<u8>().is_ok() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

impl std::fmt::Debug for PoolFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolFollower").field("base", &self.base).field("open", &self.open_generations()).finish()
    }
}
