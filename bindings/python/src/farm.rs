//! `shmpool.farm`: the Majordomo farm's client and worker (crate `shmpool-farm`) for Python.
//! Parts go in as `bytes`/`str` or NumPy arrays and come out as `bytes` or NumPy arrays. A
//! worker's received arrays are read-only views: of the client's shared-memory slot when both are
//! co-located (valid until the reply is sent: copy what must outlive it), else of the message.
//! Blocking calls release the GIL; `Worker.recv` wakes every 100 ms to run signal handlers.

use crate::buffers::{fill_view, ndarray, parse_dtype};
use crate::{invalid, numpy, to_py, PyErrorClass};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyBufferError, PyRuntimeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyBytes, PyString};
use shmpool::{DType, MAX_DIMS};
use shmpool_farm::part::{array_bytes, Array, Payload};
use shmpool_farm::{Client, ClientConfig, Part, Replier, ShmConfig, Worker, WorkerConfig};
use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

impl PyErrorClass for shmpool_farm::Error {
    fn class(&self) -> Option<&'static str> {
        match self {
            // Every retry ran out of time: the builtin TimeoutError, like every other timeout.
            shmpool_farm::Error::NoReply { .. } => None,
            shmpool_farm::Error::Invalid(_) => Some("InvalidArgument"),
            _ => Some("FarmError"),
        }
    }
}

fn shm_config(shm: bool, shm_dir: Option<PathBuf>, threshold: usize) -> ShmConfig {
    ShmConfig { enabled: shm, directory: shm_dir, threshold, ..ShmConfig::default() }
}

/// Python parts → farm parts: `bytes`/`bytearray`/`str` are bytes, anything with a `dtype` and
/// a `shape` (NumPy arrays) is an array: one from `Client.array` is lent as it is (no copy), any
/// other is copied once (C order) into a part from `alloc` (its frame, or a slot).
fn to_parts(py: Python<'_>, parts: &Bound<'_, PyAny>, alloc: &mut dyn FnMut(DType, &[u64]) -> Part) -> PyResult<Lent> {
    let mut lent = Lent { parts: Vec::new(), owners: Vec::new() };
    for item in parts.try_iter()? {
        let item = item?;
        if let Ok(s) = item.cast::<PyString>() {
            lent.parts.push(Part::bytes(s.to_str()?.as_bytes()));
        } else if item.hasattr("dtype")? && item.hasattr("shape")? {
            let dtype = parse_dtype(py, &item.getattr("dtype")?)?;
            let shape: Vec<u64> = item.getattr("shape")?.extract()?;
            if let Some((owner, part)) = FarmArray::lend(&item, dtype, &shape)? {
                lent.owners.push((lent.parts.len(), owner));
                lent.parts.push(part);
                continue;
            }
            if shape.len() > MAX_DIMS {
                return Err(invalid(format!("an array part has at most {MAX_DIMS} dimensions")));
            }
            let array = numpy(py)?.getattr("ascontiguousarray")?.call1((&item,))?;
            let flat = array.call_method1("reshape", (-1,))?.call_method1("view", ("uint8",))?;
            let mut part = alloc(dtype, &shape);
            let data = part.data_mut().ok_or_else(|| invalid("a new array part is not writable"))?;
            PyBuffer::<u8>::get(&flat)?.copy_to_slice(py, data)?;
            lent.parts.push(part);
        } else if let Ok(buffer) = PyBuffer::<u8>::get(&item) {
            lent.parts.push(Part::bytes(buffer.to_vec(py)?));
        } else {
            return Err(invalid(format!(
                "a part must be bytes, str or a NumPy array, not {}",
                item.get_type().name()?
            )));
        }
    }
    Ok(lent)
}

/// The parts of a message, some lent by `FarmArray`s: given back when dropped (also on error or
/// unwinding), so that the arrays viewing them never outlive their bytes.
struct Lent {
    parts: Vec<Part>,
    owners: Vec<(usize, Py<FarmArray>)>,
}

impl Lent {
    /// The parts, to be given away (a reply publishes its slots): a lent one is copied, as its
    /// `FarmArray` keeps its slot.
    fn give_away(&mut self) -> Vec<Part> {
        (0..self.parts.len())
            .map(|i| match &self.parts[i] {
                Part::Array(a) if self.owners.iter().any(|(lent, _)| *lent == i) => {
                    Part::Array(Array { dtype: a.dtype, shape: a.shape.clone(), data: Payload::Owned(a.data.to_vec()) })
                }
                _ => std::mem::replace(&mut self.parts[i], Part::bytes(Vec::new())),
            })
            .collect()
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        for (index, owner) in self.owners.drain(..) {
            let part = std::mem::replace(&mut self.parts[index], Part::bytes(Vec::new()));
            *owner.get().part.lock().unwrap_or_else(|e| e.into_inner()) = Some(part);
        }
    }
}

