//! `Pool`, `Producer` and `Consumer`.

use crate::buffers::{Buffer, WriteBuffer};
use crate::{invalid, to_py, PyErrorClass};
use pyo3::exceptions::{PyBufferError, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use shmpool::{Config, Error, Mode, Overflow};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Longest time a blocking call stays in Rust without running Python's signal handlers.
const SLICE: Duration = Duration::from_millis(100);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seconds (`None`: forever) to a duration; negative or NaN is an error.
pub(crate) fn parse_timeout(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t == f64::INFINITY => Ok(None),
        Some(t) => Duration::try_from_secs_f64(t)
            .map(Some)
            .map_err(|_| invalid(format!("timeout must be None or a number of seconds >= 0, not {t}"))),
    }
}

/// A spin budget in seconds (zero: never spin); negative, NaN or infinite is an error.
fn parse_spin(seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| invalid(format!("spin must be a finite number of seconds >= 0, not {seconds}")))
}

/// Why a blocking call ended without a value.
pub(crate) enum Failure<E = Error> {
    Core(E),
    Py(PyErr),
}

impl<E: PyErrorClass> From<Failure<E>> for PyErr {
    fn from(f: Failure<E>) -> PyErr {
        match f {
            Failure::Core(e) => to_py(e),
            Failure::Py(e) => e,
        }
    }
}

/// Runs a blocking core call without the GIL, in slices of at most [`SLICE`], running Python's
/// signal handlers between slices (so Ctrl-C raises `KeyboardInterrupt`), until it succeeds,
/// fails, or `timeout` seconds pass (`TimeoutError`). A zero timeout tries once.
pub(crate) fn blocking<T: Send, E: PyErrorClass + Send>(
    py: Python<'_>,
    timeout: Option<f64>,
    mut op: impl FnMut(Duration) -> Result<T, E> + Send,
) -> Result<T, Failure<E>> {
    let deadline = parse_timeout(timeout).map_err(Failure::Py)?.map(|t| Instant::now() + t);
    loop {
        let slice = deadline.map_or(SLICE, |d| d.saturating_duration_since(Instant::now()).min(SLICE));
        match py.detach(|| op(slice)) {
            Ok(v) => return Ok(v),
            // A timeout of one slice: go on until the caller's deadline.
            Err(e) if e.class().is_none() => {
                py.check_signals().map_err(Failure::Py)?;
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(Failure::Py(PyTimeoutError::new_err("timed out")));
                }
            }
            Err(e) => return Err(Failure::Core(e)),
        }
    }
}

/// Calls `shmpool._aio.<name>(*args)`: the asyncio side lives in Python, over `fileno()` and
/// the `try_*` methods.
fn aio<'py>(py: Python<'py>, name: &str, args: impl pyo3::call::PyCallArgs<'py>) -> PyResult<Bound<'py, PyAny>> {
    py.import("shmpool._aio")?.getattr(name)?.call1(args)
}

fn parse_enum<T: std::str::FromStr<Err = Error>>(value: &str) -> PyResult<T> {
    value.parse().map_err(to_py)
}

/// A shared-memory buffer pool.
#[pyclass(frozen, module = "shmpool._shmpool")]
pub struct Pool {
    inner: Mutex<Option<shmpool::Pool>>,
    /// The last snapshot, taken when this handle closed: counters stay readable after `close()`.
    final_stats: Mutex<Option<shmpool::Stats>>,
    creator: bool,
}

impl Pool {
    fn new(pool: shmpool::Pool, creator: bool) -> Pool {
        Pool { inner: Mutex::new(Some(pool)), final_stats: Mutex::new(None), creator }
    }

    fn get(&self) -> PyResult<shmpool::Pool> {
        lock(&self.inner).clone().ok_or_else(|| to_py(Error::Closed))
    }
}

