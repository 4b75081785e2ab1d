//! NumPy objects looked up once per process: the dtype viewing each shmpool type, the scalar types
//! that name them, and `numpy.frombuffer`. A view of a slot or a dtype argument such as
//! `numpy.uint8` then costs pointer comparisons instead of attribute lookups and parsing (per
//! frame, after an 8 MiB copy has evicted them, those lookups cost more than the rest of a hand-off).

use crate::numpy;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;
use shmpool::DType;

struct Cache {
    /// `numpy.dtype` that views each shmpool type, indexed by `DType::code()`.
    views: Vec<Py<PyAny>>,
    /// `(numpy scalar type, its numpy.dtype, shmpool type)` of the types NumPy has itself.
    named: Vec<(Py<PyAny>, Py<PyAny>, DType)>,
    frombuffer: Py<PyAny>,
}

fn cache(py: Python<'_>) -> PyResult<&Cache> {
    static CACHE: PyOnceLock<Cache> = PyOnceLock::new();
    CACHE.get_or_try_init(py, || {
        let np = numpy(py)?;
        let dtype = np.getattr("dtype")?;
        let (mut views, mut named) = (Vec::new(), Vec::new());
        for d in DType::all() {
            let name = numpy_name(d);
            let view = dtype.call1((name,))?;
            // Bytes and bf16 are viewed as uint8 and uint16, which name U8 and U16.
            if !matches!(d, DType::Bytes | DType::BF16) {
                named.push((np.getattr(name)?.unbind(), view.clone().unbind(), d));
            }
            views.push(view.unbind());
        }
        Ok(Cache { views, named, frombuffer: np.getattr("frombuffer")?.unbind() })
    })
}

/// The NumPy type that views a payload of `dtype`. NumPy has no bfloat16: bf16 payloads are
/// viewed as their raw `uint16` bits (see the README).
pub(crate) fn numpy_name(dtype: DType) -> &'static str {
    match dtype {
        DType::U16 | DType::BF16 => "uint16",
        DType::U32 => "uint32",
        DType::U64 => "uint64",
        DType::I8 => "int8",
        DType::I16 => "int16",
        DType::I32 => "int32",
        DType::I64 => "int64",
        DType::F16 => "float16",
        DType::F32 => "float32",
        DType::F64 => "float64",
        _ => "uint8",
    }
}

/// The shmpool type of `obj` if it is one of NumPy's own scalar types or native dtypes (the very
/// objects, e.g. `numpy.uint8` or `array.dtype`) or their names (`"uint8"`); `None` otherwise.
pub(crate) fn known_dtype(obj: &Bound<'_, PyAny>) -> PyResult<Option<DType>> {
    let named = &cache(obj.py())?.named;
    if let Ok(name) = obj.cast::<PyString>() {
        let name = name.to_str()?;
        return Ok(named.iter().map(|&(_, _, d)| d).find(|&d| numpy_name(d) == name));
    }
    let found = named.iter().find(|(scalar, dtype, _)| obj.is(scalar) || obj.is(dtype));
    Ok(found.map(|&(_, _, d)| d))
}

/// `numpy.frombuffer(owner, dtype, count)`: a 1-D view of `count` elements.
pub(crate) fn frombuffer<'py>(owner: &Bound<'py, PyAny>, dtype: DType, count: u64) -> PyResult<Bound<'py, PyAny>> {
    let c = cache(owner.py())?;
    let view = c.views.get(dtype.code() as usize).expect("one view per DType");
    c.frombuffer.bind(owner.py()).call1((owner, view, count))
}
