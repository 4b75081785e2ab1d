//! The host/worker protocol for Python: `Listener`, `Connection`, `connect_env` and
//! `worker_command`. The transports are the Rust ones; `shmpool.rpc` builds calls on top.
//!
//! Received buffers are `Buffer`s (read-only views of pool slots, kept until every view is gone)
//! on `shm`, `bytes` otherwise.

use crate::buffers::{fill_view, Buffer};
use crate::pool::{blocking, parse_timeout};
use crate::{invalid, to_py, PyErrorClass};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use shmpool_protocol::{self as proto, Backend, ConnConfig, Error, Message, Options, Payload, SendBuf};
use std::os::raw::c_int;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The options both ends of a connection agreed on (the minimum of each side's).
#[pyclass(frozen, get_all, module = "shmpool._shmpool")]
pub struct ConnectionOptions {
    /// Wire protocol version.
    version: u32,
    /// Bytes of all buffers of one message.
    max_message: u64,
    /// Buffers per message.
    max_buffers: u32,
    /// Bytes of a message header.
    max_header: u32,
    /// Buffers smaller than this stay on the socket even on `shm`.
    inline_threshold: u64,
    /// Slots per direction of the `shm` pools.
    slots: u32,
    /// Bytes per slot of the first `shm` pool.
    slot_size: u64,
    /// The largest slot the `shm` pools grow to; larger buffers go on the socket.
    max_slot_size: u64,
    /// Heartbeat interval on an idle connection, in seconds.
    heartbeat: f64,
    /// The peer is dead after this many intervals without a byte from it.
    missed_heartbeats: u32,
}

impl From<Options> for ConnectionOptions {
    fn from(o: Options) -> Self {
        ConnectionOptions {
            version: o.version,
            max_message: o.max_message,
            max_buffers: o.max_buffers,
            max_header: o.max_header,
            inline_threshold: o.inline_threshold,
            slots: o.slots,
            slot_size: o.slot_size,
            max_slot_size: o.max_slot_size,
            heartbeat: o.heartbeat_ms as f64 / 1000.0,
            missed_heartbeats: o.missed_heartbeats,
        }
    }
}

#[pymethods]
impl ConnectionOptions {
    fn __repr__(&self) -> String {
        format!(
            "ConnectionOptions(version={}, max_message={}, max_buffers={}, max_header={}, inline_threshold={}, \
             slots={}, slot_size={}, max_slot_size={}, heartbeat={}, missed_heartbeats={})",
            self.version,
            self.max_message,
            self.max_buffers,
            self.max_header,
            self.inline_threshold,
            self.slots,
            self.slot_size,
            self.max_slot_size,
            self.heartbeat,
            self.missed_heartbeats
        )
    }
}

impl PyErrorClass for Error {
    fn class(&self) -> Option<&'static str> {
        Some(match self {
            Error::Timeout => return None,
            Error::Pool(e) => return e.class(),
            Error::Disconnected(_) => "Disconnected",
            Error::Protocol(_) => "ProtocolError",
            Error::Auth(_) => "AuthenticationError",
            Error::InvalidArgument(_) => "InvalidArgument",
            Error::Unsupported(_) => "Unsupported",
            Error::Io { .. } => "IOFailure",
            _ => "Error",
        })
    }
}

/// A connection's settings from keyword arguments.
#[allow(clippy::too_many_arguments)]
fn config(
    protocols: Option<&str>,
    directory: Option<PathBuf>,
    heartbeat: Option<f64>,
    missed_heartbeats: Option<u32>,
    slots: Option<u32>,
    sizes: (Option<u64>, Option<u64>),
    max_message: Option<u64>,
    timeout: Option<f64>,
) -> PyResult<ConnConfig> {
    let (slot_size, max_slot_size) = sizes;
    let d = Options::default();
    let options = Options {
        heartbeat_ms: heartbeat.map_or(d.heartbeat_ms, |s| (s * 1000.0).round().max(1.0) as u64),
        missed_heartbeats: missed_heartbeats.unwrap_or(d.missed_heartbeats),
        slots: slots.unwrap_or(d.slots),
        slot_size: slot_size.unwrap_or(d.slot_size),
        max_slot_size: max_slot_size.unwrap_or(d.max_slot_size),
        max_message: max_message.unwrap_or(d.max_message),
        ..d
    };
    Ok(ConnConfig {
        protocols: protocols.map(proto::parse_protocols).transpose().map_err(to_py)?,
        options,
        directory,
        timeout: parse_timeout(timeout)?.unwrap_or(Duration::from_secs(10)),
    })
}

