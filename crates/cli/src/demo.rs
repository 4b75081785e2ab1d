//! `demo`: one producer and two consumer processes move 1920x1080 RGB frames through a broadcast
//! pool; then the same frames go through a pipe to one consumer. Live progress, then a table.
//!
//! Every consumer touches every frame the same way for both transports (the header and a stamp on
//! each 4 KiB page, see [`crate::frame`]); latency is the consumer's CLOCK_MONOTONIC when it has
//! the frame minus the producer's just before it published (or wrote) it. The producer runs flat
//! out, so latency includes the time a frame waits in a full pool or pipe.

use crate::latency::{format_ns, Samples, Summary};
use crate::peers::{say, Peers, Report};
use crate::scratch::ScratchDir;
use crate::{fifo, frame, CliResult, Failure};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use shmpool::{monotonic_ns, Config, DType, Error, Pool};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

const WIDTH: usize = 1920;
const HEIGHT: usize = 1080;
const CHANNELS: usize = 3;
const FRAME_BYTES: usize = WIDTH * HEIGHT * CHANNELS;
const SHAPE: [u64; 3] = [HEIGHT as u64, WIDTH as u64, CHANNELS as u64];
const CAPS: &str = "video/x-raw,format=RGB,width=1920,height=1080";
const POOL: &str = "frames";
const FIFO: &str = "frames.fifo";
const SLOTS: u32 = 4;
/// Longest wait of a peer for its partner (a frame, a slot, a reader).
const PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait of the demo for a phase to end after its planned duration.
const GRACE: Duration = Duration::from_secs(30);

#[derive(Args)]
pub struct DemoArgs {
    /// Seconds of frames per transport.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    ShmProducer,
    ShmConsumer,
    PipeProducer,
    PipeConsumer,
}

impl Role {
    fn arg(self) -> String {
        self.to_possible_value().expect("not skipped").get_name().to_string()
    }
}

#[derive(Args)]
pub struct PeerArgs {
    #[arg(long, value_enum)]
    role: Role,
    #[arg(long)]
    seconds: f64,
}

/// What a peer reports at the end.
#[derive(Default, Serialize, Deserialize)]
struct PeerResult {
    frames: u64,
    /// Producer: time spent producing; consumer: from its first frame to its last.
    seconds: f64,
    latency: Summary,
    bad_pages: u64,
}

