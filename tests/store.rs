//! Named variables across real processes: no dirty reads, read-only inputs enforced by the MMU,
//! dynamic shapes, late joiners, one writer, and kill -9 of writers and readers at random.

mod common;

use common::*;
use shmpool::store::{Decl, Kind, Store};
use shmpool::{DType, Error};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

const VAR: &str = "pattern";

fn decl() -> Decl {
    // Six buffers: three readers, each holding two versions, leave the writer one.
    Decl::array(DType::U64, &[-1]).capacity(8 * 1024).versions(6)
}

/// The payload of the `k`-th write: its number first, then values derived from it; its length
/// changes with `k` too (a dynamic shape).
fn pattern(k: u64) -> Vec<u64> {
    let len = 1 + (k % 1000) as usize;
    (0..len as u64).map(|i| if i == 0 { k } else { k.wrapping_mul(0x9e37_79b9).wrapping_add(i) }).collect()
}

fn write_pattern(store: &Store, k: u64) -> Result<u64, Error> {
    let data = pattern(k);
    let mut w = store.write(VAR)?;
    w.array_mut::<u64>(&[data.len()])?.copy_from_slice(&data);
    w.commit()
}

/// Checks a version is exactly `pattern(k)` for the `k` in its first element; returns `k`.
fn check_pattern(v: &shmpool::store::Version) -> Result<u64, String> {
    let got = v.as_slice::<u64>().map_err(|e| e.to_string())?;
    let k = *got.first().ok_or("empty version")?;
    if got != pattern(k).as_slice() || v.shape() != [got.len()] {
        return Err(format!("version {} is not pattern {k} (len {})", v.version(), got.len()));
    }
    Ok(k)
}

fn open(dir: &str, job: &str) -> Result<Store, String> {
    Store::open_in(job, Some(Path::new(dir))).map_err(|e| e.to_string())
}

