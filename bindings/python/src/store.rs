//! `Store`, `StoreVersion`, `StoreWriter`, `Operator` and `Run`: named shared variables.
//!
//! Lifetime rules: a `StoreVersion` holds its version (the writer will not reuse its buffer) for
//! as long as it or any view of it (memoryview, ndarray, DLPack tensor) lives; its views are
//! read-only (`writeable=False`, the DLPack 1.0 read-only flag) and backed by a read-only mapping.
//! A `StoreWriter`'s ndarray is for filling the version before it is committed; it must not be
//! written after that (the memory then belongs to the readers).

use crate::buffers::{fill_view, ndarray, parse_dtype};
use crate::dlpack;
use crate::pool::{blocking, Failure};
use crate::{invalid, to_py};
use pyo3::exceptions::{PyBufferError, PyTimeoutError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use shmpool::store::{self as core, Decl, Kind};
use shmpool::Error;
use std::collections::HashMap;
use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn kind_of(name: &str) -> PyResult<Kind> {
    [Kind::Array, Kind::String, Kind::I64, Kind::F64, Kind::Bool]
        .into_iter()
        .find(|k| k.name() == name)
        .ok_or_else(|| invalid(format!("kind {name:?}: use array, string, i64, f64 or bool")))
}

/// A declaration from Python arguments (also the values of `Operator` output dicts).
fn declaration(
    py: Python<'_>,
    kind: &str,
    dtype: Option<&Bound<'_, PyAny>>,
    shape: Option<Vec<i64>>,
    capacity: Option<u64>,
    versions: usize,
) -> PyResult<Decl> {
    let decl = match kind_of(kind)? {
        Kind::Array => {
            let dtype = dtype.ok_or_else(|| invalid("an array variable needs a dtype"))?;
            let dims = shape.ok_or_else(|| invalid("an array variable needs a shape"))?;
            Decl::array(parse_dtype(py, dtype)?, &dims)
        }
        Kind::String => Decl::string(capacity.ok_or_else(|| invalid("a string variable needs a capacity"))?),
        scalar => Decl::scalar(scalar),
    };
    let decl = match capacity {
        Some(c) => decl.capacity(c),
        None => decl,
    };
    Ok(decl.versions(versions))
}

/// A declaration from a dict `{"dtype": ..., "shape": ..., "capacity": ..., "kind": ..., "versions": ...}`.
fn declaration_from_dict(py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<Decl> {
    let d = spec.cast::<PyDict>().map_err(|_| invalid("an output's declaration must be a dict"))?;
    let kind: String = d.get_item("kind")?.map_or(Ok("array".to_string()), |k| k.extract())?;
    let shape: Option<Vec<i64>> = d.get_item("shape")?.map(|s| s.extract()).transpose()?;
    let capacity: Option<u64> = d.get_item("capacity")?.map(|c| c.extract()).transpose()?;
    let versions: usize = d.get_item("versions")?.map_or(Ok(core::DEFAULT_VERSIONS), |v| v.extract())?;
    declaration(py, &kind, d.get_item("dtype")?.as_ref(), shape, capacity, versions)
}

/// An open store of named variables of a job (`Store.open(job, directory=None)`).
#[pyclass(frozen, module = "shmpool._shmpool")]
pub struct Store {
    store: core::Store,
}

#[pymethods]
impl Store {
    #[new]
    #[pyo3(signature = (job, directory=None))]
    fn new(py: Python<'_>, job: &str, directory: Option<PathBuf>) -> PyResult<Store> {
        let store = py.detach(|| core::Store::open_in(job, directory.as_deref())).map_err(to_py)?;
        Ok(Store { store })
    }

    /// Opens the store of `job` in `directory` (default: `$SHMPOOL_DIR` or /dev/shm), creating
    /// it if missing.
    #[staticmethod]
    #[pyo3(signature = (job, directory=None))]
    fn open(py: Python<'_>, job: &str, directory: Option<PathBuf>) -> PyResult<Store> {
        Store::new(py, job, directory)
    }

    /// Declares variable `name` (or checks it is declared the same way): `kind` "array"
    /// (`dtype`, `shape` with -1 for dynamic dimensions, `capacity` in bytes), "string"
    /// (`capacity`), "i64", "f64" or "bool"; `versions` buffers (3 to 8).
    #[pyo3(
        signature = (name, dtype=None, shape=None, capacity=None, kind="array", versions=core::DEFAULT_VERSIONS),
        text_signature = "(self, name, dtype=None, shape=None, capacity=None, kind='array', versions=4)"
    )]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn declare(
        &self,
        py: Python<'_>,
        name: &str,
        dtype: Option<&Bound<'_, PyAny>>,
        shape: Option<Vec<i64>>,
        capacity: Option<u64>,
        kind: &str,
        versions: usize,
    ) -> PyResult<()> {
        let decl = declaration(py, kind, dtype, shape, capacity, versions)?;
        py.detach(|| self.store.declare(name, &decl)).map_err(to_py)
    }

    /// Starts a new version of `name`, waiting up to `timeout` seconds for a free buffer. Use it
    /// as a context manager: published on a clean exit, discarded on an exception.
    #[pyo3(signature = (name, timeout=None))]
    fn write(&self, py: Python<'_>, name: &str, timeout: Option<f64>) -> PyResult<StoreWriter> {
        let guard = blocking(py, timeout, |slice| self.store.write_timeout(name, Some(slice)))?;
        Ok(StoreWriter::new(guard))
    }

    /// The latest version of `name` (newer than `newer_than` if given), waiting up to `timeout`
    /// seconds (None: forever) for the variable to be declared and such a version published.
    #[pyo3(signature = (name, timeout=None, newer_than=None))]
    fn read(
        &self,
        py: Python<'_>,
        name: &str,
        timeout: Option<f64>,
        newer_than: Option<u64>,
    ) -> PyResult<StoreVersion> {
        let v = blocking(py, timeout, |slice| self.store.read_newer(name, newer_than.unwrap_or(0), Some(slice)))?;
        Ok(StoreVersion::new(Arc::new(v)))
    }

    /// The latest version of `name` now, or None.
    fn try_read(&self, name: &str) -> PyResult<Option<StoreVersion>> {
        Ok(self.store.try_read(name).map_err(to_py)?.map(|v| StoreVersion::new(Arc::new(v))))
    }

    /// The variables: dicts with name, kind, dtype, dims, capacity, version, shape, readers,
    /// waiting.
    fn variables<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for v in self.store.variables().map_err(to_py)? {
            let d = PyDict::new(py);
            d.set_item("name", v.name)?;
            d.set_item("kind", v.decl.kind.name())?;
            d.set_item("dtype", v.decl.dtype.name())?;
            d.set_item("dims", PyTuple::new(py, &v.decl.dims)?)?;
            d.set_item("capacity", v.decl.capacity)?;
            d.set_item("version", v.version)?;
            d.set_item("shape", PyTuple::new(py, &v.shape)?)?;
            d.set_item("readers", v.readers)?;
            d.set_item("waiting", v.waiting)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// An operator reading `inputs` and writing `outputs` (a dict name → declaration dict, as
    /// the keyword arguments of `declare`).
    #[pyo3(signature = (name, inputs=Vec::new(), outputs=None))]
    fn operator(
        &self,
        py: Python<'_>,
        name: &str,
        inputs: Vec<String>,
        outputs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Operator> {
        let mut outs = Vec::new();
        if let Some(outputs) = outputs {
            for (k, v) in outputs.iter() {
                outs.push((k.extract::<String>()?, declaration_from_dict(py, &v)?));
            }
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let outs: Vec<(&str, Decl)> = outs.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
        let op = core::Operator::new(&self.store, name, &inputs, &outs).map_err(to_py)?;
        Ok(Operator { op: Mutex::new(op) })
    }

    /// Operator `name` of the pipeline defined in the JSON file `path` (see the README).
    fn pipeline_operator(&self, path: PathBuf, name: &str) -> PyResult<Operator> {
        let pipeline = core::Pipeline::load(&path).map_err(to_py)?;
        let op = pipeline.operator(&self.store, name).map_err(to_py)?;
        Ok(Operator { op: Mutex::new(op) })
    }

    /// Removes variable `name` (held versions stay valid); WriterBusy while another handle
    /// writes it.
    fn remove(&self, name: &str) -> PyResult<()> {
        self.store.remove(name).map_err(to_py)
    }

    /// Frees the holds of dead processes; returns how many places were freed.
    fn sweep(&self) -> usize {
        self.store.sweep()
    }

    /// The stores in `directory`: dicts with job, path, in_use.
    #[staticmethod]
    #[pyo3(signature = (directory=None))]
    fn list<'py>(py: Python<'py>, directory: Option<PathBuf>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for s in core::Store::list(directory.as_deref()).map_err(to_py)? {
            let d = PyDict::new(py);
            d.set_item("job", s.job)?;
            d.set_item("path", s.path)?;
            d.set_item("in_use", s.in_use)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Removes the stores of `directory` that nobody has open; returns their jobs.
    #[staticmethod]
    #[pyo3(signature = (directory=None))]
    fn gc(directory: Option<PathBuf>) -> PyResult<Vec<String>> {
        core::Store::gc(directory.as_deref()).map_err(to_py)
    }

    #[getter]
    fn job(&self) -> &str {
        self.store.job()
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.store.path().to_path_buf()
    }

    fn __repr__(&self) -> String {
        format!("<shmpool.Store job={:?} path={:?}>", self.store.job(), self.store.path())
    }
}

/// A held version of a variable, read-only.
#[pyclass(frozen, module = "shmpool._shmpool")]
pub struct StoreVersion {
    held: Arc<core::Version>,
    shape: Vec<u64>,
}

impl StoreVersion {
    fn new(held: Arc<core::Version>) -> StoreVersion {
        let shape = held.shape().iter().map(|&d| d as u64).collect();
        StoreVersion { held, shape }
    }
}

#[pymethods]
impl StoreVersion {
    /// The version number (1 for the first publication).
    #[getter]
    fn version(&self) -> u64 {
        self.held.version()
    }

    #[getter]
    fn name(&self) -> &str {
        self.held.name()
    }

    #[getter]
    fn kind(&self) -> &'static str {
        self.held.kind().name()
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.held.dtype().name()
    }

    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.shape)
    }

    #[getter]
    fn nbytes(&self) -> usize {
        self.held.bytes().len()
    }

    /// Address of the payload in this process (for zero-copy checks).
    #[getter]
    fn address(&self) -> usize {
        self.held.as_ptr() as usize
    }

    /// A read-only ndarray view (no copy) of the version, typed and shaped as published.
    fn array<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        ndarray(slf.as_any(), this.held.dtype(), &this.shape, true)
    }

    /// The value: a str, int, float or bool for those kinds, a read-only ndarray for arrays.
    fn value<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let v = &slf.get().held;
        Ok(match v.kind() {
            Kind::Array => return StoreVersion::array(slf),
            Kind::String => v.as_str().map_err(to_py)?.into_pyobject(py)?.into_any(),
            Kind::I64 => v.i64().map_err(to_py)?.into_pyobject(py)?.into_any(),
            Kind::F64 => v.f64().map_err(to_py)?.into_pyobject(py)?.into_any(),
            Kind::Bool => v.bool().map_err(to_py)?.into_pyobject(py)?.to_owned().into_any(),
        })
    }

    /// Buffer protocol: a read-only 1-D view of the bytes.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("NULL Py_buffer"));
        }
        if flags & ffi::PyBUF_WRITABLE != 0 {
            return Err(PyBufferError::new_err("store inputs are read-only"));
        }
        let (ptr, len) = (slf.get().held.as_ptr() as usize, slf.get().held.bytes().len());
        // SAFETY: `view` is Python's request; the version stays held while the view holds `slf`.
        unsafe { fill_view(view, flags, slf.into_any(), ptr, len, true) };
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

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
        let ptr = self.held.as_ptr() as *mut u8;
        let hold = Box::new(self.held.clone());
        // SAFETY: the version's bytes cover `shape` and `hold` keeps the version.
        unsafe { dlpack::export_as_requested(py, request, ptr, self.held.dtype(), &self.shape, true, hold) }
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        (1, 0)
    }

    fn __repr__(&self) -> String {
        format!("<shmpool.StoreVersion {} version={} shape={:?}>", self.held.name(), self.held.version(), self.shape)
    }
}

