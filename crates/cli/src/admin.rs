//! Pool management: `create`, `ls`, `inspect`, `gc`, `rm` (stores: see `stores.rs`).

use crate::CliResult;
use clap::Args;
use serde::Serialize;
use shmpool::{Config, Mode, Overflow, Pool};
use std::path::Path;

#[derive(Args)]
pub struct CreateArgs {
    /// Pool name (A-Z a-z 0-9 . _ -).
    name: String,
    /// Number of slots.
    #[arg(long)]
    slots: u32,
    /// Bytes per slot (rounded up to 4096).
    #[arg(long, value_name = "BYTES")]
    slot_size: usize,
    /// broadcast: every consumer sees every buffer; workqueue: each buffer goes to one consumer.
    #[arg(long, default_value = "broadcast")]
    mode: Mode,
    /// block: producers wait for a free slot; drop-oldest: they reclaim the oldest unread buffer.
    #[arg(long, default_value = "block")]
    overflow: Overflow,
    /// Bytes of user metadata per slot.
    #[arg(long, value_name = "B", default_value_t = Config::default().meta_bytes)]
    meta_bytes: usize,
}

#[derive(Args)]
pub struct LsArgs {
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
    /// List the stores of named variables only.
    #[arg(long)]
    stores: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Pool name (with --store: the job of a store).
    name: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Show the variables of the store of job NAME.
    #[arg(long)]
    store: bool,
}

#[derive(Args)]
pub struct RmArgs {
    /// Pool name.
    name: String,
}

/// A pool configuration in `dir` (or the default directory).
pub fn config_in(dir: Option<&Path>, slots: u32, slot_size: usize) -> Config {
    let config = Config::new(slots, slot_size);
    match dir {
        Some(dir) => config.directory(dir),
        None => config,
    }
}

pub fn create(dir: Option<&Path>, args: &CreateArgs) -> CliResult {
    let config =
        config_in(dir, args.slots, args.slot_size).mode(args.mode).overflow(args.overflow).meta_bytes(args.meta_bytes);
    let pool = Pool::create(&args.name, &config)?;
    pool.persist();
    println!("{}", pool.path().display());
    Ok(())
}

#[derive(Serialize)]
struct ListedPool {
    name: String,
    path: String,
    size: u64,
    in_use: bool,
}

pub fn ls(dir: Option<&Path>, args: &LsArgs) -> CliResult {
    if args.stores {
        return crate::stores::ls(dir, args.json, false);
    }
    let pools: Vec<ListedPool> = Pool::list(dir)?
        .into_iter()
        .map(|p| ListedPool { name: p.name, path: p.path.display().to_string(), size: p.size, in_use: p.in_use })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string(&pools)?);
        return Ok(());
    }
    if pools.is_empty() {
        println!("no pools");
    }
    for p in &pools {
        let state = if p.in_use { "in use" } else { "unused" };
        println!("{:<32} {:>14} bytes  {:<7} {}", p.name, p.size, state, p.path);
    }
    crate::stores::ls(dir, false, true)
}

#[derive(Serialize)]
struct PeerReport {
    role: &'static str,
    alive: bool,
    pid: u32,
    place: usize,
    count: u64,
    dropped: u64,
    waiting: bool,
}

#[derive(Serialize)]
struct PoolReport {
    name: String,
    path: String,
    slots: u32,
    slot_size: usize,
    meta_bytes: usize,
    mode: &'static str,
    overflow: &'static str,
    lease_ms: u128,
    free: u32,
    writing: u32,
    ready: u32,
    reading: u32,
    consumers: u32,
    producers: u32,
    published: u64,
    dropped: u64,
    closed: bool,
    creator_alive: bool,
    producer_alive: bool,
    persistent: bool,
    orphaned: bool,
    waiters: u32,
    wakes: u64,
    spinners: u32,
    spin_refused: u64,
    peers: Vec<PeerReport>,
}

fn report(pool: &Pool) -> PoolReport {
    let stats = pool.stats();
    let peers = stats
        .peers
        .iter()
        .map(|p| PeerReport {
            role: p.role.name(),
            alive: p.alive,
            pid: p.pid,
            place: p.place,
            count: p.count,
            dropped: p.dropped,
            waiting: p.waiting,
        })
        .collect();
    PoolReport {
        name: pool.name().to_string(),
        path: pool.path().display().to_string(),
        slots: stats.slots,
        slot_size: pool.slot_size(),
        meta_bytes: pool.meta_bytes(),
        mode: pool.mode().name(),
        overflow: pool.overflow().name(),
        lease_ms: pool.lease().as_millis(),
        free: stats.free,
        writing: stats.writing,
        ready: stats.ready,
        reading: stats.reading,
        consumers: stats.consumers,
        producers: stats.producers,
        published: stats.published,
        dropped: stats.dropped,
        closed: stats.closed,
        creator_alive: stats.creator_alive,
        producer_alive: stats.producer_alive,
        persistent: stats.persistent,
        orphaned: stats.orphaned,
        waiters: stats.waiters,
        wakes: stats.wakes,
        spinners: stats.spinners,
        spin_refused: stats.spin_refused,
        peers,
    }
}

pub fn inspect(dir: Option<&Path>, args: &InspectArgs) -> CliResult {
    if args.store {
        return crate::stores::inspect(dir, &args.name, args.json);
    }
    let pool = Pool::open_in(&args.name, dir)?;
    let r = report(&pool);
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!("pool {} ({})", r.name, r.path);
    println!(
        "  {} slots x {} bytes, {}, overflow {}, {} metadata bytes per slot",
        r.slots, r.slot_size, r.mode, r.overflow, r.meta_bytes
    );
    println!("  slots: {} free, {} writing, {} ready, {} reading", r.free, r.writing, r.ready, r.reading);
    println!("  published {}, dropped {}, closed: {}", r.published, r.dropped, if r.closed { "yes" } else { "no" });
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!(
        "  creator alive: {}, live producer: {}, persistent: {}, orphaned: {}",
        yes(r.creator_alive),
        yes(r.producer_alive),
        yes(r.persistent),
        yes(r.orphaned)
    );
    println!(
        "  {} producer(s), {} consumer(s), {} blocked, {} spinning; {} wake system calls, {} spins refused",
        r.producers, r.consumers, r.waiters, r.spinners, r.wakes, r.spin_refused
    );
    for p in &r.peers {
        let alive = if p.alive { "alive" } else { "DEAD" };
        println!(
            "    {:<8} place {:>2}  pid {:>7}  {:<5}  count {:>10}  dropped {}",
            p.role, p.place, p.pid, alive, p.count, p.dropped
        );
    }
    Ok(())
}

pub fn gc(dir: Option<&Path>) -> CliResult {
    let removed = Pool::gc(dir)?;
    for name in &removed {
        println!("removed {name}");
    }
    if crate::stores::gc(dir)? == 0 && removed.is_empty() {
        println!("nothing to remove");
    }
    Ok(())
}

pub fn rm(dir: Option<&Path>, args: &RmArgs) -> CliResult {
    Pool::remove(&args.name, dir)?;
    println!("removed {}", args.name);
    Ok(())
}
