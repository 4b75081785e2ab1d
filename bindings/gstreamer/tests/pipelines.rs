//! shmpoolsink and shmpoolsrc in separate `gst-launch-1.0` processes: frames, caps, timestamps,
//! content, copies, broadcast, work queue, EOS.

mod common;

use common::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(90);
const HD: &str = "video/x-raw,format=RGB,width=1920,height=1080";

#[test]
fn inspect_lists_both_elements_and_their_properties() {
    let mut env = Env::new("inspect");
    let sink = env.spawn("gst-inspect-1.0", &["shmpoolsink"]);
    let log = env.finish(sink, LIMIT);
    for prop in ["pool", "directory", "slots", "slot-size", "mode", "overflow", "wait-for-consumers", "stats"] {
        assert!(log.contains(&format!("\n  {prop} ")), "shmpoolsink lacks {prop}:\n{log}");
    }
    assert!(log.contains("drop-oldest") && log.contains("workqueue"));
    let src = env.spawn("gst-inspect-1.0", &["shmpoolsrc"]);
    let log = env.finish(src, LIMIT);
    for prop in ["pool", "directory", "is-live", "do-timestamp", "timeout"] {
        assert!(log.contains(&format!("\n  {prop} ")), "shmpoolsrc lacks {prop}:\n{log}");
    }
}

/// What one source received: `(pts, checksum)` per frame, and the caps it negotiated.
struct Received {
    sums: Vec<(String, String)>,
    caps: Vec<String>,
}

/// Runs `upstream ! shmpoolsink` and one `shmpoolsrc ! checksumsink` per source; returns the
/// sink's log and each source's checksums and caps.
fn run(env: &mut Env, upstream: &str, sink_props: &str, sources: usize) -> (String, Vec<Received>) {
    let d = env.d();
    let srcs: Vec<_> = (0..sources)
        .map(|_| env.launch("-v", &format!("shmpoolsrc pool=p directory={d} timeout=20000000000 ! checksumsink")))
        .collect();
    let sink = env.launch(
        "-m",
        &format!("{upstream} ! shmpoolsink pool=p directory={d} wait-for-consumers={sources} {sink_props}"),
    );
    let sink_log = env.finish(sink, LIMIT);
    let got = srcs
        .into_iter()
        .map(|p| {
            let log = env.finish(p, LIMIT);
            assert!(log.contains("Got EOS from element"), "the source did not end with EOS:\n{log}");
            Received { sums: checksums(&log), caps: caps_of(&log, "checksumsink0") }
        })
        .collect();
    assert!(env.leftovers().is_empty(), "pool files left: {:?}", env.leftovers());
    (sink_log, got)
}

#[test]
fn every_frame_arrives_with_its_caps_timestamps_and_content_without_a_copy() {
    let mut env = Env::new("frames");
    let source = format!("videotestsrc num-buffers=300 ! {HD}");
    let (want, want_caps) = reference(&mut env, &source);
    assert_eq!(want.len(), 300);
    let (sink_log, got) = run(&mut env, &source, "", 1);
    assert_eq!(got[0].caps, want_caps, "caps differ");
    assert_same(&got[0].sums, &want, "frames, PTS or content");
    assert_increasing(&got[0].sums);
    assert_eq!((stat(&sink_log, "frames"), stat(&sink_log, "copies")), (300, 0));
}

#[test]
fn an_upstream_that_ignores_the_proposed_pool_is_copied_once_per_frame() {
    let mut env = Env::new("copies");
    let source = "videotestsrc num-buffers=40 pattern=ball ! video/x-raw,format=RGB,width=640,height=480";
    let (want, _) = reference(&mut env, source);
    let (sink_log, got) = run(&mut env, &format!("{source} ! identity drop-allocation=true"), "", 1);
    assert_same(&got[0].sums, &want, "copied frames");
    assert_eq!((stat(&sink_log, "frames"), stat(&sink_log, "copies")), (40, 40));
}

#[test]
fn two_sources_in_broadcast_each_get_every_frame() {
    let mut env = Env::new("broadcast");
    let source = "videotestsrc num-buffers=60 pattern=smpte ! video/x-raw,format=RGB,width=640,height=480";
    let (want, _) = reference(&mut env, source);
    let (sink_log, got) = run(&mut env, source, "mode=broadcast", 2);
    for r in &got {
        assert_same(&r.sums, &want, "a broadcast source");
    }
    assert_eq!(stat(&sink_log, "copies"), 0);
}

#[test]
fn two_sources_on_a_work_queue_split_the_frames() {
    let mut env = Env::new("workqueue");
    let source = "videotestsrc num-buffers=120 pattern=ball ! video/x-raw,format=RGB,width=640,height=480";
    let (want, _) = reference(&mut env, source);
    let (_, got) = run(&mut env, source, "mode=workqueue slots=4", 2);
    let (a, b) = (&got[0].sums, &got[1].sums);
    assert!(!a.is_empty() && !b.is_empty(), "one source got nothing: {} and {}", a.len(), b.len());
    let mut all: Vec<_> = a.iter().chain(b).cloned().collect();
    all.sort();
    assert_same(&all, &want, "the union of the two shares");
    assert_increasing(a);
    assert_increasing(b);
}

#[test]
fn do_timestamp_replaces_the_sink_side_timestamps_with_the_running_time() {
    let mut env = Env::new("retimestamp");
    let d = env.d();
    // The sink side's PTS start at 1000 s; the source's own running time is far below that.
    let upstream =
        "videotestsrc num-buffers=20 timestamp-offset=1000000000000 ! video/x-raw,format=GRAY8,width=64,height=48";
    let keep = env.launch("", &format!("shmpoolsrc pool=p directory={d} timeout=20000000000 ! checksumsink"));
    let retime = env.launch(
        "",
        &format!("shmpoolsrc pool=p directory={d} timeout=20000000000 do-timestamp=true is-live=true ! checksumsink"),
    );
    let sink = env.launch("", &format!("{upstream} ! shmpoolsink pool=p directory={d} wait-for-consumers=2"));
    env.finish(sink, LIMIT);
    let kept = checksums(&env.finish(keep, LIMIT));
    let retimed = checksums(&env.finish(retime, LIMIT));
    assert_eq!((kept.len(), retimed.len()), (20, 20));
    assert!(kept.iter().all(|(pts, _)| pts.starts_with("0:16:")), "restored PTS: {kept:?}");
    assert!(retimed.iter().all(|(pts, _)| pts.starts_with("0:00:")), "running-time PTS: {retimed:?}");
    assert_increasing(&retimed);
    let sums = |v: &[(String, String)]| v.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>();
    assert_eq!(sums(&kept), sums(&retimed), "same content either way");
}
