//! The Majordomo protocol 7/MDP (MDP/0.1) and the 8/MMI service names: constants, a decoder for
//! each side (never panics; every frame is untrusted) and the encoders.
//!
//! ```
//! use shmpool_farm::mdp::{decode_broker, Inbound, Limits};
//! let frames: Vec<&[u8]> = vec![b"peer", b"", b"MDPC01", b"echo", b"hello"];
//! match decode_broker(&frames, &Limits::default()) {
//!     Ok(Inbound::Request { service, body, .. }) => assert_eq!((service, body), (&b"echo"[..], 4..5)),
//!     other => panic!("{other:?}"),
//! }
//! ```

use crate::transport::Frame;
use std::ops::Range;

/// Header of every client message.
pub const CLIENT: &[u8] = b"MDPC01";
/// Header of every worker message.
pub const WORKER: &[u8] = b"MDPW01";
/// 8/MMI: is a service available? Answers "200", "404", or "501" for an unknown `mmi.` name.
pub const MMI_SERVICE: &[u8] = b"mmi.service";
/// The broker's status as JSON (services, workers, queue depths, counters).
pub const MMI_STATUS: &[u8] = b"mmi.status";
/// Prefix of the service names the broker answers itself.
pub const MMI_PREFIX: &[u8] = b"mmi.";
/// First frame of an error reply the broker sends in place of a worker's reply (then the code,
/// e.g. `503`, and a reason). A plain MDP client sees three frames of bytes.
pub const ERROR_MAGIC: &[u8] = b"\xffSPE1";
/// Longest service name (MDP sends it in one frame; the spec's own brokers use short names).
pub const MAX_SERVICE: usize = 255;

/// A worker command (the frame after `MDPW01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    Ready = 1,
    Request = 2,
    Reply = 3,
    Heartbeat = 4,
    Disconnect = 5,
}

impl Command {
    fn parse(frame: &[u8]) -> Option<Command> {
        match frame {
            [1] => Some(Command::Ready),
            [2] => Some(Command::Request),
            [3] => Some(Command::Reply),
            [4] => Some(Command::Heartbeat),
            [5] => Some(Command::Disconnect),
            _ => None,
        }
    }
}

/// Size limits of one message, checked before anything is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most frames in one message.
    pub max_frames: usize,
    /// Most bytes (all frames) in one message.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_frames: 1024, max_bytes: 256 << 20 }
    }
}

/// Why a message was not valid MDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// No routing identity / delimiter / header frame.
    Truncated,
    /// The frame after the identity is not empty.
    NoDelimiter,
    /// Neither `MDPC01` nor `MDPW01`.
    UnknownHeader,
    /// A worker command byte outside 1..=5 (or a command only the broker may send).
    UnknownCommand,
    /// A service name that is empty or longer than [`MAX_SERVICE`].
    BadService,
    /// A REPLY without its `[client][""]` envelope.
    BadEnvelope,
    /// Frames where the command has none.
    UnexpectedFrames,
    /// More frames or bytes than [`Limits`] allow.
    Oversized,
}

impl Malformed {
    /// A short name for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            Malformed::Truncated => "truncated",
            Malformed::NoDelimiter => "no-delimiter",
            Malformed::UnknownHeader => "unknown-header",
            Malformed::UnknownCommand => "unknown-command",
            Malformed::BadService => "bad-service",
            Malformed::BadEnvelope => "bad-envelope",
            Malformed::UnexpectedFrames => "unexpected-frames",
            Malformed::Oversized => "oversized",
        }
    }
}

/// A message the broker's ROUTER socket received. Bodies are ranges of frame indices, so the
/// broker forwards the received frames themselves.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// A client's request for `service`.
    Request {
        sender: &'a [u8],
        service: &'a [u8],
        body: Range<usize>,
    },
    /// A worker offers `service`.
    Ready {
        sender: &'a [u8],
        service: &'a [u8],
    },
    /// A worker's reply to `client`.
    Reply {
        sender: &'a [u8],
        client: &'a [u8],
        body: Range<usize>,
    },
    Heartbeat {
        sender: &'a [u8],
    },
    Disconnect {
        sender: &'a [u8],
    },
}

/// A decoding failure at the broker: what was wrong and, if the sender spoke `MDPW01`, its
/// identity (it gets a DISCONNECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerError<'a> {
    pub kind: Malformed,
    pub worker: Option<&'a [u8]>,
}

