//! Consumers read slots through a read-only mapping: a write through a received buffer faults in
//! the writing process only; the other consumers and the pool are unaffected.

mod common;

use common::*;
use shmpool::{Config, Pool};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

#[test]
fn child() {
    child_main(|role, args| {
        let pool = Pool::open_in(&args[1], Some(Path::new(&args[0]))).map_err(|e| e.to_string())?;
        let mut consumer = pool.consumer().map_err(|e| e.to_string())?;
        println!("READY");
        let buf = consumer.recv(secs(10)).map_err(|e| e.to_string())?;
        if role == "writer" {
            // A stray write through a received buffer, as a C consumer casting away `const` would do.
            // SAFETY: deliberately wrong: the test expects this process to die of SIGSEGV here.
            unsafe { std::ptr::write_volatile(buf.as_ptr() as *mut u8, 0xEE) };
        }
        Err("the write through a received buffer did not fault".into())
    });
}

#[test]
fn a_write_through_a_received_buffer_faults_in_the_writer_only() {
    let dir = TempDir::new("readonly");
    let pool = Pool::create("ro", &Config::new(2, 4096).directory(dir.path())).unwrap();
    let mut reader = pool.consumer().unwrap();
    let writer = spawn_child("writer", &[dir.path().display().to_string(), "ro".into()]);
    wait_until(Duration::from_secs(10), "the writer to join", || pool.stats().consumers == 2);
    let producer = pool.producer().unwrap();
    let mut buf = producer.acquire(secs(5)).unwrap();
    fill(&mut buf[..4096], 1, 0);
    buf.set_len(4096).unwrap();
    buf.publish().unwrap();
    let got = reader.recv(secs(5)).unwrap();

    let mut writer = writer;
    let status = writer.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "the writer faults: {status:?}");
    assert_eq!(check(&got), Ok((1, 0)), "the frame the others read is unchanged");
    drop(got);
    assert_eq!(pool.reap(), 1, "the dead writer is cleaned like any dead peer");
    assert_eq!(pool.stats().free, 2);
    // The pool goes on working.
    producer.acquire(secs(5)).unwrap().publish().unwrap();
    assert!(reader.recv(secs(5)).is_ok());
}
