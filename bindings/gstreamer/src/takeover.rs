//! Creating a sink's pool under a fixed name, replacing what a dead sink left behind.
//!
//! `Pool::create` replaces a pool nobody has open, but a source still attached to the pool of a
//! killed sink keeps it "in use". A restarted sink must nevertheless get the same name (unlike
//! `shmsink`, which binds `path.0`): if no live producer holds the old pool, it is closed (its
//! sources see it closed and reopen the name) and a new one is created.

use shmpool::{Config, Error, Pool, Role};
use std::path::Path;

/// Creates the pool `name`, replacing an existing one that no live producer uses.
pub fn create_or_replace(name: &str, config: &Config) -> Result<Pool, String> {
    match Pool::create(name, config) {
        Err(Error::AlreadyExists { .. }) => {}
        other => return other.map_err(|e| format!("creating pool {name:?}: {e}")),
    }
    let old = Pool::open_in(name, config.directory.as_deref()).map_err(|e| format!("opening pool {name:?}: {e}"))?;
    old.reap();
    if let Some(p) = live_producer(&old) {
        return Err(format!("pool {name:?} is in use by a live producer (pid {p} in its namespace)"));
    }
    old.shutdown();
    drop(old);
    Pool::create(name, config).map_err(|e| format!("creating pool {name:?} after replacing a dead one: {e}"))
}

/// The pid of a live producer of `pool`, if any.
pub fn live_producer(pool: &Pool) -> Option<u32> {
    pool.stats().peers.iter().find(|p| p.role == Role::Producer && p.alive).map(|p| p.pid)
}

/// The directory as the pool API takes it (empty: the default).
pub fn directory(dir: &str) -> Option<&Path> {
    (!dir.is_empty()).then(|| Path::new(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_without_live_producer_is_replaced_a_live_one_is_not() {
        let dir = std::env::temp_dir().join(format!("gstshmpool-takeover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = Config::new(2, 4096).directory(&dir);
        let first = Pool::create("t", &config).unwrap();
        let producer = first.producer().unwrap();
        let consumer_side = Pool::open_in("t", Some(&dir)).unwrap();
        let consumer = consumer_side.consumer().unwrap();
        assert!(create_or_replace("t", &config).unwrap_err().contains("live producer"));
        drop(producer);
        first.persist();
        drop(first); // like a dead sink: the name stays, a source still has it open
        let second = create_or_replace("t", &config).unwrap();
        assert!(consumer_side.is_closed(), "the source sees the old pool closed");
        assert!(!second.is_closed());
        drop((consumer, consumer_side, second));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