/// A host's listening socket with a fresh secret. `protocols=None`: `$SHMPOOL_PROTOCOL`, else
/// `"tcp,shm"`. `slot_size`: of the first pools (the larger wish of both sides wins);
/// `max_slot_size`: the pools grow up to it (the smaller maximum of both sides wins).
#[pyclass(frozen, module = "shmpool._shmpool")]
pub struct Listener {
    inner: proto::Listener,
}

#[pymethods]
impl Listener {
    #[new]
    #[pyo3(signature = (protocols=None, directory=None, *, heartbeat=None, missed_heartbeats=None, slots=None,
                        slot_size=None, max_message=None, timeout=None, max_slot_size=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        protocols: Option<&str>,
        directory: Option<PathBuf>,
        heartbeat: Option<f64>,
        missed_heartbeats: Option<u32>,
        slots: Option<u32>,
        slot_size: Option<u64>,
        max_message: Option<u64>,
        timeout: Option<f64>,
        max_slot_size: Option<u64>,
    ) -> PyResult<Listener> {
        let sizes = (slot_size, max_slot_size);
        let c = config(protocols, directory, heartbeat, missed_heartbeats, slots, sizes, max_message, timeout)?;
        let inner = py.detach(|| proto::Listener::bind(c)).map_err(to_py)?;
        Ok(Listener { inner })
    }

    /// `{name: value}` the worker needs in its environment (address, secret, protocol list).
    fn worker_env(&self) -> Vec<(String, String)> {
        self.inner.worker_env()
    }

    #[getter]
    fn address(&self) -> String {
        self.inner.address().to_string()
    }

    /// The pool directory as the host sees it.
    #[getter]
    fn directory(&self) -> PathBuf {
        self.inner.directory().to_path_buf()
    }

    #[getter]
    fn protocols(&self) -> Vec<&'static str> {
        self.inner.protocols().iter().map(|p| p.name()).collect()
    }

    /// Accepts one worker within `timeout` seconds; `check()` runs every ~100 ms and may raise to
    /// give up (e.g. the worker process exited). `fallback_only`: no upgrade (a second channel).
    #[pyo3(signature = (timeout, check=None, fallback_only=false))]
    fn accept(
        &self,
        py: Python<'_>,
        timeout: f64,
        check: Option<Bound<'_, PyAny>>,
        fallback_only: bool,
    ) -> PyResult<Connection> {
        let deadline = std::time::Instant::now() + parse_timeout(Some(timeout))?.unwrap_or(Duration::MAX / 2);
        let protocols: Vec<proto::Protocol> =
            if fallback_only { self.inner.protocols()[..1].to_vec() } else { self.inner.protocols().to_vec() };
        loop {
            if let Some(check) = &check {
                check.call0()?;
            }
            py.check_signals()?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(pyo3::exceptions::PyTimeoutError::new_err("timed out waiting for the worker"));
            }
            let slice = left.min(Duration::from_millis(100));
            match py.detach(|| self.inner.accept_with(&protocols, slice, &mut || Ok(()))) {
                Ok(c) => return Ok(Connection { inner: Arc::new(c) }),
                Err(Error::Timeout) => continue,
                Err(e) => return Err(to_py(e)),
            }
        }
    }
}

/// One end of a message connection.
#[pyclass(frozen, module = "shmpool._shmpool")]
pub struct Connection {
    inner: Arc<proto::Connection>,
}

