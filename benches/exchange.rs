//! Criterion micro-benchmarks of the in-process paths: one thread, one pool in a private
//! directory, no other process. What a message costs the library itself, without any wake-up:
//!
//! - `path/*`: acquire (+ drop unpublished), acquire + publish, recv + release, and the whole
//!   acquire → publish → recv → release cycle, for a 64 B and a 8 MiB slot (the same: zero copy);
//!   broadcast to two consumers; a work queue; `try_recv` of an empty pool.
//! - `signaler/*`: the Signaler's post (`notify`) with nobody waiting (a fence and a load) and with
//!   a registered waiter (plus a FUTEX_WAKE system call).
//! - `readiness/*`: publishing while the consumer's readiness handle is armed (one `write`) and
//!   while nobody waits.
//! - `metadata/*`: writing a slot's timestamp, dtype, shape and user metadata; reading them back.
//!
//! `cargo bench --bench exchange` (benches/run.sh runs it and puts the medians in RESULTS.md).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use shmpool::__private::notify;
use shmpool::{Config, DType, Mode, Pool};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

/// A private directory for the benchmark's pools, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let base = if std::path::Path::new(shmpool::DEFAULT_DIR).is_dir() {
            PathBuf::from(shmpool::DEFAULT_DIR)
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("shmpool-criterion-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    fn pool(&self, name: &str, config: Config) -> Pool {
        Pool::create(name, &config.directory(&self.0)).expect("pool")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SLOTS: u32 = 64;

/// Times `step` over `iters` messages in rounds of at most [`SLOTS`]; `before` and `after` run
/// untimed around each round (filling or draining the pool).
fn rounds(iters: u64, mut before: impl FnMut(u64), mut step: impl FnMut(u64), mut after: impl FnMut(u64)) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(u64::from(SLOTS));
        before(n);
        let start = Instant::now();
        step(n);
        total += start.elapsed();
        after(n);
        left -= n;
    }
    total
}

fn path(c: &mut Criterion) {
    let scratch = Scratch::new();
    let mut group = c.benchmark_group("path");
    for (label, size) in [("64B", 64usize), ("8MiB", 8 << 20)] {
        let pool = scratch.pool(&format!("path-{label}"), Config::new(SLOTS, size));
        let producer = pool.producer().expect("producer");
        let mut consumer = pool.consumer().expect("consumer");
        let publish = |n: u64| {
            for i in 0..n {
                let mut buf = producer.acquire(None).expect("acquire");
                buf[..8].copy_from_slice(&i.to_le_bytes());
                buf.set_len(size).expect("len");
                buf.publish().expect("publish");
            }
        };

        group.bench_function(format!("acquire_drop/{label}"), |b| {
            b.iter(|| drop(black_box(producer.acquire(None).expect("acquire"))))
        });
        group.bench_function(format!("cycle/{label}"), |b| {
            b.iter(|| {
                publish(1);
                drop(black_box(consumer.recv(None).expect("recv")));
            })
        });
        let drain = |consumer: &mut shmpool::Consumer, n: u64| {
            for _ in 0..n {
                drop(black_box(consumer.recv(None).expect("recv")));
            }
        };
        group.bench_function(format!("acquire_publish/{label}"), |b| {
            b.iter_custom(|iters| rounds(iters, |_| {}, publish, |n| drain(&mut consumer, n)))
        });
        group.bench_function(format!("recv_release/{label}"), |b| {
            let consumer = std::cell::RefCell::new(&mut consumer);
            b.iter_custom(|iters| rounds(iters, publish, |n| drain(&mut consumer.borrow_mut(), n), |_| {}))
        });
    }

    let pool = scratch.pool("broadcast2", Config::new(SLOTS, 64));
    let producer = pool.producer().expect("producer");
    let (mut first, mut second) = (pool.consumer().expect("consumer"), pool.consumer().expect("consumer"));
    group.bench_function("cycle_broadcast_2_consumers/64B", |b| {
        b.iter(|| {
            producer.acquire(None).expect("acquire").publish().expect("publish");
            drop(black_box(first.recv(None).expect("recv")));
            drop(black_box(second.recv(None).expect("recv")));
        })
    });

    let pool = scratch.pool("workqueue", Config::new(SLOTS, 64).mode(Mode::WorkQueue));
    let producer = pool.producer().expect("producer");
    let mut worker = pool.consumer().expect("consumer");
    let _idle_worker = pool.consumer().expect("consumer");
    group.bench_function("cycle_workqueue/64B", |b| {
        b.iter(|| {
            producer.acquire(None).expect("acquire").publish().expect("publish");
            drop(black_box(worker.recv(None).expect("recv")));
        })
    });

    let pool = scratch.pool("empty", Config::new(4, 64));
    let mut idle = pool.consumer().expect("consumer");
    group.bench_function("try_recv_empty", |b| b.iter(|| black_box(idle.try_recv().expect("try_recv").is_none())));
    group.finish();
}

