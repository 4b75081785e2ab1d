//! `shmpool chaos NAME`: crash recovery checked from outside. Four pools (every mode with every
//! overflow policy) each get a creator, a second producer, a fast and a slow consumer, and the
//! directory a garbage collector; all are processes of this binary. Random peers are killed with
//! SIGKILL or SIGTERM (and replaced at once, so later kills land during create, open, gc and
//! creator restarts) or frozen with SIGSTOP and thawed with SIGCONT. Afterwards the survivors
//! must still make progress, and once every peer is gone each pool must have every slot free and
//! no waiter registered, and `gc` must leave no file.

mod peer;
mod rng;

pub use peer::{run as peer, PeerArgs};

use crate::{CliResult, Failure};
use clap::Args;
use rng::Rng;
use shmpool::{Mode, Overflow, Pool};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ChaosArgs {
    /// Prefix of the pools' names (NAME-bb, NAME-bd, NAME-wb, NAME-wd).
    name: String,
    /// Signals to send (SIGKILL, SIGTERM, or a SIGSTOP/SIGCONT pair each).
    #[arg(long, default_value_t = 1000)]
    kills: u64,
    /// Seed of the choices (default: from the clock); printed, so a run can be repeated.
    #[arg(long)]
    seed: Option<u64>,
    /// Longest pause between two kills, in milliseconds (the pause is random below it).
    #[arg(long, default_value_t = 60)]
    pause_ms: u64,
}

/// A pool's mode and overflow policy, and its name suffix.
pub struct Spec {
    suffix: &'static str,
    mode: Mode,
    overflow: Overflow,
}

const SPECS: [Spec; 4] = [
    Spec { suffix: "bb", mode: Mode::Broadcast, overflow: Overflow::Block },
    Spec { suffix: "bd", mode: Mode::Broadcast, overflow: Overflow::DropOldest },
    Spec { suffix: "wb", mode: Mode::WorkQueue, overflow: Overflow::Block },
    Spec { suffix: "wd", mode: Mode::WorkQueue, overflow: Overflow::DropOldest },
];

fn spec(index: usize) -> CliResult<&'static Spec> {
    SPECS.get(index).ok_or_else(|| Failure::error(format!("no chaos pool spec {index}")))
}

/// The peers of each pool; plus one garbage collector for the directory.
const ROLES: [&str; 4] = ["creator", "producer", "consumer", "slow-consumer"];

/// One place in the population: a role that is always (re)filled by a process.
struct Member {
    role: &'static str,
    spec: usize,
    child: Option<Child>,
    /// Thaw time of a frozen process.
    frozen_until: Option<Instant>,
    /// Whether this member's process was never signalled (a survivor).
    untouched: bool,
}

#[derive(Default)]
struct Tally {
    kill: u64,
    term: u64,
    stop: u64,
    respawned: u64,
    by_role: std::collections::BTreeMap<&'static str, u64>,
}

struct Chaos<'a> {
    dir: Option<&'a Path>,
    name: &'a str,
    rng: Rng,
    members: Vec<Member>,
    tally: Tally,
}

