//! The frame codec: how one message, heartbeat or control record crosses a socket.
//!
//! Little-endian throughout:
//!
//! ```text
//! prelude   16 B  magic 0xB5 | kind u8 | 0 u8 | 0 u8 | header_len u32 | nbufs u32 | 0 u32
//! desc      24 B  per buffer: where u8 | gen u8 | 0 u8 ×2 | slot u32 | len u64 | seq-or-offset u64
//!                 gen: the generation of the pool set the slot is in (see `shmpool::PoolSet`;
//!                 0 for inline buffers)
//!                 where: 0 inline (slot = seq = 0), 1 slot of the sender's pool (seq: its
//!                 publish sequence number), 2 lent back: bytes at `offset` in a slot of the
//!                 *receiver's* pool that the sender holds, 3 held: bytes at `offset` in a slot of
//!                 the sender's own pool that it keeps unpublished (both released by release frames)
//! header         header_len bytes
//! inline data    per inline buffer, in order: chunks of (len u32, 1..=MAX_CHUNK bytes) summing to len
//! ```
//!
//! A release frame's header is a list of u32 slot indices: one per lent buffer the receiver
//! dropped.
//!
//! Every length is checked against [`Limits`] before anything is allocated; an inline buffer is
//! then allocated once at its declared length (at most `max_message`), never grown by doubling.
//! Anything malformed is an [`Error::Protocol`]; the end of the stream is [`Error::Disconnected`].

use crate::{Error, Result};
use std::io::{self, IoSlice, Read, Write};

const MAGIC: u8 = 0xB5;
const PRELUDE: usize = 16;
const DESC: usize = 24;
/// Largest chunk of inline data on the wire.
pub const MAX_CHUNK: usize = 1 << 20;
/// Inline data up to this size is written with the header in one system call.
const COALESCE: usize = 64 << 10;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An application message.
    Message = 1,
    /// "I am alive" on an idle connection.
    Heartbeat = 2,
    /// A handshake or upgrade record (JSON header).
    Control = 3,
    /// The sender closes the connection.
    Goodbye = 4,
    /// The sender dropped lent buffers (header: u32 slot indices).
    Release = 5,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Message,
            2 => Kind::Heartbeat,
            3 => Kind::Control,
            4 => Kind::Goodbye,
            5 => Kind::Release,
            _ => return None,
        })
    }
}

/// What a receiver accepts. Frames beyond these close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of all buffers of one message together.
    pub max_message: u64,
    /// Buffers in one message.
    pub max_buffers: u32,
    /// Bytes of a message header.
    pub max_header: u32,
}

impl Limits {
    /// Small limits for tests, the fuzz target and its corpus (1 MiB, 16 buffers, 4 KiB headers).
    pub const SMALL: Limits = Limits { max_message: 1 << 20, max_buffers: 16, max_header: 4096 };
}

/// Where a buffer's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire<'a> {
    /// On the socket, after the header.
    Inline(&'a [u8]),
    /// In slot `slot` of generation `gen` of the sender's pools, published with sequence number `seq`.
    Slot { gen: u8, slot: u32, len: u64, seq: u64 },
    /// At `offset` in slot `slot` of generation `gen` of the receiver's pools, which the sender holds.
    Lent { gen: u8, slot: u32, offset: u64, len: u64 },
    /// At `offset` in slot `slot` of generation `gen` of the sender's own pools, which it keeps for
    /// the receiver.
    Held { gen: u8, slot: u32, offset: u64, len: u64 },
}

/// A decoded buffer: inline bytes, or a reference to a slot for the receiver to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Inline(Vec<u8>),
    Slot { gen: u8, slot: u32, len: u64, seq: u64 },
    Lent { gen: u8, slot: u32, offset: u64, len: u64 },
    Held { gen: u8, slot: u32, offset: u64, len: u64 },
}

