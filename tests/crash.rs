//! Peers killed with SIGKILL in the middle of traffic never leak a slot or wedge the survivors.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use shmpool::{Config, Error, Mode, Pool, Role};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

const SIZE: usize = 4096;
const SLOTS: u32 = 4;

#[test]
fn child() {
    child_main(|role, args| {
        let pool = Pool::open_in(&args[1], Some(Path::new(&args[0]))).map_err(|e| e.to_string())?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(std::process::id() as u64);
        // Holding a buffer a random while widens the windows a kill can land in.
        let mut hold = move || {
            if rng.gen_bool(0.3) {
                std::thread::sleep(Duration::from_micros(rng.gen_range(0..300)));
            }
        };
        match role {
            "producer" => {
                let producer = pool.producer().map_err(|e| e.to_string())?;
                println!("READY");
                for i in 0u32.. {
                    let mut buf = match producer.acquire(secs(10)) {
                        Ok(buf) => buf,
                        Err(Error::Closed) => return Ok(()),
                        Err(e) => return Err(format!("acquire: {e}")),
                    };
                    fill(&mut buf[..SIZE], std::process::id(), i);
                    buf.set_len(SIZE).unwrap();
                    hold();
                    match buf.publish() {
                        Ok(_) | Err(Error::Closed) => {}
                        Err(e) => return Err(format!("publish: {e}")),
                    }
                }
                Ok(())
            }
            "consumer" => {
                let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
                println!("READY");
                loop {
                    match consumer.recv(secs(10)) {
                        Ok(buf) => {
                            check(&buf)?;
                            hold();
                        }
                        Err(Error::Closed) => return Ok(()),
                        Err(e) => return Err(format!("recv: {e}")),
                    }
                }
            }
            _ => Err(format!("unknown role {role}")),
        }
    });
}

struct Peer {
    role: &'static str,
    child: Child,
}

fn start(dir: &TempDir, name: &str, role: &'static str) -> Peer {
    let child = spawn_child(role, &[dir.path().display().to_string(), name.to_string()]);
    Peer { role, child }
}

fn exited_early(peers: &mut [Peer]) -> Option<String> {
    for p in peers {
        if let Ok(Some(status)) = p.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = p.child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return Some(format!("a {} exited by itself ({status}): {err}", p.role));
        }
    }
    None
}

/// Progress of the place the survivor consumer holds (its received counter).
fn survivor_count(pool: &Pool, place: usize) -> u64 {
    pool.stats().peers.iter().find(|p| p.role == Role::Consumer && p.place == place).map_or(0, |p| p.count)
}

fn run(mode: Mode, kills: usize) {
    let dir = TempDir::new("crash");
    let config = Config::new(SLOTS, SIZE).directory(dir.path()).mode(mode).lease(Duration::from_millis(100));
    let pool = Pool::create("crash", &config).unwrap();
    // The survivors are never killed: the consumer joins first so it holds place 0.
    let mut survivors = vec![start(&dir, "crash", "consumer")];
    wait_until(Duration::from_secs(20), "the survivor consumer", || pool.stats().consumers == 1);
    survivors.push(start(&dir, "crash", "producer"));
    let mut victims: Vec<Peer> =
        ["producer", "producer", "consumer", "consumer", "consumer"].iter().map(|r| start(&dir, "crash", r)).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed ^ kills as u64);
    let mut last = survivor_count(&pool, 0);
    let live = |pool: &Pool, role: Role| pool.stats().peers.iter().filter(|p| p.role == role && p.alive).count();
    for kill in 0..kills {
        // Every kill lands on peers that joined and are moving data.
        wait_until(Duration::from_secs(20), "every peer to be up", || {
            live(&pool, Role::Consumer) == 4 && live(&pool, Role::Producer) == 3
        });
        let published = pool.stats().published;
        std::thread::sleep(Duration::from_millis(rng.gen_range(1..10)));
        wait_until(Duration::from_secs(20), "traffic between kills", || pool.stats().published > published);
        let i = rng.gen_range(0..victims.len());
        kill9(&mut victims[i].child);
        let role = victims[i].role;
        victims[i] = start(&dir, "crash", role);
        if let Some(e) = exited_early(&mut victims).or_else(|| exited_early(&mut survivors)) {
            panic!("after {kill} kills: {e}");
        }
        if kill % 10 == 9 {
            // The survivors keep moving despite the carnage.
            wait_until(Duration::from_secs(10), "the survivor to make progress", || survivor_count(&pool, 0) > last);
            last = survivor_count(&pool, 0);
        }
    }
    for p in victims.iter_mut().chain(survivors.iter_mut()) {
        kill9(&mut p.child);
    }
    // Every peer is dead now: nothing may stay held by one. (Work-queue buffers nobody took yet
    // belong to the queue, not to a peer: they wait for the next consumer.)
    let started = Instant::now();
    wait_until(Duration::from_secs(10), "every held slot to be released", || {
        pool.reap();
        let s = pool.stats();
        let queued = if mode == Mode::WorkQueue { s.ready } else { 0 };
        s.writing == 0 && s.reading == 0 && s.free + queued == SLOTS && s.consumers == 0 && s.producers == 0
    });
    eprintln!(
        "{mode:?}: {kills} kills, slots recovered in {:?}, {} published",
        started.elapsed(),
        pool.stats().published
    );
    let mut consumer = pool.consumer().unwrap();
    while let Some(buf) = consumer.try_recv().unwrap() {
        check(&buf).unwrap();
    }
    assert_eq!(pool.stats().free, SLOTS);
    // And the pool is fully usable afterwards.
    let producer = pool.producer().unwrap();
    for _ in 0..2 * SLOTS {
        producer.acquire(secs(5)).unwrap().publish().unwrap();
        drop(consumer.recv(secs(5)).unwrap());
    }
}

#[test]
fn a_hundred_kills_in_broadcast_leak_nothing() {
    run(Mode::Broadcast, 100);
}

#[test]
fn kills_in_work_queue_leak_nothing() {
    run(Mode::WorkQueue, 60);
}