#[test]
fn child() {
    child_main(|role, args| {
        let store = open(&args[0], &args[1])?;
        let s = |e: Error| e.to_string();
        match role {
            // Publishes versions 1..=n, version k holding pattern(k).
            "writer" => {
                store.declare(VAR, &decl()).map_err(s)?;
                let n: u64 = args[2].parse().unwrap();
                for k in 1..=n {
                    let v = write_pattern(&store, k).map_err(s)?;
                    if v != k {
                        return Err(format!("published version {v} for write {k}"));
                    }
                }
                Ok(())
            }
            // Reads until version n; every version whole and newer than the last, and still
            // intact after the writer went on (it was held meanwhile).
            "reader" => {
                let n: u64 = args[2].parse().unwrap();
                let mut previous: Option<shmpool::store::Version> = None;
                let mut seen = 0;
                loop {
                    let last = previous.as_ref().map_or(0, |p| p.version());
                    if last >= n {
                        break;
                    }
                    let v = store.read_newer(VAR, last, secs(20)).map_err(s)?;
                    let k = check_pattern(&v)?;
                    if v.version() <= last || k != v.version() {
                        return Err(format!("version {} (pattern {k}) after {last}", v.version()));
                    }
                    if seen % 50 == 0 {
                        // Now and then a slow reader: the writer laps its buffers meanwhile.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    for held in previous.iter().chain([&v]) {
                        check_pattern(held).map_err(|e| format!("held version changed: {e}"))?;
                    }
                    previous = Some(v);
                    seen += 1;
                }
                println!("seen {seen}");
                Ok(())
            }
            // Writes through a read-only view: must die of SIGSEGV.
            "poke" => {
                let v = store.read(VAR, secs(10)).map_err(s)?;
                let p = v.as_ptr() as *mut u64;
                // SAFETY: deliberately unsound: the page is mapped read-only, so this store faults.
                unsafe { p.write_volatile(7) };
                Err("the write through a read-only view did not fault".into())
            }
            // Forks while holding a version: the child cannot use the handle, and its copy of
            // the version does not drop the parent's hold.
            "fork" => {
                store.declare(VAR, &decl()).map_err(s)?;
                write_pattern(&store, 1).map_err(s)?;
                let held = store.read(VAR, secs(1)).map_err(s)?;
                // SAFETY: the child only calls into this crate and exits with _exit; this child
                // process has no other thread that could hold a lock at the fork.
                match unsafe { libc::fork() } {
                    0 => {
                        let refused = matches!(store.try_read(VAR), Err(Error::Unsupported(_)));
                        drop(held);
                        // SAFETY: _exit ends the forked child without running the parent's atexit.
                        unsafe { libc::_exit(if refused { 0 } else { 1 }) }
                    }
                    pid if pid > 0 => {
                        let mut status = 0;
                        // SAFETY: waiting for our own child.
                        unsafe { libc::waitpid(pid, &mut status, 0) };
                        if status != 0 {
                            return Err(format!("forked child: status {status}"));
                        }
                        let readers = store.variables().map_err(s)?[0].readers;
                        if readers != 1 {
                            return Err(format!("{readers} readers after the child dropped its copy"));
                        }
                        check_pattern(&held).map(|_| ())
                    }
                    _ => Err("fork failed".into()),
                }
            }
            // Publishes forever, continuing after the latest version (a restarted writer).
            "writer-forever" => {
                store.declare(VAR, &decl()).map_err(s)?;
                loop {
                    let next = store.try_read(VAR).map_err(s)?.map_or(0, |v| v.version()) + 1;
                    write_pattern(&store, next).map_err(s)?;
                }
            }
            // Reads forever, holding its last version while it waits for the next (two readers
            // hold at most 3 of the 4 buffers, the latest among them: the writer always has one).
            "reader-forever" => {
                let mut held = store.read(VAR, secs(30)).map_err(s)?;
                loop {
                    let v = store.read_newer(VAR, held.version(), secs(30)).map_err(s)?;
                    check_pattern(&v)?;
                    held = v;
                }
            }
            // Waits for a version newer than the latest (until killed).
            "wait-newer" => {
                let v = store.read(VAR, secs(10)).map_err(s)?.version();
                store.read_newer(VAR, v, secs(60)).map_err(s)?;
                Err("a newer version arrived: the test publishes none while this waits".into())
            }
            // Reads the latest version once and prints it (a late joiner).
            "late" => {
                let v = store.read(VAR, secs(10)).map_err(s)?;
                println!("late {} {}", v.version(), check_pattern(&v)?);
                Ok(())
            }
            other => Err(format!("unknown role {other}")),
        }
    });
}

fn args(dir: &TempDir, job: &str, rest: &[&str]) -> Vec<String> {
    let mut a = vec![dir.path().to_str().unwrap().to_string(), job.to_string()];
    a.extend(rest.iter().map(|s| s.to_string()));
    a
}

#[test]
fn readers_never_see_a_dirty_or_older_version() {
    let dir = TempDir::new("store-dirty");
    let n = "10000";
    // Readers first: they wait for the declaration and the first version.
    let readers: Vec<_> = (0..3).map(|_| spawn_child("reader", &args(&dir, "job", &[n]))).collect();
    let writer = spawn_child("writer", &args(&dir, "job", &[n]));
    expect_success(writer, Duration::from_secs(120), "writer");
    for r in readers {
        let out = expect_success(r, Duration::from_secs(60), "reader");
        assert!(out.contains("seen "), "{out}");
    }
}

#[test]
fn a_write_through_an_input_view_faults_and_changes_nothing() {
    let dir = TempDir::new("store-ro");
    let store = Store::open_in("job", Some(dir.path())).unwrap();
    store.declare(VAR, &decl()).unwrap();
    write_pattern(&store, 1).unwrap();
    let child = child_command("child", "poke", &args(&dir, "job", &[])).spawn().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{}", String::from_utf8_lossy(&out.stderr));
    let v = store.read(VAR, secs(1)).unwrap();
    assert_eq!((v.version(), check_pattern(&v).unwrap()), (1, 1));
}

