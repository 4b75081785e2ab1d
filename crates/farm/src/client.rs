//! A Majordomo client with Lazy Pirate retries: each attempt waits up to a timeout (2.5 s by
//! default); after a timeout the socket is replaced (dropping any late reply) and the request
//! sent again, up to a bounded number of attempts (3), then [`Error::NoReply`].
//!
//! On a new socket the client first tries the co-location proof ([`crate::colocation`]); once
//! proven, array parts of at least [`ShmConfig::threshold`] bytes go as descriptors of slots of the
//! client's own pool, which it keeps until the request ends. If they cannot be mapped where the
//! request went (the worker, or the broker for a client on another host, answers 409), the same
//! request is sent again at once with the bytes inline, and so are the client's requests of the next
//! second (then it tries descriptors again): a client whose requests go to workers of another
//! host pays for a refusal once a second, not once a request. Reply arrays of a
//! co-located worker arrive in the client's reply pool ([`crate::reply`]): views held until dropped.
//! Such a worker delivers the whole reply there, and the client, waiting on its socket and on
//! that pool at once, returns as soon as it is there, two libzmq hops before the broker's REPLY
//! confirms it (and is skipped when it comes).
//!
//! ```no_run
//! use shmpool_farm::{Client, ClientConfig, Part};
//! let mut client = Client::connect("tcp://127.0.0.1:5555", ClientConfig::default())?;
//! let reply = client.request("echo", &[Part::bytes("hello")])?;
//! assert_eq!(reply[0].data(), b"hello");
//! # Ok::<(), shmpool_farm::Error>(())
//! ```

use crate::colocation::{self, Proof};
use crate::mdp::{self, Limits};
use crate::part::Part;
use crate::reply::{self, ReplyInbox};
use crate::shm::{Outbox, Placed, ShmConfig};
use crate::transport::{poll, Context, Frame, Socket};
use crate::{Error, Result};
use std::time::{Duration, Instant};

/// A client's settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How long one attempt waits for the reply.
    pub timeout: Duration,
    /// Attempts per request (the first one included).
    pub attempts: u32,
    /// Size limits of a reply; bigger ones are dropped.
    pub limits: Limits,
    /// Shared memory with co-located workers.
    pub shm: ShmConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: Duration::from_millis(2500),
            attempts: 3,
            limits: Limits::default(),
            shm: ShmConfig::default(),
        }
    }
}

/// A client of a broker. Not thread-safe: one per thread.
pub struct Client {
    ctx: Context,
    endpoint: String,
    config: ClientConfig,
    /// The current socket and whether it proved co-location.
    socket: Option<(Socket, bool)>,
    outbox: Outbox,
    replies: ReplyInbox,
    /// Id of the last attempt sent (ids of reply slots).
    attempt_id: u64,
    /// Until when requests go inline at once: descriptors were just refused (409), most likely
    /// because no worker shares this host, and each refusal costs a round trip.
    inline_until: Option<Instant>,
    stats: ClientStats,
}

/// How long a client sends bytes after its descriptors were refused, before it tries again.
const INLINE_AFTER_REFUSAL: Duration = Duration::from_secs(1);

/// How a client's parts travelled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Parts sent as descriptors of shared-memory slots.
    pub shared_parts: u64,
    /// Parts sent as bytes.
    pub inline_parts: u64,
    /// Requests sent again inline because their descriptors could not be mapped where they went.
    pub resent_inline: u64,
    /// Replies received whole through the client's reply pool (their REPLY only confirming them).
    pub shared_replies: u64,
    /// Reply parts received as slots of the client's reply pool.
    pub shared_reply_parts: u64,
    /// Reply parts received as bytes.
    pub inline_reply_parts: u64,
    /// Requests sent again asking for bytes because a slot their reply named was not found.
    pub replies_resent_inline: u64,
}

