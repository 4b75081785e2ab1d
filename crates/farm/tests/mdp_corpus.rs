//! The MDP decoder's regression corpus (`fuzz/corpus/mdp/`, shared with the fuzz target `mdp`):
//! `ok-*` files decode at the broker, `bad-*` files are rejected (`envelope-ok-*` and
//! `envelope-bad-*`: as reply envelopes); every file goes through every
//! decoder without a panic (those of shared memory's frames and envelopes too), and decoded
//! bodies lie inside the message.

use shmpool_farm::mdp::{decode_broker, decode_client, decode_worker, split_fuzz_input, Inbound, FUZZ_LIMITS};
use shmpool_farm::part::parse_array_header;
use shmpool_farm::reply::{decode_envelope, delivered, ReplyTo};
use shmpool_farm::shm::Descriptor;
use std::path::Path;

#[test]
fn mdp_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/mdp");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let frames = split_fuzz_input(&bytes);
        let result = decode_broker(&frames, &FUZZ_LIMITS);
        if let Ok(Inbound::Request { body, .. } | Inbound::Reply { body, .. }) = &result {
            assert!(body.start <= body.end && body.end <= frames.len(), "{name}: body {body:?} outside the message");
        }
        let _ = decode_worker(&frames, &FUZZ_LIMITS);
        let _ = decode_client(&frames, &FUZZ_LIMITS);
        for frame in &frames {
            let _ = parse_array_header(frame);
            let _ = (Descriptor::parse(frame), ReplyTo::parse(frame));
        }
        let _ = delivered(&frames);
        let envelope = decode_envelope(&bytes, FUZZ_LIMITS.max_frames);
        if let Some(body) = &envelope {
            assert_eq!(body.iter().map(|f| f.len() + 4).sum::<usize>(), bytes.len(), "{name}: envelope");
        }
        if let Some(kind) = name.strip_prefix("envelope-") {
            assert_eq!(envelope.is_some(), kind.starts_with("ok"), "{name}: as an envelope");
        }
        match name.split('-').next().unwrap() {
            "ok" => assert!(result.is_ok(), "{name}: {result:?}"),
            "bad" => assert!(result.is_err(), "{name}: decoded as {result:?}"),
            _ => {}
        }
        seen += 1;
    }
    assert!(seen >= 30, "the corpus has only {seen} files");
}