#[test]
fn shapes_change_per_version_up_to_the_capacity() {
    let dir = TempDir::new("store-shape");
    let store = Store::open_in("job", Some(dir.path())).unwrap();
    store.declare("img", &Decl::array(DType::F32, &[-1, 2, 3]).capacity(4 * 2 * 3 * 10)).unwrap();
    for rows in [1usize, 10, 4] {
        let mut w = store.write("img").unwrap();
        w.array_mut::<f32>(&[rows, 2, 3]).unwrap().fill(rows as f32);
        w.commit().unwrap();
        let v = store.read("img", secs(1)).unwrap();
        assert_eq!(v.shape(), [rows, 2, 3]);
        assert!(v.as_slice::<f32>().unwrap().iter().all(|&x| x == rows as f32));
    }
    let mut w = store.write("img").unwrap();
    assert!(matches!(w.array_mut::<f32>(&[11, 2, 3]), Err(Error::InvalidArgument(_))), "over capacity");
    assert!(matches!(w.array_mut::<f32>(&[1, 2, 4]), Err(Error::InvalidArgument(_))), "fixed dim differs");
    assert!(matches!(w.array_mut::<f64>(&[1, 2, 3]), Err(Error::InvalidArgument(_))), "dtype mismatch");
    assert!(matches!(w.set_i64(3), Err(Error::InvalidArgument(_))), "kind mismatch");
    drop(w); // discarded: the latest stays the 4-row version
    let v = store.read("img", secs(1)).unwrap();
    assert_eq!((v.version(), v.shape()), (3, &[4, 2, 3][..]));
    assert!(v.as_slice::<f64>().is_err());
}

#[test]
fn scalars_and_strings() {
    let dir = TempDir::new("store-scalar");
    let store = Store::open_in("job", Some(dir.path())).unwrap();
    store.declare("n", &Decl::scalar(Kind::I64)).unwrap();
    store.declare("x", &Decl::scalar(Kind::F64)).unwrap();
    store.declare("ok", &Decl::scalar(Kind::Bool)).unwrap();
    store.declare("s", &Decl::string(8)).unwrap();
    let mut w = store.write("n").unwrap();
    w.set_i64(-5).unwrap();
    w.commit().unwrap();
    let mut w = store.write("x").unwrap();
    w.set_f64(2.5).unwrap();
    w.commit().unwrap();
    let mut w = store.write("ok").unwrap();
    w.set_bool(true).unwrap();
    w.commit().unwrap();
    let mut w = store.write("s").unwrap();
    assert!(w.set_str("too long!").is_err());
    w.set_str("héllo").unwrap();
    w.commit().unwrap();
    assert_eq!(store.read("n", secs(1)).unwrap().i64().unwrap(), -5);
    assert_eq!(store.read("x", secs(1)).unwrap().f64().unwrap(), 2.5);
    assert!(store.read("ok", secs(1)).unwrap().bool().unwrap());
    assert_eq!(store.read("s", secs(1)).unwrap().as_str().unwrap(), "héllo");
    assert!(store.read("s", secs(1)).unwrap().i64().is_err());
}

#[test]
fn bad_names_and_declarations_are_refused() {
    let dir = TempDir::new("store-bad");
    assert!(Store::open_in("a/b", Some(dir.path())).is_err());
    let store = Store::open_in("job", Some(dir.path())).unwrap();
    for name in ["", ".x", "a b", "../etc", &"n".repeat(64)] {
        assert!(matches!(store.declare(name, &decl()), Err(Error::InvalidArgument(_))), "{name:?}");
        assert!(matches!(store.read(name, secs(0)), Err(Error::InvalidArgument(_))), "{name:?}");
    }
    store.declare(VAR, &decl()).unwrap();
    store.declare(VAR, &decl()).unwrap(); // the same again: fine
    assert!(matches!(store.declare(VAR, &decl().capacity(16)), Err(Error::InvalidArgument(_))));
    assert!(matches!(store.write("undeclared"), Err(Error::InvalidArgument(_))));
    let t = Instant::now();
    assert!(matches!(store.read("undeclared", Some(Duration::from_millis(50))), Err(Error::Timeout)));
    assert!(matches!(store.read(VAR, Some(Duration::from_millis(50))), Err(Error::Timeout)));
    assert!(t.elapsed() >= Duration::from_millis(100));
}

