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
//!
//! A peer that cannot see the broker's directory (the broker runs on another host) proves instead
//! which directory it sees, so that peers of one host exchange descriptors through a broker
//! elsewhere:
//!
//! 4. the peer reads its directory's *site key* (a random value in the file [`SITE_FILE`], made by
//!    the first peer that needed it and kept for the directory's life) and sends `["site", key]`;
//! 5. the broker answers `["200"]` and counts the peer in that site: descriptors travel only
//!    between peers of one site, and only a peer that reads the file knows its key.
//!
//! The broker cannot read the pools of such peers, so a descriptor from one of them never reaches
//! a peer of another site: the sender is told "409" and resends the bytes.

use crate::mdp;
use crate::transport::{Frame, Socket};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// The broker's service for the proof.
pub const SERVICE: &[u8] = b"mmi.shmpool";
/// Prefix of challenge files (for cleanup tools).
pub const FILE_PREFIX: &str = "shmpool-farm-challenge-";
/// The file holding a directory's site key (64 hexadecimal digits).
pub const SITE_FILE: &str = "shmpool-farm-site";

/// `n` random bytes as hex, from the kernel.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The outcome of [`prove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The broker accepted the proof (of its directory, or of a site): descriptors may be used.
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
    match &challenge[..] {
        [kind, name] if &kind[..] == b"challenge" => {
            let Some(name) = challenge_name(name) else { return Proof::Refused };
            // Unreadable here: answer anyway (empty), so that the broker deletes the challenge at once.
            let value = std::fs::read(dir.join(name)).unwrap_or_default();
            match ask(socket, &[b"prove", name.as_bytes(), &value], deadline) {
                Some(a) if a.len() == 1 && &a[0][..] == b"200" => return Proof::Proven,
                Some(_) => {} // the broker's directory is not ours: prove a site instead
                None => return Proof::NoAnswer,
            }
        }
        // A plain MDP broker.
        [code] if &code[..] == b"501" => return Proof::Refused,
        _ => {} // e.g. "503": the broker cannot write challenges now; a site needs none
    }
    let Some(key) = site_key(dir) else { return Proof::Refused };
    match ask(socket, &[b"site", &key], deadline) {
        Some(a) if a.len() == 1 && &a[0][..] == b"200" => Proof::Proven,
        Some(_) => Proof::Refused,
        None => Proof::NoAnswer,
    }
}

/// A challenge file name from the broker, if it is one (a plain name with the prefix).
fn challenge_name(name: &[u8]) -> Option<&str> {
    let name = std::str::from_utf8(name).ok()?;
    (!name.contains('/') && name.starts_with(FILE_PREFIX)).then_some(name)
}

/// The site key of `dir`: read from its [`SITE_FILE`], which the first peer to need it makes.
/// The file stays for the directory's life (a tmpfs: until reboot), so that every later peer of
/// this host reads the same key.
pub fn site_key(dir: &Path) -> Option<Vec<u8>> {
    let path = dir.join(SITE_FILE);
    if !path.exists() {
        // Written whole under a temporary name, then linked: a reader never sees a partial key,
        // and of two peers racing, the first link wins and the other reads its key.
        let draft = dir.join(format!("{FILE_PREFIX}{}", random_hex(12).ok()?));
        std::fs::write(&draft, random_hex(32).ok()?).ok()?;
        let _ = std::fs::hard_link(&draft, &path);
        let _ = std::fs::remove_file(&draft);
    }
    std::fs::read(&path).ok().filter(|key| is_site_key(key))
}

/// Whether `key` looks like a site key: 64 hexadecimal digits.
pub fn is_site_key(key: &[u8]) -> bool {
    key.len() == 64 && key.iter().all(u8::is_ascii_hexdigit)
}

/// Sends `body` to `mmi.shmpool` and waits until `deadline` for the answer's frames.
pub fn ask(socket: &Socket, body: &[&[u8]], deadline: Instant) -> Option<Vec<Frame>> {
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

/// Where a proven peer's pool directory is, as the broker knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    /// The broker's own directory (a challenge was answered): the broker can read its pools.
    Broker,
    /// A directory the broker cannot see, named by its site key.
    Key(Vec<u8>),
}

/// The broker's side: outstanding challenges (bounded) and the proven peers' sites (bounded).
pub struct Verifier {
    dir: std::path::PathBuf,
    /// File name → (peer identity, value, expiry).
    pending: std::collections::HashMap<String, (Vec<u8>, Vec<u8>, Instant)>,
    sites: std::collections::HashMap<Vec<u8>, Site>,
    order: std::collections::VecDeque<Vec<u8>>,
}

