//! The frames `demo` and `bench` send: a header (send timestamp, index) and a stamp on every 4 KiB
//! page. Reading the stamps is how a receiver "touches" a frame: a few bytes per page, the same for
//! every transport, and proof that the pages hold this frame and not an older one.

/// Page size of the stamps.
pub const PAGE: usize = 4096;
/// Bytes of the header: send timestamp (ns, CLOCK_MONOTONIC), then the frame index.
pub const HEADER: usize = 16;
/// The index that tells a receiver the stream ends.
pub const STOP: u64 = u64::MAX;

fn put(buf: &mut [u8], at: usize, value: u64) {
    buf[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn get(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

fn page_stamps(len: usize) -> impl Iterator<Item = usize> {
    (PAGE..len.saturating_sub(7)).step_by(PAGE)
}

/// Writes frame `index` into the header and onto every page of `buf` (at least [`HEADER`] bytes).
pub fn stamp(buf: &mut [u8], index: u64) {
    assert!(buf.len() >= HEADER, "a frame holds at least its {HEADER}-byte header");
    put(buf, 8, index);
    for at in page_stamps(buf.len()) {
        put(buf, at, index);
    }
}

/// The frame index in the header.
pub fn index(buf: &[u8]) -> u64 {
    get(buf, 8)
}

/// Records the send time in the header.
pub fn set_sent_at(buf: &mut [u8], t0: u64) {
    put(buf, 0, t0);
}

/// What reading a frame found.
pub struct Touched {
    pub sent_at: u64,
    pub index: u64,
    /// Pages whose stamp is not the header's index.
    pub bad_pages: u64,
}

/// Reads the header and every page stamp.
pub fn touch(buf: &[u8]) -> Touched {
    let index = index(buf);
    let bad_pages = page_stamps(buf.len()).filter(|&at| get(buf, at) != index).count() as u64;
    Touched { sent_at: get(buf, 0), index, bad_pages }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_frame_touches_clean_and_a_stale_page_shows() {
        let mut buf = vec![0u8; 3 * PAGE + 100];
        stamp(&mut buf, 9);
        set_sent_at(&mut buf, 1234);
        let t = touch(&buf);
        assert_eq!((t.sent_at, t.index, t.bad_pages), (1234, 9, 0));
        buf[2 * PAGE] ^= 1;
        assert_eq!(touch(&buf).bad_pages, 1);
        assert_eq!(touch(&buf[..HEADER]).bad_pages, 0);
    }
}