struct WriterState {
    guard: Option<core::WriteGuard>,
    done: &'static str,
}

/// A new version being written: fill `array()` (or `set()` a scalar or string), then `commit()`
/// (or leave the `with` block cleanly). `discard()` (or an exception) publishes nothing.
#[pyclass(frozen, module = "shmpool._shmpool")]
pub struct StoreWriter {
    state: Mutex<WriterState>,
}

impl StoreWriter {
    fn new(guard: core::WriteGuard) -> StoreWriter {
        StoreWriter { state: Mutex::new(WriterState { guard: Some(guard), done: "" }) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut core::WriteGuard) -> Result<T, Error>) -> PyResult<T> {
        let mut st = lock(&self.state);
        let done = st.done;
        let guard = st.guard.as_mut().ok_or_else(|| PyBufferError::new_err(format!("the version was {done}")))?;
        f(guard).map_err(to_py)
    }

    fn take(&self, done: &'static str) -> PyResult<core::WriteGuard> {
        let mut st = lock(&self.state);
        let was = st.done;
        let guard = st.guard.take().ok_or_else(|| PyBufferError::new_err(format!("the version was {was}")))?;
        st.done = done;
        Ok(guard)
    }
}

#[pymethods]
impl StoreWriter {
    /// A writable ndarray (no copy) of `shape` (default: the declared shape, if fixed) of the
    /// declared dtype. Do not write to it after the commit.
    #[pyo3(signature = (shape=None))]
    fn array<'py>(slf: &Bound<'py, Self>, shape: Option<Vec<usize>>) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let (dtype, shape) = this.with(|g| {
            if let Some(s) = &shape {
                g.set_shape(s)?;
            } else if !g.is_shape_set() {
                return Err(Error::InvalidArgument(format!(
                    "variable {:?} has a dynamic shape: pass shape=",
                    g.name()
                )));
            }
            Ok((g.dtype(), g.shape().iter().map(|&d| d as u64).collect::<Vec<_>>()))
        })?;
        ndarray(slf.as_any(), dtype, &shape, true)
    }

    /// Sets the value of a string, i64, f64 or bool variable.
    fn set(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let kind = self.with(|g| Ok(g.kind()))?;
        match kind {
            Kind::String => {
                let s: String = value.extract()?;
                self.with(|g| g.set_str(&s))
            }
            Kind::I64 => {
                let n: i64 = value.extract()?;
                self.with(|g| g.set_i64(n))
            }
            Kind::F64 => {
                let x: f64 = value.extract()?;
                self.with(|g| g.set_f64(x))
            }
            Kind::Bool => {
                let b: bool = value.extract()?;
                self.with(|g| g.set_bool(b))
            }
            Kind::Array => Err(invalid("an array variable is filled through array()")),
        }
    }

    /// Publishes the version; returns its number.
    fn commit(&self) -> PyResult<u64> {
        self.take("committed")?.commit().map_err(to_py)
    }

    /// Drops the version unpublished (nothing happens if it was already committed or discarded).
    fn discard(&self) {
        let _ = self.take("discarded");
    }

    /// Whether the version was committed or discarded.
    #[getter]
    fn done(&self) -> bool {
        lock(&self.state).guard.is_none()
    }

    /// Buffer protocol: a writable 1-D view of the bytes (for the current shape).
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("NULL Py_buffer"));
        }
        let (ptr, len) = slf.get().with(|g| Ok((g.as_mut_ptr() as usize, g.bytes_mut().len())))?;
        // SAFETY: `view` is Python's request; the buffer lies in the writer's mapping, which
        // lives as long as the store handle's writer right (past this object).
        unsafe { fill_view(view, flags, slf.into_any(), ptr, len, false) };
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Commits on a clean exit (if not done yet), discards on an exception.
    #[pyo3(signature = (exc_type, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if exc_type.is_some_and(|t| !t.is_none()) || self.done() {
            self.discard();
        } else {
            self.commit()?;
        }
        Ok(false)
    }
}

