//! DLPack export (CPU): `__dlpack__` capsules that keep their slot held until the consumer of the
//! capsule calls the deleter.
//!
//! Two forms, chosen by the caller's `max_version`: the legacy `DLManagedTensor` ("dltensor")
//! and, for `max_version >= (1, 0)`, `DLManagedTensorVersioned` ("dltensor_versioned"), which can
//! carry `DLPACK_FLAG_BITMASK_READ_ONLY` (set for received buffers).

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use shmpool::DType;
use std::ffi::{c_void, CStr};

/// What keeps the slot held while a tensor lives (dropping it may return the slot to the pool).
pub(crate) type Hold = Box<dyn Send + Sync>;

const KDL_CPU: i32 = 1;
const KDL_INT: u8 = 0;
const KDL_UINT: u8 = 1;
const KDL_FLOAT: u8 = 2;
const KDL_BFLOAT: u8 = 4;
const FLAG_READ_ONLY: u64 = 1;

const LEGACY_NAME: &CStr = c"dltensor";
const VERSIONED_NAME: &CStr = c"dltensor_versioned";

#[repr(C)]
#[derive(Clone, Copy)]
struct DLDevice {
    device_type: i32,
    device_id: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct DLDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

#[repr(C)]
struct DLTensor {
    data: *mut c_void,
    device: DLDevice,
    ndim: i32,
    dtype: DLDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

#[repr(C)]
struct DLManagedTensor {
    dl_tensor: DLTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

#[repr(C)]
struct DLPackVersion {
    major: u32,
    minor: u32,
}

#[repr(C)]
struct DLManagedTensorVersioned {
    version: DLPackVersion,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    flags: u64,
    dl_tensor: DLTensor,
}

/// A legacy tensor and what it points to. `managed` comes first so a pointer to it is a pointer
/// to the whole allocation.
#[repr(C)]
struct Legacy {
    managed: DLManagedTensor,
    shape: Box<[i64]>,
    strides: Box<[i64]>,
    _hold: Hold,
}

#[repr(C)]
struct Versioned {
    managed: DLManagedTensorVersioned,
    shape: Box<[i64]>,
    strides: Box<[i64]>,
    _hold: Hold,
}

unsafe extern "C" fn delete_legacy(managed: *mut DLManagedTensor) {
    if !managed.is_null() {
        // SAFETY: `managed` is the first field of a `Legacy` made by `Box::into_raw` in `export`,
        // and DLPack calls the deleter once. Dropping the hold needs no GIL.
        drop(unsafe { Box::from_raw(managed.cast::<Legacy>()) });
    }
}

unsafe extern "C" fn delete_versioned(managed: *mut DLManagedTensorVersioned) {
    if !managed.is_null() {
        // SAFETY: as in `delete_legacy`, for `Versioned`.
        drop(unsafe { Box::from_raw(managed.cast::<Versioned>()) });
    }
}

/// Capsule destructor: frees the tensor unless a consumer took it (and renamed the capsule).
unsafe extern "C" fn capsule_destructor(capsule: *mut ffi::PyObject) {
    // SAFETY: called by Python with the GIL and a valid capsule; `PyCapsule_IsValid` sets no error
    // and `PyCapsule_GetPointer` cannot fail once the name is known to match.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, LEGACY_NAME.as_ptr()) == 1 {
            delete_legacy(ffi::PyCapsule_GetPointer(capsule, LEGACY_NAME.as_ptr()).cast());
        } else if ffi::PyCapsule_IsValid(capsule, VERSIONED_NAME.as_ptr()) == 1 {
            delete_versioned(ffi::PyCapsule_GetPointer(capsule, VERSIONED_NAME.as_ptr()).cast());
        }
    }
}

fn dl_dtype(dtype: DType) -> DLDataType {
    let code = match dtype {
        DType::I8 | DType::I16 | DType::I32 | DType::I64 => KDL_INT,
        DType::F16 | DType::F32 | DType::F64 => KDL_FLOAT,
        DType::BF16 => KDL_BFLOAT,
        _ => KDL_UINT,
    };
    DLDataType { code, bits: (dtype.size() * 8) as u8, lanes: 1 }
}

/// What a `__dlpack__` call asks for.
pub(crate) struct Request {
    /// Export the versioned (DLPack 1.0) form.
    pub versioned: bool,
    /// `copy=True`: the exporter makes a copy (a writable tensor owning its bytes).
    pub copy: bool,
}

/// Checks the keyword arguments of `__dlpack__`.
pub(crate) fn check_request(
    stream: Option<&Bound<'_, PyAny>>,
    max_version: Option<(u32, u32)>,
    dl_device: Option<(i32, i32)>,
    copy: Option<bool>,
) -> PyResult<Request> {
    if stream.is_some_and(|s| !s.is_none()) {
        return Err(PyBufferError::new_err("shmpool buffers live on the CPU: stream must be None"));
    }
    if dl_device.is_some_and(|d| d != (KDL_CPU, 0)) {
        return Err(PyBufferError::new_err("shmpool buffers live on the CPU (device (1, 0))"));
    }
    Ok(Request { versioned: max_version.is_some_and(|(major, _)| major >= 1), copy: copy == Some(true) })
}

/// Exports `shape` elements of `dtype` at `data` as the request says: a view that owns `hold`, or
/// (for `copy=True`) a writable copy that owns its bytes.
///
/// # Safety
/// `data` points to at least `shape`'s bytes, which stay valid while `hold` lives.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn export_as_requested<'py>(
    py: Python<'py>,
    request: Request,
    data: *mut u8,
    dtype: DType,
    shape: &[u64],
    read_only: bool,
    hold: Hold,
) -> PyResult<Bound<'py, PyAny>> {
    if !request.copy {
        return export(py, data, dtype, shape, read_only, request.versioned, hold);
    }
    let nbytes = shape.iter().product::<u64>() as usize * dtype.size();
    // SAFETY: `data` has `nbytes` readable bytes while `hold` lives (the caller's contract).
    let mut copy: Box<[u8]> = unsafe { std::slice::from_raw_parts(data, nbytes) }.into();
    drop(hold);
    let ptr = copy.as_mut_ptr();
    // The boxed slice's bytes do not move when the box does.
    export(py, ptr, dtype, shape, false, request.versioned, Box::new(copy))
}

