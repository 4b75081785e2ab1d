//! `shmpool_pool`: create, open, close, inspect a pool; make producers and consumers.

use super::config::shmpool_config;
use super::{call, guard, hand_out, timeout, try_ref, try_str, write_out, Fail};
use super::{shmpool_consumer, shmpool_producer, shmpool_status};
use shmpool::{Config, Pool};
use std::ffi::{c_char, CString};
use std::mem::offset_of;
use std::path::Path;
use std::ptr;

/// A handle to a pool. The handle that created the pool closes and removes it when freed, unless
/// `shmpool_pool_persist` was called. Producers, consumers and buffers keep the mapping alive, so
/// the pool handle may be freed before them.
pub struct shmpool_pool {
    pub(crate) pool: Pool,
    name: CString,
    path: CString,
}

impl shmpool_pool {
    fn new(pool: Pool) -> Self {
        let name = CString::new(pool.name()).unwrap_or_default();
        let path = CString::new(pool.path().as_os_str().as_encoded_bytes()).unwrap_or_default();
        shmpool_pool { pool, name, path }
    }
}

/// A snapshot of a pool's state (`shmpool_pool_stats`). Fields are only ever added at the end:
/// set `struct_size` to `sizeof(shmpool_stats)` before the call (`shmpool_stats s = {.struct_size = sizeof s};`)
/// and the library fills only the fields that fit, so a program built against an older header
/// keeps working with a newer library.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct shmpool_stats {
    /// In: the size of the caller's struct. Out: the bytes the library filled.
    pub struct_size: usize,
    /// Number of slots.
    pub slots: u32,
    /// Slots nobody uses.
    pub free: u32,
    /// Slots a producer is filling.
    pub writing: u32,
    /// Slots published and not being read by anyone yet.
    pub ready: u32,
    /// Slots at least one consumer holds.
    pub reading: u32,
    /// Attached consumers.
    pub consumers: u32,
    /// Attached producers.
    pub producers: u32,
    /// Whether the pool was closed.
    pub closed: bool,
    /// Buffers published since creation.
    pub published: u64,
    /// Buffers reclaimed before every consumer saw them (drop-oldest).
    pub dropped: u64,
    /// Wake system calls notifiers made: `FUTEX_WAKE`s and readiness-descriptor writes (it stays
    /// put while nobody waits).
    pub wakes: u64,
    /// Producer and consumer places registered as waiters (blocked, or with an armed readiness
    /// descriptor).
    pub waiters: u32,
    /// Whether the handle that created the pool (or took it over) is alive.
    pub creator_alive: bool,
    /// Whether some live process holds a producer place.
    pub producer_alive: bool,
    /// Whether the pool was persisted.
    pub persistent: bool,
    /// Whether the pool is orphaned (creator dead, not persisted, no live producer).
    pub orphaned: bool,
    /// Places spinning now (at most the CPUs available to the pool's processes minus one).
    pub spinners: u32,
    /// Times a blocked call was refused a spin because enough places were spinning.
    pub spin_refused: u64,
}

/// Optional directory argument: NULL means the default.
///
/// # Safety
/// `directory` is NULL or a NUL-terminated string that stays valid for `'a`.
pub(crate) unsafe fn opt_dir<'a>(directory: *const c_char) -> Result<Option<&'a Path>, Fail> {
    if directory.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, NUL-terminated (module contract).
    Ok(Some(Path::new(unsafe { try_str(directory, "directory") }?)))
}

/// Creates the pool `name` (1 to 200 of A-Z a-z 0-9 . _ -) with `config` (NULL: defaults). A stale
/// pool of that name is replaced; one with live peers gives `SHMPOOL_ALREADY_EXISTS`.
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_create(
    name: *const c_char,
    config: *const shmpool_config,
    out: *mut *mut shmpool_pool,
) -> shmpool_status {
    call(|| {
        // SAFETY: module contract for every pointer argument.
        let name = unsafe { try_str(name, "name") }?;
        let default;
        let config = if config.is_null() {
            default = Config::default();
            &default
        } else {
            // SAFETY: a non-NULL config is a live handle (module contract).
            &unsafe { try_ref(config, "config") }?.config
        };
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let pool = Pool::create(name, config)?;
        // SAFETY: `out` checked non-NULL above, writable per the module contract.
        unsafe { hand_out(out, shmpool_pool::new(pool)) }
    })
}