#[pymethods]
impl Connection {
    /// The transport in use: `"tcp"`, `"unix"` or `"shm"`.
    #[getter]
    fn protocol(&self) -> &'static str {
        self.inner.protocol().name()
    }

    /// Whether the connection still works (as far as this side knows).
    #[getter]
    fn alive(&self) -> bool {
        self.inner.is_alive()
    }

    /// The negotiated options (limits, sizes, heartbeats).
    #[getter]
    fn options(&self) -> ConnectionOptions {
        ConnectionOptions::from(*self.inner.options())
    }

    /// Sends `header` (bytes-like) and `buffers` (C-contiguous bytes-like objects). On `shm`,
    /// buffers from the inline threshold up to a slot are copied once into a pool slot.
    #[pyo3(signature = (header, buffers=None))]
    fn send(&self, py: Python<'_>, header: PyBuffer<u8>, buffers: Option<Bound<'_, PyList>>) -> PyResult<()> {
        let mut held = vec![header];
        for item in buffers.iter().flat_map(|l| l.iter()) {
            held.push(PyBuffer::<u8>::get(&item)?);
        }
        let mut spans = Vec::with_capacity(held.len());
        for b in &held {
            if !b.is_c_contiguous() {
                return Err(invalid("buffers must be C-contiguous"));
            }
            spans.push((b.buf_ptr() as usize, b.len_bytes()));
        }
        let inner = self.inner.clone();
        py.detach(move || {
            // SAFETY: each span is the memory of a PyBuffer in `held`, which stays exported (so
            // neither freed nor resized) until after this call returns.
            let slices: Vec<&[u8]> =
                spans.iter().map(|&(p, n)| unsafe { std::slice::from_raw_parts(p as *const u8, n) }).collect();
            inner.send(slices[0], slices[1..].iter().map(|s| SendBuf::Bytes(s)).collect())
        })
        .map_err(to_py)?;
        drop(held);
        Ok(())
    }

    /// A writable slot of `nbytes` of this side's pools (which grow for it), kept (not published):
    /// sending bytes inside it lends them to the peer without a copy. Raises `Unsupported` unless
    /// on `shm`, `InvalidArgument` past the negotiated maximum slot size, `TimeoutError` when
    /// every slot is held and the pools may not grow. Fill it before sending; writing while the
    /// peer reads is a race.
    fn alloc(&self, py: Python<'_>, nbytes: usize) -> PyResult<SlotBuffer> {
        let inner = self.inner.clone();
        let mut slot = py.detach(move || inner.alloc_lendable(nbytes)).map_err(to_py)?;
        let ptr = slot.as_mut_ptr() as usize;
        Ok(SlotBuffer { slot, ptr })
    }

    /// What this side sent where (`shm_*`, `socket_*`, and `spilled_*`: buffers that went on the
    /// socket because no slot could hold them), and its pools (`generation`, `slot_size`, `slots`,
    /// `max_slot_size`, `pools_grown`, `pool_bytes`, `slots_in_use`).
    #[getter]
    fn stats(&self) -> Vec<(&'static str, u64)> {
        let s = self.inner.stats();
        vec![
            ("shm_buffers", s.shm_buffers),
            ("shm_bytes", s.shm_bytes),
            ("socket_buffers", s.socket_buffers),
            ("socket_bytes", s.socket_bytes),
            ("spilled_buffers", s.spilled_buffers),
            ("spilled_bytes", s.spilled_bytes),
            ("generation", s.generation.into()),
            ("slot_size", s.slot_size),
            ("slots", s.slots.into()),
            ("max_slot_size", s.max_slot_size),
            ("pools_grown", s.pools_grown),
            ("pool_bytes", s.pool_bytes),
            ("slots_in_use", s.slots_in_use.into()),
        ]
    }

    /// Receives `(header: bytes, buffers: list)` within `timeout` seconds (`None`: until the peer
    /// goes away). Buffers are `Buffer` views of pool slots on `shm`, else `SocketBuffer`s (bytes
    /// that came on the socket, read-only, received without a further copy).
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyList>)> {
        let inner = self.inner.clone();
        let msg = blocking(py, timeout, move |slice| inner.recv(Some(slice))).map_err(PyErr::from)?;
        message(py, msg)
    }

    /// Receives `(header, buffers)` if a message is waiting now, else `None` (which re-arms
    /// `fileno()`).
    fn try_recv<'py>(&self, py: Python<'py>) -> PyResult<Option<(Bound<'py, PyBytes>, Bound<'py, PyList>)>> {
        let msg = self.inner.try_recv().map_err(to_py)?;
        msg.map(|m| message(py, m)).transpose()
    }

    /// Readiness descriptor (for `add_reader`, `select`, ...): readable when a message may be
    /// waiting; then `try_recv` until `None`.
    fn fileno(&self) -> PyResult<i32> {
        self.inner.ready_fd().map_err(to_py)
    }

    /// Closes the connection: pending and later calls on both sides raise `Disconnected`.
    fn close(&self, py: Python<'_>) {
        let inner = self.inner.clone();
        py.detach(move || inner.close());
    }

    fn __repr__(&self) -> String {
        format!("<shmpool Connection {} alive={}>", self.inner.protocol(), self.inner.is_alive())
    }
}