impl PeerResult {
    fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.frames as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// One transport's run.
struct Transport {
    name: &'static str,
    producer: Role,
    consumer: Role,
    consumers: usize,
}

const TRANSPORTS: [Transport; 2] = [
    Transport { name: "shmpool", producer: Role::ShmProducer, consumer: Role::ShmConsumer, consumers: 2 },
    Transport { name: "pipe", producer: Role::PipeProducer, consumer: Role::PipeConsumer, consumers: 1 },
];

/// What the table shows of one transport.
struct Outcome {
    name: &'static str,
    consumers: usize,
    frames_per_s: f64,
    /// The slowest consumer's rate.
    consumer_frames_per_s: f64,
    /// The worst consumer's percentiles.
    latency: Summary,
    bad_pages: u64,
}

pub fn run(dir: Option<&Path>, args: &DemoArgs) -> CliResult {
    if !(args.seconds > 0.0 && args.seconds < 3600.0) {
        return Err(Failure::error("--seconds must be between 0 and 3600"));
    }
    let scratch = ScratchDir::new("demo", dir)?;
    println!(
        "shmpool demo: {WIDTH}x{HEIGHT} RGB frames ({FRAME_BYTES} bytes, dtype u8, shape ({HEIGHT},{WIDTH},{CHANNELS})), \
         {} s per transport, in {}",
        args.seconds,
        scratch.path().display()
    );
    let mut outcomes = Vec::new();
    for transport in &TRANSPORTS {
        outcomes.push(run_transport(transport, scratch.path(), args.seconds)?);
    }
    print_table(&outcomes);
    let bad: u64 = outcomes.iter().map(|o| o.bad_pages).sum();
    if bad > 0 {
        return Err(Failure::error(format!("{bad} pages held the wrong frame")));
    }
    Ok(())
}

fn run_transport(t: &Transport, dir: &Path, seconds: f64) -> CliResult<Outcome> {
    let pool = if t.producer == Role::ShmProducer {
        let config = Config::new(SLOTS, FRAME_BYTES).directory(dir).meta_bytes(CAPS.len());
        Some(Pool::create(POOL, &config)?)
    } else {
        fifo::create(&dir.join(FIFO))?;
        None
    };
    let mut peers = Peers::new();
    let args = |role: Role| {
        ["__demo-peer", "--role", &role.arg(), "--seconds", &seconds.to_string(), "--dir", &dir.display().to_string()]
            .map(String::from)
    };
    let started = Instant::now();
    let mut consumers = Vec::new();
    for c in 0..t.consumers {
        consumers.push(peers.spawn(&format!("{} consumer {c}", t.name), &args(t.consumer))?);
    }
    for &c in &consumers {
        peers.expect(c, "ready", started + PEER_TIMEOUT)?;
    }
    let producer = peers.spawn(&format!("{} producer", t.name), &args(t.producer))?;
    let ids: Vec<usize> = consumers.iter().copied().chain([producer]).collect();
    let results = follow(&mut peers, t, &ids, pool.as_ref(), seconds)?;
    peers.wait_all(Instant::now() + PEER_TIMEOUT)?;
    if let Some(pool) = &pool {
        pool.shutdown();
    }
    let received = &results[..t.consumers];
    Ok(Outcome {
        name: t.name,
        consumers: t.consumers,
        frames_per_s: results[t.consumers].rate(),
        consumer_frames_per_s: received.iter().map(PeerResult::rate).fold(f64::INFINITY, f64::min),
        latency: Summary::worst_of(received.iter().map(|r| &r.latency)),
        bad_pages: received.iter().map(|r| r.bad_pages).sum(),
    })
}

/// Shows the peers' progress each second until each has reported its result; closes the pool
/// once the producer is done so that the consumers drain it and finish.
fn follow(
    peers: &mut Peers,
    t: &Transport,
    ids: &[usize],
    pool: Option<&Pool>,
    seconds: f64,
) -> CliResult<Vec<PeerResult>> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds) + GRACE;
    let producer = ids[ids.len() - 1];
    let mut counts = vec![0u64; ids.len()];
    let mut results: Vec<Option<PeerResult>> = ids.iter().map(|_| None).collect();
    let mut next_tick = start + Duration::from_secs(1);
    let (mut shown, mut shown_at) = (0u64, start);
    while results.iter().any(Option::is_none) {
        match peers.next(next_tick.min(deadline)) {
            Some(Report::Line(id, line)) => {
                if let Some(n) = line.strip_prefix("progress ") {
                    counts[id] = n.trim().parse().unwrap_or(counts[id]);
                } else if let Some(json) = line.strip_prefix("result ") {
                    results[id] = Some(serde_json::from_str(json)?);
                }
            }
            Some(Report::Closed(id)) => {
                if id == producer {
                    if let Some(pool) = pool {
                        pool.shutdown();
                    }
                }
                if results[id].is_none() {
                    return Err(Failure::error(format!("{} ended without a result", peers.name(id))));
                }
            }
            None if Instant::now() >= deadline => {
                return Err(Failure::error(format!("{} did not finish in time", t.name)))
            }
            None => {}
        }
        if Instant::now() >= next_tick {
            let now = Instant::now();
            let produced = counts[ids.len() - 1];
            let rate = (produced - shown) as f64 / (now - shown_at).as_secs_f64();
            let received: Vec<String> = counts[..ids.len() - 1].iter().map(u64::to_string).collect();
            println!(
                "  {:<8} t={:.0}s  produced {produced:>7} ({rate:>6.0} frames/s)  received {}",
                t.name,
                (now - start).as_secs_f64(),
                received.join(" / ")
            );
            (shown, shown_at) = (produced, now);
            next_tick += Duration::from_secs(1);
        }
    }
    Ok(results.into_iter().map(Option::unwrap_or_default).collect())
}

fn print_table(outcomes: &[Outcome]) {
    println!();
    println!(
        "{:<9} {:>9} {:>10} {:>18} {:>18} {:>12} {:>12}",
        "transport", "consumers", "frames/s", "frames/s/consumer", "GB/s per consumer", "p50 latency", "p99 latency"
    );
    for o in outcomes {
        println!(
            "{:<9} {:>9} {:>10.0} {:>18.0} {:>18.2} {:>12} {:>12}",
            o.name,
            o.consumers,
            o.frames_per_s,
            o.consumer_frames_per_s,
            o.consumer_frames_per_s * FRAME_BYTES as f64 / 1e9,
            format_ns(o.latency.p50_ns),
            format_ns(o.latency.p99_ns)
        );
    }
    if let [shm, pipe] = outcomes {
        if pipe.consumer_frames_per_s > 0.0 {
            println!(
                "shmpool delivered {:.1}x the frames per consumer of the pipe, to {} consumers at once.",
                shm.consumer_frames_per_s / pipe.consumer_frames_per_s,
                shm.consumers
            );
        }
    }
    println!(
        "(latency: consumer's receive time minus the producer's send timestamp, worst consumer; the producer \
         runs flat out, so it includes time queued in the {SLOTS}-slot pool or the pipe)"
    );
    println!(
        "(GB/s: frame bytes handed to each consumer per second. With either transport the producer writes and \
         each consumer reads 8 bytes of every 4 KiB page; the pipe also copies every byte in and out of the kernel, \
         shmpool copies nothing)"
    );
}

// ---- peers -----------------------------------------------------------------------------------

/// Reports `progress N` about five times a second.
struct Ticker {
    next: Instant,
}

impl Ticker {
    fn new() -> Self {
        Ticker { next: Instant::now() }
    }

    fn progress(&mut self, frames: u64) -> CliResult {
        if Instant::now() >= self.next {
            say(&format!("progress {frames}"))?;
            self.next = Instant::now() + Duration::from_millis(200);
        }
        Ok(())
    }
}

