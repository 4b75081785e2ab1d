//! Crashes, restarts and waiting: kill -9 of either side, a restarted sink under the same name,
//! a source that starts first or outlives its sink, and sink and source in separate namespaces.

mod common;

use common::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);
const SMALL: &str = "video/x-raw,format=RGB,width=320,height=240";

/// A sink fed by a live, endless source.
fn live_sink(env: &mut Env, pool: &str) -> Proc {
    let d = env.d();
    env.launch("", &format!("videotestsrc is-live=true ! {SMALL} ! shmpoolsink pool={pool} directory={d}"))
}

fn frames_seen(env: &mut Env, p: Proc, n: usize) {
    env.wait_for(p, LIMIT, &format!("{n} frames"), |log| checksums(log).len() >= n);
}

#[test]
fn a_killed_sink_is_replaced_under_its_name_and_the_source_resumes() {
    let mut env = Env::new("restart");
    let d = env.d();
    let second = format!("videotestsrc num-buffers=30 pattern=ball ! {SMALL}");
    let (want, _) = reference(&mut env, &second);
    let first = live_sink(&mut env, "k");
    let src = env.launch("", &format!("shmpoolsrc pool=k directory={d} timeout=20000000000 ! checksumsink"));
    frames_seen(&mut env, src, 5);
    env.kill9(first);
    assert_eq!(env.leftovers(), ["shmpool.k"], "the killed sink's pool stays until replaced or collected");
    // Same name, no ".0": the dead sink's pool is closed and replaced even though the source has it open.
    let restarted = env.launch("-m", &format!("{second} ! shmpoolsink pool=k directory={d} wait-for-consumers=1"));
    env.finish(restarted, LIMIT);
    let log = env.finish(src, LIMIT);
    let sums = checksums(&log);
    assert!(sums.len() >= 5 + want.len(), "{} frames", sums.len());
    assert_same(&sums[sums.len() - want.len()..], &want, "frames after the restart");
    assert!(env.leftovers().is_empty(), "left: {:?}", env.leftovers());
}

#[test]
fn a_source_without_producer_fails_after_its_timeout_and_gc_removes_the_dead_pool() {
    let mut env = Env::new("orphan");
    let d = env.d();
    let sink = live_sink(&mut env, "o");
    let src = env.launch("", &format!("shmpoolsrc pool=o directory={d} timeout=1000000000 ! checksumsink"));
    frames_seen(&mut env, src, 3);
    env.kill9(sink);
    let status = env.wait(src, LIMIT);
    let log = env.log(src);
    assert!(!status.success(), "the source should fail:\n{log}");
    assert!(log.contains("no producer on pool \"o\""), "the error should say why:\n{log}");
    assert_eq!(env.leftovers(), ["shmpool.o"]);
    assert_eq!(shmpool::Pool::gc(Some(&env.dir)).unwrap(), ["o"]);
    assert!(env.leftovers().is_empty());
}

#[test]
fn a_source_waiting_on_the_orphaned_pool_of_a_killed_sink_sleeps() {
    let mut env = Env::new("idle");
    let d = env.d();
    let sink = live_sink(&mut env, "i");
    let src = env.launch("", &format!("shmpoolsrc pool=i directory={d} timeout=0 ! checksumsink"));
    frames_seen(&mut env, src, 3);
    env.kill9(sink);
    let pool = shmpool::Pool::open_in("i", Some(&env.dir)).unwrap();
    let start = std::time::Instant::now();
    while !pool.stats().orphaned {
        assert!(start.elapsed() < LIMIT, "the pool of a killed sink is not orphaned");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The pool answers Orphaned at once to every receive: a source that retried at once would
    // use a whole CPU (or what a loaded machine leaves it) over this second.
    let before = env.cpu_seconds(src);
    std::thread::sleep(Duration::from_secs(1));
    let used = env.cpu_seconds(src) - before;
    assert!(used < 0.2, "the waiting source used {used:.2} s of CPU in 1 s");
}

#[test]
fn a_source_started_first_waits_for_the_pool() {
    let mut env = Env::new("early");
    let d = env.d();
    let source = format!("videotestsrc num-buffers=30 pattern=snow ! {SMALL}");
    let (want, _) = reference(&mut env, &source);
    let src = env.launch("", &format!("shmpoolsrc pool=e directory={d} timeout=20000000000 ! checksumsink"));
    env.wait_for(src, LIMIT, "the source to start", |log| log.contains("PREROLLING"));
    assert!(env.leftovers().is_empty(), "no pool yet");
    let sink = env.launch("", &format!("{source} ! shmpoolsink pool=e directory={d} wait-for-consumers=1"));
    env.finish(sink, LIMIT);
    assert_same(&checksums(&env.finish(src, LIMIT)), &want, "frames of a late sink");
}

/// A source killed mid-stream: the sink (fed live, so the source is still attached when killed)
/// must reap it and finish instead of waiting for its slots.
fn killed_source_releases_the_sink(overflow: &str) {
    let mut env = Env::new(&format!("killsrc-{overflow}"));
    let d = env.d();
    let src = env.launch("", &format!("shmpoolsrc pool=s directory={d} ! identity sleep-time=20000 ! checksumsink"));
    let sink = env.launch(
        "-m",
        &format!(
            "videotestsrc is-live=true num-buffers=60 ! {SMALL} ! shmpoolsink pool=s directory={d} slots=4 overflow={overflow} \
             wait-for-consumers=1"
        ),
    );
    frames_seen(&mut env, src, 5);
    env.kill9(src);
    let log = env.finish(sink, LIMIT);
    assert_eq!(stat(&log, "frames"), 60);
    assert!(env.leftovers().is_empty(), "left: {:?}", env.leftovers());
}

#[test]
fn a_killed_source_does_not_block_a_blocking_sink_for_good() {
    killed_source_releases_the_sink("block");
}

#[test]
fn a_killed_source_does_not_block_a_drop_oldest_sink() {
    killed_source_releases_the_sink("drop-oldest");
}

#[test]
fn sink_and_source_in_separate_namespaces_share_only_the_directory() {
    let mut env = Env::new("namespaces");
    let d = env.d();
    let source = format!("videotestsrc num-buffers=30 pattern=gamut ! {SMALL}");
    let (want, _) = reference(&mut env, &source);
    // Each side gets its own PID, IPC and mount namespace with a private /dev/shm.
    let isolated = |pipeline: String| -> Vec<String> {
        let script = format!("mount -t tmpfs tmpfs /dev/shm && exec gst-launch-1.0 {pipeline}");
        ["--pid", "--kill-child", "--mount", "--ipc", "sh", "-c", &script].iter().map(|s| s.to_string()).collect()
    };
    let src_args = isolated(format!("shmpoolsrc pool=n directory={d} timeout=20000000000 ! checksumsink"));
    let src = env.spawn("unshare", &src_args.iter().map(String::as_str).collect::<Vec<_>>());
    let sink_args = isolated(format!("{source} ! shmpoolsink pool=n directory={d} wait-for-consumers=1"));
    let sink = env.spawn("unshare", &sink_args.iter().map(String::as_str).collect::<Vec<_>>());
    env.finish(sink, LIMIT);
    assert_same(&checksums(&env.finish(src, LIMIT)), &want, "frames across namespaces");
    assert!(env.leftovers().is_empty(), "left: {:?}", env.leftovers());
}
