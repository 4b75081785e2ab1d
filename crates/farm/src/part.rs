//! Message parts: a part is bytes or an array (dtype, shape, data), one MDP body frame each.
//!
//! An array frame is `ARRAY_MAGIC`, the dtype code (u8), the number of dimensions (u8), each
//! dimension (u64 little-endian), then the data. A plain MDP peer sees these bytes as they are; a
//! frame that does not parse as an array is a bytes part.
//!
//! ```
//! use shmpool::DType;
//! use shmpool_farm::Part;
//! let part = Part::array(DType::F32, &[2], 1.0f32.to_ne_bytes().repeat(2));
//! let frame = part.to_frame();
//! let back = Part::from_frame(frame);
//! assert_eq!(back.as_array().unwrap().shape, vec![2]);
//! ```

use crate::transport::Frame;
use shmpool::{DType, MAX_DIMS};
use std::ops::Deref;
use std::sync::Arc;

/// First bytes of an array frame (0xff never starts UTF-8 text).
pub const ARRAY_MAGIC: &[u8] = b"\xffSPA1";

/// The bytes of a part: owned, a range of a received frame (no copy), or a slot of a co-located
/// sender's pool read in place (see [`crate::shm`]; valid while the sender keeps the slot, i.e.
/// until the request is answered: [`crate::Request`] ties it to its own lifetime), or a slot of
/// the receiver's own reply pool, held until dropped (see [`crate::reply`]), or a slot of the
/// sender's own pool it writes in place before sending ([`crate::Client::array`]), or bytes laid
/// out as their frame (`frame[start..]`), sent with no copy ([`Part::zeros`]).
pub enum Payload {
    Owned(Vec<u8>),
    Received { frame: Frame, start: usize },
    Shared { pool: shmpool::Pool, slot: u32, offset: u64, len: u64 },
    Slot { buf: shmpool::ReadBuf, pool: shmpool::Pool },
    Writable { buf: shmpool::WriteBuf, len: usize, pool: shmpool::Pool },
    Framed { frame: Arc<Vec<u8>>, start: usize },
}

impl Payload {
    /// Whether the bytes lie inside a shared-memory pool mapping (read in place, not copied).
    pub fn is_shared(&self) -> bool {
        let (base, size) = match self {
            Payload::Shared { pool, .. } | Payload::Writable { pool, .. } => pool.mapping(),
            Payload::Slot { pool, .. } => pool.read_mapping(),
            _ => return false,
        };
        let here = self.as_ptr() as usize;
        here >= base as usize && here + self.len() <= base as usize + size
    }

    /// An owned copy if the bytes are in a peer's pool (which the peer reuses after the exchange).
    pub fn detach(self) -> Payload {
        match self {
            Payload::Shared { .. } => Payload::Owned(self.to_vec()),
            other => other,
        }
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Payload::Owned(v) => v,
            // `start` was checked against the frame's length when the payload was made.
            Payload::Received { frame, start } => frame.get(*start..).unwrap_or_default(),
            // Checked against the pool's geometry when the payload was made.
            Payload::Shared { pool, slot, offset, len } => pool.slot_region(*slot, *offset, *len).unwrap_or_default(),
            Payload::Slot { buf, .. } => buf,
            // `len` was checked against the slot's capacity when the payload was made.
            Payload::Writable { buf, len, .. } => buf.get(..*len).unwrap_or_default(),
            Payload::Framed { frame, start } => frame.get(*start..).unwrap_or_default(),
        }
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes)", self.len())
    }
}

/// An n-dimensional array: element type, shape, and `product(shape) * dtype.size()` bytes.
#[derive(Debug)]
pub struct Array {
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub data: Payload,
}

/// One part of a message.
#[derive(Debug)]
pub enum Part {
    Bytes(Payload),
    Array(Array),
}