#[test]
fn a_second_writer_is_refused_until_the_first_is_gone() {
    let dir = TempDir::new("store-2w");
    let first = Store::open_in("job", Some(dir.path())).unwrap();
    let second = Store::open_in("job", Some(dir.path())).unwrap();
    first.declare(VAR, &decl()).unwrap();
    write_pattern(&first, 1).unwrap();
    let e = write_pattern(&second, 2).unwrap_err();
    assert!(matches!(e, Error::WriterBusy { ref name } if name == VAR), "{e}");
    assert!(e.to_string().contains("already has a writer"), "{e}");
    drop(first);
    assert_eq!(write_pattern(&second, 2).unwrap(), 2);
}

#[test]
fn a_forked_child_cannot_use_the_parents_handle() {
    let dir = TempDir::new("store-fork");
    expect_success(spawn_child("fork", &args(&dir, "job", &[])), Duration::from_secs(20), "fork");
}

#[test]
fn a_late_joiner_gets_the_latest_version() {
    let dir = TempDir::new("store-late");
    let store = Store::open_in("job", Some(dir.path())).unwrap();
    store.declare(VAR, &decl()).unwrap();
    for k in 1..=5 {
        write_pattern(&store, k).unwrap();
    }
    let out = expect_success(spawn_child("late", &args(&dir, "job", &[])), Duration::from_secs(20), "late");
    assert!(out.contains("late 5 5"), "{out}");
}