fn check_size<F: AsRef<[u8]>>(frames: &[F], limits: &Limits) -> Result<(), Malformed> {
    if frames.len() > limits.max_frames {
        return Err(Malformed::Oversized);
    }
    let mut total = 0usize;
    for f in frames {
        total = total.saturating_add(f.as_ref().len());
    }
    if total > limits.max_bytes {
        return Err(Malformed::Oversized);
    }
    Ok(())
}

fn service(frame: &[u8]) -> Result<&[u8], Malformed> {
    if frame.is_empty() || frame.len() > MAX_SERVICE {
        return Err(Malformed::BadService);
    }
    Ok(frame)
}

/// Decodes what a ROUTER socket received: `[identity][""][header]…`.
pub fn decode_broker<'a, F: AsRef<[u8]>>(frames: &'a [F], limits: &Limits) -> Result<Inbound<'a>, BrokerError<'a>> {
    let err = |kind| BrokerError { kind, worker: None };
    check_size(frames, limits).map_err(err)?;
    let [sender, delimiter, header, rest @ ..] = frames else {
        return Err(err(Malformed::Truncated));
    };
    let (sender, delimiter, header) = (sender.as_ref(), delimiter.as_ref(), header.as_ref());
    if !delimiter.is_empty() {
        return Err(err(Malformed::NoDelimiter));
    }
    match header {
        CLIENT => {
            let [name, ..] = rest else { return Err(err(Malformed::Truncated)) };
            let service = service(name.as_ref()).map_err(err)?;
            Ok(Inbound::Request { sender, service, body: 4..frames.len() })
        }
        WORKER => decode_worker_command(sender, rest).map_err(|kind| BrokerError { kind, worker: Some(sender) }),
        _ => Err(err(Malformed::UnknownHeader)),
    }
}

fn decode_worker_command<'a, F: AsRef<[u8]>>(sender: &'a [u8], rest: &'a [F]) -> Result<Inbound<'a>, Malformed> {
    let [command, args @ ..] = rest else { return Err(Malformed::Truncated) };
    match Command::parse(command.as_ref()).ok_or(Malformed::UnknownCommand)? {
        Command::Ready => match args {
            [name] => Ok(Inbound::Ready { sender, service: service(name.as_ref())? }),
            [] => Err(Malformed::Truncated),
            _ => Err(Malformed::UnexpectedFrames),
        },
        Command::Reply => match args {
            [client, empty, ..] if !client.as_ref().is_empty() && empty.as_ref().is_empty() => {
                // Frames: identity, "", header, command, client, "", body…
                Ok(Inbound::Reply { sender, client: client.as_ref(), body: 6..rest.len() + 3 })
            }
            _ => Err(Malformed::BadEnvelope),
        },
        Command::Heartbeat if args.is_empty() => Ok(Inbound::Heartbeat { sender }),
        Command::Disconnect if args.is_empty() => Ok(Inbound::Disconnect { sender }),
        Command::Heartbeat | Command::Disconnect => Err(Malformed::UnexpectedFrames),
        Command::Request => Err(Malformed::UnknownCommand),
    }
}

/// What a worker's DEALER socket received from the broker: `[""]["MDPW01"][command]…`.
#[derive(Debug, PartialEq, Eq)]
pub enum ToWorker<'a> {
    /// A request from `client`; the body is frames `body`.
    Request {
        client: &'a [u8],
        body: Range<usize>,
    },
    Heartbeat,
    Disconnect,
}

/// Decodes a message a worker received.
pub fn decode_worker<'a, F: AsRef<[u8]>>(frames: &'a [F], limits: &Limits) -> Result<ToWorker<'a>, Malformed> {
    check_size(frames, limits)?;
    let [delimiter, header, command, args @ ..] = frames else { return Err(Malformed::Truncated) };
    if !delimiter.as_ref().is_empty() {
        return Err(Malformed::NoDelimiter);
    }
    if header.as_ref() != WORKER {
        return Err(Malformed::UnknownHeader);
    }
    match Command::parse(command.as_ref()).ok_or(Malformed::UnknownCommand)? {
        Command::Request => match args {
            [client, empty, ..] if empty.as_ref().is_empty() => {
                Ok(ToWorker::Request { client: client.as_ref(), body: 5..frames.len() })
            }
            _ => Err(Malformed::BadEnvelope),
        },
        Command::Heartbeat => Ok(ToWorker::Heartbeat),
        Command::Disconnect => Ok(ToWorker::Disconnect),
        Command::Ready | Command::Reply => Err(Malformed::UnknownCommand),
    }
}

