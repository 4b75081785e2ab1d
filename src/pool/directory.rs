//! The pools of a directory as files: list them, collect the abandoned ones, remove one by name.
//! What `shmpool ls`, `gc` and `rm` do, in every language.

use super::{readiness, segment, Pool};
use crate::config::resolve_dir;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A pool file found by [`Pool::list`].
#[derive(Debug, Clone)]
pub struct PoolEntry {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    /// Whether some process has it open.
    pub in_use: bool,
}

fn read_dir(directory: Option<&Path>) -> Result<impl Iterator<Item = std::fs::DirEntry>> {
    let dir = resolve_dir(directory);
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    Ok(entries.flatten())
}

impl Pool {
    /// The pools in `directory` (default: `$SHMPOOL_DIR` or `/dev/shm`), sorted by name.
    pub fn list(directory: Option<&Path>) -> Result<Vec<PoolEntry>> {
        let mut pools = Vec::new();
        for entry in read_dir(directory)? {
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_prefix(segment::PREFIX)) else {
                continue;
            };
            let path = entry.path();
            let size = entry.metadata().map_or(0, |m| m.len());
            let in_use = segment::in_use(&path).unwrap_or(true);
            pools.push(PoolEntry { name: name.to_string(), path, size, in_use });
        }
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(pools)
    }

    /// Removes pool files (and abandoned half-created ones) that no live process has open.
    /// Returns the names removed.
    pub fn gc(directory: Option<&Path>) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for entry in read_dir(directory)? {
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else { continue };
            let ours =
                name.starts_with(segment::PREFIX) || (name.starts_with(segment::TEMP_PREFIX) && name.ends_with(".tmp"));
            if ours && segment::remove_if_unused(&entry.path()).unwrap_or(false) {
                removed.push(name.strip_prefix(segment::PREFIX).unwrap_or(name).to_string());
            }
        }
        // Readiness FIFOs of pools that are gone (their creator died before closing them).
        for entry in read_dir(directory)? {
            let file_name = entry.file_name();
            let Some(pool) = file_name.to_str().and_then(readiness::pool_of_fifo) else { continue };
            if !entry.path().with_file_name(format!("{}{pool}", segment::PREFIX)).exists() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(removed)
    }

    /// Shuts the pool `name` down for its users and removes its name, live peers or not.
    pub fn remove(name: &str, directory: Option<&Path>) -> Result<()> {
        Pool::open_in(name, directory)?.shutdown();
        Ok(())
    }
}