/// Makes a DLPack capsule over `data` (`shape` in elements of `dtype`, C order) that owns `hold`.
pub(crate) fn export<'py>(
    py: Python<'py>,
    data: *mut u8,
    dtype: DType,
    shape: &[u64],
    read_only: bool,
    versioned: bool,
    hold: Hold,
) -> PyResult<Bound<'py, PyAny>> {
    let mut shape: Box<[i64]> = shape.iter().map(|&n| n as i64).collect();
    let mut strides = vec![1i64; shape.len()].into_boxed_slice();
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    let tensor = DLTensor {
        data: data.cast(),
        device: DLDevice { device_type: KDL_CPU, device_id: 0 },
        ndim: shape.len() as i32,
        dtype: dl_dtype(dtype),
        shape: shape.as_mut_ptr(),
        strides: strides.as_mut_ptr(),
        byte_offset: 0,
    };
    let (ptr, name): (*mut c_void, &CStr) = if versioned {
        let boxed = Box::into_raw(Box::new(Versioned {
            managed: DLManagedTensorVersioned {
                version: DLPackVersion { major: 1, minor: 0 },
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(delete_versioned),
                flags: if read_only { FLAG_READ_ONLY } else { 0 },
                dl_tensor: tensor,
            },
            shape,
            strides,
            _hold: hold,
        }));
        // SAFETY: `boxed` was just allocated and is valid.
        unsafe { (*boxed).managed.manager_ctx = boxed.cast() };
        (boxed.cast(), VERSIONED_NAME)
    } else {
        let boxed = Box::into_raw(Box::new(Legacy {
            managed: DLManagedTensor {
                dl_tensor: tensor,
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(delete_legacy),
            },
            shape,
            strides,
            _hold: hold,
        }));
        // SAFETY: `boxed` was just allocated and is valid.
        unsafe { (*boxed).managed.manager_ctx = boxed.cast() };
        (boxed.cast(), LEGACY_NAME)
    };
    // SAFETY: `ptr` is non-null, `name` is a static C string that outlives the capsule, and the
    // destructor matches what `ptr` points to. We hold the GIL.
    let capsule = unsafe { ffi::PyCapsule_New(ptr, name.as_ptr(), Some(capsule_destructor)) };
    if capsule.is_null() {
        // SAFETY: the capsule was not made, so the tensor is still ours to free.
        unsafe {
            if versioned {
                delete_versioned(ptr.cast());
            } else {
                delete_legacy(ptr.cast());
            }
        }
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `capsule` is a new, owned, non-null reference.
    Ok(unsafe { Bound::from_owned_ptr(py, capsule) })
}