/// Opens the existing pool `name` in `directory` (NULL: `$SHMPOOL_DIR`, else /dev/shm);
/// `SHMPOOL_NOT_FOUND` if there is none.
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_open(
    name: *const c_char,
    directory: *const c_char,
    out: *mut *mut shmpool_pool,
) -> shmpool_status {
    // SAFETY: forwarded module contract.
    unsafe { shmpool_pool_open_timeout(name, directory, 0, out) }
}

/// Like `shmpool_pool_open`, waiting up to `timeout_ms` (`SHMPOOL_FOREVER`: no limit) for the pool
/// to appear, so a consumer may start before its producer; `SHMPOOL_NOT_FOUND` after that.
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_open_timeout(
    name: *const c_char,
    directory: *const c_char,
    timeout_ms: u32,
    out: *mut *mut shmpool_pool,
) -> shmpool_status {
    call(|| {
        // SAFETY: module contract for every pointer argument.
        let (name, dir) = unsafe { (try_str(name, "name")?, opt_dir(directory)?) };
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let pool = Pool::open_timeout(name, dir, timeout(timeout_ms))?;
        // SAFETY: `out` checked non-NULL above, writable per the module contract.
        unsafe { hand_out(out, shmpool_pool::new(pool)) }
    })
}

/// Frees a pool handle (NULL is ignored). If this handle created the pool and did not persist it,
/// the pool is closed and its name removed.
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_free(pool: *mut shmpool_pool) {
    guard((), || {
        if !pool.is_null() {
            // SAFETY: a non-NULL pool came from `Box::into_raw` here and is freed once (contract).
            drop(unsafe { Box::from_raw(pool) });
        }
    })
}

/// Shuts the pool down for everyone, from any handle: producers get `SHMPOOL_CLOSED`, consumers
/// drain what was published and then get `SHMPOOL_CLOSED`. The name is removed; mappings stay
/// valid. The handle must still be freed (freeing the creator's handle is closing it: that shuts
/// the pool down unless it was persisted).
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_shutdown(pool: *const shmpool_pool) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle (module contract).
        unsafe { try_ref(pool, "pool") }?.pool.shutdown();
        Ok(())
    })
}

/// Keeps the pool (and its name) after this creator handle is freed.
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_persist(pool: *const shmpool_pool) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle (module contract).
        unsafe { try_ref(pool, "pool") }?.pool.persist();
        Ok(())
    })
}

/// Closes the pool `name` in `directory` (NULL: default) for its users and removes its name.
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_remove(name: *const c_char, directory: *const c_char) -> shmpool_status {
    call(|| {
        // SAFETY: module contract for every pointer argument.
        let (name, dir) = unsafe { (try_str(name, "name")?, opt_dir(directory)?) };
        Pool::remove(name, dir)?;
        Ok(())
    })
}

/// Frees what dead peers held; writes how many peers were removed to `reaped` (may be NULL).
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_reap(pool: *const shmpool_pool, reaped: *mut usize) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle (module contract).
        let n = unsafe { try_ref(pool, "pool") }?.pool.reap();
        if !reaped.is_null() {
            // SAFETY: non-NULL out-parameter, writable (module contract).
            unsafe { write_out(reaped, n, "reaped") }?;
        }
        Ok(())
    })
}

/// Writes a snapshot of the pool's state to `out`: the fields that fit in `out->struct_size`
/// bytes (which must be set and cover at least `struct_size` itself).
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_stats(pool: *const shmpool_pool, out: *mut shmpool_stats) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle (module contract).
        let s = unsafe { try_ref(pool, "pool") }?.pool.stats();
        if out.is_null() {
            return Err(Fail::invalid("out is NULL"));
        }
        // SAFETY: `out` points to a caller's shmpool_stats of some version, all of which start with
        // `struct_size` (module contract).
        let size = unsafe { ptr::addr_of!((*out).struct_size).read() };
        if size < size_of::<usize>() {
            return Err(Fail::invalid("out->struct_size is not set: use shmpool_stats s = {.struct_size = sizeof s};"));
        }
        let size = size.min(size_of::<shmpool_stats>());
        macro_rules! put {
            ($($field:ident: $value:expr),*) => {$(
                let value = $value;
                if offset_of!(shmpool_stats, $field) + size_of_val(&value) <= size {
                    // SAFETY: the field lies within the caller's `size` bytes, checked above.
                    unsafe { ptr::addr_of_mut!((*out).$field).write(value) };
                }
            )*};
        }
        put!(struct_size: size, slots: s.slots, free: s.free, writing: s.writing, ready: s.ready,
            reading: s.reading, consumers: s.consumers, producers: s.producers, closed: s.closed,
            published: s.published, dropped: s.dropped, wakes: s.wakes, waiters: s.waiters,
            creator_alive: s.creator_alive, producer_alive: s.producer_alive, persistent: s.persistent,
            orphaned: s.orphaned, spinners: s.spinners, spin_refused: s.spin_refused);
        Ok(())
    })
}

