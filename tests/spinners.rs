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