/// Bytes an array of `shape` and `dtype` holds, if it fits in `usize`.
pub fn array_bytes(dtype: DType, shape: &[u64]) -> Option<usize> {
    shape.iter().try_fold(dtype.size() as u64, |n, &d| n.checked_mul(d)).and_then(|n| usize::try_from(n).ok())
}

impl Part {
    /// A bytes part.
    pub fn bytes(data: impl Into<Vec<u8>>) -> Part {
        Part::Bytes(Payload::Owned(data.into()))
    }

    /// An array part. Panics if `data` is not `product(shape) * dtype.size()` bytes or there are
    /// more than 8 dimensions: that is a programming error of the caller.
    pub fn array(dtype: DType, shape: &[u64], data: Vec<u8>) -> Part {
        assert!(shape.len() <= MAX_DIMS, "at most {MAX_DIMS} dimensions");
        assert_eq!(array_bytes(dtype, shape), Some(data.len()), "data length does not match dtype and shape");
        Part::Array(Array { dtype, shape: shape.to_vec(), data: Payload::Owned(data) })
    }

    /// An array of zeros laid out as its frame, to be written in place ([`Part::data_mut`]) and
    /// sent with no copy (libzmq is lent the buffer). Panics as [`Part::array`].
    pub fn zeros(dtype: DType, shape: &[u64]) -> Part {
        assert!(shape.len() <= MAX_DIMS, "at most {MAX_DIMS} dimensions");
        let len = array_bytes(dtype, shape).expect("an array that fits in memory");
        let head = header(dtype, shape);
        let start = head.len();
        let mut frame = head;
        frame.resize(start + len, 0);
        let data = Payload::Framed { frame: Arc::new(frame), start };
        Part::Array(Array { dtype, shape: shape.to_vec(), data })
    }

    /// The bytes (of a bytes part) or the data (of an array part).
    pub fn data(&self) -> &[u8] {
        match self {
            Part::Bytes(p) => p,
            Part::Array(a) => &a.data,
        }
    }

    /// The data, writable: of an owned part or of a slot to be sent ([`crate::Client::array`]);
    /// `None` for received parts.
    pub fn data_mut(&mut self) -> Option<&mut [u8]> {
        let payload = match self {
            Part::Bytes(p) => p,
            Part::Array(a) => &mut a.data,
        };
        match payload {
            Payload::Owned(v) => Some(v),
            Payload::Writable { buf, len, .. } => buf.get_mut(..*len),
            // Not while libzmq still holds the frame of a send.
            Payload::Framed { frame, start } => Arc::get_mut(frame).and_then(|f| f.get_mut(*start..)),
            _ => None,
        }
    }

    /// The same part, with bytes in a peer's pool copied (see [`Payload::detach`]).
    pub fn detach(self) -> Part {
        match self {
            Part::Bytes(p) => Part::Bytes(p.detach()),
            Part::Array(a) => Part::Array(Array { data: a.data.detach(), ..a }),
        }
    }

    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Part::Array(a) => Some(a),
            Part::Bytes(_) => None,
        }
    }

    /// Encodes the part as one frame (an array's data is copied behind its header, unless it
    /// already lies there: [`Part::zeros`]).
    pub fn to_frame(&self) -> Frame {
        match self {
            Part::Bytes(p) => Frame::from(&p[..]),
            Part::Array(a) => {
                let head = header(a.dtype, &a.shape);
                match &a.data {
                    // The fields are public: the frame is used only if its header still matches.
                    Payload::Framed { frame, start } if frame.get(..*start) == Some(&head[..]) => {
                        Frame::shared(frame.clone())
                    }
                    _ => Frame::from([&head[..], &a.data].concat()),
                }
            }
        }
    }

    /// Decodes a received frame (never fails: what is not a valid array is bytes).
    pub fn from_frame(frame: Frame) -> Part {
        match parse_array_header(&frame) {
            Some((dtype, shape, start)) => {
                Part::Array(Array { dtype, shape, data: Payload::Received { frame, start } })
            }
            None => Part::Bytes(Payload::Received { frame, start: 0 }),
        }
    }
}