impl Chaos<'_> {
    fn pool_name(&self, spec: usize) -> String {
        format!("{}-{}", self.name, SPECS[spec].suffix)
    }

    fn spawn(&mut self, i: usize) -> CliResult {
        let seed = self.rng.next();
        let m = &self.members[i];
        let pool = self.pool_name(m.spec);
        let mut cmd = Command::new(std::env::current_exe()?);
        if let Some(dir) = self.dir {
            cmd.arg("--dir").arg(dir);
        }
        cmd.arg("__chaos-peer").args(peer::args(m.role, &pool, m.spec, seed));
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
        let m = &mut self.members[i];
        m.child = Some(child);
        m.untouched = true;
        Ok(())
    }

    /// Fails if a peer ended by itself (only our signals may end one); thaws frozen ones on time.
    fn check_members(&mut self) -> CliResult {
        for m in &mut self.members {
            if m.frozen_until.is_some_and(|t| Instant::now() >= t) {
                if let Some(child) = &m.child {
                    signal(child, libc::SIGCONT);
                }
                m.frozen_until = None;
            }
            if let Some(child) = &mut m.child {
                if let Some(status) = child.try_wait()? {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    return Err(Failure::error(format!(
                        "a {} of pool {} ended by itself ({status}): {}",
                        m.role,
                        SPECS[m.spec].suffix,
                        err.trim()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Sends one random signal to one random running, unfrozen peer, and replaces it if it died.
    fn strike(&mut self) -> CliResult {
        let candidates: Vec<usize> =
            (0..self.members.len()).filter(|&i| self.members[i].frozen_until.is_none()).collect();
        let Some(&i) = candidates.get(self.rng.below(candidates.len().max(1) as u64) as usize) else {
            return Ok(());
        };
        let choice = self.rng.below(4);
        let pause = Duration::from_millis(5 + self.rng.below(100));
        let m = &mut self.members[i];
        let Some(child) = m.child.as_mut() else { return Ok(()) };
        m.untouched = false;
        *self.tally.by_role.entry(m.role).or_default() += 1;
        match choice {
            0 | 1 => {
                signal(child, libc::SIGKILL);
                self.tally.kill += 1;
            }
            2 => {
                signal(child, libc::SIGTERM);
                self.tally.term += 1;
            }
            _ => {
                signal(child, libc::SIGSTOP);
                m.frozen_until = Some(Instant::now() + pause);
                self.tally.stop += 1;
                return Ok(());
            }
        }
        child.wait()?;
        m.child = None;
        self.tally.respawned += 1;
        self.spawn(i)
    }

    /// Thaws everyone and waits until every pool publishes and every live consumer receives.
    fn check_progress(&mut self) -> CliResult<Vec<(String, u64)>> {
        for m in &mut self.members {
            if let Some(child) = &m.child {
                signal(child, libc::SIGCONT);
            }
            m.frozen_until = None;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut progress = Vec::new();
        for spec in 0..SPECS.len() {
            let name = self.pool_name(spec);
            let pool = loop {
                match Pool::open_in(&name, self.dir) {
                    Ok(pool) => break pool,
                    Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                    Err(e) => return Err(Failure::error(format!("pool {name} after the kills: {e}"))),
                }
            };
            let before = pool.stats();
            let counts = |s: &shmpool::Stats| -> Vec<(u32, u64)> {
                s.peers
                    .iter()
                    .filter(|p| p.role == shmpool::Role::Consumer && p.alive)
                    .map(|p| (p.pid, p.count))
                    .collect()
            };
            let start = counts(&before);
            loop {
                self.check_members()?;
                let now = pool.stats();
                let moved = now.published >= before.published + 20
                    && start.iter().all(|&(pid, c)| counts(&now).iter().any(|&(p, n)| p == pid && n > c));
                if moved {
                    progress.push((name.clone(), now.published - before.published));
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Failure::error(format!("pool {name} stalled after the kills: {now:?}")));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(progress)
    }

    /// Kills every peer, then checks what they left: every slot free, no waiter, no file after gc.
    fn check_leftovers(&mut self) -> CliResult<u64> {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                signal(&child, libc::SIGKILL);
                child.wait()?;
            }
        }
        let mut wakes = 0;
        for (spec, shape) in SPECS.iter().enumerate() {
            let name = self.pool_name(spec);
            let pool = match Pool::open_in(&name, self.dir) {
                Ok(pool) => pool,
                Err(shmpool::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            pool.reap();
            if shape.mode == Mode::WorkQueue {
                // Work nobody took is not a leak: take it.
                let mut consumer = pool.consumer()?;
                for _ in 0..pool.slots() {
                    match consumer.try_recv() {
                        Ok(_) | Err(shmpool::Error::Orphaned) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            let stats = pool.stats();
            wakes += stats.wakes;
            if stats.free != stats.slots || stats.waiters != 0 || !stats.peers.is_empty() {
                return Err(Failure::error(format!("pool {name} after every peer died: {stats:?}")));
            }
        }
        Pool::gc(self.dir)?;
        let prefixes = [format!("shmpool.{}-", self.name), format!(".shmpool.{}-", self.name)];
        let left: Vec<String> = Pool::list(self.dir)?
            .into_iter()
            .map(|e| e.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
            .chain(temp_files(self.dir)?)
            .filter(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
            .collect();
        if !left.is_empty() {
            return Err(Failure::error(format!("gc left {left:?}")));
        }
        Ok(wakes)
    }
}

/// Names of half-created pool files in the directory.
fn temp_files(dir: Option<&Path>) -> CliResult<Vec<String>> {
    let dir = shmpool::resolve_dir(dir);
    Ok(std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".shmpool."))
        .collect())
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill has no memory effects; the pid is our child, not yet waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

pub fn run(dir: Option<&Path>, args: &ChaosArgs) -> CliResult {
    let seed = args.seed.unwrap_or_else(shmpool::monotonic_ns);
    println!("chaos {}: {} kills, seed {seed}", args.name, args.kills);
    let mut members = Vec::new();
    for spec in 0..SPECS.len() {
        for role in ROLES {
            members.push(Member { role, spec, child: None, frozen_until: None, untouched: true });
        }
    }
    members.push(Member { role: "gc", spec: 0, child: None, frozen_until: None, untouched: true });
    let mut chaos = Chaos { dir, name: &args.name, rng: Rng::new(seed), members, tally: Tally::default() };
    let result = drive(&mut chaos, args);
    // Whatever happened, no peer outlives the run.
    for m in &mut chaos.members {
        if let Some(mut child) = m.child.take() {
            signal(&child, libc::SIGKILL);
            let _ = child.wait();
        }
    }
    result
}

fn drive(chaos: &mut Chaos<'_>, args: &ChaosArgs) -> CliResult {
    let started = Instant::now();
    for i in 0..chaos.members.len() {
        chaos.spawn(i)?;
    }
    let strikes = chaos.tally.kill + chaos.tally.term + chaos.tally.stop;
    debug_assert_eq!(strikes, 0);
    while chaos.tally.kill + chaos.tally.term + chaos.tally.stop < args.kills {
        chaos.check_members()?;
        std::thread::sleep(Duration::from_micros(chaos.rng.below(args.pause_ms.max(1) * 1000)));
        chaos.strike()?;
    }
    let killing = started.elapsed();
    let survivors = chaos.members.iter().filter(|m| m.untouched && m.child.is_some()).count();
    let progress = chaos.check_progress()?;
    let wakes = chaos.check_leftovers()?;
    let t = &chaos.tally;
    println!(
        "{} signals in {:.1} s: {} SIGKILL, {} SIGTERM, {} SIGSTOP/SIGCONT; {} peers restarted",
        t.kill + t.term + t.stop,
        killing.as_secs_f64(),
        t.kill,
        t.term,
        t.stop,
        t.respawned
    );
    let roles: Vec<String> = t.by_role.iter().map(|(r, n)| format!("{r} {n}")).collect();
    println!("signalled by role: {}", roles.join(", "));
    let moved: Vec<String> = progress.iter().map(|(p, n)| format!("{p} +{n}")).collect();
    println!("afterwards every pool moved on ({}), {survivors} never-signalled peers among them", moved.join(", "));
    println!("after every peer died: every slot free, no waiter registered ({wakes} wake system calls in all), gc left no file");
    println!("total {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