/// An array part made by `Client.array`, to be written in place from Python and sent without a
/// copy: in a slot of the client's pool when its broker is co-located, else in the frame it is
/// sent as. Its bytes are exported writable; the part is lent to each message that holds the
/// whole array, and its bytes stay where they are meanwhile.
#[pyclass(module = "shmpool._shmpool", name = "FarmArray", frozen)]
pub struct FarmArray {
    /// `None` while a message has it.
    part: Mutex<Option<Part>>,
    /// Where the bytes are, for the part's whole life.
    ptr: usize,
    len: usize,
}

impl FarmArray {
    /// The part of `item` if it is a whole `FarmArray` of this dtype and shape (found through the
    /// array's `base` chain, compared by address and size), taken out to be lent.
    fn lend(item: &Bound<'_, PyAny>, dtype: DType, shape: &[u64]) -> PyResult<Option<(Py<FarmArray>, Part)>> {
        // ndarray (reshaped) → ndarray (flat) → memoryview → FarmArray.
        let mut base = item.clone();
        for _ in 0..4 {
            base = match base.cast::<FarmArray>() {
                Ok(owner) => {
                    let whole = item.getattr("flags")?.getattr("c_contiguous")?.is_truthy()?
                        && item.getattr("__array_interface__")?.get_item("data")?.get_item(0)?.extract::<usize>()?
                            == owner.get().ptr
                        && item.getattr("nbytes")?.extract::<usize>()? == owner.get().len;
                    let mut slot = owner.get().part.lock().unwrap_or_else(|e| e.into_inner());
                    let fits =
                        slot.as_ref().and_then(Part::as_array).is_some_and(|a| a.dtype == dtype && a.shape == shape);
                    return Ok((whole && fits)
                        .then(|| slot.take())
                        .flatten()
                        .map(|part| (owner.clone().unbind(), part)));
                }
                Err(_) if base.hasattr("base")? => base.getattr("base")?,
                Err(_) if base.hasattr("obj")? => base.getattr("obj")?,
                Err(_) => return Ok(None),
            };
        }
        Ok(None)
    }
}

#[pymethods]
impl FarmArray {
    /// # Safety
    /// Called by Python with a valid `Py_buffer` to fill.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("NULL Py_buffer"));
        }
        let (ptr, len) = (slf.get().ptr, slf.get().len);
        // SAFETY: `view` is Python's request; the bytes are the part's (a slot held by it, or its
        // frame), which lives as long as this owner: while lent, `Lent` gives it back before
        // the owner can be used again, and the bytes do not move with the part.
        unsafe { fill_view(view, flags, slf.into_any(), ptr, len, false) };
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}

/// Farm parts → Python: `bytes`, or NumPy arrays viewing the parts in place.
fn to_python(py: Python<'_>, parts: Vec<Part>) -> PyResult<Vec<Py<PyAny>>> {
    let parts = Arc::new(parts);
    (0..parts.len())
        .map(|index| match &parts[index] {
            Part::Bytes(b) => Ok(PyBytes::new(py, b).into_any().unbind()),
            Part::Array(a) => {
                let owner = Bound::new(py, PartView { parts: parts.clone(), index })?.into_any();
                Ok(ndarray(&owner, a.dtype, &a.shape, true)?.unbind())
            }
        })
        .collect()
}

/// The bytes of one received part, exported read-only through the buffer protocol; keeps the
/// message (and the pool mapping, for shared parts) alive.
#[pyclass(module = "shmpool._shmpool", frozen)]
pub struct PartView {
    parts: Arc<Vec<Part>>,
    index: usize,
}

#[pymethods]
impl PartView {
    /// # Safety
    /// Called by Python with a valid `Py_buffer` to fill.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("NULL Py_buffer"));
        }
        if flags & ffi::PyBUF_WRITABLE != 0 {
            return Err(PyBufferError::new_err("received farm parts are read-only"));
        }
        let data = slf.get().parts[slf.get().index].data();
        let (ptr, len) = (data.as_ptr() as usize, data.len());
        // SAFETY: `view` is Python's request; the bytes live in `parts` (a message, or a pool
        // mapping kept by its Pool handle), which the exported owner keeps alive.
        unsafe { fill_view(view, flags, slf.into_any(), ptr, len, true) };
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}

/// A client of a farm broker (Lazy Pirate retries; shared memory with co-located workers).
#[pyclass(module = "shmpool._shmpool", name = "FarmClient")]
pub struct FarmClient {
    inner: Mutex<Client>,
}

