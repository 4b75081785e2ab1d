//! Fuzzes the farm's Majordomo decoders (broker, worker and client sides) and the array-part
//! parser: arbitrary frames never panic. The input is split into frames by a `u16` length prefix.
//! Run: `cargo +nightly fuzz run mdp fuzz/corpus/mdp` (from the repository root).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmpool_farm::mdp::{decode_broker, decode_client, decode_worker, split_fuzz_input, FUZZ_LIMITS};
use shmpool_farm::part::parse_array_header;

fuzz_target!(|data: &[u8]| {
    let frames = split_fuzz_input(data);
    if let Ok(shmpool_farm::mdp::Inbound::Request { body, .. } | shmpool_farm::mdp::Inbound::Reply { body, .. }) =
        decode_broker(&frames, &FUZZ_LIMITS)
    {
        assert!(body.start <= body.end && body.end <= frames.len());
    }
    let _ = decode_worker(&frames, &FUZZ_LIMITS);
    let _ = decode_client(&frames, &FUZZ_LIMITS);
    for frame in &frames {
        let _ = parse_array_header(frame);
    }
});
