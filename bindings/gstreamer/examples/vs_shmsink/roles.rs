//! The measured processes: one producer pipeline (`upstream ! sink`) and one consumer pipeline per
//! source (`source ! fakesink`), for shmpoolsink/shmpoolsrc and shmsink/shmsrc alike.
//!
//! Every frame carries its sequence number in its first 8 bytes, written upstream (a probe on
//! videotestsrc's pad, or the appsrc feeder). A probe on the sink's pad records CLOCK_MONOTONIC
//! when the frame reaches the sink; a probe on the source's pad records it when the source pushes
//! the frame. Both lists go to stdout, so the runner pairs them by sequence number: the same
//! measurement for both systems, whatever each carries besides the bytes.

use crate::clock::{monotonic_ns, process_cpu_ns};
use gst::prelude::*;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The frames of the benchmark, `rate` a second (0: as fast as they go; the caps then say 30).
fn caps(rate: u32) -> String {
    format!("video/x-raw,format=RGB,width=1920,height=1080,framerate={}/1", if rate == 0 { 30 } else { rate })
}
/// shmsink's area: room for ten frames, like the ten buffers a shmpoolsink's pool can hold at most.
const SHM_SIZE: usize = 64 << 20;
/// How long a process waits for its peers to connect or its stream to end.
const DEADLINE: Duration = Duration::from_secs(60);

/// Which pair of elements carries the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// shmpoolsink -> shmpoolsrc.
    Shmpool,
    /// GStreamer's shmsink -> shmsrc.
    Shmsink,
}

/// What feeds the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// videotestsrc, which allocates from the pool the sink proposes.
    Pool,
    /// An appsrc pushing frames it drew into buffers of its own pool: the sink copies each one.
    Copy,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Shmpool => "shmpool",
            System::Shmsink => "shmsink",
        }
    }

    pub fn parse(s: &str) -> Option<System> {
        [System::Shmpool, System::Shmsink].into_iter().find(|v| v.name() == s)
    }

    /// The file the producer creates, whose existence means consumers can start.
    pub fn ready_file(self, dir: &Path, name: &str) -> std::path::PathBuf {
        match self {
            System::Shmpool => dir.join(format!("shmpool.{name}")),
            System::Shmsink => dir.join(name),
        }
    }
}

impl Case {
    pub fn name(self) -> &'static str {
        match self {
            Case::Pool => "pool",
            Case::Copy => "copy",
        }
    }

    pub fn parse(s: &str) -> Option<Case> {
        [Case::Pool, Case::Copy].into_iter().find(|v| v.name() == s)
    }
}

/// Times per frame of one process, by sequence number, and its CPU time over the measured frames.
struct Recorder {
    times: Mutex<Vec<u64>>,
    warmup: usize,
    cpu_start: AtomicU64,
    cpu_end: AtomicU64,
}

impl Recorder {
    fn new(frames: usize) -> Recorder {
        Recorder {
            times: Mutex::new(vec![0; frames]),
            warmup: crate::stats::warmup(frames),
            cpu_start: AtomicU64::new(0),
            cpu_end: AtomicU64::new(0),
        }
    }

    /// Records now for the frame in `buffer`; whether it was the last frame.
    fn record(&self, buffer: &gst::BufferRef) -> bool {
        let now = monotonic_ns();
        let Some(seq) = read_seq(buffer) else { return false };
        let mut times = self.times.lock().unwrap_or_else(PoisonError::into_inner);
        let frames = times.len();
        let Some(slot) = usize::try_from(seq).ok().and_then(|i| times.get_mut(i)) else { return false };
        *slot = now;
        if seq as usize == self.warmup {
            self.cpu_start.store(process_cpu_ns(), Ordering::Relaxed);
        }
        let last = seq as usize + 1 == frames;
        if last {
            self.cpu_end.store(process_cpu_ns(), Ordering::Relaxed);
        }
        last
    }

    /// Prints `times`, `cpu_ns` and `extra` lines for the runner.
    fn print(&self, extra: (&str, u64)) {
        let times = self.times.lock().unwrap_or_else(PoisonError::into_inner);
        let list: Vec<String> = times.iter().map(u64::to_string).collect();
        let cpu = self.cpu_end.load(Ordering::Relaxed).saturating_sub(self.cpu_start.load(Ordering::Relaxed));
        println!("times {}\ncpu_ns {cpu}\n{} {}", list.join(","), extra.0, extra.1);
    }
}

