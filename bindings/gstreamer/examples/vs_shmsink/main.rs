//! 1080p RGB from one sink process to 1 and 2 source processes: shmpoolsink -> shmpoolsrc against
//! GStreamer's shmsink -> shmsrc, measured the same way in the same run. For each case (upstream
//! allocating from the sink's proposed pool: videotestsrc; upstream with buffers of its own: an
//! appsrc) and consumer count it prints frames/s, CPU per frame (user + system of every process),
//! the latency from the sink's pad to the source's push (p50, p99; CLOCK_MONOTONIC, see `roles`),
//! the sink's copies and lost frames; then the medians over the repetitions and the ratios
//! shmpool / shmsink (the median of the ratios of each repetition's two runs, taken one right after
//! the other: the machine may be shared). A run that does not end within the deadline is a stall.
//!
//! Run through `bindings/gstreamer/benches/vs_shmsink.sh` (builds, points GStreamer at the plugin):
//!
//! ```text
//! vs_shmsink [--frames N] [--reps R] [--cases pool,copy] [--consumers 1,2] [--systems shmpool,shmsink]
//!            [--deadline-s S] [--rate FPS] [--jsonl FILE]
//! ```
//!
//! `--rate`: upstream makes FPS frames a second (videotestsrc is-live, the appsrc paced) instead of
//! as many as the pipeline takes: the latency is then the hand-over's, without the queue that
//! builds up in the pool or the area when the producer outruns a source.

mod clock;
mod roles;
mod stats;

use roles::{Case, System};
use stats::{Outcome, Printed};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Options {
    frames: usize,
    reps: usize,
    cases: Vec<Case>,
    consumers: Vec<u32>,
    systems: Vec<System>,
    deadline: Duration,
    /// Frames a second upstream makes (0: as fast as the pipeline takes them).
    rate: u32,
    jsonl: Option<PathBuf>,
}

fn list<T>(value: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    value.split(',').map(|v| parse(v).ok_or_else(|| format!("unknown value {v:?}"))).collect()
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        frames: 600,
        reps: 3,
        cases: vec![Case::Pool, Case::Copy],
        consumers: vec![1, 2],
        systems: vec![System::Shmpool, System::Shmsink],
        deadline: Duration::from_secs(60),
        rate: 0,
        jsonl: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        // `cargo bench`-style runners add flags of their own.
        if flag == "--bench" {
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || value.parse::<u64>().map_err(|_| format!("{flag}: not a number: {value}"));
        match flag.as_str() {
            "--frames" => o.frames = num()?.max(20) as usize,
            "--reps" => o.reps = num()? as usize,
            "--cases" => o.cases = list(value, Case::parse)?,
            "--consumers" => o.consumers = list(value, |v| v.parse().ok().filter(|&n| n > 0))?,
            "--systems" => o.systems = list(value, System::parse)?,
            "--deadline-s" => o.deadline = Duration::from_secs(num()?),
            "--rate" => o.rate = u32::try_from(num()?).map_err(|_| "--rate: too large")?,
            "--jsonl" => o.jsonl = Some(value.into()),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(o)
}

fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Starts this program in role `args`, its stdout and stderr into files `out`, `out.err`.
fn spawn(out: &Path, args: &[String]) -> Child {
    let exe = std::env::current_exe().expect("own path");
    let file = std::fs::File::create(out).expect("output file");
    let err = std::fs::File::create(err_file(out)).expect("error file");
    Command::new(exe).args(args).stdin(Stdio::null()).stdout(file).stderr(err).spawn().expect("spawning a role")
}

fn err_file(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".err");
    name.into()
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ended {
    Ok,
    /// It exited with an error.
    Failed,
    /// It was still running at the deadline (killed then).
    Stalled,
}

fn remove_shmsink_segments(pid: u32) {
    let prefix = format!("shmpipe.{pid:5}.");
    for entry in std::fs::read_dir("/dev/shm").into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Waits for `child` until `deadline`; kills it after that.
fn finish(child: &mut Child, deadline: Instant) -> Ended {
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ended::Ok,
            Ok(Some(_)) => return Ended::Failed,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                // A killed shmsink leaves its segment, /dev/shm/shmpipe.<pid %5d>.<n %5d>.
                remove_shmsink_segments(child.id());
                return Ended::Stalled;
            }
        }
    }
}