/// A received message as `(header, buffers)`: views of pool slots, of lent bytes, or socket bytes.
fn message(py: Python<'_>, msg: Message) -> PyResult<(Bound<'_, PyBytes>, Bound<'_, PyList>)> {
    let header = PyBytes::new(py, &msg.header);
    let list = PyList::empty(py);
    for b in msg.buffers {
        match b {
            Payload::Shared(r) => list.append(Bound::new(py, Buffer::from_shared(r)?)?)?,
            inline @ Payload::Inline(_) => list.append(Bound::new(py, SocketBuffer { payload: inline })?)?,
            lent @ Payload::Lent(_) => list.append(Bound::new(py, LentBuffer { payload: lent })?)?,
        }
    }
    Ok((header, list))
}

/// Fills `view` (Python's request) with a read-only view of the `len` bytes at `ptr`, which
/// `owner` keeps alive.
///
/// # Safety
/// `view` must be null or point to a `Py_buffer` to fill; `ptr..ptr+len` must stay valid as long
/// as `owner` lives.
unsafe fn read_only_view(
    owner: Bound<'_, PyAny>,
    view: *mut ffi::Py_buffer,
    flags: c_int,
    ptr: usize,
    len: usize,
) -> PyResult<()> {
    if view.is_null() {
        return Err(PyBufferError::new_err("NULL Py_buffer"));
    }
    if flags & ffi::PyBUF_WRITABLE != 0 {
        return Err(PyBufferError::new_err("received shmpool buffers are read-only"));
    }
    // SAFETY: as this function's contract says; the view owns `owner`.
    unsafe { fill_view(view, flags, owner, ptr, len, true) };
    Ok(())
}

/// Bytes of this side's pool that the peer sent back without a copy (read-only buffer protocol).
/// Dropping the last view tells the peer to release the slot.
#[pyclass(frozen, module = "shmpool._shmpool")]
pub struct LentBuffer {
    payload: Payload,
}

#[pymethods]
impl LentBuffer {
    #[getter]
    fn nbytes(&self) -> usize {
        self.payload.len()
    }

    /// Buffer protocol: a read-only 1-D view of the bytes.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let (ptr, len) = (slf.get().payload.as_ptr() as usize, slf.get().payload.len());
        // SAFETY: `view` is Python's request; `slf` keeps the bytes.
        unsafe { read_only_view(slf.into_any(), view, flags, ptr, len) }
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

    fn __len__(&self) -> usize {
        self.payload.len()
    }
}

/// Bytes that came on the socket (read-only buffer protocol), handed over without a copy; their
/// memory is reused for later messages once every view is gone.
#[pyclass(frozen, module = "shmpool._shmpool")]
pub struct SocketBuffer {
    payload: Payload,
}

