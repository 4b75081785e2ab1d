//! `shmpool_store`: named shared variables. A writer fills a new version and commits it; readers
//! get the latest version (or wait for a newer one) as a read-only view that stays valid, and
//! unchanged, until they release it. Writing through a view's data faults (it is mapped
//! read-only). Kinds are the `shmpool_kind` constants, element types the `shmpool_dtype` ones.
//! A second writer of a variable gets `SHMPOOL_ALREADY_EXISTS`.

use super::pool::opt_dir;
use super::{call, guard, hand_out, shmpool_status, timeout, try_mut, try_ref, try_str, write_out, Fail};
use shmpool::store::{Decl, Kind, Store, Version, WriteGuard, DEFAULT_VERSIONS};
use shmpool::DType;
use std::ffi::c_char;
use std::ptr;

/// An open store of named variables (may be shared between threads).
pub struct shmpool_store {
    store: Store,
}

/// A version being written; commit or discard it.
pub struct shmpool_store_writer {
    guard: WriteGuard,
}

/// A held, read-only version of a variable; release it.
pub struct shmpool_store_version {
    version: Version,
}

/// Opens the store of `job` in `directory` (NULL: `$SHMPOOL_DIR`, else /dev/shm), creating it if
/// missing.
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_open(
    job: *const c_char,
    directory: *const c_char,
    out: *mut *mut shmpool_store,
) -> shmpool_status {
    call(|| {
        // SAFETY: module contract for every pointer argument.
        let (job, dir) = unsafe { (try_str(job, "job")?, opt_dir(directory)?) };
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let store = Store::open_in(job, dir)?;
        // SAFETY: `out` checked non-NULL above, writable per the module contract.
        unsafe { hand_out(out, shmpool_store { store }) }
    })
}

/// Frees a store handle (NULL is ignored). Versions and writers obtained from it stay valid
/// until released; the variables it wrote get no more writer until the last of them is gone.
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_free(store: *mut shmpool_store) {
    guard((), || {
        if !store.is_null() {
            // SAFETY: a non-NULL store came from `Box::into_raw` here and is freed once (contract).
            drop(unsafe { Box::from_raw(store) });
        }
    })
}

/// Declares variable `name` (1 to 63 of A-Z a-z 0-9 . _ -), or checks that it is declared the
/// same way. `kind`: a `shmpool_kind`; for arrays `dtype` and `ndims` dimensions in `dims`
/// (-1: dynamic, fixed per version); `capacity`: bytes of one version (0: the size of the shape
/// with dynamic dimensions 1; needed for strings). Scalars ignore `dtype`, `dims` and `capacity`.
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_declare(
    store: *const shmpool_store,
    name: *const c_char,
    kind: u32,
    dtype: u32,
    dims: *const i64,
    ndims: usize,
    capacity: u64,
) -> shmpool_status {
    call(|| {
        // SAFETY: module contract for every pointer argument.
        let (store, name) = unsafe { (try_ref(store, "store")?, try_str(name, "name")?) };
        let kind = Kind::from_code(kind).ok_or_else(|| Fail::invalid(format!("kind {kind} is unknown")))?;
        let decl = match kind {
            Kind::Array => {
                let dtype =
                    DType::from_code(dtype).ok_or_else(|| Fail::invalid(format!("dtype {dtype} is unknown")))?;
                if dims.is_null() && ndims > 0 {
                    return Err(Fail::null("dims"));
                }
                if ndims > shmpool::MAX_DIMS {
                    return Err(Fail::invalid(format!("{ndims} dimensions: at most {}", shmpool::MAX_DIMS)));
                }
                // SAFETY: `dims` points to `ndims` readable values (module contract), checked
                // non-NULL when ndims > 0 and bounded above.
                let dims = if ndims == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(dims, ndims) } };
                let decl = Decl::array(dtype, dims);
                if capacity == 0 {
                    decl
                } else {
                    decl.capacity(capacity)
                }
            }
            Kind::String => Decl::string(capacity),
            scalar => Decl::scalar(scalar),
        };
        Ok(store.store.declare(name, &decl.versions(DEFAULT_VERSIONS))?)
    })
}

