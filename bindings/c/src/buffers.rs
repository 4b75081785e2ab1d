//! `shmpool_write_buf` and `shmpool_read_buf`: a slot being written, a slot being read.

use super::config::dtype_from_c;
use super::{call, guard, shmpool_status, try_ref, Fail};
use shmpool::{ReadBuf, WriteBuf, MAX_DIMS};
use std::cell::UnsafeCell;
use std::ptr;

/// A slot being written: fill `shmpool_write_buf_data` (up to the capacity), set the length and
/// metadata, then `shmpool_producer_publish` or `shmpool_producer_discard` it.
pub struct shmpool_write_buf {
    /// `None` once published or aborted.
    buf: UnsafeCell<Option<WriteBuf>>,
}

/// A received slot, read in place until `shmpool_consumer_release`.
pub struct shmpool_read_buf {
    /// `None` once released.
    buf: UnsafeCell<Option<ReadBuf>>,
}

/// A buffer handle: what C points at.
pub(crate) trait Entry: Sized {
    type Buf;
    const GONE: &'static str;
    fn empty() -> Self;
    fn cell(&self) -> &UnsafeCell<Option<Self::Buf>>;
}

impl Entry for shmpool_write_buf {
    type Buf = WriteBuf;
    const GONE: &'static str = "the buffer was already published or discarded";
    fn empty() -> Self {
        shmpool_write_buf { buf: UnsafeCell::new(None) }
    }
    fn cell(&self) -> &UnsafeCell<Option<WriteBuf>> {
        &self.buf
    }
}

impl Entry for shmpool_read_buf {
    type Buf = ReadBuf;
    const GONE: &'static str = "the buffer was already released";
    fn empty() -> Self {
        shmpool_read_buf { buf: UnsafeCell::new(None) }
    }
    fn cell(&self) -> &UnsafeCell<Option<ReadBuf>> {
        &self.buf
    }
}

/// The buffer handles of one producer or consumer, one per slot of the pool, allocated once: a
/// producer or consumer holds a slot at most once at a time, so the entry of a slot it just got is
/// free, no allocation or atomic is needed in the hot loop, and a handle can be checked against
/// its owner by address alone (a wrong one is never dereferenced).
pub(crate) struct Table<E>(Box<[E]>);

impl<E: Entry> Table<E> {
    pub fn new(slots: usize) -> Self {
        Table((0..slots).map(|_| E::empty()).collect())
    }

    /// Stores `buf` (holding slot `index`) in its entry and returns the handle for C.
    #[inline]
    pub fn hand_out(&self, index: usize, buf: E::Buf) -> Result<*mut E, Fail> {
        let entry = self
            .0
            .get(index)
            .ok_or_else(|| Fail::new(shmpool_status::SHMPOOL_CORRUPTED, format!("slot index {index} out of range")))?;
        // SAFETY: this producer/consumer just got slot `index` exclusively, so no handle to this
        // entry is live (its previous buffer was taken when it was published/released) and no
        // other thread touches this entry. The old value is `None` (were it not, overwriting
        // would leak it rather than release a slot twice).
        unsafe { entry.cell().get().write(Some(buf)) };
        Ok(entry as *const E as *mut E)
    }

    /// The entry `handle` points to, if it is one of this table's (found by address only).
    #[inline]
    pub fn find(&self, handle: *const E) -> Option<&E> {
        let offset = (handle as usize).wrapping_sub(self.0.as_ptr() as usize);
        let size = std::mem::size_of::<E>();
        (offset % size == 0).then(|| self.0.get(offset / size)).flatten()
    }