fn stats_dict<'py>(py: Python<'py>, s: &shmpool::Stats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("slots", s.slots)?;
    d.set_item("free", s.free)?;
    d.set_item("writing", s.writing)?;
    d.set_item("ready", s.ready)?;
    d.set_item("reading", s.reading)?;
    d.set_item("producers", s.producers)?;
    d.set_item("consumers", s.consumers)?;
    d.set_item("published", s.published)?;
    d.set_item("dropped", s.dropped)?;
    d.set_item("closed", s.closed)?;
    d.set_item("creator_alive", s.creator_alive)?;
    d.set_item("producer_alive", s.producer_alive)?;
    d.set_item("persistent", s.persistent)?;
    d.set_item("orphaned", s.orphaned)?;
    d.set_item("waiters", s.waiters)?;
    d.set_item("wakes", s.wakes)?;
    d.set_item("spinners", s.spinners)?;
    d.set_item("spin_refused", s.spin_refused)?;
    let peers = PyList::empty(py);
    for p in &s.peers {
        let peer = PyDict::new(py);
        peer.set_item("role", p.role.name())?;
        peer.set_item("place", p.place)?;
        peer.set_item("pid", p.pid)?;
        peer.set_item("alive", p.alive)?;
        peer.set_item("count", p.count)?;
        peer.set_item("dropped", p.dropped)?;
        peer.set_item("waiting", p.waiting)?;
        peers.append(peer)?;
    }
    d.set_item("peers", peers)?;
    Ok(d)
}

fn pool_entry<'py>(py: Python<'py>, e: &shmpool::PoolEntry) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &e.name)?;
    d.set_item("path", &e.path)?;
    d.set_item("size", e.size)?;
    d.set_item("in_use", e.in_use)?;
    Ok(d)
}

