//! A Majordomo worker: registers a service with the broker and serves its requests.
//!
//! The broker connection is shared by the user's threads and a small background thread, under
//! one lock. [`Worker::recv`] polls the broker socket itself and [`Replier`] sends on it directly,
//! so a request and its reply cross no thread of this library. While the user's code is away
//! from `recv` (busy with a request, or not asking), the background thread keeps the session
//! alive: it heartbeats, notices a silent broker after `liveness` missed beats, and reconnects
//! with exponential backoff (1 s doubling to 32 s by default). A worker of the broker's host
//! also takes requests from its request pool ([`crate::handoff`]), waiting on both at once.
//!
//! ```no_run
//! use shmpool_farm::{Worker, WorkerConfig};
//! let worker = Worker::connect("tcp://127.0.0.1:5555", "echo", WorkerConfig::default())?;
//! for request in &worker {
//!     let request = request?;
//!     let parts = request.parts().iter().map(|p| shmpool_farm::Part::bytes(p.data())).collect::<Vec<_>>();
//!     request.reply(parts)?;
//! }
//! # Ok::<(), shmpool_farm::Error>(())
//! ```

use crate::colocation::{self, Proof};
use crate::handoff::{self, RequestPool};
use crate::mdp::{self, Command, Limits, ToWorker};
use crate::part::Part;
use crate::reply::{ReplyOutbox, ReplyTo};
use crate::shm::{Inbox, ShmConfig, DESC_MAGIC};
use crate::transport::{poll, Context, Frame, Socket};
use crate::{Error, Result};
use shmpool::DType;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Interval of heartbeats to the broker (and expected from it).
    pub heartbeat: Duration,
    /// Missed broker heartbeats after which the worker reconnects.
    pub liveness: u32,
    /// First reconnection delay; it doubles on each failed attempt…
    pub reconnect_min: Duration,
    /// …up to this.
    pub reconnect_max: Duration,
    /// Size limits of a received message; bigger ones are dropped.
    pub limits: Limits,
    /// Shared memory with co-located clients (arrays received as descriptors, reply arrays
    /// written into the client's reply pool).
    pub shm: ShmConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            heartbeat: Duration::from_secs(1),
            liveness: 3,
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(32),
            limits: Limits::default(),
            shm: ShmConfig::default(),
        }
    }
}

/// A worker serving one service. Iterate over it (or call [`Worker::recv`]) for requests.
pub struct Worker {
    link: Arc<Link>,
    keeper: Option<JoinHandle<()>>,
    inbox: Mutex<Inbox>,
    outbox: Arc<Mutex<ReplyOutbox>>,
}

/// One request; answer it with [`Request::reply`] (dropping it unanswered leaves the client to
/// retry).
pub struct Request {
    parts: Vec<Part>,
    replier: Replier,
}

/// The means to answer one request, apart from its parts (see [`Request::split`]).
pub struct Replier {
    client: Vec<u8>,
    link: Arc<Link>,
    /// The session the request came in; a reply after it ended is dropped (the broker forgot
    /// this worker, and the client retries).
    generation: u64,
    /// Where a co-located client takes reply arrays, if it offered (and this session is proven).
    reply_to: Option<ReplyTo>,
    outbox: Arc<Mutex<ReplyOutbox>>,
}

/// A reply whose arrays are already in the client's reply pool; [`StagedReply::send`] sends it.
pub struct StagedReply {
    replier: Replier,
    body: Vec<Frame>,
}

impl Worker {
    /// Connects to the broker at `endpoint` and registers `service`.
    pub fn connect(endpoint: &str, service: &str, config: WorkerConfig) -> Result<Worker> {
        if service.is_empty() || service.len() > mdp::MAX_SERVICE {
            return Err(Error::Invalid(format!("service name {service:?}: 1 to {} bytes", mdp::MAX_SERVICE)));
        }
        let bell = |e: std::io::Error| Error::Invalid(format!("cannot create the worker's wake-up socket: {e}"));
        let inbox = Mutex::new(Inbox::new(config.shm.dir()));
        let outbox = Arc::new(Mutex::new(ReplyOutbox::new(config.shm.clone())));
        let link = Arc::new(Link {
            ctx: Context::new(),
            endpoint: endpoint.to_string(),
            service: service.to_string(),
            session: Mutex::new(Session {
                // The keeper connects at once.
                state: State::Backoff(Instant::now()),
                deliveries: VecDeque::new(),
                generation: 0,
                backoff: config.reconnect_min,
                failure: None,
            }),
            config,
            pending: Mutex::new(Vec::new()),
            recv_bell: Bell::new().map_err(bell)?,
            keeper_bell: Bell::new().map_err(bell)?,
            reconnects: AtomicU64::new(0),
        });
        let keeper = link.clone();
        let keeper = std::thread::Builder::new()
            .name("shmpool-farm-worker".into())
            .spawn(move || keeper.keep())
            .map_err(|e| Error::Invalid(format!("cannot start the worker thread: {e}")))?;
        Ok(Worker { link, keeper: Some(keeper), inbox, outbox })
    }

