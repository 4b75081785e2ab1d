//! Element types recorded in a slot's metadata, so readers in any language can view the payload as a
//! typed array.
//!
//! ```
//! use shmpool::DType;
//! assert_eq!(DType::F32.size(), 4);
//! assert_eq!(DType::from_name("bf16"), Some(DType::BF16));
//! assert_eq!(DType::from_code(DType::U8.code()), Some(DType::U8));
//! ```

/// The element type of a buffer's payload. The discriminants are the values stored in shared memory
/// and exposed through the C ABI; they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u32)]
pub enum DType {
    /// Untyped bytes (the default).
    #[default]
    Bytes = 0,
    U8 = 1,
    U16 = 2,
    U32 = 3,
    U64 = 4,
    I8 = 5,
    I16 = 6,
    I32 = 7,
    I64 = 8,
    F16 = 9,
    BF16 = 10,
    F32 = 11,
    F64 = 12,
}

const ALL: [(DType, &str, usize); 13] = [
    (DType::Bytes, "bytes", 1),
    (DType::U8, "u8", 1),
    (DType::U16, "u16", 2),
    (DType::U32, "u32", 4),
    (DType::U64, "u64", 8),
    (DType::I8, "i8", 1),
    (DType::I16, "i16", 2),
    (DType::I32, "i32", 4),
    (DType::I64, "i64", 8),
    (DType::F16, "f16", 2),
    (DType::BF16, "bf16", 2),
    (DType::F32, "f32", 4),
    (DType::F64, "f64", 8),
];

impl DType {
    /// Every element type, in code order.
    pub fn all() -> impl Iterator<Item = DType> {
        ALL.iter().map(|&(d, _, _)| d)
    }

    /// The code stored in shared memory.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The type for a stored code; `None` for a code no version of shmpool writes.
    pub fn from_code(code: u32) -> Option<DType> {
        ALL.get(code as usize).map(|&(d, _, _)| d)
    }

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        ALL[self as usize].2
    }

    /// Short name: `u8`, `f32`, `bf16`, …
    pub fn name(self) -> &'static str {
        ALL[self as usize].1
    }

    /// The type for a short name as returned by [`DType::name`].
    pub fn from_name(name: &str) -> Option<DType> {
        ALL.iter().find(|&&(_, n, _)| n == name).map(|&(d, _, _)| d)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
