//! What a variable is: its name, its kind and its declared shape and capacity, checked.
//!
//! ```
//! use shmpool::{DType, store::Decl};
//! let image = Decl::array(DType::F32, &[-1, 512, 512]).capacity(64 << 20);
//! assert_eq!(image.max_shape_bytes(&[3, 512, 512]).unwrap(), 3 * 512 * 512 * 4);
//! assert!(image.max_shape_bytes(&[3, 512, 511]).is_err()); // a fixed dimension differs
//! assert!(Decl::string(16).check().is_ok());
//! ```

use super::layout::{MAX_CAPACITY, MAX_DIMS, MAX_NAME, MAX_VERSIONS, MIN_VERSIONS};
use crate::{DType, Error, Result};

/// Checks a variable or job name: 1 to 63 of `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub fn check_name(name: &str) -> Result<&str> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(name)
    } else {
        Err(Error::invalid(format!("name {name:?}: use 1 to {MAX_NAME} of A-Z a-z 0-9 . _ - (not starting with '.')")))
    }
}

/// What a variable holds. The codes are stored in the table and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Kind {
    /// A typed array with a shape (dimensions of `-1` are set per version).
    Array = 0,
    /// UTF-8 text of up to the capacity in bytes.
    String = 1,
    /// One `i64`.
    I64 = 2,
    /// One `f64`.
    F64 = 3,
    /// One `bool` (a byte, 0 or 1).
    Bool = 4,
}

impl Kind {
    /// The kind for a stored code.
    pub fn from_code(code: u32) -> Option<Kind> {
        [Kind::Array, Kind::String, Kind::I64, Kind::F64, Kind::Bool].get(code as usize).copied()
    }

    /// Short name: `array`, `string`, `i64`, `f64`, `bool`.
    pub fn name(self) -> &'static str {
        ["array", "string", "i64", "f64", "bool"][self as usize]
    }
}

/// A variable's declaration: kind, element type, declared dimensions (`-1`: dynamic), capacity
/// in bytes of one version, and how many version buffers to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decl {
    pub kind: Kind,
    pub dtype: DType,
    pub dims: Vec<i64>,
    pub capacity: u64,
    pub versions: usize,
}

/// Version buffers kept by default: the latest, two a slow reader may hold, one being filled.
pub const DEFAULT_VERSIONS: usize = 4;

impl Decl {
    /// An array of `dtype` with dimensions `dims` (`-1` for dynamic ones). The capacity defaults
    /// to the size of the shape with every dynamic dimension 1; set it with [`Decl::capacity`].
    pub fn array(dtype: DType, dims: &[i64]) -> Decl {
        let fixed = dims.iter().map(|&d| d.max(1) as u64).try_fold(dtype.size() as u64, u64::checked_mul);
        Decl { kind: Kind::Array, dtype, dims: dims.to_vec(), capacity: fixed.unwrap_or(0), versions: DEFAULT_VERSIONS }
    }

    /// Text of up to `capacity` bytes.
    pub fn string(capacity: u64) -> Decl {
        Decl { kind: Kind::String, dtype: DType::U8, dims: vec![-1], capacity, versions: DEFAULT_VERSIONS }
    }

    /// A scalar of kind `I64`, `F64` or `Bool`.
    pub fn scalar(kind: Kind) -> Decl {
        let dtype = match kind {
            Kind::I64 => DType::I64,
            Kind::F64 => DType::F64,
            _ => DType::U8,
        };
        Decl { kind, dtype, dims: Vec::new(), capacity: dtype.size() as u64, versions: DEFAULT_VERSIONS }
    }

    /// Sets the capacity of one version, in bytes.
    pub fn capacity(mut self, bytes: u64) -> Decl {
        self.capacity = bytes;
        self
    }

    /// Sets the number of version buffers (3 to 8).
    pub fn versions(mut self, n: usize) -> Decl {
        self.versions = n;
        self
    }

    /// Checks the declaration is consistent.
    pub fn check(&self) -> Result<()> {
        let bad = |why: String| Err(Error::invalid(why));
        if !(MIN_VERSIONS..=MAX_VERSIONS).contains(&self.versions) {
            return bad(format!("{} version buffers: use {MIN_VERSIONS} to {MAX_VERSIONS}", self.versions));
        }
        if self.dims.len() > MAX_DIMS {
            return bad(format!("{} dimensions: at most {MAX_DIMS}", self.dims.len()));
        }
        if let Some(d) = self.dims.iter().find(|&&d| d != -1 && d <= 0) {
            return bad(format!("dimension {d}: use a positive size or -1 (dynamic)"));
        }
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            return bad(format!("capacity {} bytes: use 1 to {MAX_CAPACITY}", self.capacity));
        }
        let expected = match self.kind {
            Kind::Array => None,
            Kind::String => Some((DType::U8, 1)),
            Kind::I64 => Some((DType::I64, 0)),
            Kind::F64 => Some((DType::F64, 0)),
            Kind::Bool => Some((DType::U8, 0)),
        };
        if let Some((dtype, ndims)) = expected {
            if self.dtype != dtype || self.dims.len() != ndims {
                return bad(format!("a {} variable is {} with {ndims} dimensions", self.kind.name(), dtype.name()));
            }
        }
        let min_shape: Vec<usize> = self.dims.iter().map(|&d| d.max(1) as usize).collect();
        self.max_shape_bytes(&min_shape).map(|_| ())
    }

    /// The bytes of one version of shape `shape`, if the shape fits the declaration: same
    /// number of dimensions, equal fixed dimensions, and within the capacity.
    pub fn max_shape_bytes(&self, shape: &[usize]) -> Result<u64> {
        if shape.len() != self.dims.len() || shape.iter().zip(&self.dims).any(|(&s, &d)| d != -1 && s as i64 != d) {
            return Err(Error::invalid(format!("shape {shape:?} does not match the declared {:?}", self.dims)));
        }
        let bytes = shape.iter().try_fold(self.dtype.size() as u64, |acc, &s| acc.checked_mul(s as u64));
        match bytes {
            Some(b) if b <= self.capacity => Ok(b),
            _ => Err(Error::invalid(format!(
                "shape {shape:?} of {} needs more than the capacity of {} bytes",
                self.dtype.name(),
                self.capacity
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("image_0.a-b").is_ok());
        for bad in ["", ".hidden", "a/b", "sp ace", "é", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn declarations_are_checked() {
        assert!(Decl::array(DType::F32, &[-1, 4]).capacity(64).check().is_ok());
        assert!(Decl::array(DType::F32, &[0, 4]).check().is_err());
        assert!(Decl::array(DType::F32, &[-2]).check().is_err());
        assert!(Decl::array(DType::F32, &[1; 9]).check().is_err());
        assert!(Decl::array(DType::F32, &[8]).capacity(16).check().is_err());
        assert!(Decl::array(DType::U8, &[i64::MAX, i64::MAX]).check().is_err());
        assert!(Decl::scalar(Kind::I64).versions(2).check().is_err());
        assert!(Decl::scalar(Kind::Bool).check().is_ok());
        assert!(Decl { dtype: DType::F32, ..Decl::string(4) }.check().is_err());
    }

    #[test]
    fn dynamic_shapes_fit_up_to_the_capacity() {
        let d = Decl::array(DType::U16, &[-1, 2]).capacity(40);
        assert_eq!(d.max_shape_bytes(&[10, 2]).unwrap(), 40);
        assert!(d.max_shape_bytes(&[11, 2]).is_err());
        assert!(d.max_shape_bytes(&[1, 3]).is_err());
        assert!(d.max_shape_bytes(&[1]).is_err());
    }
}