#[pymethods]
impl Pool {
    /// Creates a pool (replacing a stale one of that name that no live process has open).
    #[staticmethod]
    #[pyo3(
        signature = (name, slots=8, slot_size=1<<20, mode="broadcast", overflow="block", meta_bytes=256, directory=None, permissions=0o600),
        text_signature = "(name, slots=8, slot_size=1048576, mode='broadcast', overflow='block', meta_bytes=256, directory=None, permissions=0o600)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn create(
        py: Python<'_>,
        name: &str,
        slots: u32,
        slot_size: usize,
        mode: &str,
        overflow: &str,
        meta_bytes: usize,
        directory: Option<PathBuf>,
        permissions: u32,
    ) -> PyResult<Pool> {
        let mut config = Config::new(slots, slot_size)
            .mode(parse_enum::<Mode>(mode)?)
            .overflow(parse_enum::<Overflow>(overflow)?)
            .meta_bytes(meta_bytes)
            .permissions(permissions);
        if let Some(dir) = directory {
            config = config.directory(dir);
        }
        let pool = py.detach(|| shmpool::Pool::create(name, &config)).map_err(to_py)?;
        Ok(Pool::new(pool, true))
    }

    /// Opens an existing pool (`directory=None`: `$SHMPOOL_DIR`, else `/dev/shm`), waiting up to
    /// `timeout` seconds for it to appear (`0`: not at all, `None`: forever), so a consumer may
    /// start before its producer. Raises `PoolNotFound` when the time is up.
    #[staticmethod]
    #[pyo3(signature = (name, directory=None, timeout=0.0))]
    fn open(py: Python<'_>, name: &str, directory: Option<PathBuf>, timeout: Option<f64>) -> PyResult<Pool> {
        let deadline = parse_timeout(timeout)?.map(|t| Instant::now() + t);
        loop {
            // Slices of at most SLICE without the GIL, running signal handlers between them.
            let slice = deadline.map_or(SLICE, |d| d.saturating_duration_since(Instant::now()).min(SLICE));
            match py.detach(|| shmpool::Pool::open_timeout(name, directory.as_deref(), Some(slice))) {
                Ok(pool) => return Ok(Pool::new(pool, false)),
                Err(Error::NotFound { .. }) if deadline.is_none_or(|d| Instant::now() < d) => py.check_signals()?,
                Err(e) => return Err(to_py(e)),
            }
        }
    }

    /// The pools in `directory` (`None`: `$SHMPOOL_DIR`, else `/dev/shm`), as dicts: name, path,
    /// size, in_use (whether some process has it open).
    #[staticmethod]
    #[pyo3(signature = (directory=None))]
    fn list<'py>(py: Python<'py>, directory: Option<PathBuf>) -> PyResult<Bound<'py, PyList>> {
        let entries = py.detach(|| shmpool::Pool::list(directory.as_deref())).map_err(to_py)?;
        let list = PyList::empty(py);
        for e in &entries {
            list.append(pool_entry(py, e)?)?;
        }
        Ok(list)
    }

    /// Removes the pool files in `directory` that no live process has open; returns their names.
    #[staticmethod]
    #[pyo3(signature = (directory=None))]
    fn gc(py: Python<'_>, directory: Option<PathBuf>) -> PyResult<Vec<String>> {
        py.detach(|| shmpool::Pool::gc(directory.as_deref())).map_err(to_py)
    }

    /// Shuts the pool `name` down for its users and removes its name, live peers or not.
    #[staticmethod]
    #[pyo3(signature = (name, directory=None))]
    fn remove(py: Python<'_>, name: &str, directory: Option<PathBuf>) -> PyResult<()> {
        py.detach(|| shmpool::Pool::remove(name, directory.as_deref())).map_err(to_py)
    }

    /// A new producer of this pool.
    fn producer(&self) -> PyResult<Producer> {
        let producer = self.get()?.producer().map_err(to_py)?;
        Ok(Producer { inner: Mutex::new(Some(Arc::new(producer))), final_published: Default::default() })
    }

    /// A new consumer of this pool (broadcast: receives what is published from now on).
    fn consumer(&self) -> PyResult<Consumer> {
        let consumer = self.get()?.consumer().map_err(to_py)?;
        Ok(Consumer { inner: Mutex::new(Some(consumer)), final_counts: Mutex::new((0, 0)) })
    }

    /// A snapshot of the pool's state as a dict (after `close()`: the last one, taken then).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let live = lock(&self.inner).as_ref().map(shmpool::Pool::stats);
        match live.or_else(|| lock(&self.final_stats).clone()) {
            Some(s) => stats_dict(py, &s),
            None => Err(to_py(Error::Closed)),
        }
    }

    /// Lets go of this handle, as in every language. Closing the creating handle shuts the pool
    /// down (unless `persist()` was called), as its going away would; an opened handle only lets
    /// go of itself. Producers, consumers and buffers keep their mapping either way.
    fn close(&self) {
        if let Some(pool) = lock(&self.inner).take() {
            if self.creator {
                pool.shutdown();
            }
            *lock(&self.final_stats) = Some(pool.stats());
        }
    }

    /// Shuts the pool down for everyone, from any handle: producers get `Closed`, consumers drain
    /// what was published, then get `Closed`; the name is removed.
    fn shutdown(&self) -> PyResult<()> {
        self.get()?.shutdown();
        Ok(())
    }

    /// Keeps the pool and its name after the creating handle goes away (no close at exit).
    fn persist(&self) -> PyResult<()> {
        self.get()?.persist();
        Ok(())
    }

    /// Frees what dead peers held; returns how many peers were removed.
    fn reap(&self) -> PyResult<usize> {
        Ok(self.get()?.reap())
    }

    #[getter]
    fn name(&self) -> PyResult<String> {
        Ok(self.get()?.name().to_string())
    }

    #[getter]
    fn path(&self) -> PyResult<PathBuf> {
        Ok(self.get()?.path().to_path_buf())
    }

    #[getter]
    fn slots(&self) -> PyResult<u32> {
        Ok(self.get()?.slots())
    }

    #[getter]
    fn slot_size(&self) -> PyResult<usize> {
        Ok(self.get()?.slot_size())
    }

    #[getter]
    fn meta_bytes(&self) -> PyResult<usize> {
        Ok(self.get()?.meta_bytes())
    }

    #[getter]
    fn mode(&self) -> PyResult<&'static str> {
        Ok(self.get()?.mode().name())
    }

    #[getter]
    fn overflow(&self) -> PyResult<&'static str> {
        Ok(self.get()?.overflow().name())
    }

    /// The liveness lease in seconds: how often blocked calls re-check that their peers live.
    #[getter]
    fn lease(&self) -> PyResult<f64> {
        Ok(self.get()?.lease().as_secs_f64())
    }

    /// Whether the pool was closed (by its creator) or this handle was closed.
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.inner).as_ref().is_none_or(|p| p.is_closed())
    }

    /// `(address, length)` of this process's mapping of the pool, for zero-copy checks.
    fn _mapping_range(&self) -> PyResult<(usize, usize)> {
        let (ptr, len) = self.get()?.mapping();
        Ok((ptr as usize, len))
    }

    /// `(address, length)` of this process's read-only mapping of the slot data, where received
    /// buffers lie.
    fn _read_mapping_range(&self) -> PyResult<(usize, usize)> {
        let (ptr, len) = self.get()?.read_mapping();
        Ok((ptr as usize, len))
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        match lock(&self.inner).as_ref() {
            Some(p) => format!(
                "<shmpool.Pool {:?} slots={} slot_size={} mode={} overflow={}>",
                p.name(),
                p.slots(),
                p.slot_size(),
                p.mode(),
                p.overflow()
            ),
            None => "<shmpool.Pool (closed)>".to_string(),
        }
    }
}