/// A descriptor read, its inline bytes not yet.
enum Pending {
    Inline(u64),
    Slot(Received),
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub header: Vec<u8>,
    pub buffers: Vec<Received>,
}

fn malformed(what: impl Into<String>) -> Error {
    Error::Protocol(format!("malformed frame: {}", what.into()))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads exactly `buf.len()` bytes: a clean end before the first byte is a disconnection, an end
/// after it a truncated frame.
fn read_full(r: &mut impl Read, buf: &mut [u8], at_boundary: bool) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 && at_boundary => {
                return Err(Error::Disconnected("the peer closed the connection".into()))
            }
            Ok(0) => return Err(malformed("truncated (the stream ended inside a frame)")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_failure(e)),
        }
    }
    Ok(())
}

/// A read or write failure of the socket: the peer is gone (or declared dead).
pub(crate) fn io_failure(e: io::Error) -> Error {
    Error::Disconnected(e.to_string())
}

/// Reads one frame from `r`, checking it against `limits`.
pub fn read_frame(r: &mut impl Read, limits: &Limits) -> Result<Frame> {
    read_frame_into(r, limits, &mut |len| vec![0; len])
}

/// Reads one frame from `r`, checking it against `limits`; inline data goes into buffers from
/// `take(len)`, which returns `len` bytes to overwrite (e.g. memory kept from earlier messages).
pub fn read_frame_into(r: &mut impl Read, limits: &Limits, take: &mut dyn FnMut(usize) -> Vec<u8>) -> Result<Frame> {
    let mut prelude = [0u8; PRELUDE];
    read_full(r, &mut prelude, true)?;
    if prelude[0] != MAGIC {
        return Err(malformed(format!("bad magic byte {:#04x}", prelude[0])));
    }
    let kind = Kind::from_u8(prelude[1]).ok_or_else(|| malformed(format!("unknown kind {}", prelude[1])))?;
    if prelude[2] != 0 || prelude[3] != 0 || u32_at(&prelude, 12) != 0 {
        return Err(malformed("reserved bytes are not zero"));
    }
    let header_len = u32_at(&prelude, 4);
    let nbufs = u32_at(&prelude, 8);
    if matches!(kind, Kind::Heartbeat | Kind::Goodbye) && (header_len != 0 || nbufs != 0) {
        return Err(malformed("a heartbeat or goodbye carries nothing"));
    }
    if kind == Kind::Release && (header_len % 4 != 0 || nbufs != 0) {
        return Err(malformed("a release frame carries only u32 slot indices"));
    }
    if header_len > limits.max_header {
        return Err(Error::Protocol(format!(
            "header of {header_len} bytes exceeds the limit of {}",
            limits.max_header
        )));
    }
    if nbufs > limits.max_buffers {
        return Err(Error::Protocol(format!("{nbufs} buffers exceed the limit of {}", limits.max_buffers)));
    }
    let mut descs = Vec::with_capacity(nbufs as usize);
    let mut total: u64 = 0;
    let mut raw = [0u8; DESC];
    for _ in 0..nbufs {
        read_full(r, &mut raw, false)?;
        if raw[2..4] != [0, 0] {
            return Err(malformed("reserved descriptor bytes are not zero"));
        }
        let (gen, slot, len, seq) = (raw[1], u32_at(&raw, 4), u64_at(&raw, 8), u64_at(&raw, 16));
        total = total
            .checked_add(len)
            .filter(|t| *t <= limits.max_message)
            .ok_or_else(|| Error::Protocol(format!("message larger than the limit of {} bytes", limits.max_message)))?;
        descs.push(match raw[0] {
            0 if gen == 0 && slot == 0 && seq == 0 => Pending::Inline(len),
            0 => return Err(malformed("inline buffer with a slot reference")),
            1 => Pending::Slot(Received::Slot { gen, slot, len, seq }),
            2 => Pending::Slot(Received::Lent { gen, slot, offset: seq, len }),
            3 => Pending::Slot(Received::Held { gen, slot, offset: seq, len }),
            other => return Err(malformed(format!("unknown buffer location {other}"))),
        });
    }
    let mut header = vec![0u8; header_len as usize];
    read_full(r, &mut header, false)?;
    let mut buffers = Vec::with_capacity(descs.len());
    for desc in descs {
        buffers.push(match desc {
            Pending::Inline(len) => Received::Inline(read_chunks(r, len, take)?),
            Pending::Slot(s) => s,
        });
    }
    Ok(Frame { kind, header, buffers })
}

