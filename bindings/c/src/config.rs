//! `shmpool_config`: the creation parameters of a pool, and the mode/overflow/dtype codes.

use super::{call, guard, hand_out, try_mut, try_str, Fail};
use crate::shmpool_status;
use shmpool::{Config, DType, Mode, Overflow};
use std::ffi::c_char;
use std::time::Duration;

// The mode, overflow and dtype codes are the core's own `#[repr(u32)]` enums (`Mode`, `Overflow`,
// `DType`), exported by cbindgen as `shmpool_mode`, `shmpool_overflow` and `shmpool_dtype`: one
// definition for Rust, C, C++ and Python.

pub(crate) fn mode_from_c(code: u32) -> Result<Mode, Fail> {
    Mode::from_code(code).ok_or_else(|| {
        Fail::invalid(format!("mode {code} is not SHMPOOL_MODE_BROADCAST (0) or SHMPOOL_MODE_WORK_QUEUE (1)"))
    })
}

pub(crate) fn overflow_from_c(code: u32) -> Result<Overflow, Fail> {
    Overflow::from_code(code).ok_or_else(|| {
        Fail::invalid(format!("overflow {code} is not SHMPOOL_OVERFLOW_BLOCK (0) or SHMPOOL_OVERFLOW_DROP_OLDEST (1)"))
    })
}

/// The element type for a code (the core's codes are the C codes).
pub(crate) fn dtype_from_c(code: u32) -> Result<DType, Fail> {
    DType::from_code(code).ok_or_else(|| Fail::invalid(format!("dtype code {code} is not a SHMPOOL_DTYPE_* value")))
}

/// Bytes per element of a dtype code (0 for an unknown code).
#[no_mangle]
pub extern "C" fn shmpool_dtype_size(dtype: u32) -> usize {
    guard(0, || DType::from_code(dtype).map_or(0, DType::size))
}

/// Short name of a dtype code: "u8", "f32", "bf16", ... ("?" for an unknown code). Static string.
#[no_mangle]
pub extern "C" fn shmpool_dtype_name(dtype: u32) -> *const c_char {
    static NAMES: [&std::ffi::CStr; 13] =
        [c"bytes", c"u8", c"u16", c"u32", c"u64", c"i8", c"i16", c"i32", c"i64", c"f16", c"bf16", c"f32", c"f64"];
    guard(c"?".as_ptr(), || {
        let name = DType::from_code(dtype).map(|d| (d.code() as usize, d.name()));
        match name {
            Some((i, n)) if NAMES.get(i).is_some_and(|c| c.to_bytes() == n.as_bytes()) => NAMES[i].as_ptr(),
            _ => c"?".as_ptr(),
        }
    })
}

/// Creation parameters of a pool. Make one with `shmpool_config_new`, free it with
/// `shmpool_config_free`; `shmpool_pool_create` copies what it needs.
pub struct shmpool_config {
    pub(crate) config: Config,
}

/// A configuration with `slots` slots of `slot_size` bytes (rounded up to 4096) and defaults for
/// the rest: broadcast, block, 256 metadata bytes, `$SHMPOOL_DIR` or /dev/shm, mode 0600.
/// Sizes are checked by `shmpool_pool_create`.
#[no_mangle]
pub unsafe extern "C" fn shmpool_config_new(
    slots: u32,
    slot_size: usize,
    out: *mut *mut shmpool_config,
) -> shmpool_status {
    call(|| {
        // SAFETY: `out` is NULL or writable (module contract).
        unsafe { hand_out(out, shmpool_config { config: Config::new(slots, slot_size) }) }
    })
}

/// Frees a configuration (NULL is ignored).
#[no_mangle]
pub unsafe extern "C" fn shmpool_config_free(config: *mut shmpool_config) {
    guard((), || {
        if !config.is_null() {
            // SAFETY: a non-NULL config came from `Box::into_raw` in `shmpool_config_new` and is
            // freed once (module contract).
            drop(unsafe { Box::from_raw(config) });
        }
    })
}

