//! Helpers of the element tests: the built plugin, a private directory per test, `gst-launch-1.0`
//! processes that are killed and whose pool files are removed when the test ends, pass or fail.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The directory holding `libgstshmpool.so`, built (once per test binary) with cargo in the
/// profile of this test binary.
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "--quiet", "-p", "gst-plugin-shmpool", "--lib", "--manifest-path"]);
        cargo.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
        if release {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("running cargo build");
        assert!(status.success(), "cargo build -p gst-plugin-shmpool failed");
        let so = profile_dir.join("libgstshmpool.so");
        assert!(so.exists(), "{} not built", so.display());
        // A directory with only the plugin (so GStreamer does not scan every library of target/)
        // and its registry cache, kept in the build tree.
        let dir = profile_dir.join("gst-plugin-path");
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("libgstshmpool.so");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&so, &link).unwrap();
        dir
    })
}

/// One test's world: a pool directory, log files and the processes it started.
pub struct Env {
    pub dir: PathBuf,
    procs: Vec<Child>,
    logs: Vec<PathBuf>,
}

/// A started process, by its index in [`Env`].
#[derive(Clone, Copy, Debug)]
pub struct Proc(usize);

impl Env {
    pub fn new(name: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("gstshmpool-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Env { dir, procs: Vec::new(), logs: Vec::new() }
    }

    /// The directory as a pipeline property value.
    pub fn d(&self) -> String {
        self.dir.display().to_string()
    }

    /// Starts `program args…` with the plugin on GStreamer's path; output goes to a log file.
    pub fn spawn(&mut self, program: &str, args: &[&str]) -> Proc {
        let index = self.procs.len();
        let log = self.dir.join(format!("proc{index}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .env("GST_PLUGIN_PATH", plugin_dir())
            .env("GST_REGISTRY", plugin_dir().join("registry.bin"))
            .env_remove("GST_DEBUG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        self.procs.push(child);
        self.logs.push(log);
        Proc(index)
    }

    /// Starts `gst-launch-1.0 <flags> <pipeline>`; the pipeline is split on whitespace.
    pub fn launch(&mut self, flags: &str, pipeline: &str) -> Proc {
        let args: Vec<&str> = flags.split_whitespace().chain(pipeline.split_whitespace()).collect();
        self.spawn("gst-launch-1.0", &args)
    }

    /// Everything the process printed so far.
    pub fn log(&self, p: Proc) -> String {
        std::fs::read_to_string(&self.logs[p.0]).unwrap_or_default()
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait(&mut self, p: Proc, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.procs[p.0].try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < limit, "process {} still running after {limit:?}:\n{}", p.0, self.log(p));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit successfully; returns its output.
    pub fn finish(&mut self, p: Proc, limit: Duration) -> String {
        let status = self.wait(p, limit);
        let log = self.log(p);
        assert!(status.success(), "process {} failed ({status}):\n{log}", p.0);
        log
    }

    /// Waits until the process's output satisfies `cond`, at most `limit`.
    pub fn wait_for(&mut self, p: Proc, limit: Duration, what: &str, cond: impl Fn(&str) -> bool) {
        let start = Instant::now();
        while !cond(&self.log(p)) {
            if let Some(status) = self.procs[p.0].try_wait().unwrap() {
                panic!("process {} exited ({status}) before {what}:\n{}", p.0, self.log(p));
            }
            assert!(start.elapsed() < limit, "no {what} after {limit:?}:\n{}", self.log(p));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// CPU seconds (user + system) the process used so far.
    pub fn cpu_seconds(&self, p: Proc) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.procs[p.0].id())).unwrap();
        // Fields after the command name (which may hold spaces): utime and stime are the 12th and
        // 13th, in USER_HZ (100 a second on Linux).
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self, p: Proc) {
        let child = &mut self.procs[p.0];
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Files left in the directory that are not our logs.
    pub fn leftovers(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".log"))
            .collect();
        names.sort();
        names
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for child in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `(pts, checksum)` lines `checksumsink` printed.
pub fn checksums(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|l| {
            let (pts, sum) = l.split_once(' ')?;
            let looks_like_time = pts.len() == 17 && pts.as_bytes()[1] == b':';
            (looks_like_time && sum.len() == 40).then(|| (pts.to_string(), sum.to_string()))
        })
        .collect()
}

/// A field of the `shmpoolsink-stats` message `gst-launch-1.0 -m` printed.
pub fn stat(log: &str, field: &str) -> u64 {
    let line = log.lines().find(|l| l.contains("shmpoolsink-stats")).unwrap_or_else(|| panic!("no stats in:\n{log}"));
    let key = format!(" {field}=(guint64)");
    let rest = &line[line.find(&key).unwrap_or_else(|| panic!("no {field} in {line}")) + key.len()..];
    rest.split([',', ';']).next().unwrap().parse().unwrap()
}

/// The caps `gst-launch-1.0 -v` printed for pads of element `element` (e.g. "checksumsink0").
pub fn caps_of(log: &str, element: &str) -> Vec<String> {
    let mut caps: Vec<String> = log
        .lines()
        .filter(|l| l.contains(&format!(":{element}.GstPad:")) && l.contains(": caps = "))
        .map(|l| l.split_once(": caps = ").unwrap().1.to_string())
        .collect();
    caps.dedup();
    caps
}

/// Reference checksums: the same source straight into checksumsink, in this process's pipeline.
pub fn reference(env: &mut Env, source: &str) -> (Vec<(String, String)>, Vec<String>) {
    let p = env.launch("-v", &format!("{source} ! checksumsink"));
    let log = env.finish(p, Duration::from_secs(60));
    (checksums(&log), caps_of(&log, "checksumsink0"))
}

/// Asserts that presentation timestamps strictly increase.
pub fn assert_increasing(sums: &[(String, String)]) {
    for w in sums.windows(2) {
        assert!(w[0].0 < w[1].0, "PTS not increasing: {} then {}", w[0].0, w[1].0);
    }
}

/// Asserts two checksum lists are equal, reporting lengths and the first difference only.
pub fn assert_same(got: &[(String, String)], want: &[(String, String)], what: &str) {
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "{what}: {} frames received, {} expected; first difference at frame {i}: got {:?}, want {:?}",
            got.len(),
            want.len(),
            got.get(i),
            want.get(i)
        );
    }
}