/// Removes variable `name`: versions held stay valid until released; the name may be declared
/// again. `SHMPOOL_ALREADY_EXISTS` while another handle writes it.
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_remove(store: *const shmpool_store, name: *const c_char) -> shmpool_status {
    call(|| {
        // SAFETY: module contract for every pointer argument.
        let (store, name) = unsafe { (try_ref(store, "store")?, try_str(name, "name")?) };
        Ok(store.store.remove(name)?)
    })
}

/// Starts a new version of the declared variable `name`, waiting up to `timeout_ms` for a free
/// version buffer. Fixed shapes are preset; set a dynamic one with
/// `shmpool_store_writer_set_shape`, then fill `shmpool_store_writer_data` and commit.
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_write(
    store: *const shmpool_store,
    name: *const c_char,
    timeout_ms: u32,
    out: *mut *mut shmpool_store_writer,
) -> shmpool_status {
    call(|| {
        // SAFETY: module contract for every pointer argument.
        let (store, name) = unsafe { (try_ref(store, "store")?, try_str(name, "name")?) };
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let guard = store.store.write_timeout(name, timeout(timeout_ms))?;
        // SAFETY: `out` checked non-NULL above, writable per the module contract.
        unsafe { hand_out(out, shmpool_store_writer { guard }) }
    })
}

/// Sets the shape of the version being written (`ndims` sizes; within the capacity, fixed
/// dimensions as declared).
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_writer_set_shape(
    writer: *mut shmpool_store_writer,
    shape: *const usize,
    ndims: usize,
) -> shmpool_status {
    call(|| {
        // SAFETY: module contract.
        let w = unsafe { try_mut(writer, "writer") }?;
        if (shape.is_null() && ndims > 0) || ndims > shmpool::MAX_DIMS {
            return Err(Fail::invalid(format!("shape of {ndims} dimensions")));
        }
        // SAFETY: `shape` points to `ndims` (≤ MAX_DIMS) readable values (module contract).
        let shape = if ndims == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(shape, ndims) } };
        Ok(w.guard.set_shape(shape)?)
    })
}

/// The bytes of the version being written: `shmpool_store_writer_len` of them (NULL for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_writer_data(writer: *mut shmpool_store_writer) -> *mut u8 {
    guard(ptr::null_mut(), || {
        // SAFETY: NULL or a live handle (module contract).
        unsafe { writer.as_mut() }.map_or(ptr::null_mut(), |w| w.guard.as_mut_ptr())
    })
}

/// Bytes of the version for its current shape (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_writer_len(writer: *mut shmpool_store_writer) -> usize {
    guard(0, || {
        // SAFETY: NULL or a live handle (module contract).
        unsafe { writer.as_mut() }.map_or(0, |w| w.guard.bytes_mut().len())
    })
}

/// Publishes the version, writes its number to `version` (may be NULL), frees the writer and
/// sets `*writer` to NULL.
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_writer_commit(
    writer: *mut *mut shmpool_store_writer,
    version: *mut u64,
) -> shmpool_status {
    call(|| {
        // SAFETY: module contract: `writer` is NULL or the address of a handle variable.
        let slot = unsafe { try_mut(writer, "writer") }?;
        if slot.is_null() {
            return Err(Fail::null("*writer"));
        }
        // SAFETY: a non-NULL handle came from `Box::into_raw`; we take it and clear the variable.
        let w = unsafe { Box::from_raw(std::mem::replace(slot, ptr::null_mut())) };
        let n = w.guard.commit()?;
        if !version.is_null() {
            // SAFETY: non-NULL out-parameter (module contract).
            unsafe { write_out(version, n, "version") }?;
        }
        Ok(())
    })
}

/// Discards the version being written (nothing is published), frees the writer and sets
/// `*writer` to NULL (NULL or an already-NULL handle is ignored).
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_writer_discard(writer: *mut *mut shmpool_store_writer) {
    guard((), || {
        // SAFETY: module contract: NULL or the address of a handle variable.
        if let Some(slot) = unsafe { writer.as_mut() } {
            if !slot.is_null() {
                // SAFETY: a live handle from `Box::into_raw`, taken once.
                drop(unsafe { Box::from_raw(std::mem::replace(slot, ptr::null_mut())) });
            }
        }
    })
}

