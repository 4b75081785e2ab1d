//! What a slot says about its frame: the wire format of the slot's user metadata.
//!
//! Every slot carries the buffer's timestamps, offsets and flags, and the caps as a string with a
//! generation counter (so a source that joins mid-stream learns the caps from its first slot, and a
//! source that has seen them only re-parses when the counter changes). An end-of-stream marker is a
//! slot of kind [`Kind::Eos`] with no payload.
//!
//! ```
//! use gstshmpool::frame_meta::{FrameMeta, Kind};
//! let meta = FrameMeta { kind: Kind::Buffer, pts: Some(40), caps_seq: 1, ..FrameMeta::default() };
//! let mut bytes = Vec::new();
//! meta.encode("video/x-raw", &mut bytes);
//! let (back, caps) = FrameMeta::decode(&bytes).unwrap();
//! assert_eq!((back, caps), (meta, "video/x-raw"));
//! ```

const MAGIC: &[u8; 4] = b"GSPM";
const VERSION: u8 = 1;
/// Bytes before the caps string.
pub const HEADER_LEN: usize = 4 + 4 + 4 + 5 * 8 + 8 + 4;
const NONE: u64 = u64::MAX;

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// A buffer's payload.
    #[default]
    Buffer,
    /// End of stream: the sink got EOS; no payload.
    Eos,
}

/// The per-slot description of a frame (GStreamer's times are nanoseconds; `None` is "no time").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameMeta {
    pub kind: Kind,
    /// `GstBufferFlags` bits.
    pub flags: u32,
    pub pts: Option<u64>,
    pub dts: Option<u64>,
    pub duration: Option<u64>,
    pub offset: Option<u64>,
    pub offset_end: Option<u64>,
    /// Incremented by the sink on every caps change.
    pub caps_seq: u64,
}

/// Why metadata read from a slot was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMeta(pub String);

impl std::fmt::Display for BadMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad slot metadata: {}", self.0)
    }
}

fn opt(v: Option<u64>) -> u64 {
    v.unwrap_or(NONE)
}

fn from_opt(v: u64) -> Option<u64> {
    (v != NONE).then_some(v)
}

impl FrameMeta {
    /// Appends the encoding of `self` with `caps` to `out` (cleared first).
    pub fn encode(&self, caps: &str, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(MAGIC);
        let kind = match self.kind {
            Kind::Buffer => 0u8,
            Kind::Eos => 1,
        };
        out.extend_from_slice(&[VERSION, kind, 0, 0]);
        out.extend_from_slice(&self.flags.to_le_bytes());
        for v in [self.pts, self.dts, self.duration, self.offset, self.offset_end] {
            out.extend_from_slice(&opt(v).to_le_bytes());
        }
        out.extend_from_slice(&self.caps_seq.to_le_bytes());
        out.extend_from_slice(&(caps.len() as u32).to_le_bytes());
        out.extend_from_slice(caps.as_bytes());
    }

    /// Decodes metadata written by [`FrameMeta::encode`]; anything else (it comes from shared
    /// memory, so from anyone) is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<(FrameMeta, &str), BadMeta> {
        let bad = |why: &str| BadMeta(why.to_string());
        if bytes.len() < HEADER_LEN {
            return Err(bad("shorter than its header"));
        }
        let (header, rest) = bytes.split_at(HEADER_LEN);
        if &header[..4] != MAGIC {
            return Err(bad("not written by shmpoolsink (magic)"));
        }
        if header[4] != VERSION {
            return Err(BadMeta(format!("version {} (this element reads {VERSION})", header[4])));
        }
        let kind = match header[5] {
            0 => Kind::Buffer,
            1 => Kind::Eos,
            k => return Err(BadMeta(format!("unknown kind {k}"))),
        };
        let u32_at = |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let caps_len = u32_at(HEADER_LEN - 4) as usize;
        let caps = rest.get(..caps_len).ok_or_else(|| bad("caps length beyond the metadata"))?;
        let caps = std::str::from_utf8(caps).map_err(|_| bad("caps are not UTF-8"))?;
        let meta = FrameMeta {
            kind,
            flags: u32_at(8),
            pts: from_opt(u64_at(12)),
            dts: from_opt(u64_at(20)),
            duration: from_opt(u64_at(28)),
            offset: from_opt(u64_at(36)),
            offset_end: from_opt(u64_at(44)),
            caps_seq: u64_at(52),
        };
        Ok((meta, caps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field() {
        let meta = FrameMeta {
            kind: Kind::Eos,
            flags: 0x40,
            pts: Some(1),
            dts: None,
            duration: Some(3),
            offset: Some(4),
            offset_end: None,
            caps_seq: 7,
        };
        let mut out = Vec::new();
        meta.encode("video/x-raw, width=(int)2", &mut out);
        assert_eq!(FrameMeta::decode(&out), Ok((meta, "video/x-raw, width=(int)2")));
    }

    #[test]
    fn hostile_bytes_are_refused() {
        let mut out = Vec::new();
        FrameMeta::default().encode("abc", &mut out);
        assert!(FrameMeta::decode(&out[..HEADER_LEN - 1]).is_err());
        assert!(FrameMeta::decode(&out[..HEADER_LEN + 2]).is_err(), "caps cut short");
        let mut wrong = out.clone();
        wrong[0] = b'X';
        assert!(FrameMeta::decode(&wrong).is_err());
        let mut huge = out.clone();
        huge[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(FrameMeta::decode(&huge).is_err());
        let mut kind = out.clone();
        kind[5] = 9;
        assert!(FrameMeta::decode(&kind).is_err());
        let mut utf = out;
        utf[HEADER_LEN] = 0xff;
        assert!(FrameMeta::decode(&utf).is_err());
    }
}