/// A pipeline step: `with op.run(timeout=5) as r:` waits for new versions of every input, gives
/// `r.inputs[name]` (read-only) and `r.outputs[name]` (writable), and publishes the outputs on a
/// clean exit (discards them on an exception).
#[pyclass(frozen, module = "shmpool._shmpool")]
pub struct Operator {
    op: Mutex<core::Operator>,
}

#[pymethods]
impl Operator {
    /// Waits up to `timeout` seconds for every input to have a version newer than the last run
    /// consumed (`TimeoutError` naming the missing input), then starts writing the outputs.
    #[pyo3(signature = (timeout=None))]
    fn run(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<Run> {
        let py = slf.py();
        let this = slf.get();
        let mut missing = None;
        let execution = blocking(py, timeout, |slice| {
            let r = lock(&this.op).begin(Some(slice));
            if let Err(Error::InputTimeout { name }) = &r {
                missing = Some(name.clone());
            }
            r
        });
        let execution = match (execution, missing) {
            (Ok(e), _) => e,
            (Err(Failure::Py(e)), Some(name)) if e.is_instance_of::<PyTimeoutError>(py) => {
                return Err(PyTimeoutError::new_err(format!("timed out waiting for input {name:?}")))
            }
            (Err(e), _) => return Err(e.into()),
        };
        let core::Execution { inputs, outputs } = execution;
        let mut input_objs = HashMap::new();
        for name in inputs.names() {
            let v = inputs.shared(name).map_err(to_py)?.clone();
            input_objs.insert(name.clone(), Py::new(py, StoreVersion::new(v))?);
        }
        let output_objs = outputs
            .into_iter()
            .map(|g| Ok((g.name().to_string(), Py::new(py, StoreWriter::new(g))?)))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Run { op: slf.clone().unbind(), inputs: Mutex::new(Some(inputs)), input_objs, output_objs })
    }

