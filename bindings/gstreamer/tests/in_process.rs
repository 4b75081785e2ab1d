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

#[test]
fn caps_that_grow_mid_stream_get_a_larger_pool_and_two_sources_every_frame_without_a_copy() {
    init();
    let mut env = Env::new("grow");
    let d = env.d();
    // Slow sources (20 ms a frame) are still draining the old pool when the new one is made.
    let sources: Vec<Proc> = (0..2)
        .map(|_| {
            let source = format!("shmpoolsrc pool=g directory={d} timeout=20000000000");
            env.launch("-v", &format!("{source} ! identity sleep-time=20000 ! checksumsink"))
        })
        .collect();
    let caps = |w: u32, h: u32| format!("video/x-raw,format=RGB,width={w},height={h},framerate=30/1");
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=40 pattern=ball ! capsfilter name=f caps={} ! \
         shmpoolsink name=s pool=g directory={d} wait-for-consumers=2",
        caps(320, 240)
    ))
    .unwrap();
    let bin = pipeline.downcast_ref::<gst::Bin>().unwrap();
    let (filter, sink) = (bin.by_name("f").unwrap(), bin.by_name("s").unwrap());
    // What reached the sink, as checksumsink prints it; after 15 frames the caps grow 4 times
    // (videotestsrc renegotiates and asks the sink for a pool again).
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = sent.clone();
    let bigger: gst::Caps = caps(640, 480).parse().unwrap();
    sink.static_pad("sink").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let buffer = info.buffer().unwrap();
        let sum = gst::glib::compute_checksum_for_data(gst::glib::ChecksumType::Sha1, &buffer.map_readable().unwrap());
        let mut sent = record.lock().unwrap();
        sent.push((buffer.pts().display().to_string(), sum.unwrap().to_string()));
        if sent.len() == 15 {
            filter.set_property("caps", &bigger);
        }
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    wait_eos(&pipeline);
    let stats = sink.property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    let stat = |f: &str| stats.get::<u64>(f).unwrap();
    assert_eq!((stat("frames"), stat("copies"), stat("resized")), (40, 0, 1), "{stats}");

    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 40);
    for source in sources {
        let log = env.finish(source, LIMIT);
        assert_same(&checksums(&log), &sent, "frames through the grown pool");
        let caps = caps_of(&log, "checksumsink0");
        assert_eq!(caps.len(), 2, "two caps expected: {caps:?}");
        assert!(caps[0].contains("width=(int)320") && caps[1].contains("width=(int)640"), "{caps:?}");
    }
    assert!(env.leftovers().is_empty(), "left: {:?}", env.leftovers());
}
