//! `Buffer` (received, read-only) and `WriteBuffer` (being filled).
//!
//! Lifetime rules: the core `ReadBuf`/`WriteBuf` sits in an `Arc`; the Python object holds one
//! reference and every DLPack tensor another, and buffer-protocol views (memoryviews, the ndarrays
//! built on them) are counted in `exports` while each of them keeps the Python object alive. The
//! slot goes back to the pool only when the last of these goes away, and `release()`/`publish()`
//! refuse to act while any view lives, so no view can ever see a recycled slot.

use crate::dlpack::{self, Hold};
use crate::{deprecated, error, invalid, numpy, numpy_types, resource_warning, to_py};
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView, PyTuple};
use shmpool::{DType, ReadBuf, WriteBuf, MAX_DIMS};
use std::ffi::c_int;
use std::sync::{Arc, Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A dtype argument: a shmpool name (`"f32"`, `"bf16"`, …) or anything `numpy.dtype()` accepts.
pub(crate) fn parse_dtype(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<DType> {
    if let Some(d) = numpy_types::known_dtype(obj)? {
        return Ok(d);
    }
    if let Ok(name) = obj.extract::<String>() {
        if let Some(d) = DType::from_name(&name) {
            return Ok(d);
        }
        if name == "bfloat16" {
            return Ok(DType::BF16);
        }
    }
    let dt = numpy(py)?.getattr("dtype")?.call1((obj,))?;
    let name: String = dt.getattr("name")?.extract()?;
    if name == "bfloat16" {
        return Ok(DType::BF16); // ml_dtypes.bfloat16
    }
    if !dt.getattr("isnative")?.is_truthy()? {
        return Err(invalid(format!("dtype {name} is not in native byte order")));
    }
    let kind: String = dt.getattr("kind")?.extract()?;
    let size: usize = dt.getattr("itemsize")?.extract()?;
    let found = match (kind.as_str(), size) {
        ("u", 1) => DType::U8,
        ("u", 2) => DType::U16,
        ("u", 4) => DType::U32,
        ("u", 8) => DType::U64,
        ("i", 1) => DType::I8,
        ("i", 2) => DType::I16,
        ("i", 4) => DType::I32,
        ("i", 8) => DType::I64,
        ("f", 2) => DType::F16,
        ("f", 4) => DType::F32,
        ("f", 8) => DType::F64,
        _ => {
            let names: Vec<&str> = DType::all().map(DType::name).collect();
            return Err(invalid(format!("dtype {name} is not supported (one of {})", names.join(", "))));
        }
    };
    Ok(found)
}

/// A shape argument: an int or a sequence of ints, at most `MAX_DIMS` of them, none negative.
fn parse_shape(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    // A tuple first: a failed int conversion costs an exception.
    let single = if obj.is_instance_of::<PyTuple>() { None } else { obj.extract::<i64>().ok() };
    let dims: Vec<i64> = match single {
        Some(n) => vec![n],
        None => obj.extract().map_err(|_| invalid("shape must be an int or a sequence of ints"))?,
    };
    if dims.len() > MAX_DIMS {
        return Err(invalid(format!("{} dimensions, at most {MAX_DIMS}", dims.len())));
    }
    dims.iter().map(|&n| u64::try_from(n).map_err(|_| invalid(format!("negative dimension {n} in shape")))).collect()
}

/// Bytes of an array of `shape` (`None` on overflow).
fn nbytes_of(dtype: DType, shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(dtype.size() as u64, |acc, &n| acc.checked_mul(n))
}

/// The shape a payload of `nbytes` bytes is viewed with: the recorded one, or for none recorded
/// (ndim 0), one dimension covering the payload.
fn effective_shape(dtype: DType, shape: &[u64], nbytes: usize) -> Result<Vec<u64>, String> {
    if shape.is_empty() {
        return Ok(vec![(nbytes / dtype.size()) as u64]);
    }
    match nbytes_of(dtype, shape) {
        Some(n) if n <= nbytes as u64 => Ok(shape.to_vec()),
        _ => Err(format!("shape {shape:?} of {dtype} needs more than the {nbytes} bytes of the buffer")),
    }
}

/// `numpy.frombuffer(memoryview(owner), dtype, count).reshape(shape)`: the array's base is the
/// memoryview, which holds a buffer export of `owner` for as long as the array (or any view of
/// it) lives.
pub(crate) fn ndarray<'py>(
    owner: &Bound<'py, PyAny>,
    dtype: DType,
    shape: &[u64],
    reshape: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let count: u64 = shape.iter().product();
    let view = PyMemoryView::from(owner)?;
    let flat = numpy_types::frombuffer(view.as_any(), dtype, count)?;
    // One dimension is what frombuffer made already.
    if reshape && shape.len() != 1 {
        flat.call_method1("reshape", (PyTuple::new(owner.py(), shape)?,))
    } else {
        Ok(flat)
    }
}

/// Fills a 1-D bytes view (`format "B"`) of `len` bytes at `ptr`, owned by `owner`.
///
/// # Safety
/// `view` must be the `Py_buffer` that Python passed to `__getbuffer__`, and `ptr..ptr+len` must
/// stay valid while the export is counted.
pub(crate) unsafe fn fill_view(
    view: *mut ffi::Py_buffer,
    flags: c_int,
    owner: Bound<'_, PyAny>,
    ptr: usize,
    len: usize,
    readonly: bool,
) {
    // SAFETY: the caller passes the valid, writable `Py_buffer` of this request.
    unsafe {
        (*view).obj = owner.into_ptr();
        (*view).buf = ptr as *mut std::ffi::c_void;
        (*view).len = len as isize;
        (*view).readonly = c_int::from(readonly);
        (*view).itemsize = 1;
        (*view).format = if flags & ffi::PyBUF_FORMAT != 0 { c"B".as_ptr().cast_mut() } else { std::ptr::null_mut() };
        (*view).ndim = 1;
        (*view).shape = if flags & ffi::PyBUF_ND != 0 { &mut (*view).len } else { std::ptr::null_mut() };
        (*view).strides =
            if flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES { &mut (*view).itemsize } else { std::ptr::null_mut() };
        (*view).suboffsets = std::ptr::null_mut();
        (*view).internal = std::ptr::null_mut();
    }
}

/// User metadata from Python: bytes-like, or a `str` stored as UTF-8.
fn meta_bytes(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(text) = value.extract::<&str>() {
        return Ok(text.as_bytes().to_vec());
    }
    value.extract::<Vec<u8>>().map_err(|_| {
        let type_name = value.get_type().name().map_or_else(|_| "?".to_string(), |n| n.to_string());
        pyo3::exceptions::PyTypeError::new_err(format!("user_meta must be bytes or str, not {type_name}"))
    })
}

fn views_alive(what: &str, exports: usize, tensors: usize) -> PyErr {
    PyBufferError::new_err(format!(
        "cannot {what}: {} view(s) of the slot are alive ({exports} memoryview/ndarray, {tensors} DLPack); \
         delete them first",
        exports + tensors
    ))
}

struct ReadState {
    held: Option<Arc<ReadBuf>>,
    exports: usize,
}

/// A received buffer, read in place (read-only). The slot returns to the pool on `release()` or
/// when the buffer and every view of it are gone.
#[pyclass(frozen, module = "shmpool._shmpool")]
pub struct Buffer {
    state: Mutex<ReadState>,
    ptr: usize,
    nbytes: usize,
    seq: u64,
    timestamp: u64,
    dtype: DType,
    shape: Vec<u64>,
    user_meta: Vec<u8>,
    slot_index: usize,
}

impl Buffer {
    pub(crate) fn new(buf: ReadBuf) -> PyResult<Buffer> {
        Buffer::from_shared(Arc::new(buf))
    }

    /// A buffer over a slot hold that Rust code may share (the protocol's lending).
    pub(crate) fn from_shared(buf: Arc<ReadBuf>) -> PyResult<Buffer> {
        Ok(Buffer {
            ptr: buf.as_ptr() as usize,
            nbytes: buf.len(),
            seq: buf.seq(),
            timestamp: buf.timestamp(),
            dtype: buf.dtype(),
            shape: buf.shape().to_vec(),
            user_meta: buf.user_meta().to_vec(),
            slot_index: buf.slot_index(),
            state: Mutex::new(ReadState { held: Some(buf), exports: 0 }),
        })
    }

    fn shape_or_corrupted(&self) -> PyResult<Vec<u64>> {
        effective_shape(self.dtype, &self.shape, self.nbytes)
            .map_err(|m| to_py(shmpool::Error::Corrupted(format!("slot {}: {m}", self.slot_index))))
    }
}

#[pymethods]
impl Buffer {
    /// A read-only ndarray view of the payload, typed and shaped from the slot's metadata
    /// (no shape recorded: 1-D; untyped: uint8; bf16: uint16 bits).
    fn array<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let shape = this.shape_or_corrupted()?;
        ndarray(slf.as_any(), this.dtype, &shape, true)
    }

    /// Returns the slot to the pool now. Raises `BufferError` (and keeps the slot) while any
    /// memoryview, ndarray or DLPack tensor of it is alive. Releasing twice does nothing.
    fn release(&self) -> PyResult<()> {
        let mut st = lock(&self.state);
        if let Some(held) = &st.held {
            let tensors = Arc::strong_count(held) - 1;
            if st.exports > 0 || tensors > 0 {
                return Err(views_alive("release the buffer", st.exports, tensors));
            }
        }
        let held = st.held.take();
        drop(st);
        drop(held);
        Ok(())
    }

    /// Whether `release()` returned the slot.
    #[getter]
    fn released(&self) -> bool {
        lock(&self.state).held.is_none()
    }

    /// Publish sequence number.
    #[getter]
    fn seq(&self) -> u64 {
        self.seq
    }

    /// The producer's timestamp (default: CLOCK_MONOTONIC ns at publish, see `monotonic_ns()`).
    #[getter]
    fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The user metadata bytes.
    #[getter]
    fn user_meta<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.user_meta)
    }

    /// Deprecated name of `user_meta`.
    #[getter]
    fn meta<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        deprecated(py, "Buffer.meta", "Buffer.user_meta")?;
        Ok(self.user_meta(py))
    }

    /// Published payload length in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.nbytes
    }

    /// Recorded element type name (`"bytes"` if none was recorded).
    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype.name()
    }

    /// Recorded shape (`()` if none was recorded).
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.shape)
    }

    /// Index of the slot in the pool.
    #[getter]
    fn slot_index(&self) -> usize {
        self.slot_index
    }

    /// Deprecated name of `slot_index`.
    #[getter]
    fn slot(&self, py: Python<'_>) -> PyResult<usize> {
        deprecated(py, "Buffer.slot", "Buffer.slot_index")?;
        Ok(self.slot_index)
    }

    /// Address of the payload in this process (for zero-copy checks).
    #[getter]
    fn address(&self) -> usize {
        self.ptr
    }

    /// Buffer protocol: a read-only 1-D view of the payload bytes.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("NULL Py_buffer"));
        }
        if flags & ffi::PyBUF_WRITABLE != 0 {
            return Err(PyBufferError::new_err("received shmpool buffers are read-only"));
        }
        let (ptr, len) = {
            let this = slf.get();
            let mut st = lock(&this.state);
            if st.held.is_none() {
                return Err(PyBufferError::new_err("the buffer was released"));
            }
            st.exports += 1;
            (this.ptr, this.nbytes)
        };
        // SAFETY: `view` is Python's request; the slot stays held while `exports` counts this view.
        unsafe { fill_view(view, flags, slf.into_any(), ptr, len, true) };
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        let mut st = lock(&self.state);
        st.exports = st.exports.saturating_sub(1);
    }

    /// DLPack export (CPU); with `max_version >= (1, 0)` the tensor is flagged read-only.
    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<&Bound<'py, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = dlpack::check_request(stream, max_version, dl_device, copy)?;
        let shape = self.shape_or_corrupted()?;
        let hold: Hold = match &lock(&self.state).held {
            Some(held) => Box::new(held.clone()),
            None => return Err(PyBufferError::new_err("the buffer was released")),
        };
        // SAFETY: the payload's `nbytes` cover `shape` (checked) and `hold` keeps the slot.
        unsafe { dlpack::export_as_requested(py, request, self.ptr as *mut u8, self.dtype, &shape, true, hold) }
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        (1, 0)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Releases the slot now. If views of it are still alive they keep it until they go, and a
    /// `ResourceWarning` says so (the slot is not back in the pool when the `with` block ends).
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        if let Err(e) = self.release() {
            resource_warning(py, &e)?;
        }
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmpool.Buffer seq={} slot_index={} nbytes={} dtype={} shape={:?}{}>",
            self.seq,
            self.slot_index,
            self.nbytes,
            self.dtype,
            self.shape,
            if self.released() { " released" } else { "" }
        )
    }
}