    #[getter]
    fn name(&self) -> String {
        lock(&self.op).name().to_string()
    }

    #[getter]
    fn inputs(&self) -> Vec<String> {
        lock(&self.op).inputs().to_vec()
    }

    #[getter]
    fn outputs(&self) -> Vec<String> {
        lock(&self.op).outputs().to_vec()
    }
}

/// One run of an operator (see `Operator.run`).
#[pyclass(frozen, module = "shmpool._shmpool")]
pub struct Run {
    op: Py<Operator>,
    inputs: Mutex<Option<core::Inputs>>,
    input_objs: HashMap<String, Py<StoreVersion>>,
    output_objs: Vec<(String, Py<StoreWriter>)>,
}

#[pymethods]
impl Run {
    /// The inputs by name (read-only versions).
    #[getter]
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.input_objs {
            d.set_item(k, v.bind(py))?;
        }
        Ok(d)
    }

    /// The outputs by name (versions being written).
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.output_objs {
            d.set_item(k, v.bind(py))?;
        }
        Ok(d)
    }

    /// Publishes the outputs and marks the inputs consumed; returns the outputs' versions.
    fn commit(&self, py: Python<'_>) -> PyResult<Vec<u64>> {
        let inputs = lock(&self.inputs).take().ok_or_else(|| PyBufferError::new_err("the run was already finished"))?;
        let outputs = self.output_objs.iter().map(|(_, w)| w.get().take("committed")).collect::<PyResult<Vec<_>>>()?;
        let op = self.op.bind(py).get();
        let result = lock(&op.op).commit(core::Execution { inputs, outputs });
        result.map_err(to_py)
    }

    /// Publishes nothing; the inputs count as not consumed.
    fn discard(&self) {
        lock(&self.inputs).take();
        for (_, w) in &self.output_objs {
            w.get().discard();
        }
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (exc_type, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if exc_type.is_some_and(|t| !t.is_none()) || lock(&self.inputs).is_none() {
            self.discard();
        } else {
            self.commit(py)?;
        }
        Ok(false)
    }
}

/// Registers the classes.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Store>()?;
    m.add_class::<StoreVersion>()?;
    m.add_class::<StoreWriter>()?;
    m.add_class::<Operator>()?;
    m.add_class::<Run>()?;
    Ok(())
}
