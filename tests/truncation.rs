//! A pool file truncated under live peers (README, "Trust"): a peer that touches the lost pages
//! dies of SIGBUS (a file in a directory cannot be sealed against shrinking), but a peer blocked
//! in `recv` gets `Corrupted` and ends cleanly, nobody can open the file any more, and the handle
//! that notices drops without touching the lost pages.

mod common;

use common::*;
use shmpool::{Config, Error, Pool};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

const LEASE: Duration = Duration::from_millis(200);

#[test]
fn child() {
    child_main(|role, args| {
        let pool = Pool::open_in(&args[1], Some(Path::new(&args[0]))).map_err(|e| e.to_string())?;
        let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
        match role {
            "reader" => {
                let buf = consumer.recv(secs(10)).map_err(|e| e.to_string())?;
                println!("READING");
                let mut sum = 0u8;
                loop {
                    sum = buf.iter().fold(sum, |a, &b| a.wrapping_add(b));
                    std::hint::black_box(sum);
                }
            }
            "blocked" => {
                println!("READY");
                match consumer.recv(None) {
                    Err(Error::Corrupted(why)) if why.contains("truncated") => {
                        println!("CORRUPTED");
                        drop(consumer);
                        drop(pool);
                        println!("CLEAN");
                        Ok(())
                    }
                    other => Err(format!("recv on a truncated pool: {other:?}")),
                }
            }
            _ => Err(format!("unknown role {role}")),
        }
    });
}

fn read_line_with(child: &mut std::process::Child, word: &str) {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.as_mut().unwrap()).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.trim() == word)), "no {word} from the child");
}

#[test]
fn truncation_kills_only_the_peer_touching_lost_pages() {
    let dir = TempDir::new("truncated");
    let pool = Pool::create("t", &Config::new(2, 1 << 16).lease(LEASE).directory(dir.path())).unwrap();
    let args = [dir.path().display().to_string(), "t".to_string()];
    let mut reader = spawn_child("reader", &args);
    wait_until(Duration::from_secs(10), "the reader to join", || pool.stats().consumers == 1);
    pool.producer().unwrap().acquire(secs(5)).unwrap().publish().unwrap();
    read_line_with(&mut reader, "READING");
    let mut blocked = spawn_child("blocked", &args);
    read_line_with(&mut blocked, "READY");
    wait_until(Duration::from_secs(10), "the blocked consumer to sleep", || pool.stats().waiters == 1);

    // Somebody who can write the file shrinks it: this process must not touch the segment now.
    let file = std::fs::OpenOptions::new().write(true).open(pool.path()).unwrap();
    file.set_len(0).unwrap();

    let status = reader.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGBUS), "the peer reading lost pages dies: {status:?}");
    let out = expect_success(blocked, LEASE * 10, "the blocked consumer");
    assert!(out.contains("CORRUPTED") && out.contains("CLEAN"), "{out}");
    assert!(matches!(Pool::open_in("t", Some(dir.path())), Err(Error::Corrupted(_))), "nobody opens it any more");
    // Dropping the creating handle checks the file first and does not touch the lost pages.
    drop(pool);
}