    /// Checks that `*handle` is a live entry of this table and returns it.
    ///
    /// # Safety
    /// `handle` is NULL or points to a readable handle variable (module contract).
    #[inline]
    unsafe fn entry(&self, handle: *mut *mut E, owner: &str) -> Result<&E, Fail> {
        if handle.is_null() {
            return Err(Fail::null("buf"));
        }
        // SAFETY: non-NULL, readable (this function's contract).
        let h = unsafe { *handle };
        if h.is_null() {
            return Err(Fail::invalid(format!("*buf is NULL: {}", E::GONE)));
        }
        self.find(h).ok_or_else(|| Fail::invalid(format!("the buffer does not belong to this {owner}")))
    }

    /// Takes the buffer out of the entry `*handle` (which must be this table's) and sets `*handle`
    /// to NULL. `owner` names the owner in the error ("producer", "consumer").
    ///
    /// # Safety
    /// `handle` is NULL or points to a writable handle variable; the entry is not used by another
    /// thread during this call (module contract).
    #[inline]
    pub unsafe fn take(&self, handle: *mut *mut E, owner: &str) -> Result<E::Buf, Fail> {
        // SAFETY: forwarded contract.
        let entry = unsafe { self.entry(handle, owner) }?;
        // SAFETY: the entry is ours and not used concurrently (this function's contract).
        let buf = unsafe { (*entry.cell().get()).take() }.ok_or_else(|| Fail::invalid(E::GONE))?;
        // SAFETY: non-NULL (checked by `entry`), writable (this function's contract).
        unsafe { *handle = ptr::null_mut() };
        Ok(buf)
    }

    /// Like [`Table::take`], but drops the buffer in place (release, abort) instead of moving it.
    ///
    /// # Safety
    /// As for [`Table::take`].
    #[inline]
    pub unsafe fn discard(&self, handle: *mut *mut E, owner: &str) -> Result<(), Fail> {
        // SAFETY: forwarded contract.
        let entry = unsafe { self.entry(handle, owner) }?;
        // SAFETY: the entry is ours and not used concurrently (this function's contract).
        let cell = unsafe { &mut *entry.cell().get() };
        if cell.is_none() {
            return Err(Fail::invalid(E::GONE));
        }
        *cell = None;
        // SAFETY: non-NULL (checked by `entry`), writable (this function's contract).
        unsafe { *handle = ptr::null_mut() };
        Ok(())
    }
}

/// The buffer in a handle, or why there is none.
///
/// # Safety
/// `handle` is NULL or a handle from this library whose entry is not being taken concurrently.
#[inline]
unsafe fn live<'a, E: Entry>(handle: *const E) -> Result<&'a mut E::Buf, Fail> {
    // SAFETY: NULL or a live handle (module contract).
    let entry = unsafe { try_ref(handle, "buf") }?;
    // SAFETY: nobody else uses the entry during this call (module contract).
    unsafe { (*entry.cell().get()).as_mut() }.ok_or_else(|| Fail::invalid(E::GONE))
}

/// The buffer in a handle, for reading.
///
/// # Safety
/// As for [`live`], except that other readers may run concurrently.
#[inline]
unsafe fn live_ref<'a, E: Entry>(handle: *const E) -> Result<&'a E::Buf, Fail> {
    // SAFETY: NULL or a live handle (module contract).
    let entry = unsafe { try_ref(handle, "buf") }?;
    // SAFETY: nobody changes the entry during this call (module contract).
    unsafe { (*entry.cell().get()).as_ref() }.ok_or_else(|| Fail::invalid(E::GONE))
}

/// Reads a property of a possibly NULL or spent handle: `default` (and a last-error message).
#[inline]
unsafe fn get<E: Entry, T: Copy>(handle: *const E, default: T, f: impl FnOnce(&E::Buf) -> T) -> T {
    guard(default, || {
        // SAFETY: forwarded module contract.
        unsafe { live_ref(handle) }.map(f).unwrap_or_else(|fail| {
            fail.record();
            default
        })
    })
}