/// Publishes buffers into a pool.
#[pyclass(frozen, module = "shmpool._shmpool")]
pub struct Producer {
    inner: Mutex<Option<Arc<shmpool::Producer>>>,
    /// `published` when this handle closed: counters stay readable after `close()`.
    final_published: std::sync::atomic::AtomicU64,
}

impl Producer {
    fn get(&self) -> PyResult<Arc<shmpool::Producer>> {
        lock(&self.inner).clone().ok_or_else(|| to_py(Error::Closed))
    }
}

#[pymethods]
impl Producer {
    /// Takes a free slot, waiting up to `timeout` seconds (`None`: forever).
    #[pyo3(signature = (timeout=None))]
    fn acquire(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<WriteBuffer> {
        let producer = self.get()?;
        let buf = blocking(py, timeout, |slice| producer.acquire(Some(slice)))?;
        WriteBuffer::new(py, buf)
    }

    /// Takes a free slot if there is one now, else returns `None` (which, once `fileno()` was
    /// asked for, arms the readiness descriptor).
    fn try_acquire(&self, py: Python<'_>) -> PyResult<Option<WriteBuffer>> {
        match self.get()?.try_acquire().map_err(to_py)? {
            Some(buf) => WriteBuffer::new(py, buf).map(Some),
            None => Ok(None),
        }
    }

    /// Spins up to `seconds` for a free slot before sleeping (multi-CPU machines only; see
    /// `Consumer.set_spin`). Raises `BufferError` while an `acquire` of another thread runs.
    fn set_spin(&self, seconds: f64) -> PyResult<()> {
        let spin = parse_spin(seconds)?;
        let mut inner = lock(&self.inner);
        let producer = inner.as_mut().ok_or_else(|| to_py(Error::Closed))?;
        let producer = Arc::get_mut(producer)
            .ok_or_else(|| PyBufferError::new_err("cannot set the spin while another thread acquires"))?;
        producer.set_spin(spin);
        Ok(())
    }

    /// The readiness descriptor: readable when a slot may be free (see `shmpool._aio`).
    fn fileno(&self) -> PyResult<i32> {
        self.get()?.ready_fd().map_err(to_py)
    }

    /// Awaitable `acquire` for asyncio (see `shmpool._aio.aacquire`).
    #[pyo3(signature = (timeout=None))]
    fn aacquire<'py>(slf: Bound<'py, Self>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        aio(slf.py(), "aacquire", (slf.clone(), timeout))
    }