/// Runs `f` on the configuration behind `config`.
///
/// # Safety
/// `config` is NULL or a live configuration handle not used concurrently (module contract).
unsafe fn with_config(config: *mut shmpool_config, f: impl FnOnce(&mut Config) -> Result<(), Fail>) -> shmpool_status {
    call(|| {
        // SAFETY: NULL or a live config not used elsewhere during this call (module contract).
        let c = unsafe { try_mut(config, "config") }?;
        f(&mut c.config)
    })
}

/// Number of slots, 1 to 4096.
#[no_mangle]
pub unsafe extern "C" fn shmpool_config_set_slots(config: *mut shmpool_config, slots: u32) -> shmpool_status {
    // SAFETY: forwarded module contract.
    unsafe {
        with_config(config, |c| {
            c.slots = slots;
            Ok(())
        })
    }
}

/// Bytes per slot, rounded up to a multiple of 4096.
#[no_mangle]
pub unsafe extern "C" fn shmpool_config_set_slot_size(config: *mut shmpool_config, slot_size: usize) -> shmpool_status {
    // SAFETY: forwarded module contract.
    unsafe {
        with_config(config, |c| {
            c.slot_size = slot_size;
            Ok(())
        })
    }
}

/// Delivery mode: a `shmpool_mode` value.
#[no_mangle]
pub unsafe extern "C" fn shmpool_config_set_mode(config: *mut shmpool_config, mode: u32) -> shmpool_status {
    // SAFETY: forwarded module contract.
    unsafe {
        with_config(config, |c| {
            c.mode = mode_from_c(mode)?;
            Ok(())
        })
    }
}

/// Full-pool policy: a `shmpool_overflow` value.
#[no_mangle]
pub unsafe extern "C" fn shmpool_config_set_overflow(config: *mut shmpool_config, overflow: u32) -> shmpool_status {
    // SAFETY: forwarded module contract.
    unsafe {
        with_config(config, |c| {
            c.overflow = overflow_from_c(overflow)?;
            Ok(())
        })
    }
}

/// Bytes of user metadata per slot (GStreamer caps, ...), at most 65536.
#[no_mangle]
pub unsafe extern "C" fn shmpool_config_set_meta_bytes(
    config: *mut shmpool_config,
    meta_bytes: usize,
) -> shmpool_status {
    // SAFETY: forwarded module contract.
    unsafe {
        with_config(config, |c| {
            c.meta_bytes = meta_bytes;
            Ok(())
        })
    }
}

/// Directory of the pool's file; NULL: `$SHMPOOL_DIR`, else /dev/shm.
#[no_mangle]
pub unsafe extern "C" fn shmpool_config_set_directory(
    config: *mut shmpool_config,
    directory: *const c_char,
) -> shmpool_status {
    let set = |c: &mut Config| {
        c.directory = if directory.is_null() {
            None
        } else {
            // SAFETY: non-NULL, NUL-terminated (module contract).
            let dir = unsafe { try_str(directory, "directory") }?;
            if dir.is_empty() {
                return Err(Fail::invalid("directory is empty"));
            }
            Some(dir.into())
        };
        Ok(())
    };
    // SAFETY: forwarded module contract.
    unsafe { with_config(config, set) }
}

/// File mode of the pool's file (e.g. 0600, 0660), at most 07777.
#[no_mangle]
pub unsafe extern "C" fn shmpool_config_set_permissions(
    config: *mut shmpool_config,
    permissions: u32,
) -> shmpool_status {
    // SAFETY: forwarded module contract.
    unsafe {
        with_config(config, |c| {
            if permissions > 0o7777 {
                return Err(Fail::invalid(format!("permissions {permissions:#o} exceed 07777")));
            }
            c.permissions = permissions;
            Ok(())
        })
    }
}

/// How often (milliseconds, at least 1) blocked calls re-check that their peers are alive.
#[no_mangle]
pub unsafe extern "C" fn shmpool_config_set_lease_ms(config: *mut shmpool_config, lease_ms: u32) -> shmpool_status {
    // SAFETY: forwarded module contract.
    unsafe {
        with_config(config, |c| {
            if lease_ms == 0 {
                return Err(Fail::invalid("lease_ms must be at least 1"));
            }
            c.lease = Duration::from_millis(u64::from(lease_ms));
            Ok(())
        })
    }
}