/// The latest version of `name` newer than `newer_than` (0: any), waiting up to `timeout_ms`
/// for the variable to be declared and for such a version. Release it with
/// `shmpool_store_version_release`.
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_read(
    store: *const shmpool_store,
    name: *const c_char,
    newer_than: u64,
    timeout_ms: u32,
    out: *mut *mut shmpool_store_version,
) -> shmpool_status {
    call(|| {
        // SAFETY: module contract for every pointer argument.
        let (store, name) = unsafe { (try_ref(store, "store")?, try_str(name, "name")?) };
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let version = store.store.read_newer(name, newer_than, timeout(timeout_ms))?;
        // SAFETY: `out` checked non-NULL above, writable per the module contract.
        unsafe { hand_out(out, shmpool_store_version { version }) }
    })
}

/// The version's bytes, read-only (a write through them faults): `shmpool_store_version_len`
/// of them (NULL for NULL). Valid until the version is released.
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_version_data(version: *const shmpool_store_version) -> *const u8 {
    // SAFETY: NULL or a live handle (module contract).
    guard(ptr::null(), || unsafe { version.as_ref() }.map_or(ptr::null(), |v| v.version.as_ptr()))
}

/// Bytes of the version (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_version_len(version: *const shmpool_store_version) -> usize {
    // SAFETY: NULL or a live handle (module contract).
    guard(0, || unsafe { version.as_ref() }.map_or(0, |v| v.version.bytes().len()))
}

/// The version number (1 for the first publication; 0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_version_number(version: *const shmpool_store_version) -> u64 {
    // SAFETY: NULL or a live handle (module contract).
    guard(0, || unsafe { version.as_ref() }.map_or(0, |v| v.version.version()))
}

/// The element type, a `shmpool_dtype` (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_version_dtype(version: *const shmpool_store_version) -> u32 {
    // SAFETY: NULL or a live handle (module contract).
    guard(0, || unsafe { version.as_ref() }.map_or(0, |v| v.version.dtype().code()))
}

/// The shape: returns the sizes and writes their number to `ndims` (may be NULL). Valid until
/// the version is released.
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_version_shape(
    version: *const shmpool_store_version,
    ndims: *mut usize,
) -> *const usize {
    guard(ptr::null(), || {
        // SAFETY: NULL or a live handle (module contract).
        let (dims, n) = unsafe { version.as_ref() }
            .map_or((ptr::null(), 0), |v| (v.version.shape().as_ptr(), v.version.shape().len()));
        if !ndims.is_null() {
            // SAFETY: non-NULL out-parameter (module contract).
            unsafe { ndims.write(n) };
        }
        dims
    })
}

/// Lets go of a version and sets `*version` to NULL (NULL or an already-NULL handle is ignored).
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_version_release(version: *mut *mut shmpool_store_version) {
    guard((), || {
        // SAFETY: module contract: NULL or the address of a handle variable.
        if let Some(slot) = unsafe { version.as_mut() } {
            if !slot.is_null() {
                // SAFETY: a live handle from `Box::into_raw`, taken once.
                drop(unsafe { Box::from_raw(std::mem::replace(slot, ptr::null_mut())) });
            }
        }
    })
}

/// Removes the stores of `directory` (NULL: the default) that no process has open; writes how
/// many to `removed` (may be NULL).
#[no_mangle]
pub unsafe extern "C" fn shmpool_store_gc(directory: *const c_char, removed: *mut usize) -> shmpool_status {
    call(|| {
        // SAFETY: module contract.
        let dir = unsafe { opt_dir(directory) }?;
        let n = Store::gc(dir)?.len();
        if !removed.is_null() {
            // SAFETY: non-NULL out-parameter (module contract).
            unsafe { write_out(removed, n, "removed") }?;
        }
        Ok(())
    })
}
