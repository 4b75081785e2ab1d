//! The frame decoder's regression corpus (`fuzz/corpus/frame/`, shared with the fuzz target):
//! `ok-*` files decode, `bad-*` files are protocol errors, `eof-*` files disconnections; the
//! others (`fuzz-*`, found by `cargo fuzz run frame`) only must not panic. Whatever decodes must
//! re-encode to a frame that decodes the same.

use shmpool_protocol::frame::{read_frame, Limits};
use shmpool_protocol::Error;
use std::path::Path;

#[test]
fn frame_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/frame");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let result = read_frame(&mut &bytes[..], &Limits::SMALL);
        if let Ok(frame) = &result {
            let again = read_frame(&mut &frame.encode()[..], &Limits::SMALL).unwrap();
            assert_eq!(&again, frame, "{name}: no round trip");
        }
        match (name.split('-').next().unwrap(), &result) {
            ("ok", Ok(_)) | ("bad", Err(Error::Protocol(_))) | ("eof", Err(Error::Disconnected(_))) => {}
            ("ok" | "bad" | "eof", _) => panic!("{name}: unexpected {result:?}"),
            _ => {}
        }
        seen += 1;
    }
    assert!(seen >= 20, "the corpus has only {seen} files");
}
