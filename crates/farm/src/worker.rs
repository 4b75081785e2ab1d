//! A Majordomo worker: registers a service with the broker and serves its requests.
//!
//! A background thread owns the broker connection: it heartbeats even while the user's code is
//! busy with a request, notices a silent broker after `liveness` missed beats, and reconnects with
//! exponential backoff (1 s doubling to 32 s by default).
//!
//! ```no_run
//! use shmpool_farm::{Worker, WorkerConfig};
//! let worker = Worker::connect("tcp://127.0.0.1:5555", "echo", WorkerConfig::default())?;
//! for request in &worker {
//!     let request = request?;
//!     let parts = request.parts().iter().map(|p| shmpool_farm::Part::bytes(p.data())).collect::<Vec<_>>();
//!     request.reply(&parts)?;
//! }
//! # Ok::<(), shmpool_farm::Error>(())
//! ```

use crate::colocation::{self, Proof};
use crate::mdp::{self, Command, Limits, ToWorker};
use crate::part::Part;
use crate::reply::{ReplyOutbox, ReplyTo};
use crate::shm::{Inbox, ShmConfig, DESC_MAGIC};
use crate::transport::{poll, Context, Frame, Socket};
use crate::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
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

/// Control messages from the user's side to the connection thread (over `inproc://`).
const REPLY: &[u8] = b"R";
const STOP: &[u8] = b"S";

/// A request delivered by the connection thread: the client's address, the body, and whether
/// this session proved co-location (only then are descriptor frames descriptors).
type Delivery = (Vec<u8>, Vec<Frame>, bool);

/// A worker serving one service. Iterate over it (or call [`Worker::recv`]) for requests.
pub struct Worker {
    requests: Receiver<Delivery>,
    control: Arc<Mutex<Socket>>,
    thread: Option<JoinHandle<Result<()>>>,
    reconnects: Arc<AtomicU64>,
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
    control: Arc<Mutex<Socket>>,
    /// Where a co-located client takes reply arrays, if it offered (and this session is proven).
    reply_to: Option<ReplyTo>,
    outbox: Arc<Mutex<ReplyOutbox>>,
}

/// A reply whose arrays are already in the client's reply pool; [`StagedReply::send`] sends it.
pub struct StagedReply {
    replier: Replier,
    body: Vec<Frame>,
}

static NEXT_CONTROL: AtomicU64 = AtomicU64::new(0);