/// The header of an array frame: magic, dtype code, number of dimensions, dimensions.
fn header(dtype: DType, shape: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ARRAY_MAGIC.len() + 2 + 8 * shape.len());
    out.extend_from_slice(ARRAY_MAGIC);
    out.push(dtype.code() as u8);
    out.push(shape.len() as u8);
    for d in shape {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out
}

/// Parses an array frame's header: dtype, shape and where the data starts, if the frame is a
/// complete, consistent array.
pub fn parse_array_header(frame: &[u8]) -> Option<(DType, Vec<u64>, usize)> {
    let rest = frame.strip_prefix(ARRAY_MAGIC)?;
    let [code, ndim, rest @ ..] = rest else { return None };
    let dtype = DType::from_code(u32::from(*code))?;
    let ndim = usize::from(*ndim);
    if ndim > MAX_DIMS || rest.len() < ndim * 8 {
        return None;
    }
    let shape: Vec<u64> =
        rest[..ndim * 8].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect();
    let start = frame.len() - rest.len() + ndim * 8;
    (array_bytes(dtype, &shape)? == frame.len() - start).then_some((dtype, shape, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_round_trip_without_copy_on_receive() {
        let data: Vec<u8> = (0..24).collect();
        let part = Part::array(DType::U16, &[3, 4], data.clone());
        let frame = part.to_frame();
        let frame_data = frame.as_ptr();
        let back = Part::from_frame(frame);
        let a = back.as_array().unwrap();
        assert_eq!((a.dtype, a.shape.clone(), &a.data[..]), (DType::U16, vec![3, 4], &data[..]));
        assert_eq!(a.data.as_ptr(), frame_data.wrapping_add(ARRAY_MAGIC.len() + 2 + 16));
    }

    #[test]
    fn zeros_are_their_own_frame_and_writable_only_while_not_lent() {
        let mut part = Part::zeros(DType::U8, &[2, 3]);
        part.data_mut().unwrap().copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        let frame = part.to_frame();
        assert_eq!(frame.as_ptr(), part.data().as_ptr().wrapping_sub(ARRAY_MAGIC.len() + 2 + 16), "no copy");
        assert!(part.data_mut().is_none(), "the frame still refers to the data");
        let back = Part::from_frame(frame);
        assert_eq!((back.as_array().unwrap().shape.clone(), back.data()), (vec![2, 3], &[1, 2, 3, 4, 5, 6][..]));
        drop(back);
        assert!(part.data_mut().is_some());
        if let Part::Array(a) = &mut part {
            a.shape = vec![6]; // a changed header: the frame is encoded anew
        }
        assert_eq!(parse_array_header(&part.to_frame()).map(|h| h.1), Some(vec![6]));
    }

    #[test]
    fn inconsistent_arrays_are_bytes() {
        let good = Part::array(DType::F32, &[2], vec![0; 8]).to_frame().to_vec();
        assert!(parse_array_header(&good).is_some());
        for bad in [
            good[..good.len() - 1].to_vec(),       // short data
            [&good[..], &[0]].concat(),            // long data
            [ARRAY_MAGIC, &[99, 0]].concat(),      // unknown dtype
            [ARRAY_MAGIC, &[1, 9]].concat(),       // too many dimensions
            [ARRAY_MAGIC, &[1, 1, 0, 0]].concat(), // truncated shape
            [ARRAY_MAGIC, &[11, 2], &u64::MAX.to_le_bytes(), &u64::MAX.to_le_bytes()].concat(), // overflow
        ] {
            assert!(parse_array_header(&bad).is_none(), "{bad:?}");
            assert!(matches!(Part::from_frame(Frame::from(bad)), Part::Bytes(_)));
        }
    }
}
