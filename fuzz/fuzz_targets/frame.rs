//! Fuzzes the frame decoder: arbitrary bytes never panic or allocate beyond the limits, and
//! whatever decodes re-encodes to the same frame.
//! Run: `cargo +nightly fuzz run frame fuzz/corpus/frame` (from the repository root).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmpool_protocol::frame::{read_frame, Limits};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = read_frame(&mut &data[..], &Limits::SMALL) {
        let again = read_frame(&mut &frame.encode()[..], &Limits::SMALL).expect("re-encoded frame decodes");
        assert_eq!(again, frame);
    }
});
