//! Model checks of the slot state machine: loom runs the real exchange code under every
//! interleaving (within a preemption bound) of the threads below.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom` (the test script does this).
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmpool::__private::model::Model;
use shmpool::{Mode, Overflow};

/// Receives and releases whatever `tries` attempts find; returns the sequence numbers.
fn drain(model: &Model, c: usize, tries: usize) -> Vec<u64> {
    let mut got = Vec::new();
    for _ in 0..tries {
        if let Some((k, seq)) = model.recv(c) {
            assert_eq!(model.seq_of(k), seq, "a held slot keeps its publication");
            model.release(k, c);
            got.push(seq);
        }
    }
    got
}

/// A consumer receiving while the producer publishes gets both buffers, in order, once each, and
/// every slot is free at the end.
#[test]
fn broadcast_delivers_everything_in_order_and_frees_every_slot() {
    loom::model(|| {
        let model = Arc::new(Model::new(2, Mode::Broadcast, Overflow::Block));
        model.join_consumer(0);
        let consumer = {
            let model = model.clone();
            thread::spawn(move || drain(&model, 0, 2))
        };
        for expected in 0..2 {
            let k = model.acquire(0).expect("a free slot");
            assert_eq!(model.publish(k), Some(expected));
        }
        let mut got = consumer.join().unwrap();
        got.extend(drain(&model, 0, 2));
        assert_eq!(got, vec![0, 1]);
        assert_eq!(model.free_slots(), 2);
    });
}

/// Two producers racing on the ring both publish, with distinct sequence numbers; a consumer
/// racing with them takes each buffer exactly once.
#[test]
fn racing_producers_and_a_work_queue_consumer_lose_nothing() {
    loom::model(|| {
        let model = Arc::new(Model::new(2, Mode::WorkQueue, Overflow::Block));
        model.join_consumer(0);
        let producer = {
            let model = model.clone();
            thread::spawn(move || {
                let k = model.acquire(1).expect("a free slot");
                model.publish(k).unwrap()
            })
        };
        let consumer = {
            let model = model.clone();
            thread::spawn(move || drain(&model, 0, 1))
        };
        let k = model.acquire(0).expect("a free slot");
        let mine = model.publish(k).unwrap();
        let theirs = producer.join().unwrap();
        let mut published = vec![mine, theirs];
        published.sort();
        assert_eq!(published, vec![0, 1]);
        let mut got = consumer.join().unwrap();
        got.extend(drain(&model, 0, 2));
        got.sort();
        assert_eq!(got, vec![0, 1]);
        assert_eq!(model.free_slots(), 2);
    });
}

/// Publishes one buffer to a one-slot pool with two consumers, which then race to receive it.
/// Returns what each got.
fn two_consumers_race(mode: Mode) -> (Arc<Model>, Vec<u64>, Vec<u64>) {
    let model = Arc::new(Model::new(1, mode, Overflow::Block));
    model.join_consumer(0);
    model.join_consumer(1);
    let k = model.acquire(0).unwrap();
    model.publish(k);
    let other = {
        let model = model.clone();
        thread::spawn(move || drain(&model, 1, 1))
    };
    let mine = drain(&model, 0, 1);
    let theirs = other.join().unwrap();
    (model, mine, theirs)
}

/// Two work-queue consumers racing for one buffer: exactly one gets it.
#[test]
fn work_queue_consumers_never_both_take_a_buffer() {
    loom::model(|| {
        let (model, mine, theirs) = two_consumers_race(Mode::WorkQueue);
        assert_eq!(mine.len() + theirs.len(), 1, "mine {mine:?}, theirs {theirs:?}");
        assert_eq!(model.free_slots(), 1);
    });
}

/// Two broadcast consumers releasing concurrently: the slot is freed exactly when both let go.
#[test]
fn the_last_of_two_broadcast_releases_frees_the_slot() {
    loom::model(|| {
        let (model, mine, theirs) = two_consumers_race(Mode::Broadcast);
        assert_eq!((mine, theirs), (vec![0], vec![0]));
        assert_eq!(model.free_slots(), 1);
    });
}