/// Reads a property of a pool handle, `default` for NULL.
unsafe fn property<T: Copy>(pool: *const shmpool_pool, default: T, f: impl FnOnce(&shmpool_pool) -> T) -> T {
    guard(default, || {
        // SAFETY: NULL or a live handle (module contract).
        match unsafe { pool.as_ref() } {
            Some(p) => f(p),
            None => {
                super::error::set_last_error("pool is NULL");
                default
            }
        }
    })
}

/// The pool's name (owned by the handle; NULL for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_name(pool: *const shmpool_pool) -> *const c_char {
    // SAFETY: forwarded module contract.
    unsafe { property(pool, std::ptr::null(), |p| p.name.as_ptr()) }
}

/// The pool's file path (owned by the handle; NULL for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_path(pool: *const shmpool_pool) -> *const c_char {
    // SAFETY: forwarded module contract.
    unsafe { property(pool, std::ptr::null(), |p| p.path.as_ptr()) }
}

/// Number of slots (0 for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_slots(pool: *const shmpool_pool) -> u32 {
    // SAFETY: forwarded module contract.
    unsafe { property(pool, 0, |p| p.pool.slots()) }
}

/// Bytes per slot, a multiple of 4096 (0 for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_slot_size(pool: *const shmpool_pool) -> usize {
    // SAFETY: forwarded module contract.
    unsafe { property(pool, 0, |p| p.pool.slot_size()) }
}

/// Bytes of user metadata per slot (0 for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_meta_bytes(pool: *const shmpool_pool) -> usize {
    // SAFETY: forwarded module contract.
    unsafe { property(pool, 0, |p| p.pool.meta_bytes()) }
}

/// The pool's `shmpool_mode` (broadcast for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_mode(pool: *const shmpool_pool) -> u32 {
    // SAFETY: forwarded module contract.
    unsafe { property(pool, 0, |p| p.pool.mode().code()) }
}

/// The pool's `shmpool_overflow` (block for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_overflow(pool: *const shmpool_pool) -> u32 {
    // SAFETY: forwarded module contract.
    unsafe { property(pool, 0, |p| p.pool.overflow().code()) }
}

/// Whether the pool was closed (true for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_is_closed(pool: *const shmpool_pool) -> bool {
    // SAFETY: forwarded module contract.
    unsafe { property(pool, true, |p| p.pool.is_closed()) }
}

/// A new producer of the pool. Free it with `shmpool_producer_free`.
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_producer(
    pool: *const shmpool_pool,
    out: *mut *mut shmpool_producer,
) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle (module contract).
        let pool = unsafe { try_ref(pool, "pool") }?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let producer = shmpool_producer::new(pool.pool.producer()?, pool.pool.slots() as usize);
        // SAFETY: `out` checked non-NULL, writable (module contract).
        unsafe { hand_out(out, producer) }
    })
}

/// A new consumer of the pool; in broadcast mode it receives what is published from now on. Free
/// it with `shmpool_consumer_free`.
#[no_mangle]
pub unsafe extern "C" fn shmpool_pool_consumer(
    pool: *const shmpool_pool,
    out: *mut *mut shmpool_consumer,
) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live handle (module contract).
        let pool = unsafe { try_ref(pool, "pool") }?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let consumer = shmpool_consumer::new(pool.pool.consumer()?, pool.pool.slots() as usize);
        // SAFETY: `out` checked non-NULL, writable (module contract).
        unsafe { hand_out(out, consumer) }
    })
}