/// Runs a fallible change on a write buffer.
///
/// # Safety
/// `buf` is NULL or a live write-buffer handle not used concurrently (module contract).
#[inline]
unsafe fn with_write(buf: *mut shmpool_write_buf, f: impl FnOnce(&mut WriteBuf) -> Result<(), Fail>) -> shmpool_status {
    call(|| {
        // SAFETY: forwarded module contract.
        f(unsafe { live(buf) }?)
    })
}

/// The slot's bytes: `shmpool_write_buf_capacity` of them are writable (NULL for a NULL or spent
/// handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_write_buf_data(buf: *mut shmpool_write_buf) -> *mut u8 {
    guard(ptr::null_mut(), || {
        // SAFETY: forwarded module contract.
        unsafe { live(buf) }.map_or_else(
            |fail| {
                fail.record();
                ptr::null_mut()
            },
            |w| w.as_mut_ptr(),
        )
    })
}

/// Bytes the slot can hold (0 for a NULL or spent handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_write_buf_capacity(buf: *const shmpool_write_buf) -> usize {
    // SAFETY: forwarded module contract.
    unsafe { get(buf, 0, |b| b.capacity()) }
}

/// Bytes that will be published (default: the capacity; 0 for a NULL or spent handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_write_buf_len(buf: *const shmpool_write_buf) -> usize {
    // SAFETY: forwarded module contract.
    unsafe { get(buf, 0, |b| b.len()) }
}

/// Index of the slot in the pool (SIZE_MAX for a NULL or spent handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_write_buf_slot_index(buf: *const shmpool_write_buf) -> usize {
    // SAFETY: forwarded module contract.
    unsafe { get(buf, usize::MAX, |b| b.slot_index()) }
}

/// Sets how many bytes to publish (at most the capacity).
#[no_mangle]
pub unsafe extern "C" fn shmpool_write_buf_set_len(buf: *mut shmpool_write_buf, len: usize) -> shmpool_status {
    // SAFETY: forwarded module contract.
    unsafe { with_write(buf, |b| Ok(b.set_len(len)?)) }
}

/// Sets the timestamp (any unit; default: CLOCK_MONOTONIC nanoseconds at publish).
#[no_mangle]
pub unsafe extern "C" fn shmpool_write_buf_set_timestamp(
    buf: *mut shmpool_write_buf,
    timestamp: u64,
) -> shmpool_status {
    // SAFETY: forwarded module contract.
    unsafe {
        with_write(buf, |b| {
            b.set_timestamp(timestamp);
            Ok(())
        })
    }
}

/// Sets the element type: a `shmpool_dtype` value.
#[no_mangle]
pub unsafe extern "C" fn shmpool_write_buf_set_dtype(buf: *mut shmpool_write_buf, dtype: u32) -> shmpool_status {
    // SAFETY: forwarded module contract.
    unsafe {
        with_write(buf, |b| {
            b.set_dtype(dtype_from_c(dtype)?);
            Ok(())
        })
    }
}

/// Sets the shape: `ndim` (at most 8) dimensions read from `dims` (may be NULL when `ndim` is 0).
#[no_mangle]
pub unsafe extern "C" fn shmpool_write_buf_set_shape(
    buf: *mut shmpool_write_buf,
    dims: *const u64,
    ndim: usize,
) -> shmpool_status {
    let set = |b: &mut WriteBuf| {
        if ndim > MAX_DIMS {
            return Err(Fail::invalid(format!("{ndim} dimensions, at most {MAX_DIMS}")));
        }
        let shape: &[u64] = match (dims.is_null(), ndim) {
            (_, 0) => &[],
            (true, _) => return Err(Fail::null("dims")),
            // SAFETY: non-NULL and `ndim` readable values (module contract), `ndim` <= 8.
            (false, n) => unsafe { std::slice::from_raw_parts(dims, n) },
        };
        Ok(b.set_shape(shape)?)
    };
    // SAFETY: forwarded module contract.
    unsafe { with_write(buf, set) }
}

