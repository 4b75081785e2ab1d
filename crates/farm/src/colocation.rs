//! The co-location proof, negotiated on top of MDP through the broker's `mmi.shmpool` service
//! (a plain MDP broker answers it "501", and then nothing else changes):
//!
//! 1. the peer asks `["hello"]`; the broker writes a random value into a new file of its pool
//!    directory and answers `["challenge", file name]`;
//! 2. the peer reads that file in *its* pool directory and answers `["prove", file name, value]`;
//! 3. the broker answers `["200"]` (and deletes the file) if the value matches, else `["403"]`.
//!
//! Only a peer that sees the broker's directory (same host, or same bind-mounted directory across
//! containers) can answer: host names are never compared. Peers proven this way share the
//! directory with each other, so descriptors may travel between them.

use crate::mdp;
use crate::transport::{Frame, Socket};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// The broker's service for the proof.
pub const SERVICE: &[u8] = b"mmi.shmpool";
/// Prefix of challenge files (for cleanup tools).
pub const FILE_PREFIX: &str = "shmpool-farm-challenge-";

/// `n` random bytes as hex, from the kernel.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The outcome of [`prove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The broker accepted the proof: descriptors may be used.
    Proven,
    /// The broker answered, but no proof: a plain MDP broker, or one on another host.
    Refused,
    /// No answer in time.
    NoAnswer,
}

/// Runs the proof on `socket` (a DEALER connected to the broker), waiting at most `timeout` in
/// all. Other messages arriving meanwhile are dropped (none are expected before READY or a
/// request).
pub fn prove(socket: &Socket, dir: &Path, timeout: Duration) -> Proof {
    let deadline = Instant::now() + timeout;
    let Some(challenge) = ask(socket, &[b"hello"], deadline) else { return Proof::NoAnswer };
    let [kind, name] = &challenge[..] else { return Proof::Refused };
    if &kind[..] != b"challenge" || name.contains(&b'/') || !name.starts_with(FILE_PREFIX.as_bytes()) {
        return Proof::Refused;
    }
    let Ok(name) = std::str::from_utf8(name) else { return Proof::Refused };
    // Unreadable here: answer anyway (empty), so that the broker deletes the challenge at once.
    let value = std::fs::read(dir.join(name)).unwrap_or_default();
    match ask(socket, &[b"prove", name.as_bytes(), &value], deadline) {
        Some(a) if a.len() == 1 && &a[0][..] == b"200" => Proof::Proven,
        Some(_) => Proof::Refused,
        None => Proof::NoAnswer,
    }
}

fn ask(socket: &Socket, body: &[&[u8]], deadline: Instant) -> Option<Vec<Frame>> {
    socket.send(mdp::client_request(SERVICE, body.iter().map(|b| Frame::from(*b)))).ok()?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !socket.wait_readable(left).ok()? {
            return None;
        }
        let mut frames = socket.try_recv().ok()??;
        if let Ok((SERVICE, body)) = mdp::decode_client(&frames, &mdp::Limits::default()) {
            return Some(frames.drain(body).collect());
        }
    }
}

/// The broker's side: outstanding challenges (bounded) and the proven peers (bounded).
pub struct Verifier {
    dir: std::path::PathBuf,
    /// File name → (peer identity, value, expiry).
    pending: std::collections::HashMap<String, (Vec<u8>, Vec<u8>, Instant)>,
    proven: std::collections::HashSet<Vec<u8>>,
    order: std::collections::VecDeque<Vec<u8>>,
}

const MAX_PENDING: usize = 1024;
const MAX_PROVEN: usize = 100_000;
const CHALLENGE_LIFETIME: Duration = Duration::from_secs(10);

impl Verifier {
    pub fn new(dir: std::path::PathBuf) -> Verifier {
        Verifier { dir, pending: Default::default(), proven: Default::default(), order: Default::default() }
    }

    /// Whether `peer` proved it shares the directory.
    pub fn is_proven(&self, peer: &[u8]) -> bool {
        self.proven.contains(peer)
    }

    pub fn proven_count(&self) -> usize {
        self.proven.len()
    }

    /// Forgets a peer (a removed worker).
    pub fn forget(&mut self, peer: &[u8]) {
        if self.proven.remove(peer) {
            self.order.retain(|p| p != peer);
        }
    }

    /// Answers one `mmi.shmpool` request from `peer`.
    pub fn answer(&mut self, peer: &[u8], body: &[Frame]) -> Vec<Frame> {
        self.expire();
        match body {
            [hello] if &hello[..] == b"hello" => match self.challenge(peer) {
                Some(name) => vec![Frame::from("challenge"), Frame::from(name.as_str())],
                None => vec![Frame::from("503")],
            },
            [prove, name, value] if &prove[..] == b"prove" => {
                let name = String::from_utf8_lossy(name).into_owned();
                let mine = self.pending.get(&name).filter(|(p, _, _)| p == peer);
                // One answer per challenge, right or wrong.
                let ok = mine.is_some_and(|(_, v, _)| v[..] == value[..]);
                if mine.is_some() {
                    self.remove_challenge(&name);
                }
                if ok {
                    self.admit(peer);
                }
                vec![Frame::from(if ok { "200" } else { "403" })]
            }
            _ => vec![Frame::from("400")],
        }
    }

    fn challenge(&mut self, peer: &[u8]) -> Option<String> {
        if self.pending.len() >= MAX_PENDING {
            return None;
        }
        let name = format!("{FILE_PREFIX}{}", random_hex(12).ok()?);
        let value = random_hex(32).ok()?.into_bytes();
        std::fs::write(self.dir.join(&name), &value).ok()?;
        self.pending.insert(name.clone(), (peer.to_vec(), value, Instant::now() + CHALLENGE_LIFETIME));
        Some(name)
    }

    fn admit(&mut self, peer: &[u8]) {
        if self.proven.insert(peer.to_vec()) {
            self.order.push_back(peer.to_vec());
            if self.order.len() > MAX_PROVEN {
                if let Some(oldest) = self.order.pop_front() {
                    self.proven.remove(&oldest);
                }
            }
        }
    }

    fn remove_challenge(&mut self, name: &str) {
        self.pending.remove(name);
        let _ = std::fs::remove_file(self.dir.join(name));
    }

    /// Deletes unanswered challenges past their lifetime.
    pub fn expire(&mut self) {
        let now = Instant::now();
        let old: Vec<String> = self.pending.iter().filter(|(_, (_, _, t))| *t <= now).map(|(n, _)| n.clone()).collect();
        for name in old {
            self.remove_challenge(&name);
        }
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        let names: Vec<String> = self.pending.keys().cloned().collect();
        for name in names {
            self.remove_challenge(&name);
        }
    }
}
