//! Named pipes, so that `demo` and `bench` peers find their pipe by path like they find a pool.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Creates a FIFO at `path`, readable and writable by its owner only.
pub fn create(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the reading end, waiting for a writer.
pub fn open_reader(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Opens the writing end, waiting for a reader.
pub fn open_writer(path: &Path) -> io::Result<File> {
    File::options().write(true).open(path)
}

fn set_blocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the reading end without waiting for a writer; reads then block as usual.
pub fn open_reader_now(path: &Path) -> io::Result<File> {
    let file = File::options().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    set_blocking(&file)?;
    Ok(file)
}

/// Opens the writing end once a reader has it open, checking `peer_alive` while waiting, for at
/// most `timeout`.
pub fn open_writer_within(path: &Path, timeout: Duration, mut peer_alive: impl FnMut() -> bool) -> io::Result<File> {
    let deadline = Instant::now() + timeout;
    loop {
        match File::options().write(true).custom_flags(libc::O_NONBLOCK).open(path) {
            Ok(file) => {
                set_blocking(&file)?;
                return Ok(file);
            }
            // ENXIO: no reader yet.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if !peer_alive() || Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no reader opened {}", path.display()),
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Enlarges a pipe's buffer to the system maximum (`/proc/sys/fs/pipe-max-size`); returns the
/// size it has.
pub fn enlarge(file: &File) -> io::Result<usize> {
    let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse::<libc::c_int>().ok())
        .unwrap_or(1 << 20);
    // SAFETY: fcntl on a descriptor we own, with an integer argument.
    let size = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETPIPE_SZ, max) };
    if size < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size as usize)
}
