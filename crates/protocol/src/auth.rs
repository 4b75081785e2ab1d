//! Mutual HMAC-SHA256 challenge–response, run first on every socket of a connection.
//!
//! ```text
//! worker → host   "SHMPOOL\x01" | nonce_w (32 B)
//! host → worker   "SHMPOOL\x01" | nonce_h (32 B) | HMAC(secret, "host" | nonce_w | nonce_h)
//! worker → host   HMAC(secret, "worker" | nonce_h | nonce_w)     (zeros if the host failed)
//! host → worker   1 (accepted) or 0 (refused)
//! ```
//!
//! The secret itself never crosses the socket; both MACs are compared in constant time
//! (`Mac::verify_slice`). A peer that fails is dropped with [`Error::Auth`] on both sides.

use super::stream::Stream;
use crate::{Error, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::io::{Read, Write};
use std::time::Duration;

const HELLO: &[u8; 8] = b"SHMPOOL\x01";
const NONCE: usize = 32;
const MAC: usize = 32;

/// A shared secret of 32 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// 32 bytes from `/dev/urandom`.
    pub fn random() -> Result<Secret> {
        let mut b = [0u8; 32];
        random_bytes(&mut b)?;
        Ok(Secret(b))
    }

    /// The secret as 64 hex digits (for the worker's environment).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Secret> {
        let bad = || Error::invalid("the secret must be 64 hex digits");
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut b = [0u8; 32];
        for (i, out) in b.iter_mut().enumerate() {
            *out = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Secret(b))
    }

    fn mac(&self, role: &[u8], a: &[u8], b: &[u8]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(role);
        m.update(a);
        m.update(b);
        m
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` random bytes as hex (unique names of pools and sockets).
pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    random_bytes(&mut b)?;
    Ok(hex(&b))
}

/// Fills `buf` from `/dev/urandom`.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<()> {
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| Error::io("reading /dev/urandom", e))
}

fn exchange_err(e: std::io::Error) -> Error {
    Error::Auth(format!("the peer left during authentication: {e}"))
}

/// The host's side: authenticates the worker on `s` and proves the host knows the secret.
pub(crate) fn accept(s: &mut Stream, secret: &Secret, timeout: Duration) -> Result<()> {
    s.set_read_timeout(Some(timeout))?;
    let mut hello = [0u8; 8 + NONCE];
    s.read_exact(&mut hello).map_err(exchange_err)?;
    if &hello[..8] != HELLO {
        return Err(Error::Auth("the peer is not a shmpool worker (bad greeting)".into()));
    }
    let nonce_w = &hello[8..];
    let mut nonce_h = [0u8; NONCE];
    random_bytes(&mut nonce_h)?;
    let mut reply = HELLO.to_vec();
    reply.extend_from_slice(&nonce_h);
    reply.extend_from_slice(&secret.mac(b"host", nonce_w, &nonce_h).finalize().into_bytes());
    s.write_all(&reply).map_err(exchange_err)?;
    let mut proof = [0u8; MAC];
    s.read_exact(&mut proof).map_err(exchange_err)?;
    let ok = secret.mac(b"worker", &nonce_h, nonce_w).verify_slice(&proof).is_ok();
    let _ = s.write_all(&[ok as u8]);
    if !ok {
        s.shutdown();
        return Err(Error::Auth("the worker does not know the secret; connection refused".into()));
    }
    Ok(())
}

/// The worker's side: authenticates the host on `s` and proves the worker knows the secret.
pub(crate) fn connect(s: &mut Stream, secret: &Secret, timeout: Duration) -> Result<()> {
    s.set_read_timeout(Some(timeout))?;
    let mut nonce_w = [0u8; NONCE];
    random_bytes(&mut nonce_w)?;
    let mut hello = HELLO.to_vec();
    hello.extend_from_slice(&nonce_w);
    s.write_all(&hello).map_err(exchange_err)?;
    let mut reply = [0u8; 8 + NONCE + MAC];
    s.read_exact(&mut reply).map_err(exchange_err)?;
    let nonce_h = &reply[8..8 + NONCE];
    let host_ok =
        &reply[..8] == HELLO && secret.mac(b"host", &nonce_w, nonce_h).verify_slice(&reply[8 + NONCE..]).is_ok();
    if !host_ok {
        let _ = s.write_all(&[0u8; MAC]);
        s.shutdown();
        return Err(Error::Auth("the host does not know the secret; connection refused".into()));
    }
    s.write_all(&secret.mac(b"worker", nonce_h, &nonce_w).finalize().into_bytes()).map_err(exchange_err)?;
    let mut verdict = [0u8; 1];
    s.read_exact(&mut verdict).map_err(exchange_err)?;
    if verdict[0] != 1 {
        return Err(Error::Auth("the host refused this worker's secret".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_randomness() {
        let a = Secret::random().unwrap();
        assert_eq!(Secret::from_hex(&a.to_hex()).unwrap(), a);
        assert_ne!(Secret::random().unwrap(), a);
        assert!(Secret::from_hex("zz").is_err());
        assert!(Secret::from_hex(&"g".repeat(64)).is_err());
        assert_eq!(format!("{a:?}"), "Secret(..)");
    }
}
