//! At most one place fewer than the CPUs spins at once; the others sleep at once, and a killed
//! spinner stops counting once its place is cleaned. Checked by behaviour: how many spin, how many
//! were refused, with the spinners in separate processes.

mod common;

use common::*;
use shmpool::__private::spin_limit;
use shmpool::{Config, Pool};
use std::path::Path;
use std::process::Child;
use std::time::Duration;

#[test]
fn child() {
    child_main(|role, args| {
        let pool = Pool::open_in(&args[1], Some(Path::new(&args[0]))).map_err(|e| e.to_string())?;
        match role {
            "spinner" | "hog" if args.len() > 2 => {
                let cpu: usize = args[2].parse().map_err(|e| format!("cpu {}: {e}", args[2]))?;
                pin_to(cpu)?;
                if role == "hog" {
                    loop {
                        std::hint::black_box(0u64);
                    }
                }
                let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
                consumer.set_spin(Duration::from_secs(120));
                consumer.recv(secs(120)).map(drop).map_err(|e| e.to_string())
            }
            "spinner" => {
                let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
                // Far longer than the test: an admitted spinner spins until it is killed or fed.
                consumer.set_spin(Duration::from_secs(120));
                println!("READY");
                consumer.recv(secs(120)).map(drop).map_err(|e| e.to_string())
            }
            _ => Err(format!("unknown role {role}")),
        }
    });
}

fn spinners(dir: &TempDir, n: usize) -> Vec<Child> {
    (0..n).map(|_| spawn_child("spinner", &[dir.path().display().to_string(), "s".into()])).collect()
}

#[test]
fn spinners_beyond_the_cpus_sleep_at_once_and_a_killed_spinner_is_cleaned() {
    let limit = spin_limit();
    let n = limit + 2;
    if limit == 0 || n > 20 {
        eprintln!("skipped: {limit} spinners allowed here; the test needs 1..=18");
        return;
    }
    let dir = TempDir::new("spinners");
    let pool = Pool::create("s", &Config::new(2, 4096).directory(dir.path())).unwrap();
    let mut children = spinners(&dir, n);
    wait_until(Duration::from_secs(20), "all but the allowed spinners to be refused", || {
        let s = pool.stats();
        assert!(s.spinners as usize <= limit, "{} spin, {limit} allowed", s.spinners);
        s.consumers as usize == n && s.spin_refused as usize == n - limit && s.spinners as usize == limit
    });
    // The refused ones sleep at once: registered as blocked waiters, not spinning.
    wait_until(Duration::from_secs(10), "the refused to sleep", || pool.stats().waiters as usize == n - limit);
    let stats = pool.stats();
    assert_eq!((stats.spinners as usize, stats.spin_refused as usize), (limit, n - limit), "{stats:?}");

    for child in &mut children {
        kill9(child);
    }
    assert_eq!(pool.reap(), n, "every dead peer is reaped");
    let stats = pool.stats();
    assert_eq!((stats.spinners, stats.waiters), (0, 0), "the killed spinners' bits stay: {stats:?}");

    // With the dead cleaned, a new spinner is admitted again, and a publication reaches it.
    let child = spinners(&dir, 1).pop().unwrap();
    wait_until(Duration::from_secs(20), "the new spinner to spin", || pool.stats().spinners == 1);
    assert_eq!(pool.stats().spin_refused as usize, n - limit);
    pool.producer().unwrap().acquire(secs(5)).unwrap().publish().unwrap();
    expect_success(child, Duration::from_secs(20), "the fed spinner");
    assert_eq!(pool.stats().spinners, 0);
}

/// Runs this process on `cpu` only.
fn pin_to(cpu: usize) -> Result<(), String> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it (cpu is checked below
    // CPU_SETSIZE); sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(format!("cpu {cpu} out of range"));
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!("sched_setaffinity: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// The lowest CPU this process may run on.
fn first_cpu() -> usize {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it; CPU_ISSET reads inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set), 0);
        (0..libc::CPU_SETSIZE as usize).find(|&cpu| libc::CPU_ISSET(cpu, &set)).expect("a CPU")
    }
}

/// CPU time (user + system) a process has used, from /proc/<pid>/stat, in clock ticks.
fn cpu_ticks(child: &Child) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
    // The command name may hold spaces: fields count from the closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn a_spinner_that_loses_its_cpu_to_another_task_yields_it_and_still_receives() {
    if spin_limit() == 0 {
        eprintln!("skipped: one CPU, nobody spins");
        return;
    }
    let dir = TempDir::new("spin-yield");
    let pool = Pool::create("s", &Config::new(2, 4096).directory(dir.path())).unwrap();
    let args = |cpu: &str| vec![dir.path().display().to_string(), "s".into(), cpu.into()];
    let cpu = first_cpu().to_string();
    let mut spinner = Killed(Some(spawn_child("spinner", &args(&cpu))));
    wait_until(Duration::from_secs(20), "the spinner to spin", || pool.stats().spinners == 1);
    // A task that always wants the spinner's CPU: without yielding, the spinner keeps half of it.
    let hog = Killed(Some(spawn_child("hog", &args(&cpu))));
    let (spinner_start, hog_start) = (cpu_ticks(spinner.child()), cpu_ticks(hog.child()));
    // Clock ticks are 10 ms: 300 ticks of the hog measure the spinner's share to about 1 %.
    wait_until(Duration::from_secs(60), "the hog to use 3 s of CPU", || cpu_ticks(hog.child()) - hog_start >= 300);
    let (spun, hogged) = (cpu_ticks(spinner.child()) - spinner_start, cpu_ticks(hog.child()) - hog_start);
    assert!(spun * 4 < hogged, "the spinner kept {spun} ticks of CPU against the other task's {hogged}");
    assert_eq!(pool.stats().spinners, 1, "it yields between tries, still a spinner (counted in the bound)");
    pool.producer().unwrap().acquire(secs(5)).unwrap().publish().unwrap();
    expect_success(spinner.0.take().expect("running"), Duration::from_secs(20), "the yielding spinner");
}

/// A child killed (SIGKILL) when dropped: also when the test fails before it ends.
struct Killed(Option<Child>);

impl Killed {
    fn child(&self) -> &Child {
        self.0.as_ref().expect("running")
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            kill9(child);
        }
    }
}