/// Decodes a reply a client's DEALER socket received: `[""]["MDPC01"][service][body…]`; gives the
/// service and the body's frame range.
pub fn decode_client<'a, F: AsRef<[u8]>>(
    frames: &'a [F],
    limits: &Limits,
) -> Result<(&'a [u8], Range<usize>), Malformed> {
    check_size(frames, limits)?;
    let [delimiter, header, name, ..] = frames else { return Err(Malformed::Truncated) };
    if !delimiter.as_ref().is_empty() {
        return Err(Malformed::NoDelimiter);
    }
    if header.as_ref() != CLIENT {
        return Err(Malformed::UnknownHeader);
    }
    Ok((service(name.as_ref())?, 3..frames.len()))
}

fn message(head: Vec<Frame>, body: impl IntoIterator<Item = Frame>) -> Vec<Frame> {
    let mut frames = head;
    frames.extend(body);
    frames
}

/// A client's request, as sent on a DEALER socket.
pub fn client_request(service: &[u8], body: impl IntoIterator<Item = Frame>) -> Vec<Frame> {
    message(vec![Frame::empty(), CLIENT.into(), service.into()], body)
}

/// The broker's reply to client `client`.
pub fn client_reply(client: &[u8], service: &[u8], body: impl IntoIterator<Item = Frame>) -> Vec<Frame> {
    message(vec![client.into(), Frame::empty(), CLIENT.into(), service.into()], body)
}

/// The broker's REQUEST to worker `worker` on behalf of `client`.
pub fn worker_request(worker: &[u8], client: &[u8], body: impl IntoIterator<Item = Frame>) -> Vec<Frame> {
    let command: &[u8] = &[Command::Request as u8];
    message(vec![worker.into(), Frame::empty(), WORKER.into(), command.into(), client.into(), Frame::empty()], body)
}

/// A bodiless command from the broker to `worker` (HEARTBEAT, DISCONNECT).
pub fn to_worker(worker: &[u8], command: Command) -> Vec<Frame> {
    let command: &[u8] = &[command as u8];
    vec![worker.into(), Frame::empty(), WORKER.into(), command.into()]
}

/// A worker's command to the broker: READY (`args` = service), HEARTBEAT, DISCONNECT.
pub fn from_worker(command: Command, args: &[&[u8]]) -> Vec<Frame> {
    let command: &[u8] = &[command as u8];
    message(vec![Frame::empty(), WORKER.into(), command.into()], args.iter().map(|a| Frame::from(*a)))
}

/// A worker's REPLY to `client`.
pub fn worker_reply(client: &[u8], body: impl IntoIterator<Item = Frame>) -> Vec<Frame> {
    let command: &[u8] = &[Command::Reply as u8];
    message(vec![Frame::empty(), WORKER.into(), command.into(), client.into(), Frame::empty()], body)
}

/// The body of an error reply.
pub fn error_body(code: &str, reason: &str) -> Vec<Frame> {
    vec![ERROR_MAGIC.into(), code.into(), reason.into()]
}

/// The code and reason of an error reply body, if it is one.
pub fn parse_error<F: AsRef<[u8]>>(body: &[F]) -> Option<(String, String)> {
    match body {
        [magic, code, reason] if magic.as_ref() == ERROR_MAGIC => Some((
            String::from_utf8_lossy(code.as_ref()).into_owned(),
            String::from_utf8_lossy(reason.as_ref()).into_owned(),
        )),
        _ => None,
    }
}

/// The limits the fuzz target and its corpus test decode with (small, so that `Oversized` is reachable).
#[doc(hidden)]
pub const FUZZ_LIMITS: Limits = Limits { max_frames: 64, max_bytes: 1 << 16 };