/// Reads `len` bytes of inline data sent in chunks (`len` was checked against the limits).
fn read_chunks(r: &mut impl Read, len: u64, take: &mut dyn FnMut(usize) -> Vec<u8>) -> Result<Vec<u8>> {
    let len = usize::try_from(len).map_err(|_| malformed("an inline buffer larger than memory"))?;
    let mut data = take(len);
    let mut at = 0;
    let mut prefix = [0u8; 4];
    while at < len {
        read_full(r, &mut prefix, false)?;
        let chunk = u32::from_le_bytes(prefix) as usize;
        let left = len - at;
        if chunk == 0 || chunk > MAX_CHUNK || chunk > left {
            return Err(malformed(format!("chunk of {chunk} bytes with {left} bytes left")));
        }
        read_full(r, &mut data[at..at + chunk], false)?;
        at += chunk;
    }
    Ok(data)
}

/// Writes one frame in as few system calls as the kernel allows: the header, small inline
/// buffers and chunk prefixes are gathered in one block, large chunks are written from where they
/// lie, all through vectored writes (no tiny packet per chunk prefix on TCP).
pub fn write_frame(w: &mut impl Write, kind: Kind, header: &[u8], buffers: &[Wire<'_>]) -> Result<()> {
    let too_big = || Error::invalid("frame header or buffer count over 4 GiB");
    let mut head = Vec::with_capacity(PRELUDE + DESC * buffers.len() + header.len());
    head.extend_from_slice(&[MAGIC, kind as u8, 0, 0]);
    head.extend_from_slice(&u32::try_from(header.len()).map_err(|_| too_big())?.to_le_bytes());
    head.extend_from_slice(&u32::try_from(buffers.len()).map_err(|_| too_big())?.to_le_bytes());
    head.extend_from_slice(&0u32.to_le_bytes());
    for b in buffers {
        let (where_, gen, slot, len, seq) = match *b {
            Wire::Inline(data) => (0u8, 0u8, 0u32, data.len() as u64, 0u64),
            Wire::Slot { gen, slot, len, seq } => (1, gen, slot, len, seq),
            Wire::Lent { gen, slot, offset, len } => (2, gen, slot, len, offset),
            Wire::Held { gen, slot, offset, len } => (3, gen, slot, len, offset),
        };
        head.extend_from_slice(&[where_, gen, 0, 0]);
        head.extend_from_slice(&slot.to_le_bytes());
        head.extend_from_slice(&len.to_le_bytes());
        head.extend_from_slice(&seq.to_le_bytes());
    }
    head.extend_from_slice(header);
    // The frame as pieces: ranges of `head`, or large chunks written from the caller's memory.
    let mut pieces: Vec<Piece<'_>> = Vec::new();
    let mut from = 0;
    for b in buffers {
        let Wire::Inline(data) = b else { continue };
        for chunk in data.chunks(MAX_CHUNK) {
            head.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            if chunk.len() <= COALESCE {
                head.extend_from_slice(chunk);
            } else {
                pieces.push(Piece::Head(from..head.len()));
                pieces.push(Piece::Data(chunk));
                from = head.len();
            }
        }
    }
    pieces.push(Piece::Head(from..head.len()));
    let mut slices: Vec<IoSlice<'_>> = pieces
        .iter()
        .map(|p| match p {
            Piece::Head(r) => IoSlice::new(&head[r.clone()]),
            Piece::Data(d) => IoSlice::new(d),
        })
        .filter(|s| !s.is_empty())
        .collect();
    write_all_vectored(w, &mut slices).map_err(io_failure)?;
    w.flush().map_err(io_failure)
}

/// One piece of an outgoing frame.
enum Piece<'a> {
    Head(std::ops::Range<usize>),
    Data(&'a [u8]),
}

/// Writes every slice, resuming after short writes.
fn write_all_vectored(w: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match w.write_vectored(slices) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the socket took no bytes")),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Frame {
    /// Encodes this frame again (the fuzz target checks that decoding is a round trip).
    pub fn encode(&self) -> Vec<u8> {
        let wires: Vec<Wire<'_>> = self
            .buffers
            .iter()
            .map(|b| match b {
                Received::Inline(v) => Wire::Inline(v),
                &Received::Slot { gen, slot, len, seq } => Wire::Slot { gen, slot, len, seq },
                &Received::Lent { gen, slot, offset, len } => Wire::Lent { gen, slot, offset, len },
                &Received::Held { gen, slot, offset, len } => Wire::Held { gen, slot, offset, len },
            })
            .collect();
        encode(self.kind, &self.header, &wires)
    }
}

/// Encodes one frame into bytes (tests, fuzzing, corpus files).
pub fn encode(kind: Kind, header: &[u8], buffers: &[Wire<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, kind, header, buffers).expect("writing to a Vec cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_message: 8 << 20, max_buffers: 16, max_header: 4096 };

    #[test]
    fn round_trip() {
        let big = vec![7u8; MAX_CHUNK * 2 + 5];
        let bytes = encode(
            Kind::Message,
            b"head",
            &[
                Wire::Inline(b"abc"),
                Wire::Slot { gen: 5, slot: 3, len: 9, seq: 4 },
                Wire::Inline(&big),
                Wire::Inline(b""),
                Wire::Lent { gen: 0, slot: 1, offset: 8, len: 2 },
                Wire::Held { gen: 255, slot: 2, offset: 0, len: 1 },
            ],
        );
        let f = read_frame(&mut &bytes[..], &LIMITS).unwrap();
        assert_eq!(f.kind, Kind::Message);
        assert_eq!(f.header, b"head");
        assert_eq!(f.buffers[0], Received::Inline(b"abc".to_vec()));
        assert_eq!(f.buffers[1], Received::Slot { gen: 5, slot: 3, len: 9, seq: 4 });
        assert_eq!(f.buffers[2], Received::Inline(big));
        assert_eq!(f.buffers[3], Received::Inline(vec![]));
        assert_eq!(f.buffers[4], Received::Lent { gen: 0, slot: 1, offset: 8, len: 2 });
        assert_eq!(f.buffers[5], Received::Held { gen: 255, slot: 2, offset: 0, len: 1 });
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode(Kind::Message, b"hdr", &[Wire::Inline(b"payload")]);
        assert!(matches!(read_frame(&mut &bytes[..0], &LIMITS), Err(Error::Disconnected(_))));
        for cut in 1..bytes.len() {
            assert!(matches!(read_frame(&mut &bytes[..cut], &LIMITS), Err(Error::Protocol(_))), "cut {cut}");
        }
    }

    #[test]
    fn limits_are_enforced() {
        let small = Limits { max_message: 4, max_buffers: 1, max_header: 2 };
        for (header, bufs) in
            [(&b"abc"[..], vec![]), (b"", vec![Wire::Inline(b"12345")]), (b"", vec![Wire::Inline(b""); 2])]
        {
            let bytes = encode(Kind::Message, header, &bufs);
            let err = read_frame(&mut &bytes[..], &small).unwrap_err();
            assert!(matches!(err, Error::Protocol(ref m) if m.contains("limit")), "{err}");
        }
    }
}
