//! One side in this process through gstreamer-rs or the shmpool API, the other in a
//! `gst-launch-1.0` child: caps changes mid-stream, the `stats` property, and what a non-GStreamer
//! consumer (the way NumPy sees it) finds in the slots.

mod common;

use common::*;
use gst::prelude::*;
use shmpool::{DType, Pool};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

fn init() {
    gst::init().unwrap();
    gstshmpool::plugin_register_static().unwrap();
}

/// `(size, pts)` of every buffer `fakesink silent=false` reported.
fn chains(log: &str) -> Vec<(usize, String)> {
    log.lines()
        .filter(|l| l.contains("last-message = chain"))
        .map(|l| {
            let size = l.split(") (").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
            let pts = l.split("pts: ").nth(1).and_then(|r| r.split(',').next()).unwrap().to_string();
            (size, pts)
        })
        .collect()
}

fn wait_eos(pipeline: &gst::Element) {
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Eos, gst::MessageType::Error])
        .expect("EOS within a minute");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "pipeline error: {msg:?}");
}

#[test]
fn a_caps_change_mid_stream_reaches_the_source_and_foreign_buffers_are_copied() {
    init();
    let mut env = Env::new("capschange");
    let d = env.d();
    let src = env.launch("-v", &format!("shmpoolsrc pool=c directory={d} timeout=20000000000 ! fakesink silent=false"));
    let sink = gst::parse::launch(&format!(
        "appsrc name=a format=time ! shmpoolsink name=s pool=c directory={d} slot-size=921600 wait-for-consumers=1"
    ))
    .unwrap();
    let appsrc = sink.downcast_ref::<gst::Bin>().unwrap().by_name("a").unwrap();
    sink.set_state(gst::State::Playing).unwrap();
    let sizes = [(320, 240), (640, 480)];
    for (k, (w, h)) in sizes.iter().enumerate() {
        let caps: gst::Caps = format!("video/x-raw,format=RGB,width={w},height={h},framerate=10/1").parse().unwrap();
        appsrc.set_property("caps", &caps);
        for i in 0..10u64 {
            let n = (k as u64) * 10 + i;
            let mut buffer = gst::Buffer::from_mut_slice(vec![n as u8; w * h * 3]);
            buffer.get_mut().unwrap().set_pts(gst::ClockTime::from_mseconds(100 * n));
            let flow: gst::FlowReturn = appsrc.emit_by_name("push-buffer", &[&buffer]);
            assert_eq!(flow, gst::FlowReturn::Ok);
        }
    }
    let _: gst::FlowReturn = appsrc.emit_by_name("end-of-stream", &[]);
    wait_eos(&sink);
    let stats: gst::Structure =
        sink.downcast_ref::<gst::Bin>().unwrap().by_name("s").unwrap().property::<gst::Structure>("stats");
    sink.set_state(gst::State::Null).unwrap();
    assert_eq!((stats.get::<u64>("frames").unwrap(), stats.get::<u64>("copies").unwrap()), (20, 20));

    let log = env.finish(src, LIMIT);
    let caps = caps_of(&log, "fakesink0");
    assert_eq!(caps.len(), 2, "two caps expected: {caps:?}");
    assert!(caps[0].contains("width=(int)320") && caps[1].contains("width=(int)640"), "{caps:?}");
    let got = chains(&log);
    let want: Vec<(usize, String)> = (0..20u64)
        .map(|n| {
            let size = if n < 10 { 320 * 240 * 3 } else { 640 * 480 * 3 };
            (size, format!("{}", gst::ClockTime::from_mseconds(100 * n)))
        })
        .collect();
    assert_eq!(got, want);
    assert!(env.leftovers().is_empty(), "left: {:?}", env.leftovers());
}

/// The frames `source` produces, made in this process.
fn frames(source: &str, n: usize) -> Vec<Vec<u8>> {
    let pipeline = gst::parse::launch(&format!("{source} ! appsink name=out sync=false")).unwrap();
    let sink = pipeline.downcast_ref::<gst::Bin>().unwrap().by_name("out").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let frames = (0..n)
        .map(|_| {
            let sample: Option<gst::Sample> =
                sink.emit_by_name("try-pull-sample", &[&gst::ClockTime::from_seconds(30)]);
            sample.expect("a frame").buffer().unwrap().map_readable().unwrap().to_vec()
        })
        .collect();
    pipeline.set_state(gst::State::Null).unwrap();
    frames
}

#[test]
fn a_plain_consumer_sees_height_width_channels_u8_arrays_equal_to_the_frames() {
    init();
    let mut env = Env::new("arrays");
    let d = env.d();
    let source = "videotestsrc num-buffers=5 pattern=smpte100 ! video/x-raw,format=RGB,width=1920,height=1080";
    let want = frames(source, 5);
    let sink = env.launch("", &format!("{source} ! shmpoolsink pool=a directory={d} wait-for-consumers=1"));
    let start = Instant::now();
    let pool = loop {
        match Pool::open_in("a", Some(&env.dir)) {
            Ok(pool) => break pool,
            Err(shmpool::Error::NotFound { .. }) if start.elapsed() < LIMIT => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("the sink's pool: {e}"),
        }
    };
    let mut consumer = pool.consumer().unwrap();
    for frame in &want {
        let buf = consumer.recv(Some(LIMIT)).unwrap();
        assert_eq!((buf.dtype(), buf.shape()), (DType::U8, &[1080u64, 1920, 3][..]));
        assert!(buf[..] == frame[..], "frame content differs");
    }
    let eos = consumer.recv(Some(LIMIT)).unwrap();
    assert_eq!(eos.len(), 0, "an empty end-of-stream slot follows the frames");
    drop((eos, consumer, pool));
    env.finish(sink, LIMIT);
}
