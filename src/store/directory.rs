//! The stores of a directory and the variables of a store, for `shmpool ls`, `inspect` and `gc`.
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("shmpool-store-dirdoc-{}", std::process::id()));
//! use shmpool::store::{Decl, Kind, Store};
//! let store = Store::open_in("doc-ls", Some(&dir))?;
//! store.declare("count", &Decl::scalar(Kind::I64))?;
//! assert!(Store::list(Some(&dir))?.iter().any(|s| s.job == "doc-ls" && s.in_use));
//! assert_eq!(store.variables()?[0].name, "count");
//! drop(store);
//! assert_eq!(Store::gc(Some(&dir))?, vec!["doc-ls".to_string()]);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), shmpool::Error>(())
//! ```

use super::decl::Decl;
use super::layout::{decode_latest, MAX_VARS};
use super::table::STORE_PREFIX;
use super::Store;
use crate::config::resolve_dir;
use crate::pool::segment::in_use;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::SeqCst;

/// A store found by [`Store::list`].
#[derive(Debug, Clone)]
pub struct StoreEntry {
    /// The job's name.
    pub job: String,
    /// The store's directory.
    pub path: PathBuf,
    /// Whether some process has it open.
    pub in_use: bool,
}

/// A variable as [`Store::variables`] sees it.
#[derive(Debug, Clone)]
pub struct VarStatus {
    pub name: String,
    pub decl: Decl,
    /// The latest version (0: none published yet).
    pub version: u64,
    /// The latest version's shape (the declared dimensions before the first).
    pub shape: Vec<i64>,
    /// Reader places (open store handles, possibly dead ones not yet swept) holding a version.
    pub readers: u32,
    /// Reader places (possibly dead ones not yet swept) waiting for a newer version.
    pub waiting: u32,
}

impl Store {
    /// The stores in `directory` (default: `$SHMPOOL_DIR` or `/dev/shm`), sorted by job.
    pub fn list(directory: Option<&Path>) -> Result<Vec<StoreEntry>> {
        let dir = resolve_dir(directory);
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let mut stores: Vec<StoreEntry> = entries
            .flatten()
            .filter_map(|entry| {
                let job = entry.file_name().to_str()?.strip_prefix(STORE_PREFIX)?.to_string();
                let path = entry.path();
                let in_use = in_use(&path.join("table")).unwrap_or(true);
                Some(StoreEntry { job, path, in_use })
            })
            .collect();
        stores.sort_by(|a, b| a.job.cmp(&b.job));
        Ok(stores)
    }

    /// Removes the stores of `directory` that no live process has open. Returns their jobs.
    pub fn gc(directory: Option<&Path>) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for store in Store::list(directory)?.into_iter().filter(|s| !s.in_use) {
            if std::fs::remove_dir_all(&store.path).is_ok() {
                removed.push(store.job);
            }
        }
        Ok(removed)
    }

    /// The variables of this store and their latest versions, in table order. Damaged entries
    /// are left out.
    pub fn variables(&self) -> Result<Vec<VarStatus>> {
        self.inner.not_forked()?;
        let table = &self.inner.table;
        let mut vars = Vec::new();
        for index in 0..MAX_VARS {
            let Ok(Some(var)) = table.load(index) else { continue };
            let entry = table.entry(index);
            let (version, _) = decode_latest(entry.latest.load(SeqCst));
            let readers = entry.slots[..var.decl.versions].iter().fold(0u64, |m, s| m | s.holders.load(SeqCst));
            let shape = match super::read::latest(&self.inner, &std::sync::Arc::new(var.clone())) {
                Ok(Some(v)) => v.shape().iter().map(|&d| d as i64).collect(),
                _ => var.decl.dims.clone(),
            };
            let waiting = entry.published_waiters.load(SeqCst).count_ones();
            vars.push(VarStatus {
                name: var.name,
                decl: var.decl,
                version,
                shape,
                readers: readers.count_ones(),
                waiting,
            });
        }
        Ok(vars)
    }
}