#[pymethods]
impl SocketBuffer {
    #[getter]
    fn nbytes(&self) -> usize {
        self.payload.len()
    }

    /// Buffer protocol: a read-only 1-D view of the bytes.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let (ptr, len) = (slf.get().payload.as_ptr() as usize, slf.get().payload.len());
        // SAFETY: `view` is Python's request; `slf` keeps the bytes.
        unsafe { read_only_view(slf.into_any(), view, flags, ptr, len) }
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

    fn __len__(&self) -> usize {
        self.payload.len()
    }

    /// The bytes as `bytes` (a copy).
    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.payload)
    }
}

/// A slot of this side's pool kept for lending (`Connection.alloc`): writable buffer protocol.
/// The slot returns to the pool when this object, its views and the peer's views are all gone.
#[pyclass(frozen, module = "shmpool._shmpool")]
pub struct SlotBuffer {
    slot: proto::LendableSlot,
    ptr: usize,
}

#[pymethods]
impl SlotBuffer {
    #[getter]
    fn nbytes(&self) -> usize {
        self.slot.len()
    }

    /// Buffer protocol: a writable 1-D view of the bytes.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("NULL Py_buffer"));
        }
        let (ptr, len) = (slf.get().ptr, slf.get().slot.len());
        // SAFETY: `view` is Python's request; the slot lives as long as this object, which the view
        // owns.
        unsafe { fill_view(view, flags, slf.into_any(), ptr, len, false) };
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

    fn __len__(&self) -> usize {
        self.slot.len()
    }
}

/// A worker's connection to the host that started it (address and secret from the environment).
/// `slot_size` and `max_slot_size` as for `Listener`.
#[pyfunction]
#[pyo3(signature = (protocols=None, directory=None, *, heartbeat=None, missed_heartbeats=None, timeout=None,
                    slot_size=None, max_slot_size=None))]
#[allow(clippy::too_many_arguments)]
pub fn connect_env(
    py: Python<'_>,
    protocols: Option<&str>,
    directory: Option<PathBuf>,
    heartbeat: Option<f64>,
    missed_heartbeats: Option<u32>,
    timeout: Option<f64>,
    slot_size: Option<u64>,
    max_slot_size: Option<u64>,
) -> PyResult<Connection> {
    let sizes = (slot_size, max_slot_size);
    let c = config(protocols, directory, heartbeat, missed_heartbeats, None, sizes, None, timeout)?;
    let conn = py.detach(|| proto::connect_env(&c)).map_err(to_py)?;
    Ok(Connection { inner: Arc::new(conn) })
}

/// Environment variables as `(name, value)` pairs.
type Vars = Vec<(String, String)>;

/// `(argv, env)` that start `argv` under `backend` (`process`, `docker`, `podman`, `apptainer`,
/// `conda`, `namespace`; `arg`: the image or conda environment) with `env` passed through the
/// environment and `directory` shared.
#[pyfunction]
#[pyo3(signature = (backend, argv, env, directory, arg=None))]
pub fn worker_command(
    backend: &str,
    argv: Vec<String>,
    env: Vars,
    directory: PathBuf,
    arg: Option<&str>,
) -> PyResult<(Vec<String>, Vars)> {
    let backend = Backend::from_name(backend, arg).map_err(to_py)?;
    let cmd = backend.command(&argv, &env, &directory).map_err(to_py)?;
    let line =
        std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|a| a.to_string_lossy().into_owned()).collect();
    let vars = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_string_lossy().into_owned(), v?.to_string_lossy().into_owned())))
        .collect();
    Ok((line, vars))
}

/// Registers the classes and functions.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Listener>()?;
    m.add_class::<Connection>()?;
    m.add_class::<ConnectionOptions>()?;
    m.add_class::<LentBuffer>()?;
    m.add_class::<SocketBuffer>()?;
    m.add_class::<SlotBuffer>()?;
    m.add_function(wrap_pyfunction!(connect_env, m)?)?;
    m.add_function(wrap_pyfunction!(worker_command, m)?)?;
    Ok(())
}
