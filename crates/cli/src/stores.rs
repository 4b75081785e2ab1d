//! The stores of named variables in `ls --stores`, `inspect --store` and `gc`.

use crate::CliResult;
use serde::Serialize;
use shmpool::store::Store;
use std::path::Path;

#[derive(Serialize)]
struct ListedStore {
    job: String,
    path: String,
    in_use: bool,
}

fn listed(dir: Option<&Path>) -> CliResult<Vec<ListedStore>> {
    Ok(Store::list(dir)?
        .into_iter()
        .map(|s| ListedStore { job: s.job, path: s.path.display().to_string(), in_use: s.in_use })
        .collect())
}

/// Prints the stores: a JSON array, or one line each (nothing if there are none and `quiet`).
pub fn ls(dir: Option<&Path>, json: bool, quiet: bool) -> CliResult {
    let stores = listed(dir)?;
    if json {
        println!("{}", serde_json::to_string(&stores)?);
        return Ok(());
    }
    if stores.is_empty() && !quiet {
        println!("no stores");
    }
    for s in &stores {
        let state = if s.in_use { "in use" } else { "unused" };
        println!("store {:<26} {:<7} {}", s.job, state, s.path);
    }
    Ok(())
}

#[derive(Serialize)]
struct VarReport {
    name: String,
    kind: &'static str,
    dtype: &'static str,
    dims: Vec<i64>,
    capacity: u64,
    versions: usize,
    version: u64,
    shape: Vec<i64>,
    readers: u32,
    waiting: u32,
}

#[derive(Serialize)]
struct StoreReport {
    job: String,
    path: String,
    variables: Vec<VarReport>,
}

/// Prints the variables of the store of `job`.
pub fn inspect(dir: Option<&Path>, job: &str, json: bool) -> CliResult {
    if !Store::list(dir)?.iter().any(|s| s.job == job) {
        return Err(crate::Failure::error(format!("no store {job:?}")));
    }
    let store = Store::open_in(job, dir)?;
    let variables = store
        .variables()?
        .into_iter()
        .map(|v| VarReport {
            name: v.name,
            kind: v.decl.kind.name(),
            dtype: v.decl.dtype.name(),
            dims: v.decl.dims,
            capacity: v.decl.capacity,
            versions: v.decl.versions,
            version: v.version,
            shape: v.shape,
            readers: v.readers,
            waiting: v.waiting,
        })
        .collect();
    let r = StoreReport { job: job.to_string(), path: store.path().display().to_string(), variables };
    if json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!("store {} ({})", r.job, r.path);
    for v in &r.variables {
        println!(
            "  {:<24} {:<6} {:<5} dims {:?} capacity {} x{}  version {:>8}  shape {:?}  readers {}  waiting {}",
            v.name, v.kind, v.dtype, v.dims, v.capacity, v.versions, v.version, v.shape, v.readers, v.waiting
        );
    }
    Ok(())
}

/// Removes the stores nobody has open; prints each and returns how many.
pub fn gc(dir: Option<&Path>) -> CliResult<usize> {
    let removed = Store::gc(dir)?;
    for job in &removed {
        println!("removed store {job}");
    }
    Ok(removed.len())
}