fn read_seq(buffer: &gst::BufferRef) -> Option<u64> {
    let map = buffer.map_readable().ok()?;
    Some(u64::from_le_bytes(map.get(..8)?.try_into().ok()?))
}

fn write_seq(buffer: &mut gst::BufferRef, seq: u64) -> bool {
    let Ok(mut map) = buffer.map_writable() else { return false };
    let Some(head) = map.get_mut(..8) else { return false };
    head.copy_from_slice(&seq.to_le_bytes());
    true
}

fn pad(pipeline: &gst::Pipeline, element: &str, pad: &str) -> Result<gst::Pad, String> {
    pipeline.by_name(element).and_then(|e| e.static_pad(pad)).ok_or_else(|| format!("no pad {element}.{pad}"))
}

fn launch(description: &str) -> Result<gst::Pipeline, String> {
    gst::init().map_err(|e| e.to_string())?;
    gst::parse::launch(description)
        .map_err(|e| format!("{description}: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())
}

/// Runs `pipeline` until one of `until` (or an error) is posted, at most [`DEADLINE`].
fn run(pipeline: &gst::Pipeline, until: &[gst::MessageType]) -> Result<(), String> {
    pipeline.set_state(gst::State::Playing).map_err(|e| format!("to PLAYING: {e}"))?;
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let mut types = until.to_vec();
    types.push(gst::MessageType::Error);
    let result = match bus.timed_pop_filtered(gst::ClockTime::from_nseconds(DEADLINE.as_nanos() as u64), &types) {
        None => Err(format!("no end within {DEADLINE:?}")),
        Some(msg) => match msg.view() {
            gst::MessageView::Error(e) => Err(format!("{}: {}", e.error(), e.debug().unwrap_or_default())),
            _ => Ok(()),
        },
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// Blocks the first buffer until `wanted` clients connected to `shmsink` (what
/// `wait-for-consumers` does in shmpoolsink; shmsink's `wait-for-connection` waits for one).
fn hold_for_shmsink_clients(sink: &gst::Element, wanted: u32) -> Arc<dyn Fn() -> bool + Send + Sync> {
    let clients = Arc::new((Mutex::new(0u32), Condvar::new()));
    let c = clients.clone();
    sink.connect("client-connected", false, move |_| {
        *c.0.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        c.1.notify_all();
        None
    });
    Arc::new(move || {
        let start = Instant::now();
        let mut n = clients.0.lock().unwrap_or_else(PoisonError::into_inner);
        while *n < wanted && start.elapsed() < DEADLINE {
            n = clients.1.wait_timeout(n, Duration::from_millis(100)).unwrap_or_else(PoisonError::into_inner).0;
        }
        *n >= wanted
    })
}

/// The producer process: prints its sink-side times, CPU and the sink's copy count.
pub fn produce(
    system: System,
    case: Case,
    name: &str,
    dir: &Path,
    frames: usize,
    consumers: u32,
    rate: u32,
) -> Result<(), String> {
    let sink = match system {
        System::Shmpool => {
            format!("shmpoolsink name=sink pool={name} directory={} wait-for-consumers={consumers}", dir.display())
        }
        System::Shmsink => format!(
            "shmsink name=sink socket-path={} shm-size={SHM_SIZE} wait-for-connection=false sync=false",
            dir.join(name).display()
        ),
    };
    let upstream = match case {
        Case::Pool => {
            format!("videotestsrc name=up num-buffers={frames} pattern=black is-live={} ! {}", rate > 0, caps(rate))
        }
        Case::Copy => "appsrc name=up format=time block=true".to_string(),
    };
    let pipeline = launch(&format!("{upstream} ! {sink}"))?;
    let recorder = Arc::new(Recorder::new(frames));
    let copies = Arc::new(AtomicU64::new(0));
    let up = pipeline.by_name("up").ok_or("no upstream element")?;
    let sink_element = pipeline.by_name("sink").ok_or("no sink element")?;
    let hold = (system == System::Shmsink).then(|| hold_for_shmsink_clients(&sink_element, consumers));

    let feeder = match case {
        Case::Pool => {
            let next = AtomicU64::new(0);
            pad(&pipeline, "up", "src")?.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                let written = info.buffer_mut().and_then(|b| b.get_mut()).is_some_and(|b| write_seq(b, seq));
                if !written {
                    eprintln!("frame {seq}: not writable at videotestsrc's pad, not numbered");
                }
                gst::PadProbeReturn::Ok
            });
            None
        }
        Case::Copy => Some(feed_appsrc(&up, frames, rate)?),
    };

    let (rec, n) = (recorder.clone(), copies.clone());
    let first = AtomicBool::new(true);
    pad(&pipeline, "sink", "sink")?.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(buffer) = info.buffer() else { return gst::PadProbeReturn::Ok };
        if let Some(hold) = hold.as_ref().filter(|_| first.swap(false, Ordering::Relaxed)) {
            if !hold() {
                eprintln!("shmsink: not every client connected");
            }
        }
        rec.record(buffer);
        // shmsink copies what its own allocator did not make (gst_shm_sink_render).
        let own = buffer.n_memory() == 1
            && buffer.peek_memory(0).allocator().is_some_and(|a| a.type_().name() == "GstShmSinkAllocator");
        n.fetch_add(u64::from(!own), Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
    let result = run(&pipeline, &[gst::MessageType::Eos]);
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    result?;
    let copies = match system {
        System::Shmpool => sink_element.property::<gst::Structure>("stats").get::<u64>("copies").unwrap_or(u64::MAX),
        System::Shmsink => copies.load(Ordering::Relaxed),
    };
    recorder.print(("copies", copies));
    Ok(())
}

/// Pushes `frames` numbered buffers of the feeder's own pool into `appsrc`, `rate` a second (0: as
/// fast as it takes them), then end-of-stream.
fn feed_appsrc(appsrc: &gst::Element, frames: usize, rate: u32) -> Result<std::thread::JoinHandle<()>, String> {
    let caps: gst::Caps = caps(rate).parse().map_err(|_| "bad caps")?;
    appsrc.set_property("caps", &caps);
    let size = gst_video::VideoInfo::from_caps(&caps).map_err(|e| e.to_string())?.size() as u32;
    let pool = gst::BufferPool::new();
    let mut config = pool.config();
    config.set_params(Some(&caps), size, 2, 0);
    pool.set_config(config).map_err(|e| e.to_string())?;
    pool.set_active(true).map_err(|e| e.to_string())?;
    let appsrc = appsrc.clone();
    Ok(std::thread::spawn(move || {
        let frame = gst::ClockTime::from_nseconds(1_000_000_000 / u64::from(rate.max(1)));
        let start = Instant::now();
        for seq in 0..frames as u64 {
            if rate > 0 {
                let due = start + Duration::from_nanos((frame * seq).nseconds());
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            let Ok(mut buffer) = pool.acquire_buffer(None) else { break };
            {
                let b = buffer.get_mut().expect("a pool buffer is writable");
                // The application draws its frame (as videotestsrc does in the other case), so the
                // sink copies from memory, not from never-touched zero pages.
                if let Ok(mut map) = b.map_writable() {
                    map.fill(seq as u8);
                }
                write_seq(b, seq);
                b.set_pts(frame * seq);
                b.set_duration(frame);
                b.set_offset(seq);
            }
            if appsrc.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]) != gst::FlowReturn::Ok {
                break;
            }
        }
        let _ = appsrc.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    }))
}

/// A consumer process: prints its push times, CPU and how many frames it got.
pub fn consume(system: System, name: &str, dir: &Path, frames: usize) -> Result<(), String> {
    let src = match system {
        System::Shmpool => format!("shmpoolsrc name=src pool={name} directory={} timeout=20000000000", dir.display()),
        System::Shmsink => format!("shmsrc name=src socket-path={}", dir.join(name).display()),
    };
    let pipeline = launch(&format!("{src} ! fakesink sync=false"))?;
    let recorder = Arc::new(Recorder::new(frames));
    let received = Arc::new(AtomicU64::new(0));
    let (rec, n) = (recorder.clone(), received.clone());
    let bus = pipeline.bus().expect("a pipeline has a bus");
    pad(&pipeline, "src", "src")?.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer() {
            n.fetch_add(1, Ordering::Relaxed);
            // shmsink does not forward end-of-stream: the last frame ends the consumer.
            if rec.record(buffer) {
                let _ = bus.post(gst::message::Application::new(gst::Structure::new_empty("last-frame")));
            }
        }
        gst::PadProbeReturn::Ok
    });
    run(&pipeline, &[gst::MessageType::Eos, gst::MessageType::Application])?;
    recorder.print(("received", received.load(Ordering::Relaxed)));
    Ok(())
}
