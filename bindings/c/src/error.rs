//! The status enum, the one mapping from [`shmpool::Error`] to it, and the per-thread last error.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

/// What every fallible function returns. `SHMPOOL_OK` is 0; on anything else
/// `shmpool_last_error_message()` says why.
///
/// cbindgen:rename-all=None
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum shmpool_status {
    /// Success.
    SHMPOOL_OK = 0,
    /// A blocking call ran out of time.
    SHMPOOL_TIMEOUT = 1,
    /// The pool was closed (consumers get this after draining what was published).
    SHMPOOL_CLOSED = 2,
    /// No pool of that name exists in the directory.
    SHMPOOL_NOT_FOUND = 3,
    /// A pool of that name exists and has live peers (store: the variable already has a writer).
    SHMPOOL_ALREADY_EXISTS = 4,
    /// The segment is not a valid pool, or a slot's metadata is broken.
    SHMPOOL_CORRUPTED = 5,
    /// NULL handle, out-of-range value, buffer already published/released, wrong consumer, ...
    SHMPOOL_INVALID_ARGUMENT = 6,
    /// The file system cannot hold the pool (e.g. Docker's 64 MiB /dev/shm).
    SHMPOOL_NO_SPACE = 7,
    /// Every producer or consumer place of the pool is taken.
    SHMPOOL_TOO_MANY_PEERS = 8,
    /// An operating-system call failed.
    SHMPOOL_IO = 9,
    /// A bug inside the library (a Rust panic, caught at the boundary).
    SHMPOOL_PANIC = 10,
    /// `try_` functions: nothing available right now.
    SHMPOOL_WOULD_BLOCK = 11,
    /// The operation is not allowed for this handle.
    SHMPOOL_UNSUPPORTED = 12,
    /// The pool's creator died without closing it and no producer is left (consumers get this
    /// once drained; a creator restarting with the same configuration takes the pool over).
    SHMPOOL_ORPHANED = 13,
}

impl From<&shmpool::Error> for shmpool_status {
    /// The one place where core errors become statuses.
    fn from(e: &shmpool::Error) -> Self {
        use shmpool::Error as E;
        match e {
            E::NotFound { .. } => shmpool_status::SHMPOOL_NOT_FOUND,
            E::AlreadyExists { .. } | E::WriterBusy { .. } => shmpool_status::SHMPOOL_ALREADY_EXISTS,
            E::Timeout | E::InputTimeout { .. } => shmpool_status::SHMPOOL_TIMEOUT,
            E::Closed => shmpool_status::SHMPOOL_CLOSED,
            E::Orphaned => shmpool_status::SHMPOOL_ORPHANED,
            E::Corrupted(_) => shmpool_status::SHMPOOL_CORRUPTED,
            E::InvalidArgument(_) => shmpool_status::SHMPOOL_INVALID_ARGUMENT,
            E::InsufficientSpace { .. } => shmpool_status::SHMPOOL_NO_SPACE,
            E::TooManyPeers { .. } => shmpool_status::SHMPOOL_TOO_MANY_PEERS,
            E::Unsupported(_) => shmpool_status::SHMPOOL_UNSUPPORTED,
            // `Io` and whatever later versions of the core add.
            _ => shmpool_status::SHMPOOL_IO,
        }
    }
}

/// A failure on its way to C: a status and the message for `shmpool_last_error_message`.
#[derive(Debug)]
pub(crate) struct Fail(Box<(shmpool_status, String)>);

impl Fail {
    // Boxed so that `Result<_, Fail>` stays one word on the (hot) success path.
    #[cold]
    #[inline(never)]
    pub fn new(status: shmpool_status, message: impl Into<String>) -> Self {
        Fail(Box::new((status, message.into())))
    }

    #[cold]
    #[inline(never)]
    pub fn invalid(message: impl Into<String>) -> Self {
        Fail::new(shmpool_status::SHMPOOL_INVALID_ARGUMENT, message)
    }

    #[cold]
    #[inline(never)]
    pub fn null(what: &str) -> Self {
        Fail::invalid(format!("{what} is NULL"))
    }

    #[cold]
    #[inline(never)]
    pub fn would_block(message: &str) -> Self {
        Fail::new(shmpool_status::SHMPOOL_WOULD_BLOCK, message)
    }

    /// Records the message for this thread and returns the status.
    #[cold]
    #[inline(never)]
    pub fn record(self) -> shmpool_status {
        set_last_error(&self.0 .1);
        self.0 .0
    }
}

impl From<shmpool::Error> for Fail {
    fn from(e: shmpool::Error) -> Self {
        Fail::new((&e).into(), e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = c);
}

/// The message of the last failed call on this thread ("" if none failed yet). The pointer stays
/// valid until the next failing call on this thread; copy it to keep it. Successful calls leave it
/// unchanged.
#[no_mangle]
pub extern "C" fn shmpool_last_error_message() -> *const c_char {
    super::guard(c"internal error".as_ptr(), || LAST_ERROR.with(|slot| slot.borrow().as_ptr()))
}

/// The name of a status code, e.g. "SHMPOOL_TIMEOUT" (a static string; "SHMPOOL_UNKNOWN" for a
/// value that is not a status).
#[no_mangle]
pub extern "C" fn shmpool_status_name(status: u32) -> *const c_char {
    super::guard(c"SHMPOOL_UNKNOWN".as_ptr(), || status_name(status).as_ptr())
}

fn status_name(status: u32) -> &'static CStr {
    match status {
        0 => c"SHMPOOL_OK",
        1 => c"SHMPOOL_TIMEOUT",
        2 => c"SHMPOOL_CLOSED",
        3 => c"SHMPOOL_NOT_FOUND",
        4 => c"SHMPOOL_ALREADY_EXISTS",
        5 => c"SHMPOOL_CORRUPTED",
        6 => c"SHMPOOL_INVALID_ARGUMENT",
        7 => c"SHMPOOL_NO_SPACE",
        8 => c"SHMPOOL_TOO_MANY_PEERS",
        9 => c"SHMPOOL_IO",
        10 => c"SHMPOOL_PANIC",
        11 => c"SHMPOOL_WOULD_BLOCK",
        12 => c"SHMPOOL_UNSUPPORTED",
        13 => c"SHMPOOL_ORPHANED",
        _ => c"SHMPOOL_UNKNOWN",
    }
}
