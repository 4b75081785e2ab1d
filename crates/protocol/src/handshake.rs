//! The handshake after authentication: options, then protocol upgrades.
//!
//! ```text
//! worker → host   ready        {options}
//! host → worker   ready_ack    {options negotiated: see `Options::negotiate`}
//! host → worker   upgrade      {protocol, ...}      for each other protocol, last first
//! worker → host   upgrade_ack | upgrade_nack {error} (the worker attaches before it answers)
//! host → worker   upgrade_end  {protocol}           after the first ack, or when none is left
//! ```
//!
//! Records are [`Kind::Control`] frames with a JSON header.

use super::auth;
use super::frame::{read_frame, write_frame, Kind, Limits};
use super::shm::{self, Names, Pair};
use super::stream::{Address, RawListener, Stream};
use super::Secret;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Version of the wire protocol spoken here (2: descriptors name a pool generation).
pub const VERSION: u32 = 2;

/// The slot size of a connection's first pools when neither side asks for one.
pub const DEFAULT_SLOT_SIZE: u64 = 16 << 20;

/// A transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Everything on a loopback TCP socket.
    Tcp,
    /// Everything on a Unix stream socket.
    Unix,
    /// Large buffers in shared-memory pools, descriptors on the socket.
    Shm,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Unix, Protocol::Shm];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Unix => "unix",
            Protocol::Shm => "shm",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a comma-separated protocol list such as `tcp,shm`. The first entry is the socket the
/// connection starts on, so it must be `tcp` or `unix`.
pub fn parse_protocols(list: &str) -> Result<Vec<Protocol>> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let p = Protocol::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| Error::invalid(format!("unknown protocol {name:?} in {list:?} (known: tcp, unix, shm)")))?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    match out.first() {
        None => Err(Error::invalid(format!("empty protocol list {list:?}"))),
        Some(Protocol::Shm) => {
            Err(Error::invalid(format!("protocol list {list:?} must start with tcp or unix (shm runs over a socket)")))
        }
        Some(_) => Ok(out),
    }
}

/// What one side accepts; see [`Options::negotiate`] for how both sides' values combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Wire protocol version.
    pub version: u32,
    /// Bytes of all buffers of one message.
    pub max_message: u64,
    /// Buffers per message.
    pub max_buffers: u32,
    /// Bytes of a message header.
    pub max_header: u32,
    /// Buffers smaller than this stay on the socket even on `shm`.
    pub inline_threshold: u64,
    /// Slots per direction of the `shm` pools.
    pub slots: u32,
    /// Bytes per slot of the first `shm` pools; 0: no preference ([`DEFAULT_SLOT_SIZE`]). Larger
    /// buffers make the pools grow, up to `max_slot_size`.
    pub slot_size: u64,
    /// The largest slot the `shm` pools grow to: buffers up to it travel in shared memory, larger
    /// ones on the socket (counted in [`ConnStats`](crate::ConnStats)).
    #[serde(default = "default_max_slot_size")]
    pub max_slot_size: u64,
    /// Heartbeat interval on an idle connection, in milliseconds.
    pub heartbeat_ms: u64,
    /// The peer is dead after this many intervals without a byte from it.
    pub missed_heartbeats: u32,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            version: VERSION,
            max_message: 1 << 30,
            max_buffers: 1024,
            max_header: 64 << 20,
            inline_threshold: 256,
            slots: 8,
            slot_size: 0,
            max_slot_size: default_max_slot_size(),
            heartbeat_ms: 1000,
            missed_heartbeats: 3,
        }
    }
}

fn default_max_slot_size() -> u64 {
    1 << 30
}

impl Options {
    /// The minimum of both sides, except the number of missed heartbeats (the maximum, so that the
    /// more patient side's peer is never declared dead early) and the slot size: the larger one
    /// either side asked for (what one side needs, the other can map), or [`DEFAULT_SLOT_SIZE`],
    /// within the smaller `max_slot_size` (what both can map).
    pub fn negotiate(&self, other: &Options) -> Options {
        let max_slot_size = self.max_slot_size.min(other.max_slot_size).max(1);
        let asked = self.slot_size.max(other.slot_size);
        let slot_size = if asked == 0 { DEFAULT_SLOT_SIZE } else { asked }.min(max_slot_size);
        Options {
            version: self.version.min(other.version),
            max_message: self.max_message.min(other.max_message),
            max_buffers: self.max_buffers.min(other.max_buffers),
            max_header: self.max_header.min(other.max_header),
            inline_threshold: self.inline_threshold.min(other.inline_threshold),
            slots: self.slots.min(other.slots),
            slot_size,
            max_slot_size,
            heartbeat_ms: self.heartbeat_ms.min(other.heartbeat_ms).max(1),
            missed_heartbeats: self.missed_heartbeats.max(other.missed_heartbeats).max(1),
        }
    }

