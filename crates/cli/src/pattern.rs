//! The verifiable content `produce` writes and `consume --verify` checks: the buffer's index as a
//! little-endian u64 in the first 8 bytes, then byte `j` = `seed(index) ^ (j mod 256)`.

/// The shortest buffer that can carry the pattern.
pub const MIN_LEN: usize = 8;

fn seed(index: u64) -> u8 {
    (index.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

/// Fills `buf` (at least [`MIN_LEN`] bytes) with the pattern of buffer `index`.
pub fn fill(buf: &mut [u8], index: u64) {
    buf[..MIN_LEN].copy_from_slice(&index.to_le_bytes());
    let seed = seed(index);
    for (j, b) in buf.iter_mut().enumerate().skip(MIN_LEN) {
        *b = seed ^ j as u8;
    }
}

/// Checks that `buf` holds the pattern of the index in its first bytes; returns that index.
pub fn check(buf: &[u8]) -> Result<u64, String> {
    let Some(head) = buf.get(..MIN_LEN) else {
        return Err(format!("{} bytes, the pattern needs at least {MIN_LEN}", buf.len()));
    };
    let index = u64::from_le_bytes(head.try_into().expect("8 bytes"));
    let seed = seed(index);
    match buf.iter().enumerate().skip(MIN_LEN).find(|&(j, &b)| b != seed ^ j as u8) {
        None => Ok(index),
        Some((j, &b)) => Err(format!("buffer {index}: byte {j} is {b:#04x}, expected {:#04x}", seed ^ j as u8)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_buffers_check_and_corrupted_ones_do_not() {
        let mut buf = vec![0u8; 1000];
        fill(&mut buf, 77);
        assert_eq!(check(&buf), Ok(77));
        buf[500] ^= 1;
        assert!(check(&buf).unwrap_err().contains("byte 500"));
        assert!(check(&buf[..3]).is_err());
    }
}
