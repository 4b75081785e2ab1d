//! Rust element types of array variables, tied to their [`DType`] so that a typed read or write
//! of a variable declared with another type is refused instead of reinterpreting its bytes.
//!
//! ```
//! use shmpool::{store::Element, DType};
//! assert_eq!(<f32 as Element>::DTYPE, DType::F32);
//! assert!(u8::fits(DType::Bytes));
//! assert!(!f32::fits(DType::I32));
//! ```

use crate::DType;

mod sealed {
    pub trait Sealed {}
}

/// A plain number type that can be viewed in place in shared memory (every bit pattern valid).
pub trait Element: Copy + sealed::Sealed + 'static {
    /// The element type it stands for.
    const DTYPE: DType;

    /// Whether a variable of `dtype` can be viewed as this type (bytes also as `u8`).
    fn fits(dtype: DType) -> bool {
        dtype == Self::DTYPE || (Self::DTYPE == DType::U8 && dtype == DType::Bytes)
    }
}

macro_rules! elements {
    ($($t:ty => $d:ident),*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$d;
        }
    )*};
}

elements!(u8 => U8, u16 => U16, u32 => U32, u64 => U64, i8 => I8, i16 => I16, i32 => I32, i64 => I64,
    f32 => F32, f64 => F64);