    /// The next request, waiting up to `timeout` (`None`: until one comes). `Ok(None)`: none in
    /// time. An error means the worker failed (its error is returned once, then
    /// [`Error::Stopped`]).
    ///
    /// A request whose descriptors cannot be mapped here is answered "409" (the client's library
    /// then sends it again with the bytes inline) and not returned.
    pub fn recv(&self, timeout: Option<Duration>) -> Result<Option<Request>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let Some(Delivery { client, mut body, proven, generation }) = self.link.next(deadline)? else {
                return Ok(None);
            };
            let reply_to = if proven { ReplyTo::take(&mut body) } else { None };
            let (link, outbox) = (self.link.clone(), self.outbox.clone());
            let replier = Replier { client, link, generation, reply_to, outbox };
            match self.decode(body, proven) {
                Ok(parts) => return Ok(Some(Request { parts, replier })),
                Err(reason) => replier.send(mdp::error_body("409", &reason))?,
            }
        }
    }

    /// The parts of a body; descriptors (from a proven session) are mapped in place.
    fn decode(&self, body: Vec<Frame>, proven: bool) -> std::result::Result<Vec<Part>, String> {
        let mut inbox = self.inbox.lock().map_err(|_| "the worker's pool cache is poisoned".to_string())?;
        body.into_iter()
            .map(|f| if proven && f.starts_with(DESC_MAGIC) { inbox.map(&f) } else { Ok(Part::from_frame(f)) })
            .collect()
    }

    /// How many times the worker reconnected to the broker.
    pub fn reconnects(&self) -> u64 {
        self.link.reconnects.load(Ordering::Relaxed)
    }
}

impl<'a> IntoIterator for &'a Worker {
    type Item = Result<Request>;
    type IntoIter = Requests<'a>;
    fn into_iter(self) -> Requests<'a> {
        Requests(self)
    }
}

/// The requests of a worker, as they come (blocking).
pub struct Requests<'a>(&'a Worker);

