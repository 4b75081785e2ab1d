//! `publish` with nobody waiting, `acquire`, `try_recv` and `recv` (of a published buffer) alone,
//! and the whole acquire → publish → try_recv → release cycle, on a 64-byte pool in one thread;
//! prints `<name> <median ns per op>` lines for benches/publish_baseline.sh. It uses only API that
//! the core had before the readiness handles, so the same source measures the old core and the new.

use shmpool::{Config, Pool};
use std::time::Instant;

const SLOTS: u32 = 64;
const ROUNDS: usize = 4_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let dir = std::env::temp_dir().join(format!("shmpool-publish-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let pool = Pool::create("publish-cost", &Config::new(SLOTS, 64).directory(&dir)).expect("pool");
    let producer = pool.producer().expect("producer");
    let mut consumer = pool.consumer().expect("consumer");
    let per_op = |start: Instant| start.elapsed().as_nanos() as f64 / f64::from(SLOTS);
    let [mut acquire, mut publish, mut try_recv, mut recv, mut cycle] =
        std::array::from_fn(|_| Vec::with_capacity(ROUNDS));
    let (mut held, mut got) = (Vec::with_capacity(SLOTS as usize), Vec::with_capacity(SLOTS as usize));
    for _ in 0..ROUNDS {
        // A round of each step alone (the others untimed), then of the whole cycle.
        let start = Instant::now();
        held.extend((0..SLOTS).map(|_| producer.acquire(None).expect("acquire")));
        acquire.push(per_op(start));
        let start = Instant::now();
        for buf in held.drain(..) {
            std::hint::black_box(buf.publish().expect("publish"));
        }
        publish.push(per_op(start));
        let start = Instant::now();
        got.extend((0..SLOTS).map(|_| consumer.try_recv().expect("try_recv").expect("published")));
        try_recv.push(per_op(start));
        got.clear();
        (0..SLOTS).for_each(|_| producer.acquire(None).expect("acquire").publish().map(drop).expect("publish"));
        let start = Instant::now();
        got.extend((0..SLOTS).map(|_| consumer.recv(None).expect("recv")));
        recv.push(per_op(start));
        got.clear();
        let start = Instant::now();
        for _ in 0..SLOTS {
            producer.acquire(None).expect("acquire").publish().expect("publish");
            drop(std::hint::black_box(consumer.try_recv().expect("try_recv").expect("published")));
        }
        cycle.push(per_op(start));
    }
    println!("acquire {:.2}", median(acquire));
    println!("publish_no_waiter {:.2}", median(publish));
    println!("try_recv {:.2}", median(try_recv));
    println!("recv_ready {:.2}", median(recv));
    println!("cycle_no_waiter {:.2}", median(cycle));
    drop((producer, consumer, pool));
    let _ = std::fs::remove_dir_all(&dir);
}