    pub fn limits(&self) -> Limits {
        Limits { max_message: self.max_message, max_buffers: self.max_buffers, max_header: self.max_header }
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// How long a silent peer is considered alive.
    pub fn dead_after(&self) -> Duration {
        self.heartbeat() * self.missed_heartbeats
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Control {
    Ready { options: Options },
    ReadyAck { options: Options },
    Upgrade { protocol: Protocol, to_worker: Option<String>, to_host: Option<String>, socket: Option<String> },
    UpgradeAck,
    UpgradeNack { error: String },
    UpgradeEnd { protocol: Protocol },
}

const CONTROL_LIMITS: Limits = Limits { max_message: 0, max_buffers: 0, max_header: 64 << 10 };

fn send(s: &mut Stream, c: &Control) -> Result<()> {
    write_frame(s, Kind::Control, &serde_json::to_vec(c).expect("serialisable"), &[])
}

fn recv(s: &mut Stream) -> Result<Control> {
    let f = read_frame(s, &CONTROL_LIMITS)?;
    if f.kind != Kind::Control {
        return Err(Error::Protocol(format!("expected a handshake record, got a {:?} frame", f.kind)));
    }
    serde_json::from_slice(&f.header).map_err(|e| Error::Protocol(format!("bad handshake record: {e}")))
}

fn unexpected(c: &Control) -> Error {
    Error::Protocol(format!("unexpected handshake record {c:?}"))
}

/// The result of a handshake: what the connection runs with.
pub(crate) struct Negotiated {
    pub stream: Stream,
    pub options: Options,
    pub protocol: Protocol,
    pub shm: Option<Pair>,
}

/// What one side needs for the handshake and upgrades.
pub(crate) struct Side<'a> {
    pub options: &'a Options,
    pub protocols: &'a [Protocol],
    /// Where pools and upgrade sockets are (as this side sees the directory).
    pub directory: &'a Path,
    pub secret: &'a Secret,
    pub timeout: Duration,
}

/// The host's side, on an authenticated socket.
pub(crate) fn host(mut stream: Stream, side: &Side<'_>, started_on: Protocol) -> Result<Negotiated> {
    stream.set_read_timeout(Some(side.timeout))?;
    let theirs = match recv(&mut stream)? {
        Control::Ready { options } => options,
        other => return Err(unexpected(&other)),
    };
    let options = side.options.negotiate(&theirs);
    if options.version < VERSION {
        return Err(Error::Protocol(format!("the worker speaks protocol version {}", theirs.version)));
    }
    send(&mut stream, &Control::ReadyAck { options })?;
    let mut protocol = started_on;
    let mut pools = None;
    for &offer in side.protocols.iter().skip(1).rev() {
        if offer == started_on {
            continue;
        }
        let (record, pending) = match offer {
            Protocol::Shm => {
                let (pair, names) = shm::create(side.directory, &options)?;
                let record = Control::Upgrade {
                    protocol: offer,
                    to_worker: Some(names.to_worker),
                    to_host: Some(names.to_host),
                    socket: None,
                };
                (record, Pending::Pools(Box::new(pair)))
            }
            Protocol::Unix | Protocol::Tcp => {
                let (listener, socket) = upgrade_listener(offer, side.directory)?;
                (
                    Control::Upgrade { protocol: offer, to_worker: None, to_host: None, socket },
                    Pending::Socket(listener),
                )
            }
        };
        send(&mut stream, &record)?;
        match recv(&mut stream)? {
            Control::UpgradeAck => {}
            Control::UpgradeNack { .. } => continue,
            other => return Err(unexpected(&other)),
        }
        match pending {
            Pending::Pools(pair) => {
                pair.unlink();
                pools = Some(*pair);
            }
            Pending::Socket(listener) => {
                let mut fresh = listener.accept(side.timeout, &mut || Ok(()))?;
                auth::accept(&mut fresh, side.secret, side.timeout)?;
                send(&mut stream, &Control::UpgradeEnd { protocol: offer })?;
                stream.shutdown();
                return Ok(Negotiated { stream: fresh, options, protocol: offer, shm: None });
            }
        }
        protocol = offer;
        break;
    }
    send(&mut stream, &Control::UpgradeEnd { protocol })?;
    Ok(Negotiated { stream, options, protocol, shm: pools })
}

enum Pending {
    Pools(Box<Pair>),
    Socket(RawListener),
}

/// A listener for switching to another socket: a Unix socket in the pool directory (named relative
/// to it, since the worker may see the directory elsewhere) or a loopback TCP port.
fn upgrade_listener(p: Protocol, dir: &Path) -> Result<(RawListener, Option<String>)> {
    if p == Protocol::Tcp {
        let l = RawListener::tcp()?;
        let addr = l.address()?.to_string();
        return Ok((l, Some(addr)));
    }
    let name = format!("sock-{}", auth::random_hex(6)?);
    Ok((RawListener::unix(dir.join(&name))?, Some(name)))
}

/// The worker's side, on an authenticated socket.
pub(crate) fn worker(mut stream: Stream, side: &Side<'_>, started_on: Protocol) -> Result<Negotiated> {
    stream.set_read_timeout(Some(side.timeout))?;
    send(&mut stream, &Control::Ready { options: *side.options })?;
    let options = match recv(&mut stream)? {
        Control::ReadyAck { options } => options,
        other => return Err(unexpected(&other)),
    };
    let mut shm = None;
    let mut switched = None;
    loop {
        match recv(&mut stream)? {
            Control::Upgrade { protocol, to_worker, to_host, socket } => {
                let attempt = if !side.protocols.contains(&protocol) {
                    Err(Error::Unsupported("the protocol is not in this worker's list"))
                } else if protocol == Protocol::Shm {
                    let names =
                        Names { to_worker: to_worker.unwrap_or_default(), to_host: to_host.unwrap_or_default() };
                    shm::attach(side.directory, &names, &options).map(|pair| shm = Some(pair))
                } else {
                    let address = match (protocol, socket) {
                        (Protocol::Unix, Some(name)) => Ok(Address::Unix(side.directory.join(name))),
                        (_, Some(addr)) => addr.parse(),
                        (_, None) => Err(Error::Protocol("an upgrade without a socket".into())),
                    };
                    address.and_then(|a| Stream::connect(&a)).map(|s| switched = Some((protocol, s)))
                };
                match attempt {
                    Ok(()) => send(&mut stream, &Control::UpgradeAck)?,
                    Err(e) => send(&mut stream, &Control::UpgradeNack { error: e.to_string() })?,
                }
                if let Some((_, fresh)) = switched.as_mut() {
                    auth::connect(fresh, side.secret, side.timeout)?;
                }
            }
            Control::UpgradeEnd { protocol } => {
                let (protocol, stream) = match switched {
                    Some((p, fresh)) if p == protocol => (p, fresh),
                    Some(_) => return Err(Error::Protocol("the host ended on another protocol".into())),
                    None => (if shm.is_some() { Protocol::Shm } else { started_on }, stream),
                };
                return Ok(Negotiated { stream, options, protocol, shm });
            }
            other => return Err(unexpected(&other)),
        }
    }
}

/// The directory a side uses for pools: its explicit one, else `$SHMPOOL_DIR`, else `/dev/shm`.
pub(crate) fn directory(explicit: Option<&Path>) -> PathBuf {
    shmpool::resolve_dir(explicit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_lists() {
        assert_eq!(parse_protocols("tcp,shm").unwrap(), [Protocol::Tcp, Protocol::Shm]);
        assert_eq!(parse_protocols(" unix , tcp ,shm,shm").unwrap(), [Protocol::Unix, Protocol::Tcp, Protocol::Shm]);
        let e = parse_protocols("tcp,carrier-pigeon").unwrap_err().to_string();
        assert!(e.contains("unknown protocol \"carrier-pigeon\""), "{e}");
        assert!(parse_protocols("").is_err());
        assert!(parse_protocols("shm").unwrap_err().to_string().contains("must start with tcp or unix"));
    }

    #[test]
    fn negotiation_takes_the_minimum() {
        let a = Options { max_message: 10, inline_threshold: 512, missed_heartbeats: 2, ..Options::default() };
        let b = Options { max_message: 20, inline_threshold: 256, missed_heartbeats: 5, version: 7, ..a };
        let n = a.negotiate(&b);
        assert_eq!((n.max_message, n.inline_threshold, n.missed_heartbeats, n.version), (10, 256, 5, VERSION));
        assert_eq!(n, b.negotiate(&a));
    }

    #[test]
    fn slot_size_asked_by_either_side_is_honoured_within_both_maxima() {
        let d = Options::default();
        assert_eq!(d.negotiate(&d).slot_size, DEFAULT_SLOT_SIZE);
        let big = Options { slot_size: 32 << 20, ..d };
        assert_eq!((big.negotiate(&d).slot_size, d.negotiate(&big).slot_size), (32 << 20, 32 << 20));
        let small = Options { slot_size: 1 << 20, ..d };
        assert_eq!(small.negotiate(&d).slot_size, 1 << 20, "a smaller wish is honoured too");
        let capped = Options { max_slot_size: 8 << 20, ..d };
        let n = big.negotiate(&capped);
        assert_eq!((n.slot_size, n.max_slot_size), (8 << 20, 8 << 20));
    }
}