/// One measurement: a producer and `consumers` sources; a stall if it does not end in time.
fn measure(dir: &Path, o: &Options, system: System, case: Case, consumers: u32, tag: &str) -> Outcome {
    let name = format!("{tag}-{}-{}-{consumers}", system.name(), case.name());
    let started = Instant::now();
    let deadline = started + o.deadline;
    let (frames, d) = (o.frames.to_string(), dir.display().to_string());
    let out = |who: &str| dir.join(format!("{name}.{who}"));
    let role = |r: &str| vec![r.to_string(), system.name().into(), name.clone(), d.clone(), frames.clone()];
    let mut args = role("produce");
    args.extend([case.name().to_string(), consumers.to_string(), o.rate.to_string()]);
    let mut producer = spawn(&out("producer"), &args);
    let ready = system.ready_file(dir, &name);
    while !ready.exists() && Instant::now() < deadline && producer.try_wait().ok().flatten().is_none() {
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut sources: Vec<Child> =
        (0..consumers).map(|k| spawn(&out(&format!("consumer{k}")), &role("consume"))).collect();
    let mut ends: Vec<Ended> = sources.iter_mut().map(|c| finish(c, deadline)).collect();
    ends.insert(0, finish(&mut producer, deadline));
    let ended = ends.iter().copied().max();
    let read = |who: &str, extra: &str| std::fs::read_to_string(out(who)).ok().and_then(|t| Printed::parse(&t, extra));
    let sources: Option<Vec<Printed>> = (0..consumers).map(|k| read(&format!("consumer{k}"), "received")).collect();
    let printed = read("producer", "copies").zip(sources);
    match (ended, printed) {
        (Some(Ended::Ok), Some((p, c))) => {
            Outcome { wall_fps: o.frames as f64 / started.elapsed().as_secs_f64(), ..stats::outcome(&p, &c) }
        }
        (ended, _) => {
            let stalled = ended == Some(Ended::Stalled);
            let err = |who: &str| std::fs::read_to_string(err_file(&out(who))).unwrap_or_default();
            let mut why = format!("{name}: {}", if stalled { "STALL" } else { "FAILED" });
            let whos = std::iter::once("producer".to_string()).chain((0..consumers).map(|k| format!("consumer{k}")));
            for (index, who) in whos.enumerate() {
                let text = err(&who);
                let tail: Vec<&str> = text.lines().rev().take(3).collect();
                why += &format!("\n  {who}: {:?} {}", ends[index], tail.join(" | "));
            }
            eprintln!("{why}");
            Outcome { stalled, failed: !stalled, ..Outcome::default() }
        }
    }
}

fn label(case: Case, consumers: u32, system: System) -> String {
    let sys = match system {
        System::Shmpool => "shmpoolsink->shmpoolsrc",
        System::Shmsink => "shmsink->shmsrc",
    };
    format!("{} x{consumers} {sys}", case.name())
}

fn run(o: &Options) -> Result<(), String> {
    // In /dev/shm like shmsink's segment (a disk-backed directory would add writeback).
    let base = std::env::var_os("SHMPOOL_DIR").map_or_else(|| PathBuf::from("/dev/shm"), PathBuf::from);
    let dir = base.join(format!("vs_shmsink-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut jsonl = match &o.jsonl {
        Some(p) => Some(std::fs::OpenOptions::new().create(true).append(true).open(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let mut all: Vec<(Case, u32, System, usize, Outcome)> = Vec::new();
    let pace = if o.rate == 0 { "as fast as they go".to_string() } else { format!("{} a second", o.rate) };
    println!("1080p RGB, {} frames {pace}, {} warm-up frames left out; each run:", o.frames, stats::warmup(o.frames));
    println!("{}  load", stats::header());
    for rep in 1..=o.reps {
        for &case in &o.cases {
            for &consumers in &o.consumers {
                // Alternate the order, so neither system always runs right after the other.
                let mut systems = o.systems.clone();
                if rep % 2 == 0 {
                    systems.reverse();
                }
                for system in systems {
                    let load = loadavg();
                    let m = measure(&dir, o, system, case, consumers, &format!("r{rep}"));
                    println!("{}  {load}", stats::row(&label(case, consumers, system), &m));
                    if let Some(f) = jsonl.as_mut() {
                        use std::io::Write;
                        let _ = writeln!(
                            f,
                            "{{\"system\": \"{}sink-elements\", \"case\": \"{}\", \"consumers\": {consumers}, \"rep\": {rep}, \
                             \"fps\": {:.1}, \"wall_fps\": {:.1}, \"cpu_ms\": {:.3}, \"p50_us\": {:.0}, \"p99_us\": {:.0}, \"copies\": {}, \
                             \"lost\": {}, \"stalled\": {}, \"failed\": {}, \"load\": \"{load}\"}}",
                            match system { System::Shmpool => "shmpool", System::Shmsink => "shm" },
                            case.name(), m.fps, m.wall_fps, m.cpu_ms, m.p50_us, m.p99_us, m.copies, m.lost, m.stalled, m.failed
                        );
                    }
                    all.push((case, consumers, system, rep, m));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\nmedians over {} runs (stalls: runs that did not end within {:?}; failures: a process failed):",
        o.reps, o.deadline
    );
    println!("{}  stalls failures", stats::header());
    for &case in &o.cases {
        for &consumers in &o.consumers {
            let runs_of = |s: System| -> Vec<Outcome> {
                all.iter().filter(|r| (r.0, r.1, r.2) == (case, consumers, s)).map(|r| r.4).collect()
            };
            let pick = |s: System| -> (Outcome, usize, usize) {
                let runs = runs_of(s);
                let count = |f: fn(&Outcome) -> bool| runs.iter().filter(|r| f(r)).count();
                (stats::median(&runs), count(|r| r.stalled), count(|r| r.failed))
            };
            for &system in &o.systems {
                let (m, stalls, failures) = pick(system);
                println!("{}  {stalls} {failures}", stats::row(&label(case, consumers, system), &m));
            }
            if o.systems.len() == 2 {
                let pairs: Vec<(Outcome, Outcome)> =
                    runs_of(System::Shmpool).into_iter().zip(runs_of(System::Shmsink)).collect();
                let label = format!("{} x{consumers} shmpool / shmsink", case.name());
                println!("{}", stats::ratios(&label, stats::paired_ratios(&pairs)));
            }
        }
    }
    println!("load after: {}", loadavg());
    Ok(())
}

/// `produce SYSTEM NAME DIR FRAMES CASE CONSUMERS RATE` or `consume SYSTEM NAME DIR FRAMES`.
fn role(args: &[String]) -> Result<(), String> {
    let system = System::parse(&args[1]).ok_or("unknown system")?;
    let (name, dir) = (&args[2], Path::new(&args[3]));
    let frames: usize = args[4].parse().map_err(|_| "frames")?;
    match (args[0].as_str(), args.get(5), args.get(6), args.get(7)) {
        ("produce", Some(case), Some(k), Some(rate)) => {
            let case = Case::parse(case).ok_or("unknown case")?;
            let (k, rate) = (k.parse().map_err(|_| "consumers")?, rate.parse().map_err(|_| "rate")?);
            roles::produce(system, case, name, dir, frames, k, rate)
        }
        ("consume", ..) => roles::consume(system, name, dir, frames),
        _ => Err("bad role arguments".into()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("produce" | "consume") if args.len() >= 5 => role(&args),
        _ => options(&args).and_then(|o| run(&o)),
    };
    if let Err(e) = result {
        eprintln!("vs_shmsink: {e}");
        std::process::exit(1);
    }
}