/// A drop-oldest producer reclaiming races with a consumer claiming the same slot: either the
/// consumer gets the buffer intact or it counts a drop, and no slot is lost.
#[test]
fn drop_oldest_reclaim_and_claim_never_both_win() {
    loom::model(|| {
        let model = Arc::new(Model::new(1, Mode::Broadcast, Overflow::DropOldest));
        model.join_consumer(0);
        let k = model.acquire(0).unwrap();
        model.publish(k);
        let consumer = {
            let model = model.clone();
            thread::spawn(move || match model.recv(0) {
                Some((k, seq)) => {
                    assert_eq!(model.seq_of(k), seq, "claimed a slot that was reclaimed");
                    model.release(k, 0);
                    true
                }
                None => false,
            })
        };
        let reclaimed = model.reclaim_oldest(1);
        if let Some(k) = reclaimed {
            model.abort(k);
        }
        let got = consumer.join().unwrap();
        assert!(got || reclaimed.is_some());
        if !got {
            // The consumer may not have looked yet; now it must see the drop.
            assert!(model.recv(0).is_none());
            assert_eq!(model.dropped(0), 1);
        }
        assert_eq!(model.free_slots(), 1);
    });
}

/// A consumer leaving (or dying and being cleaned) while a publication for it is in flight never
/// leaks the slot.
#[test]
fn consumer_leaving_mid_publish_leaks_nothing() {
    loom::model(|| {
        let model = Arc::new(Model::new(1, Mode::Broadcast, Overflow::Block));
        model.join_consumer(0);
        let leaver = {
            let model = model.clone();
            thread::spawn(move || model.leave_consumer(0))
        };
        let k = model.acquire(0).unwrap();
        model.publish(k);
        leaver.join().unwrap();
        // A publication that read the mask before the leave may still carry the bit: the cleanup
        // of a place that is gone removes it (the pool does this in its sweep).
        model.leave_consumer(0);
        assert_eq!(model.free_slots(), 1);
    });
}

/// Producers take the slot freed most recently (warm reuse) while a consumer releases
/// concurrently: the slot acquired is never one the consumer still holds, and once everything is
/// back the last slot freed is the first taken.
#[test]
fn warm_reuse_never_hands_out_a_held_slot() {
    loom::model(|| {
        let model = Arc::new(Model::new(2, Mode::Broadcast, Overflow::Block));
        model.join_consumer(0);
        let first = model.acquire(0).unwrap();
        model.publish(first);
        let consumer = {
            let model = model.clone();
            thread::spawn(move || drain(&model, 0, 1))
        };
        let second = model.acquire(0).expect("a free slot");
        let got = consumer.join().unwrap();
        if second == first {
            assert_eq!(got, vec![0], "the published slot was taken before its consumer let go");
        }
        model.abort(second);
        drain(&model, 0, 1);
        assert_eq!(model.free_slots(), 2);
        // Both free now: whichever was freed last comes back first.
        let (a, b) = (model.acquire(0).unwrap(), model.acquire(0).unwrap());
        for last in [a, b] {
            let before = if last == a { b } else { a };
            model.abort(before);
            model.abort(last);
            assert_eq!(model.acquire(0), Some(last), "acquire did not prefer the slot freed last");
            assert_eq!(model.acquire(0), Some(before));
        }
    });
}

/// Two producers racing for the warm slot get one slot each.
#[test]
fn producers_racing_for_the_warm_slot_take_distinct_slots() {
    loom::model(|| {
        let model = Arc::new(Model::new(2, Mode::WorkQueue, Overflow::Block));
        let k = model.acquire(0).unwrap();
        model.abort(k);
        let other = {
            let model = model.clone();
            thread::spawn(move || model.acquire(1))
        };
        let mine = model.acquire(0).expect("a free slot");
        let theirs = other.join().unwrap().expect("a free slot");
        assert_ne!(mine, theirs);
        assert_eq!(model.free_slots(), 0);
    });
}