impl Client {
    /// A client of the broker at `endpoint` (connects lazily, at the first request).
    pub fn connect(endpoint: &str, config: ClientConfig) -> Result<Client> {
        if config.attempts == 0 {
            return Err(Error::Invalid("a client needs at least one attempt".into()));
        }
        let outbox = Outbox::new(config.shm.clone());
        let replies = ReplyInbox::new(config.shm.clone());
        Ok(Client {
            ctx: Context::new(),
            endpoint: endpoint.to_string(),
            config,
            socket: None,
            outbox,
            replies,
            attempt_id: 0,
            inline_until: None,
            stats: Default::default(),
        })
    }

    /// How parts travelled so far.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// The client's own pool, once an array went through shared memory.
    pub fn pool(&self) -> Option<&shmpool::Pool> {
        self.outbox.pool()
    }

    /// An array of `dtype` and `shape` for a request, to be written in place ([`Part::data_mut`]),
    /// sent with no copy: if the broker is co-located (proven now, if not yet), in a slot of the
    /// client's pool that a co-located worker reads in place, held until the part is dropped
    /// (its contents are unspecified until written: a slot is reused as it is); else zeros laid
    /// out as their frame ([`Part::zeros`]). Panics as [`Part::array`].
    pub fn array(&mut self, dtype: shmpool::DType, shape: &[u64]) -> Part {
        if self.config.shm.enabled && self.socket.is_none() {
            self.socket = self.open_socket().ok().flatten();
        }
        let proven = self.socket.as_ref().is_some_and(|(_, proven)| *proven) && !self.refused_lately();
        match proven.then(|| self.outbox.alloc(dtype, shape)).flatten() {
            Some(array) => Part::Array(array),
            None => Part::zeros(dtype, shape),
        }
    }

    /// Whether descriptors were refused less than [`INLINE_AFTER_REFUSAL`] ago.
    fn refused_lately(&self) -> bool {
        self.inline_until.is_some_and(|until| Instant::now() < until)
    }

    /// The client's reply pool, once a proven attempt was sent.
    pub fn reply_pool(&self) -> Option<&shmpool::Pool> {
        self.replies.pool()
    }

    /// A connected socket, proven co-located or not; `None` if the broker did not answer in time.
    fn open_socket(&self) -> Result<Option<(Socket, bool)>> {
        let socket = self.ctx.dealer()?;
        socket.connect(&self.endpoint)?;
        if !self.config.shm.enabled {
            return Ok(Some((socket, false)));
        }
        Ok(match colocation::prove(&socket, &self.config.shm.dir(), self.config.timeout) {
            Proof::Proven => Some((socket, true)),
            Proof::Refused => Some((socket, false)),
            Proof::NoAnswer => None,
        })
    }