impl FarmClient {
    /// The client, locked with the GIL released while waiting for it: a thread may hold the lock
    /// while it waits for the GIL (here, after locking), so none may wait for the lock while
    /// holding the GIL. (`request` also locks it with the GIL released throughout.)
    fn client(&self, py: Python<'_>) -> MutexGuard<'_, Client> {
        self.inner.lock_py_attached(py).unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl FarmClient {
    #[new]
    #[pyo3(signature = (endpoint, *, timeout=2.5, attempts=3, shm=true, shm_dir=None, threshold=4096))]
    fn new(
        endpoint: &str,
        timeout: f64,
        attempts: u32,
        shm: bool,
        shm_dir: Option<PathBuf>,
        threshold: usize,
    ) -> PyResult<Self> {
        let timeout = Duration::try_from_secs_f64(timeout).map_err(|e| invalid(format!("timeout: {e}")))?;
        let shm = shm_config(shm, shm_dir, threshold);
        let config = ClientConfig { timeout, attempts, shm, ..ClientConfig::default() };
        Ok(FarmClient { inner: Mutex::new(Client::connect(endpoint, config).map_err(to_py)?) })
    }

    /// Sends `parts` to `service`; returns the reply's parts. Raises `TimeoutError` when no
    /// attempt got a reply, `shmpool.FarmError` when the broker refused the request.
    fn request(&self, py: Python<'_>, service: &str, parts: &Bound<'_, PyAny>) -> PyResult<Vec<Py<PyAny>>> {
        // Arrays are copied straight into slots when the broker is co-located.
        let lent = {
            let mut client = self.client(py);
            to_parts(py, parts, &mut |dtype, shape| client.array(dtype, shape))?
        };
        let reply = py.detach(|| {
            let mut client = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            client.request(service, &lent.parts)
        });
        drop(lent);
        to_python(py, reply.map_err(to_py)?)
    }

    /// A writable array of `dtype` and `shape` to fill in place and send in a request with no
    /// copy: in a slot of the client's pool when its broker is co-located (held until the array
    /// and every view of it are gone), else in the frame it is sent as. Its contents are
    /// unspecified until written (a slot is reused as it is). A request sends it as it is while
    /// the whole array is passed; a slice or another view of it is copied like any array.
    fn array<'py>(&self, py: Python<'py>, dtype: &Bound<'py, PyAny>, shape: Vec<u64>) -> PyResult<Bound<'py, PyAny>> {
        let dtype = parse_dtype(py, dtype)?;
        if shape.len() > MAX_DIMS || array_bytes(dtype, &shape).is_none_or(|n| n > isize::MAX as usize) {
            return Err(invalid(format!("an array of {dtype:?} and shape {shape:?} cannot be made")));
        }
        let mut part = self.client(py).array(dtype, &shape);
        let data = part.data_mut().ok_or_else(|| invalid("a new array part is not writable"))?;
        let (ptr, len) = (data.as_mut_ptr() as usize, data.len());
        let owner = Bound::new(py, FarmArray { part: Mutex::new(Some(part)), ptr, len })?;
        ndarray(owner.as_any(), dtype, &shape, true)
    }

    /// How parts travelled: `shared_parts`, `inline_parts`, `resent_inline` (requests), then
    /// `shared_replies` (replies delivered whole in the reply pool), `shared_reply_parts`,
    /// `inline_reply_parts`, `replies_resent_inline` (replies),
    /// `slots_held` (slots of the client's pool held by arrays from `array` still alive) and
    /// `reply_slots_held` (slots of the reply pool held by reply arrays still alive).
    fn stats(&self, py: Python<'_>) -> std::collections::HashMap<&'static str, u64> {
        let client = self.client(py);
        let s = client.stats();
        let held = |pool: Option<&shmpool::Pool>| pool.map(|p| p.stats()).map_or(0, |p| u64::from(p.slots - p.free));
        [
            ("shared_parts", s.shared_parts),
            ("inline_parts", s.inline_parts),
            ("resent_inline", s.resent_inline),
            ("shared_replies", s.shared_replies),
            ("shared_reply_parts", s.shared_reply_parts),
            ("inline_reply_parts", s.inline_reply_parts),
            ("replies_resent_inline", s.replies_resent_inline),
            ("slots_held", held(client.pool())),
            ("reply_slots_held", held(client.reply_pool())),
        ]
        .into_iter()
        .collect()
    }

    /// `(address, size)` of the client's own pool, where `array` places arrays and request
    /// arrays are copied; `None` before the first co-located request.
    fn pool_mapping(&self, py: Python<'_>) -> Option<(usize, usize)> {
        self.client(py).pool().map(|p| p.mapping()).map(|(base, size)| (base as usize, size))
    }

    /// `(address, size)` of this process's read-only mapping of the reply pool, where reply
    /// arrays of co-located workers lie; `None` before the first co-located request.
    fn reply_pool_mapping(&self, py: Python<'_>) -> Option<(usize, usize)> {
        self.client(py).reply_pool().map(|p| p.read_mapping()).map(|(base, size)| (base as usize, size))
    }
}

/// A worker serving one service of a farm broker (heartbeats and reconnects in the background).
#[pyclass(module = "shmpool._shmpool", name = "FarmWorker")]
pub struct FarmWorker {
    inner: Mutex<Option<Worker>>,
}

#[pymethods]
impl FarmWorker {
    #[new]
    #[pyo3(signature = (endpoint, service, *, heartbeat=1.0, reconnect=1.0, shm=true, shm_dir=None))]
    fn new(
        endpoint: &str,
        service: &str,
        heartbeat: f64,
        reconnect: f64,
        shm: bool,
        shm_dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        let secs = |what: &str, v: f64| Duration::try_from_secs_f64(v).map_err(|e| invalid(format!("{what}: {e}")));
        let config = WorkerConfig {
            heartbeat: secs("heartbeat", heartbeat)?,
            reconnect_min: secs("reconnect", reconnect)?,
            shm: shm_config(shm, shm_dir, 4096),
            ..WorkerConfig::default()
        };
        let worker = Worker::connect(endpoint, service, config).map_err(to_py)?;
        Ok(FarmWorker { inner: Mutex::new(Some(worker)) })
    }

    /// The next request, waiting up to `timeout` seconds (`None`: until one comes); `None` when
    /// none came in time.
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<FarmRequest>> {
        let deadline = match timeout {
            Some(t) => Some(Instant::now() + Duration::try_from_secs_f64(t).map_err(|e| invalid(e.to_string()))?),
            None => None,
        };
        loop {
            let slice = deadline.map_or(Duration::from_millis(100), |d| {
                d.saturating_duration_since(Instant::now()).min(Duration::from_millis(100))
            });
            let got = py.detach(|| {
                let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                match guard.as_ref() {
                    Some(worker) => worker.recv(Some(slice)),
                    None => Err(shmpool_farm::Error::Stopped),
                }
            });
            if let Some(request) = got.map_err(to_py)? {
                let (parts, replier) = request.split();
                let shared = parts.iter().map(|p| p.as_array().is_some_and(|a| a.data.is_shared())).collect();
                return Ok(Some(FarmRequest {
                    parts: Mutex::new(Some(parts)),
                    shared,
                    replier: Mutex::new(Some(replier)),
                }));
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<FarmRequest>> {
        self.recv(py, None)
    }

    /// Says DISCONNECT to the broker and stops the background thread.
    fn close(&self, py: Python<'_>) {
        let worker = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        py.detach(|| drop(worker));
    }
}

/// One request received by a `FarmWorker`.
#[pyclass(module = "shmpool._shmpool", name = "FarmRequest")]
pub struct FarmRequest {
    parts: Mutex<Option<Vec<Part>>>,
    shared: Vec<bool>,
    replier: Mutex<Option<Replier>>,
}

#[pymethods]
impl FarmRequest {
    /// The parts (`bytes` or read-only NumPy arrays); can be taken once.
    #[getter]
    fn parts(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner()).take();
        to_python(py, parts.ok_or_else(|| PyRuntimeError::new_err("the parts were already taken"))?)
    }

    /// Per part: whether it is read in place in a co-located client's shared-memory pool.
    #[getter]
    fn shared(&self) -> Vec<bool> {
        self.shared.clone()
    }

    /// Answers the client with `parts` (once). Arrays are copied once, straight into slots of a
    /// co-located client's reply pool (else into their frames).
    fn reply(&self, py: Python<'_>, parts: &Bound<'_, PyAny>) -> PyResult<()> {
        // Locked while `to_parts` runs Python code: waits for the lock with the GIL released.
        let mut replier = self.replier.lock_py_attached(py).unwrap_or_else(|e| e.into_inner());
        let answered = || PyRuntimeError::new_err("this request was already answered");
        let mut lent = {
            let replier = replier.as_ref().ok_or_else(answered)?;
            to_parts(py, parts, &mut |dtype, shape| replier.array(dtype, shape))?
        };
        let replier = replier.take().ok_or_else(answered)?;
        let parts = lent.give_away();
        py.detach(|| replier.reply(parts)).map_err(to_py)
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FarmClient>()?;
    m.add_class::<FarmWorker>()?;
    m.add_class::<FarmRequest>()?;
    m.add_class::<PartView>()?;
    m.add_class::<FarmArray>()?;
    Ok(())
}