fn signaler(c: &mut Criterion) {
    let mut group = c.benchmark_group("signaler");
    let event = AtomicU32::new(0);
    let nobody = AtomicU64::new(0);
    group.bench_function("post_no_waiter", |b| b.iter(|| notify(black_box(&event), black_box(&nobody))));
    // A registered waiter that is not asleep: the post bumps the word and makes the FUTEX_WAKE
    // system call (which finds nobody to wake): the cost a producer pays whenever a consumer waits.
    let somebody = AtomicU64::new(1);
    group.bench_function("post_with_waiter", |b| b.iter(|| notify(black_box(&event), black_box(&somebody))));
    group.finish();
}

fn metadata(c: &mut Criterion) {
    let scratch = Scratch::new();
    let pool = scratch.pool("meta", Config::new(4, 4096).meta_bytes(256));
    let producer = pool.producer().expect("producer");
    let mut consumer = pool.consumer().expect("consumer");
    let caps = b"video/x-raw,format=RGB,width=1920,height=1080,framerate=30/1";
    let mut group = c.benchmark_group("metadata");
    group.bench_function("write_timestamp_dtype_shape_user_meta", |b| {
        b.iter_batched_ref(
            || producer.acquire(None).expect("acquire"),
            |buf| {
                buf.set_timestamp(black_box(42));
                buf.set_dtype(DType::U8);
                buf.set_shape(black_box(&[1080, 1920, 3])).expect("shape");
                buf.set_user_meta(black_box(caps)).expect("meta");
            },
            BatchSize::PerIteration,
        )
    });
    let mut buf = producer.acquire(None).expect("acquire");
    buf.set_dtype(DType::U8);
    buf.set_shape(&[1080, 1920, 3]).expect("shape");
    buf.set_user_meta(caps).expect("meta");
    buf.publish().expect("publish");
    let read = consumer.recv(None).expect("recv");
    group.bench_function("read_timestamp_dtype_shape_user_meta", |b| {
        b.iter(|| {
            let r = black_box(&read);
            black_box((r.timestamp(), r.dtype(), r.shape().len(), r.user_meta().len(), r.seq()))
        })
    });
    group.finish();
}

/// The cost of one publication for its producer when the consumer waits in an event loop (its
/// readiness handle armed: publishing writes its byte) and when nobody waits (one load).
fn readiness(c: &mut Criterion) {
    let scratch = Scratch::new();
    let mut group = c.benchmark_group("readiness");
    for armed in [false, true] {
        let pool = scratch.pool(&format!("ready-{armed}"), Config::new(SLOTS, 64));
        let producer = pool.producer().expect("producer");
        let mut consumer = pool.consumer().expect("consumer");
        if armed {
            consumer.ready_fd().expect("ready_fd");
        }
        let label = if armed { "publish_armed_waiter" } else { "publish_no_waiter" };
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Untimed: the consumer finds nothing, which arms its handle (if it has one).
                    assert!(consumer.try_recv().expect("try_recv").is_none());
                    let buf = producer.acquire(None).expect("acquire");
                    let start = Instant::now();
                    black_box(buf.publish().expect("publish"));
                    total += start.elapsed();
                    drop(consumer.try_recv().expect("try_recv").expect("published"));
                }
                total
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    let quick = std::env::var_os("SHMPOOL_BENCH_QUICK").is_some();
    let (warm, measure) = if quick { (100, 400) } else { (500, 2_000) };
    Criterion::default()
        .warm_up_time(Duration::from_millis(warm))
        .measurement_time(Duration::from_millis(measure))
        .sample_size(if quick { 20 } else { 50 })
}

criterion_group! {
    name = benches;
    config = config();
    targets = path, signaler, metadata, readiness
}
criterion_main!(benches);