    /// The request's frames: descriptors for the placed parts if `shared`, else bytes.
    fn frames(&mut self, parts: &[Part], placed: Option<&[Option<Placed>]>) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            match placed.and_then(|p| p[i].as_ref()) {
                Some(p) => {
                    self.stats.shared_parts += 1;
                    frames.push(Frame::from(&p.descriptor[..]));
                }
                None => {
                    self.stats.inline_parts += 1;
                    frames.push(part.to_frame());
                }
            }
        }
        frames
    }

    /// Sends `parts` to `service` and returns the reply's parts.
    pub fn request(&mut self, service: &str, parts: &[Part]) -> Result<Vec<Part>> {
        if service.is_empty() || service.len() > mdp::MAX_SERVICE {
            return Err(Error::Invalid(format!("service name {service:?}: 1 to {} bytes", mdp::MAX_SERVICE)));
        }
        // Slots holding this request's arrays, kept until the request ends (also across retries).
        let mut placed: Option<Vec<Option<Placed>>> = None;
        let mut inline_only = self.refused_lately();
        let mut inline_replies = false;
        self.replies.drain();
        let mut attempt = 0;
        while attempt < self.config.attempts {
            let (socket, proven) = match self.socket.take() {
                Some(s) => s,
                None => match self.open_socket()? {
                    Some(s) => s,
                    None => {
                        attempt += 1;
                        continue;
                    }
                },
            };
            let shared = proven && !inline_only;
            if shared && placed.is_none() {
                placed = Some(parts.iter().map(|p| p.as_array().and_then(|a| self.outbox.place(a))).collect());
            }
            let mut frames = self.frames(parts, placed.as_deref().filter(|_| shared));
            self.attempt_id += 1;
            if proven && !inline_replies {
                frames.extend(self.replies.reply_to(self.attempt_id));
            }
            let offered = proven && !inline_replies;
            socket.send(mdp::client_request(service.as_bytes(), frames))?;
            match self.wait_reply(&socket, service, offered)? {
                Some(Err(Error::Refused { code, .. })) if code == "409" && shared => {
                    // Our pool cannot be mapped where the request went: the same request again,
                    // bytes inline (and the next ones for a while).
                    self.stats.resent_inline += 1;
                    self.inline_until = Some(Instant::now() + INLINE_AFTER_REFUSAL);
                    inline_only = true;
                    self.socket = Some((socket, proven));
                }
                Some(Ok(body)) => {
                    self.socket = Some((socket, proven));
                    let delivered = reply::delivered(&body).is_some();
                    match self.replies.collect(body, self.attempt_id, self.config.limits.max_frames) {
                        Ok((reply, shared)) => {
                            self.stats.shared_replies += u64::from(delivered);
                            self.stats.shared_reply_parts += shared;
                            self.stats.inline_reply_parts += reply.len() as u64 - shared;
                            return Ok(reply);
                        }
                        // A slot the reply named is not there: the same request again, bytes back.
                        Err(_) if !inline_replies => {
                            self.stats.replies_resent_inline += 1;
                            inline_replies = true;
                        }
                        Err(_) => return Err(Error::Protocol("a reply names slots that are not there".into())),
                    }
                }
                Some(Err(e)) => {
                    self.socket = Some((socket, proven));
                    return Err(e);
                }
                // Timed out: this socket is dropped (Lazy Pirate), a late reply dies with it.
                None => attempt += 1,
            }
        }
        Err(Error::NoReply {
            service: service.to_string(),
            attempts: self.config.attempts,
            timeout_ms: self.config.timeout.as_millis(),
        })
    }

    /// Waits one attempt's time for a valid reply from `service` (its body's frames); malformed
    /// messages and confirmations of earlier attempts are skipped. If the attempt `offered` a
    /// reply pool, its envelope arriving there is the reply (a confirmation of this attempt,
    /// which the REPLY will bring).
    fn wait_reply(&mut self, socket: &Socket, service: &str, offered: bool) -> Result<Option<Result<Vec<Frame>>>> {
        let deadline = Instant::now() + self.config.timeout;
        let attempt = self.attempt_id;
        loop {
            if offered && self.replies.envelope_arrived(attempt) {
                return Ok(Some(Ok(vec![reply::delivered_frame(attempt)])));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let pool = self.replies.ready_fd().filter(|_| offered);
            if !poll(&[socket], pool.as_slice(), left)?[0] {
                continue; // the pool's turn (or the deadline's)
            }
            let Some(mut frames) = socket.try_recv()? else { continue };
            let Ok((name, body)) = mdp::decode_client(&frames, &self.config.limits) else { continue };
            if name != service.as_bytes() {
                continue;
            }
            let body: Vec<_> = frames.drain(body).collect();
            if reply::delivered(&body).is_some_and(|id| id != attempt) {
                continue; // answered through the pool already
            }
            if let Some((code, reason)) = mdp::parse_error(&body) {
                return Ok(Some(Err(Error::Refused { service: service.to_string(), code, reason })));
            }
            return Ok(Some(Ok(body)));
        }
    }
}