    /// Buffers this producer published (still readable after `close()`).
    #[getter]
    fn published(&self) -> u64 {
        match lock(&self.inner).as_ref() {
            Some(p) => p.published(),
            None => self.final_published.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Leaves the pool (buffers still being written keep their slots until they go away).
    fn close(&self) {
        if let Some(p) = lock(&self.inner).take() {
            self.final_published.store(p.published(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }
}

/// Receives buffers from a pool. Iterating yields buffers until the pool is closed and drained.
#[pyclass(frozen, module = "shmpool._shmpool")]
pub struct Consumer {
    inner: Mutex<Option<shmpool::Consumer>>,
    /// `(received, dropped)` when this handle closed: counters stay readable after `close()`.
    final_counts: Mutex<(u64, u64)>,
}

impl Consumer {
    fn recv_inner(&self, py: Python<'_>, timeout: Option<f64>) -> Result<Buffer, Failure> {
        let buf = blocking(py, timeout, |slice| match lock(&self.inner).as_mut() {
            Some(c) => c.recv(Some(slice)),
            None => Err(Error::Closed),
        })?;
        Buffer::new(buf).map_err(Failure::Py)
    }

    fn with<T>(&self, f: impl FnOnce(&mut shmpool::Consumer) -> T) -> PyResult<T> {
        lock(&self.inner).as_mut().map(f).ok_or_else(|| to_py(Error::Closed))
    }

    fn counts(&self) -> (u64, u64) {
        match lock(&self.inner).as_ref() {
            Some(c) => (c.received(), c.dropped()),
            None => *lock(&self.final_counts),
        }
    }
}

#[pymethods]
impl Consumer {
    /// Receives the next buffer, waiting up to `timeout` seconds (`None`: forever). After the pool
    /// is closed, returns what was still published, then raises `Closed`.
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Buffer> {
        Ok(self.recv_inner(py, timeout)?)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Buffer>> {
        match self.recv_inner(py, None) {
            Ok(buf) => Ok(Some(buf)),
            Err(Failure::Core(Error::Closed)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Receives the next buffer if one is published now, else returns `None` (which, once
    /// `fileno()` was asked for, arms the readiness descriptor).
    fn try_recv(&self) -> PyResult<Option<Buffer>> {
        match self.with(|c| c.try_recv())?.map_err(to_py)? {
            Some(buf) => Buffer::new(buf).map(Some),
            None => Ok(None),
        }
    }

    /// Spins up to `seconds` for a publication before sleeping (zero: never; multi-CPU machines
    /// only). At most one place fewer than the CPUs spins at once per pool, the others sleep at
    /// once; a spinner that loses its CPU to another task yields it between tries for a while.
    fn set_spin(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        let spin = parse_spin(seconds)?;
        // A recv in another thread holds the lock for up to one slice: wait without the GIL.
        py.detach(|| lock(&self.inner).as_mut().map(|c| c.set_spin(spin))).ok_or_else(|| to_py(Error::Closed))
    }

    /// The readiness descriptor: readable when a buffer may be received (see `shmpool._aio`).
    fn fileno(&self) -> PyResult<i32> {
        self.with(|c| c.ready_fd())?.map_err(to_py)
    }

    /// Awaitable `recv` for asyncio (see `shmpool._aio.arecv`).
    #[pyo3(signature = (timeout=None))]
    fn arecv<'py>(slf: Bound<'py, Self>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        aio(slf.py(), "arecv", (slf.clone(), timeout))
    }

    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __anext__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        aio(slf.py(), "anext", (slf.clone(),))
    }

    /// Buffers this consumer received (still readable after `close()`).
    #[getter]
    fn received(&self) -> u64 {
        self.counts().0
    }

    /// Buffers this consumer missed (drop-oldest pools; still readable after `close()`).
    #[getter]
    fn dropped(&self) -> u64 {
        self.counts().1
    }

    /// Leaves the pool (buffers still held keep their slots until they go away).
    fn close(&self, py: Python<'_>) {
        // A recv in another thread holds the lock for up to one slice: wait without the GIL.
        if let Some(c) = py.detach(|| lock(&self.inner).take()) {
            *lock(&self.final_counts) = (c.received(), c.dropped());
        }
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }
}