/// Splits fuzzer input into frames: each a little-endian `u16` length and that many bytes (the
/// last one possibly shorter). Used by the fuzz target and the corpus test.
#[doc(hidden)]
pub fn split_fuzz_input(mut data: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while let [a, b, rest @ ..] = data {
        let n = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
        frames.push(&rest[..n]);
        data = &rest[n..];
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits { max_frames: 16, max_bytes: 1024 };

    fn bytes(frames: Vec<Frame>) -> Vec<Vec<u8>> {
        frames.iter().map(|f| f.to_vec()).collect()
    }

    #[test]
    fn client_request_round_trip() {
        let mut frames = bytes(client_request(b"echo", [Frame::from(&b"a"[..]), Frame::from(&b"b"[..])]));
        frames.insert(0, b"id".to_vec());
        let got = decode_broker(&frames, &L).unwrap();
        assert_eq!(got, Inbound::Request { sender: b"id", service: b"echo", body: 4..6 });
    }

    #[test]
    fn worker_commands_round_trip() {
        let with_id = |f: Vec<Frame>| {
            let mut v = bytes(f);
            v.insert(0, b"w".to_vec());
            v
        };
        let ready = with_id(from_worker(Command::Ready, &[b"svc"]));
        assert_eq!(decode_broker(&ready, &L).unwrap(), Inbound::Ready { sender: b"w", service: b"svc" });
        let reply = with_id(worker_reply(b"c", [Frame::from("x")]));
        assert_eq!(decode_broker(&reply, &L).unwrap(), Inbound::Reply { sender: b"w", client: b"c", body: 6..7 });
        let hb = with_id(from_worker(Command::Heartbeat, &[]));
        assert_eq!(decode_broker(&hb, &L).unwrap(), Inbound::Heartbeat { sender: b"w" });
        let bye = with_id(from_worker(Command::Disconnect, &[]));
        assert_eq!(decode_broker(&bye, &L).unwrap(), Inbound::Disconnect { sender: b"w" });
    }

    #[test]
    fn broker_to_worker_and_client_round_trip() {
        let req = bytes(worker_request(b"w", b"c", [Frame::from("x")]));
        assert_eq!(decode_worker(&req[1..], &L).unwrap(), ToWorker::Request { client: b"c", body: 5..6 });
        let hb = bytes(to_worker(b"w", Command::Heartbeat));
        assert_eq!(decode_worker(&hb[1..], &L).unwrap(), ToWorker::Heartbeat);
        let rep = bytes(client_reply(b"c", b"svc", [Frame::from("y")]));
        assert_eq!(decode_client(&rep[1..], &L).unwrap(), (&b"svc"[..], 3..4));
    }

    #[test]
    fn malformed_messages_are_classified() {
        let kind = |frames: &[&[u8]]| decode_broker(frames, &L).map(|_| ()).map_err(|e| e.kind);
        assert_eq!(kind(&[]), Err(Malformed::Truncated));
        assert_eq!(kind(&[b"id", b""]), Err(Malformed::Truncated));
        assert_eq!(kind(&[b"id", b"x", b"MDPC01", b"s"]), Err(Malformed::NoDelimiter));
        assert_eq!(kind(&[b"id", b"", b"MDPC02", b"s"]), Err(Malformed::UnknownHeader));
        assert_eq!(kind(&[b"id", b"", b"MDPC01"]), Err(Malformed::Truncated));
        assert_eq!(kind(&[b"id", b"", b"MDPC01", b""]), Err(Malformed::BadService));
        assert_eq!(kind(&[b"id", b"", b"MDPC01", &[b'x'; 256]]), Err(Malformed::BadService));
        assert_eq!(kind(&[b"id", b"", b"MDPW01", &[9]]), Err(Malformed::UnknownCommand));
        assert_eq!(kind(&[b"id", b"", b"MDPW01", &[2]]), Err(Malformed::UnknownCommand));
        assert_eq!(kind(&[b"id", b"", b"MDPW01", &[1, 1]]), Err(Malformed::UnknownCommand));
        assert_eq!(kind(&[b"id", b"", b"MDPW01", &[3], b"c"]), Err(Malformed::BadEnvelope));
        assert_eq!(kind(&[b"id", b"", b"MDPW01", &[3], b"", b""]), Err(Malformed::BadEnvelope));
        assert_eq!(kind(&[b"id", b"", b"MDPW01", &[4], b"x"]), Err(Malformed::UnexpectedFrames));
        assert_eq!(kind(&[b"id", b"", b"MDPW01", &[1], b"a", b"b"]), Err(Malformed::UnexpectedFrames));
        assert_eq!(kind(&[b"id", b"", b"MDPC01", &[b'x'; 1100]]), Err(Malformed::Oversized));
        let many: Vec<&[u8]> = vec![b""; 17];
        assert_eq!(kind(&many), Err(Malformed::Oversized));
        // A malformed worker message names the worker (it gets a DISCONNECT); a client's does not.
        let frames: [&[u8]; 4] = [b"w", b"", b"MDPW01", &[7]];
        let e = decode_broker(&frames, &L).unwrap_err();
        assert_eq!(e.worker, Some(&b"w"[..]));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // A deterministic sweep of short inputs in the fuzzer's framing (the fuzz target goes further).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 48) as usize;
            let data: Vec<u8> = (0..len).map(|i| (state >> (i % 8 * 8)) as u8 % 8).collect();
            let frames = split_fuzz_input(&data);
            let _ = decode_broker(&frames, &L);
            let _ = decode_worker(&frames, &L);
            let _ = decode_client(&frames, &L);
        }
    }
}