impl Worker {
    /// Connects to the broker at `endpoint` and registers `service`.
    pub fn connect(endpoint: &str, service: &str, config: WorkerConfig) -> Result<Worker> {
        if service.is_empty() || service.len() > mdp::MAX_SERVICE {
            return Err(Error::Invalid(format!("service name {service:?}: 1 to {} bytes", mdp::MAX_SERVICE)));
        }
        let ctx = Context::new();
        let address = format!(
            "inproc://shmpool-farm-worker-{}-{}",
            std::process::id(),
            NEXT_CONTROL.fetch_add(1, Ordering::Relaxed)
        );
        let inner = ctx.pair()?;
        inner.bind(&address)?;
        let outer = ctx.pair()?;
        outer.connect(&address)?;
        let (tx, rx) = mpsc::channel();
        let reconnects = Arc::new(AtomicU64::new(0));
        let inbox = Mutex::new(Inbox::new(config.shm.dir()));
        let outbox = Arc::new(Mutex::new(ReplyOutbox::new(config.shm.clone())));
        let link = Link {
            ctx,
            endpoint: endpoint.to_string(),
            service: service.to_string(),
            config,
            control: inner,
            requests: tx,
            reconnects: reconnects.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("shmpool-farm-worker".into())
            .spawn(move || link.run())
            .map_err(|e| Error::Invalid(format!("cannot start the worker thread: {e}")))?;
        let control = Arc::new(Mutex::new(outer));
        Ok(Worker { requests: rx, control, thread: Some(thread), reconnects, inbox, outbox })
    }

    /// The next request, waiting up to `timeout` (`None`: until one comes). `Ok(None)`: none in
    /// time. An error means the connection thread ended (its error is returned).
    ///
    /// A request whose descriptors cannot be mapped here is answered "409" (the client's library
    /// then sends it again with the bytes inline) and not returned.
    pub fn recv(&self, timeout: Option<Duration>) -> Result<Option<Request>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let delivery = match deadline {
                Some(d) => match self.requests.recv_timeout(d.saturating_duration_since(Instant::now())) {
                    Ok(d) => d,
                    Err(RecvTimeoutError::Timeout) => return Ok(None),
                    Err(RecvTimeoutError::Disconnected) => return Err(Error::Stopped),
                },
                None => self.requests.recv().map_err(|_| Error::Stopped)?,
            };
            let (client, mut body, proven) = delivery;
            let reply_to = if proven { ReplyTo::take(&mut body) } else { None };
            let (control, outbox) = (self.control.clone(), self.outbox.clone());
            let replier = Replier { client, control, reply_to, outbox };
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
        self.reconnects.load(Ordering::Relaxed)
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
        if let Ok(control) = self.control.lock() {
            let _ = control.send(vec![STOP.into()]);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
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
    pub fn reply(self, parts: &[Part]) -> Result<()> {
        self.replier.reply(parts)
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
    pub fn reply(self, parts: &[Part]) -> Result<()> {
        self.stage(parts).send()
    }

    /// Encodes the reply: array parts go into the co-located client's reply pool (published
    /// there, named by descriptors) when it offered one, else inline. Nothing is sent yet.
    pub fn stage(self, parts: &[Part]) -> StagedReply {
        let body = match (&self.reply_to, self.outbox.lock()) {
            (Some(to), Ok(mut outbox)) => parts
                .iter()
                .enumerate()
                .map(|(i, p)| match p.as_array().and_then(|a| outbox.place(to, i, a)) {
                    Some(descriptor) => Frame::from(descriptor),
                    None => p.to_frame(),
                })
                .collect(),
            _ => parts.iter().map(Part::to_frame).collect(),
        };
        StagedReply { replier: self, body }
    }

    fn send(self, body: Vec<Frame>) -> Result<()> {
        let mut frames = vec![Frame::from(REPLY), Frame::from(&self.client[..])];
        frames.extend(body);
        let control = self.control.lock().map_err(|_| Error::Stopped)?;
        control.send(frames)?;
        Ok(())
    }
}

impl StagedReply {
    /// Sends the reply to the client that asked.
    pub fn send(self) -> Result<()> {
        self.replier.send(self.body)
    }
}

/// The connection thread's state.
struct Link {
    ctx: Context,
    endpoint: String,
    service: String,
    config: WorkerConfig,
    control: Socket,
    requests: Sender<Delivery>,
    reconnects: Arc<AtomicU64>,
}

/// Why a session with the broker ended.
enum End {
    Stop,
    Reconnect,
}

impl Link {
    fn run(self) -> Result<()> {
        let mut backoff = self.config.reconnect_min;
        loop {
            let (end, heard) = self.session()?;
            if let End::Stop = end {
                return Ok(());
            }
            self.reconnects.fetch_add(1, Ordering::Relaxed);
            // A session in which the broker answered resets the backoff.
            if heard {
                backoff = self.config.reconnect_min;
            }
            if self.wait_for_stop(backoff)? {
                return Ok(());
            }
            backoff = (backoff * 2).min(self.config.reconnect_max);
        }
    }

    /// One connection: READY, then requests, replies and heartbeats until the broker goes silent,
    /// says DISCONNECT, or the user stops. Also says whether the broker was heard at all.
    fn session(&self) -> Result<(End, bool)> {
        let broker = self.ctx.dealer()?;
        broker.connect(&self.endpoint)?;
        let silence = self.config.heartbeat * self.config.liveness;
        let proven = match self.config.shm.enabled {
            true => colocation::prove(&broker, &self.config.shm.dir(), silence),
            false => Proof::Refused,
        };
        if proven == Proof::NoAnswer {
            return Ok((End::Reconnect, false));
        }
        let proven = proven == Proof::Proven;
        broker.send(mdp::from_worker(Command::Ready, &[self.service.as_bytes()]))?;
        let mut expiry = Instant::now() + silence;
        let mut next_beat = Instant::now() + self.config.heartbeat;
        let mut heard = false;
        loop {
            let wait = next_beat.min(expiry).saturating_duration_since(Instant::now());
            let readable = poll(&[&broker, &self.control], wait)?;
            if readable[1] {
                if let Some(end) = self.handle_user(&broker)? {
                    return Ok((end, heard));
                }
            }
            if readable[0] {
                while let Some(frames) = broker.try_recv()? {
                    expiry = Instant::now() + silence;
                    heard = true;
                    if let Some(end) = self.handle_broker(frames, proven)? {
                        return Ok((end, heard));
                    }
                }
            }
            let now = Instant::now();
            if now >= next_beat {
                broker.send(mdp::from_worker(Command::Heartbeat, &[]))?;
                next_beat = now + self.config.heartbeat;
            }
            if now >= expiry {
                return Ok((End::Reconnect, heard));
            }
        }
    }

    fn handle_user(&self, broker: &Socket) -> Result<Option<End>> {
        while let Some(mut frames) = self.control.try_recv()? {
            match frames.first().map(|f| &f[..]) {
                Some(REPLY) if frames.len() >= 2 => {
                    let body = frames.split_off(2);
                    broker.send(mdp::worker_reply(&frames[1], body))?;
                }
                _ => {
                    broker.send(mdp::from_worker(Command::Disconnect, &[]))?;
                    return Ok(Some(End::Stop));
                }
            }
        }
        Ok(None)
    }

    fn handle_broker(&self, mut frames: Vec<Frame>, proven: bool) -> Result<Option<End>> {
        match mdp::decode_worker(&frames, &self.config.limits) {
            Ok(ToWorker::Request { client, body }) => {
                let client = client.to_vec();
                let body = frames.drain(body).collect();
                // The user's side is gone (Worker dropped): stop.
                if self.requests.send((client, body, proven)).is_err() {
                    return Ok(Some(End::Stop));
                }
                Ok(None)
            }
            Ok(ToWorker::Heartbeat) | Err(_) => Ok(None),
            Ok(ToWorker::Disconnect) => Ok(Some(End::Reconnect)),
        }
    }

    /// Waits `delay`, answering only a stop; true if stopped. Replies meanwhile are dropped: the
    /// broker forgot this worker, and the clients retry.
    fn wait_for_stop(&self, delay: Duration) -> Result<bool> {
        let deadline = Instant::now() + delay;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            if self.control.wait_readable(left)? {
                while let Some(frames) = self.control.try_recv()? {
                    if frames.first().map(|f| &f[..]) != Some(REPLY) {
                        return Ok(true);
                    }
                }
            }
        }
    }
}