/// Sets the user metadata to `len` bytes from `bytes` (at most the pool's meta bytes; `bytes` may
/// be NULL when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn shmpool_write_buf_set_user_meta(
    buf: *mut shmpool_write_buf,
    bytes: *const u8,
    len: usize,
) -> shmpool_status {
    let set = |b: &mut WriteBuf| {
        let meta: &[u8] = match (bytes.is_null(), len) {
            (_, 0) => &[],
            (true, _) => return Err(Fail::null("bytes")),
            // SAFETY: non-NULL and `len` readable bytes (module contract).
            (false, n) => unsafe { std::slice::from_raw_parts(bytes, n) },
        };
        Ok(b.set_user_meta(meta)?)
    };
    // SAFETY: forwarded module contract.
    unsafe { with_write(buf, set) }
}

/// The received bytes, `shmpool_read_buf_len` of them, read-only (NULL for a NULL or spent handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_read_buf_data(buf: *const shmpool_read_buf) -> *const u8 {
    // SAFETY: forwarded module contract.
    unsafe { get(buf, ptr::null(), |b| b.as_ptr()) }
}

/// Number of bytes published (0 for a NULL or spent handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_read_buf_len(buf: *const shmpool_read_buf) -> usize {
    // SAFETY: forwarded module contract.
    unsafe { get(buf, 0, |b| b.len()) }
}

/// Publish sequence number; gaps mean drops or other consumers' share (0 for a NULL or spent handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_read_buf_seq(buf: *const shmpool_read_buf) -> u64 {
    // SAFETY: forwarded module contract.
    unsafe { get(buf, 0, |b| b.seq()) }
}

/// The producer's timestamp (0 for a NULL or spent handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_read_buf_timestamp(buf: *const shmpool_read_buf) -> u64 {
    // SAFETY: forwarded module contract.
    unsafe { get(buf, 0, |b| b.timestamp()) }
}

/// The element type, a `shmpool_dtype` value (bytes for a NULL or spent handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_read_buf_dtype(buf: *const shmpool_read_buf) -> u32 {
    // SAFETY: forwarded module contract.
    unsafe { get(buf, 0, |b| b.dtype().code()) }
}

/// The shape: returns the dimensions and writes their number to `ndim` (may be NULL). NULL and 0
/// dimensions for a NULL handle. Valid until the buffer is released.
#[no_mangle]
pub unsafe extern "C" fn shmpool_read_buf_shape(buf: *const shmpool_read_buf, ndim: *mut usize) -> *const u64 {
    // SAFETY: forwarded module contract.
    let (dims, n) = unsafe { get(buf, (ptr::null(), 0), |b| (b.shape().as_ptr(), b.shape().len())) };
    if !ndim.is_null() {
        // SAFETY: non-NULL out-parameter, writable (module contract).
        unsafe { ndim.write(n) };
    }
    dims
}

/// The user metadata: returns the bytes and writes their number to `len` (may be NULL). They are
/// not NUL-terminated. NULL and 0 for a NULL handle. Valid until the buffer is released.
#[no_mangle]
pub unsafe extern "C" fn shmpool_read_buf_user_meta(buf: *const shmpool_read_buf, len: *mut usize) -> *const u8 {
    // SAFETY: forwarded module contract.
    let (bytes, n) = unsafe { get(buf, (ptr::null(), 0), |b| (b.user_meta().as_ptr(), b.user_meta().len())) };
    if !len.is_null() {
        // SAFETY: non-NULL out-parameter, writable (module contract).
        unsafe { len.write(n) };
    }
    bytes
}

/// Index of the slot in the pool (SIZE_MAX for a NULL or spent handle).
#[no_mangle]
pub unsafe extern "C" fn shmpool_read_buf_slot_index(buf: *const shmpool_read_buf) -> usize {
    // SAFETY: forwarded module contract.
    unsafe { get(buf, usize::MAX, |b| b.slot_index()) }
}
