//! Fuzzes the segment a process opens: arbitrary bytes laid over a valid pool's shared state
//! (header, control block, peer records, slot states, ring, user metadata), then receive, acquire,
//! publish, release, reap and stats: never a panic, an access outside the mapping, or a hang.
//! Run: `cargo +nightly fuzz run segment fuzz/corpus/segment` (from the repository root). The
//! harness is `shmpool::__private::fuzz_segment`; `tests/segment_fuzz.rs` runs it on stable Rust.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shmpool::__private::fuzz_segment(data));
