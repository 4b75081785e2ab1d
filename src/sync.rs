//! The atomics the shared state is built from: `std`'s, or `loom`'s when model checking.
//!
//! Running `RUSTFLAGS="--cfg loom" cargo test --release --test loom` swaps them so loom explores
//! every interleaving of the slot state machine (see `tests/loom.rs`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Lets another thread run while waiting for a peer to finish a short critical step.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}