struct WriteState {
    held: Option<Arc<Mutex<WriteBuf>>>,
    exports: usize,
    published: bool,
    length: Option<usize>,
    dtype: DType,
    shape: Vec<u64>,
    user_meta: Vec<u8>,
    timestamp: Option<u64>,
}

/// A slot being filled (writable). `publish()` hands it to consumers; dropping it unpublished
/// (or `discard()`) returns it to the pool.
#[pyclass(frozen, module = "shmpool._shmpool")]
pub struct WriteBuffer {
    state: Mutex<WriteState>,
    ptr: usize,
    capacity: usize,
    slot_index: usize,
}

impl WriteBuffer {
    pub(crate) fn new(_py: Python<'_>, mut buf: WriteBuf) -> PyResult<WriteBuffer> {
        Ok(WriteBuffer {
            ptr: buf.as_mut_ptr() as usize,
            capacity: buf.capacity(),
            slot_index: buf.slot_index(),
            state: Mutex::new(WriteState {
                held: Some(Arc::new(Mutex::new(buf))),
                exports: 0,
                published: false,
                length: None,
                dtype: DType::Bytes,
                shape: Vec::new(),
                user_meta: Vec::new(),
                timestamp: None,
            }),
        })
    }

    /// The core buffer, for changes; fails once published or discarded.
    fn held(st: &WriteState) -> PyResult<Arc<Mutex<WriteBuf>>> {
        match &st.held {
            Some(h) => Ok(h.clone()),
            None if st.published => Err(PyBufferError::new_err("the buffer was already published")),
            None => Err(PyBufferError::new_err("the buffer was discarded")),
        }
    }

