//! Fuzzes the farm's Majordomo decoders (broker, worker and client sides), the array-part parser
//! and the parsers of what shared memory brings (descriptors, reply-to frames, confirmations,
//! reply envelopes): arbitrary input never panics. The input is split into frames by a `u16`
//! length prefix; the envelope decoder reads it whole.
//! Run: `cargo +nightly fuzz run mdp fuzz/corpus/mdp` (from the repository root).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmpool_farm::mdp::{decode_broker, decode_client, decode_worker, split_fuzz_input, FUZZ_LIMITS};
use shmpool_farm::part::parse_array_header;
use shmpool_farm::reply::{decode_envelope, delivered, ReplyTo};
use shmpool_farm::shm::Descriptor;

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
        let _ = (Descriptor::parse(frame), ReplyTo::parse(frame));
    }
    let _ = delivered(&frames);
    if let Some(body) = decode_envelope(data, FUZZ_LIMITS.max_frames) {
        assert!(body.iter().map(|f| f.len() + 4).sum::<usize>() == data.len());
    }
});
