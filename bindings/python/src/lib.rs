//! Python bindings of shmpool: the compiled half (`shmpool._shmpool`) of the `shmpool` package.
//!
//! - [`pool`]: `Pool`, `Producer`, `Consumer` (blocking calls release the GIL and wake every
//!   100 ms to run Python signal handlers, so Ctrl-C interrupts them).
//! - [`buffers`]: `Buffer` (received, read-only) and `WriteBuffer` (being filled), both with the
//!   buffer protocol and DLPack; a slot stays held while any view of it exists.
//! - [`dlpack`]: the DLPack structures and capsules.
//! - [`store`]: `Store`, `StoreVersion`, `StoreWriter`, `Operator`, `Run` (named variables).
//! - [`protocol`]: the host/worker protocol's `Listener` and `Connection` (for `shmpool.rpc`).
//! - [`farm`]: the Majordomo farm's client and worker (for `shmpool.farm`).
//!
//! Errors are instances of the classes in `shmpool/_errors.py` (subclasses of `shmpool.Error`),
//! except timeouts, which raise the builtin `TimeoutError`.

mod buffers;
mod dlpack;
mod farm;
mod numpy_types;
mod pool;
mod protocol;
mod store;

use pyo3::exceptions::{PyImportError, PyRuntimeError, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use shmpool::Error;

/// An error of a Rust layer that has a `shmpool.Error` subclass (in `shmpool/_errors.py`).
pub(crate) trait PyErrorClass: std::fmt::Display {
    /// The subclass's name; `None` for a timeout, which raises the builtin `TimeoutError`.
    fn class(&self) -> Option<&'static str>;
}

impl PyErrorClass for Error {
    fn class(&self) -> Option<&'static str> {
        Some(match self {
            Error::Timeout | Error::InputTimeout { .. } => return None,
            Error::NotFound { .. } => "PoolNotFound",
            Error::AlreadyExists { .. } => "PoolExists",
            Error::Closed => "Closed",
            Error::Orphaned => "Orphaned",
            Error::Corrupted(_) => "Corrupted",
            Error::InvalidArgument(_) => "InvalidArgument",
            Error::InsufficientSpace { .. } => "InsufficientSpace",
            Error::TooManyPeers { .. } => "TooManyPeers",
            Error::Unsupported(_) => "Unsupported",
            Error::WriterBusy { .. } => "WriterBusy",
            Error::Io { .. } => "IOFailure",
            // Variants the core may add later map to the base class.
            _ => "Error",
        })
    }
}

/// Converts a Rust error into the matching `shmpool.Error` subclass, keeping its message.
pub(crate) fn to_py(err: impl PyErrorClass) -> PyErr {
    match err.class() {
        None => PyTimeoutError::new_err(err.to_string()),
        Some(class) => error(class, err.to_string()),
    }
}

/// An instance of `shmpool._errors.<class>` with `message`.
pub(crate) fn error(class: &str, message: String) -> PyErr {
    Python::attach(|py| match error_class(py, class) {
        Ok(ty) => PyErr::from_type(ty, message),
        Err(e) => PyRuntimeError::new_err(format!("{message} (and shmpool._errors is unusable: {e})")),
    })
}

fn error_class<'py>(py: Python<'py>, class: &str) -> PyResult<Bound<'py, PyType>> {
    static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = ERRORS.get_or_try_init(py, || py.import("shmpool._errors").map(Bound::unbind))?;
    Ok(module.bind(py).getattr(class)?.cast_into::<PyType>()?)
}

/// `shmpool.InvalidArgument` with `message`.
pub(crate) fn invalid(message: impl Into<String>) -> PyErr {
    error("InvalidArgument", message.into())
}

/// Warns that `old` is deprecated in favour of `new` (kept for one release).
pub(crate) fn deprecated(py: Python<'_>, old: &str, new: &str) -> PyResult<()> {
    let category = py.get_type::<pyo3::exceptions::PyDeprecationWarning>();
    let message = format!("{old} is deprecated and will be removed in the next release: use {new}");
    PyErr::warn(py, &category, &std::ffi::CString::new(message).unwrap_or_default(), 1)
}

/// Turns an error that a context manager's exit cannot raise into a `ResourceWarning`.
pub(crate) fn resource_warning(py: Python<'_>, err: &PyErr) -> PyResult<()> {
    let category = py.get_type::<pyo3::exceptions::PyResourceWarning>();
    let message = format!("{} (at the end of the with block)", err.value(py));
    PyErr::warn(py, &category, &std::ffi::CString::new(message).unwrap_or_default(), 1)
}

/// The `numpy` module, imported on first use (NumPy is optional until `array()` is called).
pub(crate) fn numpy(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    NUMPY
        .get_or_try_init(py, || {
            py.import("numpy")
                .map(Bound::unbind)
                .map_err(|e| PyImportError::new_err(format!("this needs NumPy (pip install numpy): {e}")))
        })
        .map(|m| m.bind(py))
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `timestamp` (same as `time.monotonic_ns()` on Linux).
#[pyfunction]
fn monotonic_ns() -> u64 {
    shmpool::monotonic_ns()
}

#[pymodule]
fn _shmpool(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CORE_VERSION", shmpool::VERSION)?;
    m.add("MAX_DIMS", shmpool::MAX_DIMS)?;
    m.add("MAX_SLOTS", shmpool::MAX_SLOTS)?;
    m.add("MAX_META_BYTES", shmpool::MAX_META_BYTES)?;
    m.add(
        "DTYPES",
        shmpool::DType::all().filter(|d| *d != shmpool::DType::Bytes).map(|d| d.name()).collect::<Vec<_>>(),
    )?;
    m.add_function(wrap_pyfunction!(monotonic_ns, m)?)?;
    m.add_class::<pool::Pool>()?;
    m.add_class::<pool::Producer>()?;
    m.add_class::<pool::Consumer>()?;
    m.add_class::<buffers::Buffer>()?;
    m.add_class::<buffers::WriteBuffer>()?;
    protocol::register(m)?;
    farm::register(m)?;
    store::register(m)?;
    Ok(())
}
