//! How a pool is shaped and where it lives, fixed at creation.
//!
//! ```
//! use shmpool::{Config, Mode, Overflow};
//! let config = Config::new(8, 1 << 20).mode(Mode::WorkQueue).overflow(Overflow::DropOldest);
//! assert_eq!(config.slots, 8);
//! ```

use std::path::PathBuf;
use std::time::Duration;

/// Default directory of pool segments.
pub const DEFAULT_DIR: &str = "/dev/shm";
/// Environment variable naming the directory of pool segments.
pub const DIR_ENV: &str = "SHMPOOL_DIR";

/// Who receives a published buffer. The discriminants are the codes stored in the segment and
/// used by the C ABI (`SHMPOOL_MODE_*`) and Python; they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum Mode {
    /// Every consumer receives every buffer published after it joined (the default).
    #[default]
    Broadcast = 0,
    /// Each buffer goes to exactly one consumer.
    WorkQueue = 1,
}

/// What a producer does when every slot is taken. The discriminants are the codes stored in the
/// segment and used by the C ABI (`SHMPOOL_OVERFLOW_*`) and Python; they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum Overflow {
    /// Wait (with a timeout) until a consumer releases a slot (the default).
    #[default]
    Block = 0,
    /// Reclaim the oldest published buffer that nobody is reading; lagging consumers see a gap.
    DropOldest = 1,
}

impl Mode {
    pub(crate) const ALL: [(Mode, &'static str); 2] = [(Mode::Broadcast, "broadcast"), (Mode::WorkQueue, "workqueue")];
}

impl Overflow {
    pub(crate) const ALL: [(Overflow, &'static str); 2] =
        [(Overflow::Block, "block"), (Overflow::DropOldest, "drop-oldest")];
}

macro_rules! named_enum {
    ($t:ty) => {
        impl $t {
            /// The name used by the CLI, the bindings and `inspect`.
            pub fn name(self) -> &'static str {
                Self::ALL.iter().find(|(v, _)| *v == self).map(|(_, n)| *n).unwrap_or("?")
            }

            /// The code stored in the segment and passed through the C ABI.
            pub fn code(self) -> u32 {
                self as u32
            }

            /// The value for a code; `None` for a code no version of shmpool uses.
            pub fn from_code(code: u32) -> Option<Self> {
                Self::ALL.iter().map(|(v, _)| *v).find(|v| v.code() == code)
            }
        }
        impl std::str::FromStr for $t {
            type Err = crate::Error;
            fn from_str(s: &str) -> crate::Result<Self> {
                Self::ALL.iter().find(|(_, n)| *n == s).map(|(v, _)| *v).ok_or_else(|| {
                    let names: Vec<_> = Self::ALL.iter().map(|(_, n)| *n).collect();
                    crate::Error::invalid(format!("{s:?} is not one of {}", names.join(", ")))
                })
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
named_enum!(Mode);
named_enum!(Overflow);

/// Creation parameters of a pool.
#[derive(Debug, Clone)]
pub struct Config {
    /// Number of slots (buffers), 1 to [`crate::MAX_SLOTS`].
    pub slots: u32,
    /// Bytes of payload per slot; rounded up to a multiple of 4096.
    pub slot_size: usize,
    /// Delivery mode.
    pub mode: Mode,
    /// Policy for a full pool.
    pub overflow: Overflow,
    /// Bytes of free-form user metadata per slot (GStreamer caps, …).
    pub meta_bytes: usize,
    /// Directory of the segment; `None`: `$SHMPOOL_DIR`, else `/dev/shm`.
    pub directory: Option<PathBuf>,
    /// File mode of the segment.
    pub permissions: u32,
    /// How long a blocked call waits before checking peers' liveness again.
    pub lease: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            slots: 8,
            slot_size: 1 << 20,
            mode: Mode::Broadcast,
            overflow: Overflow::Block,
            meta_bytes: 256,
            directory: None,
            permissions: 0o600,
            lease: Duration::from_millis(500),
        }
    }
}

impl Config {
    /// A configuration with `slots` slots of `slot_size` bytes and defaults for the rest.
    pub fn new(slots: u32, slot_size: usize) -> Self {
        Config { slots, slot_size, ..Config::default() }
    }
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }
    pub fn meta_bytes(mut self, meta_bytes: usize) -> Self {
        self.meta_bytes = meta_bytes;
        self
    }
    pub fn directory(mut self, directory: impl Into<PathBuf>) -> Self {
        self.directory = Some(directory.into());
        self
    }
    pub fn permissions(mut self, permissions: u32) -> Self {
        self.permissions = permissions;
        self
    }
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
}

/// The directory pools live in: `explicit` if given, else `$SHMPOOL_DIR`, else `/dev/shm`.
///
/// ```
/// use std::path::Path;
/// assert_eq!(shmpool::resolve_dir(Some(Path::new("/tmp/x"))), Path::new("/tmp/x"));
/// ```
pub fn resolve_dir(explicit: Option<&std::path::Path>) -> PathBuf {
    match explicit {
        Some(dir) => dir.to_path_buf(),
        None => std::env::var_os(DIR_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR)),
    }
}