#[test]
fn a_damaged_table_is_an_error_not_a_crash() {
    let dir = TempDir::new("store-damaged");
    let store = Store::open_in("job", Some(dir.path())).unwrap();
    store.declare(VAR, &decl()).unwrap();
    write_pattern(&store, 1).unwrap();
    let table = store.path().join("table");
    let mut bytes = std::fs::read(&table).unwrap();
    let pristine = bytes.clone();
    // Garbage over the first entry (after the 64-byte header): every field checked on open.
    let mut x: u32 = 12345;
    for b in &mut bytes[64..64 + 1024] {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    std::fs::write(&table, &bytes).unwrap();
    let other = Store::open_in("job", Some(dir.path())).unwrap();
    assert!(other.read(VAR, Some(Duration::from_millis(20))).is_err());
    assert!(other.variables().unwrap().is_empty());
    // A damaged header: the store does not open.
    bytes[..8].copy_from_slice(b"garbage!");
    std::fs::write(&table, &bytes).unwrap();
    assert!(matches!(Store::open_in("job", Some(dir.path())), Err(Error::Corrupted(_))));
    std::fs::write(&table, &pristine).unwrap();
    assert_eq!(check_pattern(&store.read(VAR, secs(1)).unwrap()).unwrap(), 1);
}

#[test]
fn kill_9_of_writers_and_readers_leaks_nothing() {
    let dir = TempDir::new("store-kill");
    let store = Store::open_in("job", Some(dir.path())).unwrap();
    store.declare(VAR, &decl()).unwrap();
    let spawn = |role: &str| spawn_child(role, &args(&dir, "job", &[]));
    let mut writer = spawn("writer-forever");
    let mut readers: Vec<_> = (0..2).map(|_| spawn("reader-forever")).collect();
    let mut rng_state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let progress = |store: &Store| store.try_read(VAR).unwrap().map_or(0, |v| v.version());
    let started = Instant::now();
    for kill in 0..120 {
        // Wait until the pipeline makes progress, then kill one process at random, mid-flight.
        let before = progress(&store);
        wait_until(Duration::from_secs(20), "progress after a kill", || progress(&store) > before + 5);
        std::thread::sleep(Duration::from_micros(next() % 3000));
        let victim = (next() % 3) as usize;
        if victim == 0 {
            kill9(&mut writer);
            writer = spawn("writer-forever");
        } else {
            kill9(&mut readers[victim - 1]);
            readers[victim - 1] = spawn("reader-forever");
        }
        assert!(started.elapsed() < Duration::from_secs(240), "kill {kill} too slow");
    }
    kill9(&mut writer);
    for r in &mut readers {
        kill9(r);
    }
    // Nothing leaked: no holds left once the dead are swept, no stray files, still usable.
    store.sweep();
    let vars = store.variables().unwrap();
    assert_eq!((vars.len(), vars[0].readers), (1, 0), "{vars:?}");
    let mut files: Vec<_> = std::fs::read_dir(store.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    files.sort();
    assert_eq!(files, ["table", "var.0.1"], "{files:?}");
    let last = progress(&store);
    for k in 1..=20 {
        assert_eq!(write_pattern(&store, last + k).unwrap(), last + k);
    }
    let v = store.read(VAR, secs(1)).unwrap();
    assert_eq!(check_pattern(&v).unwrap(), last + 20);
    // Nobody else has it open any more: gc removes it once our handle is gone.
    drop(v);
    assert!(Store::gc(Some(dir.path())).unwrap().is_empty());
    drop(store);
    assert_eq!(Store::gc(Some(dir.path())).unwrap(), ["job"]);
}

#[test]
fn a_reader_killed_while_waiting_stops_costing_the_writer() {
    let dir = TempDir::new("store-dead-waiter");
    let store = Store::open_in("job", Some(dir.path())).unwrap();
    store.declare(VAR, &decl()).unwrap();
    write_pattern(&store, 1).unwrap();
    let waiting = |store: &Store| store.variables().unwrap()[0].waiting;
    let mut reader = spawn_child("wait-newer", &args(&dir, "job", &[]));
    wait_until(Duration::from_secs(20), "the reader waits", || waiting(&store) == 1);
    kill9(&mut reader);
    // Its registration outlives it (so every publication would make a wake system call) ...
    assert_eq!(waiting(&store), 1);
    // ... until the first publication that pays for it sweeps the dead place.
    write_pattern(&store, 2).unwrap();
    assert_eq!(waiting(&store), 0);
}

const ROUNDS: i64 = 20;

/// The loader's output in round `r` (its length changes per round).
fn raw(r: i64) -> Vec<u32> {
    (0..=r as u32).map(|i| r as u32 * 1000 + i).collect()
}

/// One stage of the loader → model → sink pipeline, in lockstep: the sink acknowledges each
/// round, the loader waits for the acknowledgement before loading the next.
fn stage(store: &Store, name: &str) -> Result<(), String> {
    let s = |e: Error| e.to_string();
    let wait = secs(30);
    let ack = ("ack", Decl::scalar(Kind::I64));
    let raw_decl = ("raw", Decl::array(DType::U32, &[-1]).capacity(4 * 64));
    let scaled_decl = ("scaled", Decl::array(DType::F64, &[-1]).capacity(8 * 64));
    match name {
        "loader" => {
            let mut op = shmpool::store::Operator::new(store, "loader", &["ack"], &[raw_decl]).map_err(s)?;
            for _ in 0..ROUNDS {
                op.run(wait, |inp, out| {
                    let data = raw(inp.get("ack")?.i64()? + 1);
                    out[0].array_mut::<u32>(&[data.len()])?.copy_from_slice(&data);
                    Ok(())
                })
                .map_err(s)?;
            }
        }
        "model" => {
            let mut op = shmpool::store::Operator::new(store, "model", &["raw"], &[scaled_decl]).map_err(s)?;
            for _ in 0..ROUNDS {
                op.run(wait, |inp, out| {
                    let input = inp.get("raw")?.as_slice::<u32>()?;
                    let output = out[0].array_mut::<f64>(&[input.len()])?;
                    for (o, &i) in output.iter_mut().zip(input) {
                        *o = i as f64 * 0.5;
                    }
                    Ok(())
                })
                .map_err(s)?;
            }
        }
        "sink" => {
            let mut op = shmpool::store::Operator::new(store, "sink", &["scaled"], &[ack]).map_err(s)?;
            let mut first = store.write("ack").map_err(s)?;
            first.set_i64(0).map_err(s)?;
            first.commit().map_err(s)?;
            let mut total = 0.0;
            for r in 1..=ROUNDS {
                let got = op.run(wait, |inp, out| {
                    let v = inp.get("scaled")?.as_slice::<f64>()?.to_vec();
                    out[0].set_i64(r)?;
                    Ok(v)
                });
                let got = got.map_err(s)?;
                let want: Vec<f64> = raw(r).iter().map(|&x| x as f64 * 0.5).collect();
                if got != want {
                    return Err(format!("round {r}: got {got:?}, want {want:?}"));
                }
                total += got.iter().sum::<f64>();
            }
            println!("final {total}");
        }
        other => return Err(format!("no stage {other}")),
    }
    Ok(())
}

#[test]
fn stage_child() {
    child_main(|role, args| stage(&open(&args[0], &args[1])?, role));
}

/// This test binary as `stage` in PID, mount and IPC namespaces of its own: it shares only the
/// directory with the others.
fn isolated_stage(dir: &TempDir, stage: &str) -> std::process::Child {
    let inner = child_command("stage_child", stage, &args(dir, "pipe", &[]));
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount", "--ipc", "--"]).arg(inner.get_program()).args(inner.get_args());
    for (k, v) in inner.get_envs() {
        cmd.env(k, v.unwrap());
    }
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    cmd.spawn().expect("unshare")
}

#[test]
fn a_three_stage_pipeline_started_in_reverse_order_across_namespaces() {
    let dir = TempDir::new("store-pipe");
    let sink = child_command("stage_child", "sink", &args(&dir, "pipe", &[])).spawn().unwrap();
    let model = isolated_stage(&dir, "model");
    let loader = isolated_stage(&dir, "loader");
    let want: f64 = (1..=ROUNDS).flat_map(raw).map(|x| x as f64 * 0.5).sum();
    expect_success(loader, Duration::from_secs(60), "loader");
    expect_success(model, Duration::from_secs(60), "model");
    let out = expect_success(sink, Duration::from_secs(60), "sink");
    assert!(out.contains(&format!("final {want}")), "{out}");
}

#[test]
fn a_removed_variable_stays_valid_for_its_readers_and_can_be_declared_again() {
    let dir = TempDir::new("store-remove");
    let store = Store::open_in("job", Some(dir.path())).unwrap();
    let other = Store::open_in("job", Some(dir.path())).unwrap();
    store.declare(VAR, &decl()).unwrap();
    write_pattern(&store, 1).unwrap();
    let held = other.read(VAR, secs(1)).unwrap();
    // Another handle is the writer: refused.
    assert!(matches!(other.remove(VAR), Err(Error::WriterBusy { .. })));
    let guard = store.write(VAR).unwrap();
    assert!(matches!(store.remove(VAR), Err(Error::WriterBusy { .. })), "a write is in progress");
    drop(guard);
    store.remove(VAR).unwrap();
    assert!(matches!(store.remove(VAR), Err(Error::InvalidArgument(_))), "gone");
    assert!(other.try_read(VAR).unwrap().is_none());
    assert!(matches!(store.write(VAR), Err(Error::InvalidArgument(_))));
    // Declared again, differently, written by the other handle: the held version is untouched.
    other.declare(VAR, &Decl::array(DType::U8, &[3])).unwrap();
    let mut w = other.write(VAR).unwrap();
    w.bytes_mut().copy_from_slice(&[9, 9, 9]);
    w.commit().unwrap();
    for _ in 0..10 {
        let mut w = other.write(VAR).unwrap();
        w.bytes_mut().fill(8);
        w.commit().unwrap();
    }
    assert_eq!(check_pattern(&held).unwrap(), 1);
    assert_eq!(store.read(VAR, secs(1)).unwrap().bytes(), [8, 8, 8]);
    let mut files: Vec<_> = std::fs::read_dir(store.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    files.sort();
    assert_eq!(files, ["table", "var.0.2"], "the removed data file is unlinked");
}
