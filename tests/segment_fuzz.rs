//! The segment fuzzing harness on stable Rust: replays the corpus shared with the cargo-fuzz
//! target (`fuzz/corpus/segment/`), then runs random and mutated inputs from a seed.
//!
//! `SHMPOOL_FUZZ_EXECS` (default 500) sets how many generated inputs run, `SHMPOOL_FUZZ_SEED`
//! the seed. A failing input is written to `target/segment-fuzz-failure` before the test fails;
//! an input that runs for more than 20 s counts as a hang and aborts the run the same way.

use rand::{Rng, SeedableRng};
use shmpool::__private::{fuzz_seed, fuzz_segment};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn failure_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/segment-fuzz-failure")
}

/// Runs `input`, saving it first if it panics.
fn run(input: &[u8], current: &Mutex<(Instant, Vec<u8>)>) {
    *current.lock().unwrap() = (Instant::now(), input.to_vec());
    if std::panic::catch_unwind(|| fuzz_segment(input)).is_err() {
        let _ = std::fs::write(failure_file(), input);
        panic!("the harness panicked on an input of {} bytes, saved to {}", input.len(), failure_file().display());
    }
}

/// Aborts the process (after saving the input) if one input runs for too long.
fn watchdog(current: Arc<Mutex<(Instant, Vec<u8>)>>) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        let (started, input) = current.lock().unwrap().clone();
        if started.elapsed() > Duration::from_secs(20) {
            let _ = std::fs::write(failure_file(), &input);
            eprintln!("an input ran for {:?}: hang; saved to {}", started.elapsed(), failure_file().display());
            std::process::abort();
        }
    });
}

fn mutate(rng: &mut impl Rng, input: &mut Vec<u8>) {
    const INTERESTING: [u64; 8] = [0, 1, u64::MAX, 1 << 63, 0xFFFF, 0x8000_0000, 24, 4097];
    for _ in 0..rng.gen_range(1..8) {
        if input.len() < 2 {
            input.resize(64, 0);
        }
        let at = rng.gen_range(1..input.len());
        match rng.gen_range(0..4) {
            0 => input[at] ^= 1 << rng.gen_range(0..8),
            1 => input[at] = rng.gen(),
            2 => {
                let at = at & !7;
                let value = INTERESTING[rng.gen_range(0..INTERESTING.len())].to_le_bytes();
                let n = value.len().min(input.len() - at);
                input[at..at + n].copy_from_slice(&value[..n]);
            }
            _ => input.truncate(at.max(1)),
        }
    }
}

#[test]
fn segment_corpus_and_random_inputs() {
    let current = Arc::new(Mutex::new((Instant::now(), Vec::new())));
    watchdog(current.clone());
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/segment");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&corpus).unwrap() {
        run(&std::fs::read(entry.unwrap().path()).unwrap(), &current);
        replayed += 1;
    }
    assert!(replayed >= 8, "the corpus has only {replayed} files");

    let execs: usize = std::env::var("SHMPOOL_FUZZ_EXECS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let seed: u64 = std::env::var("SHMPOOL_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(14);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let seeds: Vec<Vec<u8>> = (0..8).map(fuzz_seed).collect();
    let started = Instant::now();
    for _ in 0..execs {
        let input = if rng.gen_bool(0.2) {
            let len = rng.gen_range(0..12_000);
            (0..len).map(|_| rng.gen()).collect()
        } else {
            let mut input = seeds[rng.gen_range(0..seeds.len())].clone();
            input[0] = rng.gen_range(0..8);
            mutate(&mut rng, &mut input);
            input
        };
        run(&input, &current);
    }
    eprintln!(
        "segment fuzz: {replayed} corpus files, {execs} generated inputs (seed {seed}) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