    /// Takes the core buffer out if no view of it is alive.
    fn take_unviewed(&self, what: &str) -> PyResult<WriteBuf> {
        let mut st = lock(&self.state);
        let held = Self::held(&st)?;
        let tensors = Arc::strong_count(&held) - 2; // ours in `st` and the clone above
        if st.exports > 0 || tensors > 0 {
            return Err(views_alive(what, st.exports, tensors));
        }
        drop(held);
        let held = st.held.take().expect("checked above");
        match Arc::try_unwrap(held) {
            Ok(m) => Ok(m.into_inner().unwrap_or_else(|e| e.into_inner())),
            Err(held) => {
                let tensors = Arc::strong_count(&held) - 1;
                st.held = Some(held);
                Err(views_alive(what, st.exports, tensors))
            }
        }
    }
}

#[pymethods]
impl WriteBuffer {
    /// A writable ndarray view of the slot of `dtype` and `shape` (`None`: 1-D over the whole
    /// slot); records dtype and shape in the slot's metadata and sets the length to publish.
    #[pyo3(signature = (dtype, shape=None))]
    fn array<'py>(
        slf: &Bound<'py, Self>,
        dtype: &Bound<'py, PyAny>,
        shape: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let dtype = parse_dtype(py, dtype)?;
        let (shape, reshape) = match shape {
            Some(s) if !s.is_none() => (parse_shape(s)?, true),
            _ => (vec![(this.capacity / dtype.size()) as u64], false),
        };
        let nbytes = match nbytes_of(dtype, &shape) {
            Some(n) if n <= this.capacity as u64 => n as usize,
            _ => {
                return Err(invalid(format!(
                    "shape {shape:?} of {dtype} needs more than the {} bytes of a slot",
                    this.capacity
                )))
            }
        };
        {
            let mut st = lock(&this.state);
            let held = WriteBuffer::held(&st)?;
            let mut buf = lock(&held);
            buf.set_dtype(dtype);
            buf.set_shape(if reshape { &shape } else { &[] }).map_err(to_py)?;
            st.dtype = dtype;
            st.shape = if reshape { shape.clone() } else { Vec::new() };
            st.length = Some(nbytes);
        }
        ndarray(slf.as_any(), dtype, &shape, reshape)
    }

    /// Publishes the buffer: the first `length` bytes (default: the bytes of the last `array()`,
    /// else the whole slot). Returns the sequence number, or `None` when a broadcast pool had no
    /// consumer. Raises `BufferError` (keeping the buffer) while views of it are alive.
    #[pyo3(signature = (length=None))]
    fn publish(&self, py: Python<'_>, length: Option<usize>) -> PyResult<Option<u64>> {
        let (length, needed) = {
            let st = lock(&self.state);
            Self::held(&st)?;
            let needed = if st.shape.is_empty() { 0 } else { nbytes_of(st.dtype, &st.shape).unwrap_or(0) as usize };
            (length.or(st.length).unwrap_or(self.capacity), needed)
        };
        if length > self.capacity {
            return Err(invalid(format!("length {length} exceeds the slot size {}", self.capacity)));
        }
        if length < needed {
            return Err(invalid(format!("length {length} is less than the {needed} bytes of the recorded shape")));
        }
        let mut buf = self.take_unviewed("publish the buffer")?;
        buf.set_len(length).map_err(to_py)?;
        // On failure (a closed pool) the core returns the slot: the buffer is then discarded.
        let seq = py.detach(|| buf.publish()).map_err(to_py)?;
        lock(&self.state).published = true;
        Ok(seq)
    }

    /// Returns the slot to the pool unpublished. Raises `BufferError` while views are alive.
    fn discard(&self) -> PyResult<()> {
        let st = lock(&self.state);
        if st.held.is_none() {
            return Ok(());
        }
        drop(st);
        drop(self.take_unviewed("discard the buffer")?);
        Ok(())
    }

    /// User metadata sent with the buffer (at most the pool's `meta_bytes`): bytes-like, or a
    /// `str` (stored as UTF-8). Reads back as `bytes`.
    #[getter]
    fn get_user_meta<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &lock(&self.state).user_meta)
    }

    #[setter]
    fn set_user_meta(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = meta_bytes(value)?;
        let mut st = lock(&self.state);
        let held = Self::held(&st)?;
        lock(&held).set_user_meta(&value).map_err(to_py)?;
        st.user_meta = value;
        Ok(())
    }

    /// Deprecated name of `user_meta`.
    #[getter]
    fn get_meta<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        deprecated(py, "WriteBuffer.meta", "WriteBuffer.user_meta")?;
        Ok(self.get_user_meta(py))
    }

    #[setter]
    fn set_meta(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        deprecated(value.py(), "WriteBuffer.meta", "WriteBuffer.user_meta")?;
        self.set_user_meta(value)
    }

    /// Timestamp sent with the buffer (`None`: CLOCK_MONOTONIC ns at publish).
    #[getter]
    fn get_timestamp(&self) -> Option<u64> {
        lock(&self.state).timestamp
    }

    #[setter]
    fn set_timestamp(&self, value: u64) -> PyResult<()> {
        let mut st = lock(&self.state);
        let held = Self::held(&st)?;
        lock(&held).set_timestamp(value);
        st.timestamp = Some(value);
        Ok(())
    }

    /// Bytes a slot holds.
    #[getter]
    fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes `publish()` publishes by default.
    #[getter]
    fn nbytes(&self) -> usize {
        lock(&self.state).length.unwrap_or(self.capacity)
    }

    /// Whether the buffer was published.
    #[getter]
    fn is_published(&self) -> bool {
        lock(&self.state).published
    }

    /// Deprecated name of `is_published` (`published` is a count on `Producer`).
    #[getter]
    fn published(&self, py: Python<'_>) -> PyResult<bool> {
        deprecated(py, "WriteBuffer.published", "WriteBuffer.is_published")?;
        Ok(self.is_published())
    }

    /// Index of the slot in the pool.
    #[getter]
    fn slot_index(&self) -> usize {
        self.slot_index
    }

    /// Deprecated name of `slot_index`.
    #[getter]
    fn slot(&self, py: Python<'_>) -> PyResult<usize> {
        deprecated(py, "WriteBuffer.slot", "WriteBuffer.slot_index")?;
        Ok(self.slot_index)
    }

    /// Address of the slot in this process (for zero-copy checks).
    #[getter]
    fn address(&self) -> usize {
        self.ptr
    }

    /// Buffer protocol: a writable 1-D view of the whole slot.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("NULL Py_buffer"));
        }
        let (ptr, len) = {
            let this = slf.get();
            let mut st = lock(&this.state);
            Self::held(&st)?;
            st.exports += 1;
            (this.ptr, this.capacity)
        };
        // SAFETY: `view` is Python's request; the slot stays ours while `exports` counts this view.
        unsafe { fill_view(view, flags, slf.into_any(), ptr, len, false) };
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        let mut st = lock(&self.state);
        st.exports = st.exports.saturating_sub(1);
    }

    /// DLPack export (CPU, writable) with the dtype and shape of the last `array()` call (else
    /// bytes over the whole slot). `publish()` waits for the tensor's deleter.
    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<&Bound<'py, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = dlpack::check_request(stream, max_version, dl_device, copy)?;
        let st = lock(&self.state);
        let hold: Hold = Box::new(Self::held(&st)?);
        let shape = effective_shape(st.dtype, &st.shape, self.capacity).map_err(|m| error("Error", m))?;
        let dtype = st.dtype;
        drop(st);
        // SAFETY: the slot's `capacity` covers `shape` (checked) and `hold` keeps the slot.
        unsafe { dlpack::export_as_requested(py, request, self.ptr as *mut u8, dtype, &shape, false, hold) }
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        (1, 0)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Discards an unpublished buffer. If views of it are still alive they keep the slot until
    /// they go, and a `ResourceWarning` says so.
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        if let Err(e) = self.discard() {
            resource_warning(py, &e)?;
        }
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let st = lock(&self.state);
        let status = if st.published {
            " published"
        } else if st.held.is_none() {
            " discarded"
        } else {
            ""
        };
        format!("<shmpool.WriteBuffer slot_index={} capacity={}{status}>", self.slot_index, self.capacity)
    }
}