const MAX_PENDING: usize = 1024;
const MAX_PROVEN: usize = 100_000;
const CHALLENGE_LIFETIME: Duration = Duration::from_secs(10);

impl Verifier {
    pub fn new(dir: std::path::PathBuf) -> Verifier {
        Verifier { dir, pending: Default::default(), sites: Default::default(), order: Default::default() }
    }

    /// Where `peer` proved its directory is, if it did.
    pub fn site(&self, peer: &[u8]) -> Option<&Site> {
        self.sites.get(peer)
    }

    /// Whether descriptors of `from` name pools that `to` can map: both proved the same directory.
    pub fn same_site(&self, from: &[u8], to: &[u8]) -> bool {
        self.site(from).is_some_and(|site| self.site(to) == Some(site))
    }

    /// How many peers proved the broker's directory, and how many another site's.
    pub fn proven_count(&self) -> (usize, usize) {
        let local = self.sites.values().filter(|s| **s == Site::Broker).count();
        (local, self.sites.len() - local)
    }

    /// Forgets a peer (a removed worker).
    pub fn forget(&mut self, peer: &[u8]) {
        if self.sites.remove(peer).is_some() {
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
                    self.admit(peer, Site::Broker);
                }
                vec![Frame::from(if ok { "200" } else { "403" })]
            }
            [site, key] if &site[..] == b"site" && is_site_key(key) => {
                self.admit(peer, Site::Key(key.to_vec()));
                vec![Frame::from("200")]
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

    fn admit(&mut self, peer: &[u8], site: Site) {
        if self.sites.insert(peer.to_vec(), site).is_none() {
            self.order.push_back(peer.to_vec());
            if self.order.len() > MAX_PROVEN {
                if let Some(oldest) = self.order.pop_front() {
                    self.sites.remove(&oldest);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("shmpool-farm-site-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn peers_of_one_directory_read_one_site_key_and_others_another() {
        let (here, there) = (temp_dir("here"), temp_dir("there"));
        // Racing peers of one directory all end up with the key of the first link.
        let keys: Vec<Vec<u8>> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..8).map(|_| s.spawn(|| site_key(&here).unwrap())).collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| k == &keys[0] && is_site_key(k)), "{keys:?}");
        assert_ne!(site_key(&there).unwrap(), keys[0]);
        // Only the site file stays (no draft left behind).
        let names: Vec<_> = std::fs::read_dir(&here).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [SITE_FILE]);
        // A damaged site file proves nothing.
        std::fs::write(there.join(SITE_FILE), "not a key").unwrap();
        assert_eq!(site_key(&there), None);
        for dir in [here, there] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn the_verifier_pairs_peers_of_one_site_only() {
        let dir = temp_dir("verifier");
        let mut verifier = Verifier::new(dir.clone());
        let ask = |v: &mut Verifier, peer: &[u8], body: &[&[u8]]| -> Vec<u8> {
            let body: Vec<Frame> = body.iter().map(|b| Frame::from(*b)).collect();
            v.answer(peer, &body).iter().flat_map(|f| f.to_vec()).collect()
        };
        // A local peer answers the challenge.
        let challenge = ask(&mut verifier, b"local", &[b"hello"]);
        let name = std::str::from_utf8(&challenge[b"challenge".len()..]).unwrap().to_string();
        let value = std::fs::read(dir.join(&name)).unwrap();
        assert_eq!(ask(&mut verifier, b"local", &[b"prove", name.as_bytes(), &value]), b"200");
        assert!(!dir.join(&name).exists(), "the challenge is deleted once answered");
        // Two peers of another host, and one of a third.
        let (key_b, key_c) = (b"b".repeat(64), b"c".repeat(64));
        for (peer, key) in [(&b"b1"[..], &key_b), (b"b2", &key_b), (b"c1", &key_c)] {
            assert_eq!(ask(&mut verifier, peer, &[b"site", key]), b"200");
        }
        assert_eq!(ask(&mut verifier, b"bad", &[b"site", b"short"]), b"400");
        assert!(verifier.same_site(b"b1", b"b2") && verifier.same_site(b"local", b"local"));
        assert!(!verifier.same_site(b"b1", b"c1") && !verifier.same_site(b"local", b"b1"));
        assert!(!verifier.same_site(b"bad", b"bad"), "an unproven peer shares nothing");
        assert_eq!(verifier.proven_count(), (1, 3));
        verifier.forget(b"b2");
        assert!(!verifier.same_site(b"b1", b"b2"));
        drop(verifier);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