pub fn peer(dir: Option<&Path>, args: &PeerArgs) -> CliResult {
    let dir = dir.ok_or_else(|| Failure::error("--dir is required"))?;
    let seconds = Duration::try_from_secs_f64(args.seconds).map_err(|_| Failure::error("invalid --seconds"))?;
    let result = match args.role {
        Role::ShmProducer => produce_shm(dir, seconds)?,
        Role::ShmConsumer => consume_shm(dir)?,
        Role::PipeProducer => produce_pipe(dir, seconds)?,
        Role::PipeConsumer => consume_pipe(dir)?,
    };
    say(&format!("progress {}", result.frames))?;
    say(&format!("result {}", serde_json::to_string(&result)?))
}

/// Sends frames with `send` (given each frame's index) for `seconds`, reporting progress.
fn produce_for(seconds: Duration, mut send: impl FnMut(u64) -> CliResult) -> CliResult<PeerResult> {
    let (start, mut ticker, mut frames) = (Instant::now(), Ticker::new(), 0);
    while start.elapsed() < seconds {
        send(frames)?;
        frames += 1;
        ticker.progress(frames)?;
    }
    Ok(PeerResult { frames, seconds: start.elapsed().as_secs_f64(), ..PeerResult::default() })
}

fn produce_shm(dir: &Path, seconds: Duration) -> CliResult<PeerResult> {
    let pool = Pool::open_in(POOL, Some(dir))?;
    let producer = pool.producer()?;
    produce_for(seconds, |index| {
        let mut buf = producer.acquire(Some(PEER_TIMEOUT))?;
        frame::stamp(&mut buf[..FRAME_BYTES], index);
        buf.set_len(FRAME_BYTES)?;
        buf.set_dtype(DType::U8);
        buf.set_shape(&SHAPE)?;
        buf.set_user_meta(CAPS.as_bytes())?;
        let t0 = monotonic_ns();
        frame::set_sent_at(&mut buf, t0);
        buf.set_timestamp(t0);
        buf.publish()?;
        Ok(())
    })
}

fn produce_pipe(dir: &Path, seconds: Duration) -> CliResult<PeerResult> {
    let mut pipe = fifo::open_writer(&dir.join(FIFO))?;
    fifo::enlarge(&pipe)?;
    let mut buf = vec![0u8; FRAME_BYTES];
    produce_for(seconds, |index| {
        frame::stamp(&mut buf, index);
        frame::set_sent_at(&mut buf, monotonic_ns());
        pipe.write_all(&buf)?;
        Ok(())
    })
}

/// Tallies received frames on the consumer side.
struct Tally {
    frames: u64,
    bad_pages: u64,
    latency: Samples,
    first: Option<Instant>,
    last: Instant,
    ticker: Ticker,
}

impl Tally {
    fn new() -> Self {
        Tally {
            frames: 0,
            bad_pages: 0,
            latency: Samples::with_capacity(1 << 16),
            first: None,
            last: Instant::now(),
            ticker: Ticker::new(),
        }
    }

    /// Records a frame received at `received_at` (ns) after touching it.
    fn add(&mut self, data: &[u8], received_at: u64) -> CliResult {
        let touched = frame::touch(data);
        self.latency.push(received_at.saturating_sub(touched.sent_at));
        self.bad_pages += touched.bad_pages;
        self.frames += 1;
        self.last = Instant::now();
        self.first.get_or_insert(self.last);
        self.ticker.progress(self.frames)
    }

    fn finish(mut self) -> PeerResult {
        let seconds = self.first.map_or(0.0, |f| (self.last - f).as_secs_f64());
        // Rates count the intervals between the first frame and the last.
        let frames = self.frames;
        PeerResult {
            frames,
            seconds: if frames > 1 { seconds * frames as f64 / (frames - 1) as f64 } else { seconds },
            latency: self.latency.summary(),
            bad_pages: self.bad_pages,
        }
    }
}

fn consume_shm(dir: &Path) -> CliResult<PeerResult> {
    let pool = Pool::open_in(POOL, Some(dir))?;
    let mut consumer = pool.consumer()?;
    say("ready")?;
    let mut tally = Tally::new();
    loop {
        match consumer.recv(Some(PEER_TIMEOUT)) {
            Ok(buf) => {
                let now = monotonic_ns();
                if buf.len() != FRAME_BYTES || buf.shape() != SHAPE || buf.dtype() != DType::U8 {
                    return Err(Failure::error(format!("frame {} has the wrong length, shape or dtype", buf.seq())));
                }
                tally.add(&buf, now)?;
            }
            Err(Error::Closed) => return Ok(tally.finish()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads one whole frame; `false` at a clean end of stream.
fn read_frame(pipe: &mut File, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match pipe.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "frame cut short")),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn consume_pipe(dir: &Path) -> CliResult<PeerResult> {
    say("ready")?;
    let mut pipe = fifo::open_reader(&dir.join(FIFO))?;
    let mut buf = vec![0u8; FRAME_BYTES];
    let mut tally = Tally::new();
    while read_frame(&mut pipe, &mut buf)? {
        tally.add(&buf, monotonic_ns())?;
    }
    Ok(tally.finish())
}
