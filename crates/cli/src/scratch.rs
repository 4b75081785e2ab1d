//! A private directory for the pools, FIFOs and sockets of `demo` and `bench`, removed with
//! everything in it when dropped.

use std::path::{Path, PathBuf};

pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `BASE/shmpool-LABEL-PID-N`, BASE being `dir`, else `$SHMPOOL_DIR`, else `/dev/shm`
    /// (shared memory, like real pools), else the system's temporary directory.
    pub fn new(label: &str, dir: Option<&Path>) -> std::io::Result<Self> {
        let base = match dir {
            Some(d) => d.to_path_buf(),
            None => std::env::var_os(shmpool::DIR_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(shmpool::DEFAULT_DIR)),
        };
        let base = if base.is_dir() { base } else { std::env::temp_dir() };
        let pid = std::process::id();
        let mut n = 0u32;
        loop {
            let path = base.join(format!("shmpool-{label}-{pid}-{n}"));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(ScratchDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