impl Iterator for Requests<'_> {
    type Item = Result<Request>;
    fn next(&mut self) -> Option<Result<Request>> {
        match self.0.recv(None) {
            Ok(Some(request)) => Some(Ok(request)),
            Ok(None) | Err(Error::Stopped) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        {
            let mut session = self.link.session();
            if let State::Connected(c) = &session.state {
                let _ = c.broker.send(mdp::from_worker(Command::Disconnect, &[]));
            }
            session.stop();
        }
        self.link.keeper_bell.ring();
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}

impl Request {
    /// The request's parts.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Takes the parts out of the request, to keep them beyond the reply: arrays read in place
    /// in a client's pool are copied (the client reuses its slots once answered).
    pub fn take_parts(&mut self) -> Vec<Part> {
        std::mem::take(&mut self.parts).into_iter().map(Part::detach).collect()
    }

    /// Sends the reply to the client that asked.
    pub fn reply(self, parts: Vec<Part>) -> Result<()> {
        self.replier.reply(parts)
    }

    /// An array for the reply, to be written in place ([`Part::data_mut`]) and sent with no copy
    /// (see [`Replier::array`]).
    pub fn array(&self, dtype: DType, shape: &[u64]) -> Part {
        self.replier.array(dtype, shape)
    }

    /// The parts as they are (arrays in a client's pool still read in place: valid until the
    /// reply is sent, after which the client reuses the slot) and the means to reply. For
    /// bindings that hand the parts out without a lifetime.
    pub fn split(self) -> (Vec<Part>, Replier) {
        (self.parts, self.replier)
    }
}

impl Replier {
    /// Sends the reply to the client that asked.
    pub fn reply(self, parts: Vec<Part>) -> Result<()> {
        self.stage(parts).send()
    }

    /// An array of `dtype` and `shape` for the reply, to be written in place
    /// ([`Part::data_mut`]) and sent with no copy: in a free slot of the client's reply pool if it
    /// is co-located and offered one (its contents are unspecified until written: a slot is reused
    /// as it is), else zeros laid out as their frame ([`Part::zeros`]). Panics as [`Part::array`].
    pub fn array(&self, dtype: DType, shape: &[u64]) -> Part {
        let slot = match (&self.reply_to, self.outbox.lock()) {
            (Some(to), Ok(mut outbox)) => outbox.alloc(to, dtype, shape),
            _ => None,
        };
        slot.map_or_else(|| Part::zeros(dtype, shape), Part::Array)
    }

    /// Encodes the reply: array parts go into the co-located client's reply pool (published
    /// there, named by descriptors) when it offered one, else inline. The client sees nothing
    /// before [`StagedReply::send`].
    pub fn stage(self, parts: Vec<Part>) -> StagedReply {
        let body = match (&self.reply_to, self.outbox.lock()) {
            (Some(to), Ok(mut outbox)) => parts
                .into_iter()
                .enumerate()
                .map(|(i, part)| match part {
                    Part::Array(array) => outbox.place(to, i, array),
                    bytes => bytes.to_frame(),
                })
                .collect(),
            _ => parts.iter().map(Part::to_frame).collect(),
        };
        StagedReply { replier: self, body }
    }

    /// Sends on the broker socket at once if it is free (the usual case: the user's thread is
    /// not in `recv`); else leaves the reply to the thread holding it, and wakes that thread.
    fn send(self, body: Vec<Frame>) -> Result<()> {
        let reply = Reply { generation: self.generation, client: self.client, body };
        match self.link.session.try_lock() {
            Ok(session) => session.send_reply(reply),
            Err(TryLockError::Poisoned(e)) => e.into_inner().send_reply(reply),
            Err(TryLockError::WouldBlock) => {
                self.link.pending.lock().unwrap_or_else(|e| e.into_inner()).push(reply);
                // A thread polling in `recv` sends it; if the holder is about to let go
                // without looking, the keeper takes the lock and sends it.
                self.link.recv_bell.ring();
                self.link.keeper_bell.ring();
                Ok(())
            }
        }
    }
}

impl StagedReply {
    /// Sends the reply to the client that asked: into its reply pool as an envelope when it
    /// offered one (the REPLY then only confirms it), else in the REPLY.
    pub fn send(self) -> Result<()> {
        let StagedReply { replier, body } = self;
        let body = match (&replier.reply_to, replier.outbox.lock()) {
            (Some(to), Ok(mut outbox)) => outbox.deliver(to, &body).unwrap_or(body),
            _ => body,
        };
        replier.send(body)
    }
}

/// A request received from the broker, not yet handed to the user: the client's address, the
/// body, whether its session proved co-location (only then are descriptor frames descriptors),
/// and that session's number.
struct Delivery {
    client: Vec<u8>,
    body: Vec<Frame>,
    proven: bool,
    generation: u64,
}

/// A reply for the client at `client`, to a request of session `generation`.
struct Reply {
    generation: u64,
    client: Vec<u8>,
    body: Vec<Frame>,
}

/// What the worker's threads share: settings, the session (under its lock), and the means to
/// wake a thread that waits.
struct Link {
    ctx: Context,
    endpoint: String,
    service: String,
    config: WorkerConfig,
    session: Mutex<Session>,
    /// Replies whose sender found the session lock taken; its next holder sends them.
    pending: Mutex<Vec<Reply>>,
    /// Wakes a thread waiting in `recv` (a new session, a pending reply, a failure).
    recv_bell: Bell,
    /// Wakes the keeper (the worker dropped, a session ended, a pending reply).
    keeper_bell: Bell,
    reconnects: AtomicU64,
}

/// The broker session, under the link's lock.
struct Session {
    state: State,
    /// Requests received, in order, for the next calls of `recv`.
    deliveries: VecDeque<Delivery>,
    /// Number of the current connection (replies of an older one are dropped).
    generation: u64,
    /// The delay before the next reconnection after a session in which the broker was silent.
    backoff: Duration,
    /// Why the keeper stopped, for the next `recv`.
    failure: Option<Error>,
}

enum State {
    /// Registered with the broker (or about to be: READY is sent).
    Connected(Connection),
    /// No connection: the keeper connects at this instant.
    Backoff(Instant),
    /// The keeper is connecting (outside the lock: the proof waits for the broker).
    Connecting,
    /// The worker was dropped or failed.
    Stopped,
}

/// One connection to the broker.
struct Connection {
    broker: Socket,
    proven: bool,
    /// Where the broker hands requests over, if it took the offer ([`crate::handoff`]).
    requests: Option<RequestPool>,
    /// When the broker will be deemed gone unless heard from.
    expiry: Instant,
    next_beat: Instant,
    /// Whether the broker said anything on this connection (then the backoff starts over).
    heard: bool,
}

impl Link {
    /// The session, even if a thread panicked holding it (its state stays consistent: every
    /// change is a single assignment).
    fn session(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn silence(&self) -> Duration {
        self.config.heartbeat * self.config.liveness
    }

    /// The next request, polling the broker socket in this (the user's) thread until `deadline`.
    fn next(&self, deadline: Option<Instant>) -> Result<Option<Delivery>> {
        loop {
            let mut session = self.session();
            session.pump(self)?;
            if let Some(delivery) = session.deliveries.pop_front() {
                return Ok(Some(delivery));
            }
            let now = Instant::now();
            let left = match deadline {
                Some(d) if d <= now => return Ok(None),
                Some(d) => d - now,
                None => Duration::MAX,
            };
            match &session.state {
                // Holding the lock: no other thread uses the socket meanwhile. Woken early by a
                // reply another thread left pending.
                State::Connected(c) => {
                    let wait = left.min(c.next_beat.min(c.expiry).saturating_duration_since(now));
                    let mut fds = vec![self.recv_bell.fd()];
                    fds.extend(c.requests.as_ref().and_then(RequestPool::ready_fd));
                    let readable = poll(&[&c.broker], &fds, wait)?;
                    if readable[1] {
                        self.recv_bell.clear();
                    }
                }
                State::Stopped => return Err(session.failure.take().unwrap_or(Error::Stopped)),
                // Without the lock, until the keeper has a new session.
                State::Backoff(_) | State::Connecting => {
                    drop(session);
                    self.recv_bell.wait(left.min(self.config.heartbeat))?;
                }
            }
        }
    }

    /// The keeper thread: heartbeats, expiry and reconnection while no user thread waits in
    /// `recv` (when one does, it does the same, and the keeper waits for the lock).
    fn keep(&self) {
        loop {
            let mut session = self.session();
            if let Err(e) = session.pump(self) {
                session.failure = Some(e);
                self.recv_bell.ring();
                return;
            }
            let now = Instant::now();
            let wake = match &session.state {
                State::Stopped => return,
                State::Connected(c) => c.next_beat.min(c.expiry),
                State::Backoff(at) if *at > now => *at,
                State::Backoff(_) | State::Connecting => {
                    session.state = State::Connecting;
                    drop(session);
                    let connection = self.connect();
                    self.session().install(self, connection);
                    continue;
                }
            };
            drop(session);
            // An error here (poll failing) only makes the next beat early.
            let _ = self.keeper_bell.wait(wake.saturating_duration_since(now));
        }
    }

    /// A new session: connect, the co-location proof, READY. `None`: the broker did not answer.
    fn connect(&self) -> Result<Option<Connection>> {
        let broker = self.ctx.dealer()?;
        broker.connect(&self.endpoint)?;
        let silence = self.silence();
        let proven = match self.config.shm.enabled {
            true => colocation::prove(&broker, &self.config.shm.dir(), silence),
            false => Proof::Refused,
        };
        if proven == Proof::NoAnswer {
            return Ok(None);
        }
        let proven = proven == Proof::Proven;
        let requests = proven.then(|| self.offer_request_pool(&broker)).flatten();
        broker.send(mdp::from_worker(Command::Ready, &[self.service.as_bytes()]))?;
        let now = Instant::now();
        let next_beat = now + self.config.heartbeat;
        Ok(Some(Connection { broker, proven, requests, expiry: now + silence, next_beat, heard: false }))
    }

    /// A request pool for this connection, if the broker takes it (it does for a worker of its
    /// own directory).
    fn offer_request_pool(&self, broker: &Socket) -> Option<RequestPool> {
        let pool = RequestPool::create(&self.config.shm)?;
        let deadline = Instant::now() + self.silence();
        let answer = colocation::ask(broker, &[handoff::OFFER, pool.name().as_bytes()], deadline)?;
        (answer.len() == 1 && &answer[0][..] == b"200").then_some(pool)
    }
}

impl Session {
    /// Without waiting: sends replies left pending, takes what the broker sent, heartbeats when
    /// due, and ends the connection if the broker said DISCONNECT or was silent too long. An
    /// error stops the worker.
    fn pump(&mut self, link: &Link) -> Result<()> {
        let result = self.exchange(link);
        if result.is_err() {
            self.stop();
        }
        result
    }

    fn exchange(&mut self, link: &Link) -> Result<()> {
        let State::Connected(c) = &mut self.state else { return Ok(()) };
        for reply in std::mem::take(&mut *link.pending.lock().unwrap_or_else(|e| e.into_inner())) {
            if reply.generation == self.generation {
                c.broker.send(mdp::worker_reply(&reply.client, reply.body))?;
            }
        }
        let mut disconnect = false;
        while let Some(mut frames) = c.broker.try_recv()? {
            c.expiry = Instant::now() + link.silence();
            c.heard = true;
            match mdp::decode_worker(&frames, &link.config.limits) {
                Ok(ToWorker::Request { client, body }) => {
                    let client = client.to_vec();
                    let body = frames.drain(body).collect();
                    let (proven, generation) = (c.proven, self.generation);
                    self.deliveries.push_back(Delivery { client, body, proven, generation });
                }
                Ok(ToWorker::Heartbeat) | Err(_) => {}
                Ok(ToWorker::Disconnect) => {
                    disconnect = true;
                    break;
                }
            }
        }
        if let Some(requests) = &mut c.requests {
            while let Some((client, body)) = requests.take(&link.config.limits) {
                self.deliveries.push_back(Delivery { client, body, proven: true, generation: self.generation });
            }
        }
        let now = Instant::now();
        if now >= c.next_beat {
            c.broker.send(mdp::from_worker(Command::Heartbeat, &[]))?;
            c.next_beat = now + link.config.heartbeat;
        }
        if disconnect || now >= c.expiry {
            let heard = c.heard;
            self.end(link, heard);
        }
        Ok(())
    }

    /// Sends a reply now if its session is the current one (else drops it).
    fn send_reply(&self, reply: Reply) -> Result<()> {
        match &self.state {
            State::Connected(c) if reply.generation == self.generation => {
                Ok(c.broker.send(mdp::worker_reply(&reply.client, reply.body))?)
            }
            _ => Ok(()),
        }
    }

    /// Takes the outcome of the keeper's [`Link::connect`].
    fn install(&mut self, link: &Link, connection: Result<Option<Connection>>) {
        match connection {
            // Dropped meanwhile: leave the broker at once.
            Ok(Some(c)) if matches!(self.state, State::Stopped) => {
                let _ = c.broker.send(mdp::from_worker(Command::Disconnect, &[]));
            }
            _ if matches!(self.state, State::Stopped) => {}
            Ok(Some(c)) => {
                self.generation += 1;
                self.state = State::Connected(c);
                link.recv_bell.ring();
            }
            Ok(None) => self.end(link, false),
            Err(e) => {
                self.stop();
                self.failure = Some(e);
                link.recv_bell.ring();
            }
        }
    }

    /// Ends the connection: the keeper reconnects after the backoff, which starts over if the
    /// broker had answered and doubles (up to its maximum) if not. Requests not yet handed out
    /// are dropped with it (their clients retry).
    fn end(&mut self, link: &Link, heard: bool) {
        link.reconnects.fetch_add(1, Ordering::Relaxed);
        if heard {
            self.backoff = link.config.reconnect_min;
        }
        self.state = State::Backoff(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(link.config.reconnect_max);
        self.deliveries.clear();
        link.keeper_bell.ring();
    }

    fn stop(&mut self) {
        self.state = State::Stopped;
        self.deliveries.clear();
    }
}

/// Wakes a thread waiting in [`poll`]: the read end of a socket pair is readable once rung, until
/// cleared (so a ring before the wait is not lost).
struct Bell {
    read: UnixStream,
    write: UnixStream,
}

impl Bell {
    fn new() -> std::io::Result<Bell> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        Ok(Bell { read, write })
    }

    fn ring(&self) {
        // A full buffer (WouldBlock) means it is rung already.
        let _ = (&self.write).write(&[1]);
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.read.as_fd()
    }

    fn clear(&self) {
        let mut buf = [0; 64];
        while matches!((&self.read).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// Waits up to `timeout` for a ring, and clears it.
    fn wait(&self, timeout: Duration) -> Result<()> {
        if poll(&[], &[self.fd()], timeout)?[0] {
            self.clear();
        }
        Ok(())
    }
}
