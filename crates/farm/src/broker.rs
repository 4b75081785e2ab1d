//! The Majordomo broker: one ROUTER socket for clients and workers, per-service queues of idle
//! workers in least-recently-used order, heartbeats, bounded waiting queues, and the MMI services.
//!
//! ```no_run
//! use shmpool_farm::{Broker, BrokerConfig};
//! use std::sync::atomic::AtomicBool;
//! let broker = Broker::bind(&["tcp://127.0.0.1:5555", "ipc:///tmp/farm.ipc"], BrokerConfig::default())?;
//! let stop = AtomicBool::new(false); // set it (e.g. from a signal handler) to stop
//! broker.run(&stop)?;
//! # Ok::<(), shmpool_farm::Error>(())
//! ```

use crate::colocation::{self, Site, Verifier};
use crate::handoff::{self, RequestPools};
use crate::mdp::{self, Command, Inbound, Limits};
use crate::reply::REPLY_TO_MAGIC;
use crate::shm::{self, Inbox, DESC_MAGIC};
use crate::transport::{Context, Frame, Socket};
use crate::Result;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The broker's settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Interval of heartbeats to workers (and expected from them).
    pub heartbeat: Duration,
    /// Missed heartbeats after which a worker is dead.
    pub liveness: u32,
    /// How long a request waits for a worker of its service before an error reply (503).
    pub queue_deadline: Duration,
    /// Most requests waiting in all queues; beyond, new ones get an error reply (507).
    pub max_queued: usize,
    /// Most bytes of requests waiting in all queues.
    pub max_queued_bytes: usize,
    /// Most registered workers; more get a DISCONNECT.
    pub max_workers: usize,
    /// Size limits of one message; bigger ones are dropped.
    pub limits: Limits,
    /// A request body up to this size is kept while a worker serves it, so that it is re-queued
    /// if the worker dies; larger ones rely on the client's retry (no copy of big payloads).
    pub requeue_limit: usize,
    /// How many workers may be given one request (the first plus re-queues).
    pub max_attempts: u32,
    /// Directory of the co-location challenges and of the pools the broker may have to read
    /// (`None`: `$SHMPOOL_DIR`, else `/dev/shm`): peers proven to see it exchange descriptors,
    /// and so do peers that proved to share another directory (a site, [`crate::colocation`]).
    pub shm_dir: Option<std::path::PathBuf>,
    /// Give a request holding descriptors to an idle worker of the sender's site if there is
    /// one, even if another idle worker waited longer.
    pub prefer_colocated: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            heartbeat: Duration::from_secs(1),
            liveness: 3,
            queue_deadline: Duration::from_secs(10),
            max_queued: 10_000,
            max_queued_bytes: 1 << 30,
            max_workers: 10_000,
            limits: Limits::default(),
            requeue_limit: 64 << 10,
            max_attempts: 2,
            shm_dir: None,
            prefer_colocated: true,
        }
    }
}

/// A request waiting in a service's queue.
struct Request {
    client: Vec<u8>,
    body: Vec<Frame>,
    bytes: usize,
    deadline: Instant,
    attempts: u32,
    /// The body holds descriptors.
    shared: bool,
}

/// What the broker keeps of a request a worker serves.
struct InFlight {
    client: Vec<u8>,
    /// The body, if small enough to re-queue (see [`BrokerConfig::requeue_limit`]).
    copy: Option<Vec<Vec<u8>>>,
    attempts: u32,
    shared: bool,
}

struct WorkerState {
    service: Vec<u8>,
    expiry: Instant,
    in_flight: Option<InFlight>,
    served: u64,
}

#[derive(Default)]
struct Service {
    /// Idle workers, least recently used first.
    idle: VecDeque<Vec<u8>>,
    queue: VecDeque<Request>,
    workers: usize,
}

/// Counters reported by `mmi.status`.
#[derive(Default, Debug, Clone)]
struct Counters {
    requests: u64,
    replies: u64,
    refused: u64,
    requeued: u64,
    expired_workers: u64,
    descriptors_forwarded: u64,
    /// Of those, between peers of a host other than the broker's.
    descriptors_forwarded_off_host: u64,
    descriptors_inlined: u64,
    /// Requests whose descriptors no idle worker could map, sent back to be resent as bytes.
    descriptors_refused: u64,
    /// Requests handed to a co-located worker through its request pool, not as REQUESTs.
    pooled_requests: u64,
    malformed: BTreeMap<&'static str, u64>,
}

/// A bound broker; [`Broker::run`] serves until the stop flag is set.
pub struct Broker {
    socket: Socket,
    endpoints: Vec<String>,
    config: BrokerConfig,
}

impl Broker {
    /// Binds one ROUTER socket to every endpoint (`tcp://…`, `ipc://…`; `tcp://host:*` picks a port).
    pub fn bind<S: AsRef<str>>(endpoints: &[S], config: BrokerConfig) -> Result<Broker> {
        if endpoints.is_empty() {
            return Err(crate::Error::Invalid("the broker needs at least one endpoint".into()));
        }
        let socket = Context::new().router()?;
        socket.set_max_frame_size(config.limits.max_bytes)?;
        let mut bound = Vec::new();
        for e in endpoints {
            socket.bind(e.as_ref())?;
            bound.push(socket.last_endpoint()?);
        }
        Ok(Broker { socket, endpoints: bound, config })
    }

    /// The endpoints bound, with wildcards resolved.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Serves clients and workers until `stop` is set (checked at least every 100 ms); then
    /// tells every worker DISCONNECT and returns.
    pub fn run(self, stop: &AtomicBool) -> Result<()> {
        let mut state = State::new(self.config);
        let mut next_tick = Instant::now() + state.config.heartbeat;
        while !stop.load(Ordering::Relaxed) {
            let wait = next_tick.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
            if self.socket.wait_readable(wait)? {
                // Bounded batch, so heartbeats go out on time under any load.
                for _ in 0..1000 {
                    let Some(frames) = self.socket.try_recv()? else { break };
                    state.handle(frames, &self.socket)?;
                }
            }
            if Instant::now() >= next_tick {
                state.tick(&self.socket)?;
                next_tick = Instant::now() + state.config.heartbeat;
            }
        }
        for id in state.workers.keys() {
            self.socket.send(mdp::to_worker(id, Command::Disconnect))?;
        }
        Ok(())
    }
}

struct State {
    config: BrokerConfig,
    services: HashMap<Vec<u8>, Service>,
    workers: HashMap<Vec<u8>, WorkerState>,
    queued: usize,
    queued_bytes: usize,
    counters: Counters,
    logged: HashSet<&'static str>,
    verifier: Verifier,
    /// The pools of co-located senders, read only to inline their parts for other peers.
    inbox: Inbox,
    /// The request pools offered by co-located workers ([`crate::handoff`]).
    request_pools: RequestPools,
    /// (service, client) pairs with requests being served, and how many.
    clients_served: HashMap<(Vec<u8>, Vec<u8>), u32>,
}

impl State {
    fn new(config: BrokerConfig) -> State {
        let dir = shm::resolve_dir(config.shm_dir.clone());
        State {
            verifier: Verifier::new(dir.clone()),
            inbox: Inbox::new(dir.clone()),
            request_pools: RequestPools::new(dir, config.max_workers),
            clients_served: HashMap::new(),
            config,
            services: HashMap::new(),
            workers: HashMap::new(),
            queued: 0,
            queued_bytes: 0,
            counters: Counters::default(),
            logged: HashSet::new(),
        }
    }

    fn expiry(&self) -> Instant {
        Instant::now() + self.config.heartbeat * self.config.liveness
    }

    fn handle(&mut self, mut frames: Vec<Frame>, socket: &Socket) -> Result<()> {
        let inbound = match mdp::decode_broker(&frames, &self.config.limits) {
            Ok(inbound) => inbound,
            Err(e) => {
                self.count_bad(e.kind.name());
                if let Some(worker) = e.worker {
                    let worker = worker.to_vec();
                    socket.send(mdp::to_worker(&worker, Command::Disconnect))?;
                    self.remove_worker(&worker, socket)?;
                }
                return Ok(());
            }
        };
        match inbound {
            Inbound::Request { sender, service, body } => {
                let (client, service) = (sender.to_vec(), service.to_vec());
                let body: Vec<Frame> = frames.drain(body).collect();
                self.counters.requests += 1;
                if service == colocation::SERVICE {
                    let answer = match &body[..] {
                        // Only a peer of the broker's directory can offer a pool the broker opens.
                        [offer, name] if &offer[..] == handoff::OFFER => match self.verifier.site(&client) {
                            Some(Site::Broker) => vec![self.request_pools.offer(&client, name)],
                            _ => vec![Frame::from("403")],
                        },
                        _ => self.verifier.answer(&client, &body),
                    };
                    socket.send(mdp::client_reply(&client, &service, answer))?;
                } else if service.starts_with(mdp::MMI_PREFIX) {
                    let answer = self.mmi(&service, &body);
                    socket.send(mdp::client_reply(&client, &service, answer))?;
                } else {
                    self.enqueue(client, service, body, socket)?;
                }
            }
            Inbound::Ready { sender, service } => {
                let (id, service) = (sender.to_vec(), service.to_vec());
                if self.workers.contains_key(&id) || self.workers.len() >= self.config.max_workers {
                    // A second READY is a protocol error; a full table refuses newcomers.
                    socket.send(mdp::to_worker(&id, Command::Disconnect))?;
                    self.remove_worker(&id, socket)?;
                } else {
                    let expiry = self.expiry();
                    self.workers.insert(
                        id.clone(),
                        WorkerState { service: service.clone(), expiry, in_flight: None, served: 0 },
                    );
                    let s = self.services.entry(service.clone()).or_default();
                    s.workers += 1;
                    s.idle.push_back(id);
                    self.dispatch(&service, socket)?;
                }
            }
            Inbound::Reply { sender, client, body } => {
                let (id, client) = (sender.to_vec(), client.to_vec());
                let body: Vec<Frame> = frames.drain(body).collect();
                let expiry = self.expiry();
                let Some(worker) = self.workers.get_mut(&id) else {
                    return socket.send(mdp::to_worker(&id, Command::Disconnect)).map_err(Into::into);
                };
                worker.expiry = expiry;
                // A reply for another client than the one served (or when idle) is dropped.
                let served = worker.in_flight.take();
                let expected = served.as_ref().is_some_and(|f| f.client == client);
                worker.served += u64::from(expected);
                let service = worker.service.clone();
                if let Some(served) = served {
                    self.served_end(&service, served.client);
                }
                if expected {
                    self.counters.replies += 1;
                    if shm::has_descriptors(&body) && self.verifier.site(&id).is_none() {
                        self.count_bad("foreign-descriptor");
                    } else {
                        let body = self
                            .convey(body, &id, &client)
                            .unwrap_or_else(|(code, reason)| mdp::error_body(code, &reason));
                        socket.send(mdp::client_reply(&client, &service, body))?;
                    }
                }
                if let Some(s) = self.services.get_mut(&service) {
                    if !s.idle.contains(&id) {
                        s.idle.push_back(id);
                    }
                }
                self.dispatch(&service, socket)?;
            }
            Inbound::Heartbeat { sender } => {
                let expiry = self.expiry();
                match self.workers.get_mut(sender) {
                    Some(worker) => worker.expiry = expiry,
                    None => socket.send(mdp::to_worker(sender, Command::Disconnect))?,
                }
            }
            Inbound::Disconnect { sender } => {
                let id = sender.to_vec();
                self.remove_worker(&id, socket)?;
            }
        }
        Ok(())
    }

    /// Counts (and logs the first of each kind) a message dropped as malformed.
    fn count_bad(&mut self, kind: &'static str) {
        *self.counters.malformed.entry(kind).or_default() += 1;
        if self.logged.insert(kind) {
            eprintln!("shmpool broker: dropped a malformed message ({kind}); further ones are only counted");
        }
    }

    /// Makes `body` from peer `from` fit for peer `to`: descriptors go as they are to a peer of
    /// the same site (no copy of the payload) and are replaced by the bytes they name for any
    /// other (the one copy of a hop off this host), which only the broker's own site allows: a
    /// sender elsewhere is answered "409" (its library resends the bytes).
    /// A reply-to frame goes only to a peer of the same site too: any other gets the request
    /// without it.
    fn convey(
        &mut self,
        body: Vec<Frame>,
        from: &[u8],
        to: &[u8],
    ) -> std::result::Result<Vec<Frame>, (&'static str, String)> {
        if !shm::has_descriptors(&body) {
            return Ok(body);
        }
        let descriptors = body.iter().filter(|f| f.starts_with(DESC_MAGIC)).count() as u64;
        let off_host = self.verifier.site(from) != Some(&Site::Broker);
        if self.verifier.same_site(from, to) {
            self.counters.descriptors_forwarded += descriptors;
            if off_host {
                self.counters.descriptors_forwarded_off_host += descriptors;
            }
            return Ok(body);
        }
        if off_host && descriptors > 0 {
            self.counters.descriptors_refused += 1;
            return Err(("409", "no idle worker shares the sender's host: send the bytes".into()));
        }
        self.counters.descriptors_inlined += descriptors;
        body.into_iter()
            .filter(|f| !f.starts_with(REPLY_TO_MAGIC))
            .map(|f| if f.starts_with(DESC_MAGIC) { self.inbox.inline(&f) } else { Ok(f) })
            .collect::<std::result::Result<_, _>>()
            .map_err(|reason| ("502", reason))
    }

    /// Queues a request (bounded) and dispatches its service.
    fn enqueue(&mut self, client: Vec<u8>, service: Vec<u8>, body: Vec<Frame>, socket: &Socket) -> Result<()> {
        let shared = shm::has_descriptors(&body);
        if shared && self.verifier.site(&client).is_none() {
            self.count_bad("foreign-descriptor");
            let reason = "descriptors from a peer that did not prove which host it is on";
            return socket
                .send(mdp::client_reply(&client, &service, mdp::error_body("403", reason)))
                .map_err(Into::into);
        }
        let bytes = body.iter().map(|f| f.len()).sum::<usize>();
        if self.queued >= self.config.max_queued
            || self.queued_bytes.saturating_add(bytes) > self.config.max_queued_bytes
        {
            self.counters.refused += 1;
            let reason =
                format!("the broker's queues are full ({} requests, {} bytes)", self.queued, self.queued_bytes);
            return socket
                .send(mdp::client_reply(&client, &service, mdp::error_body("507", &reason)))
                .map_err(Into::into);
        }
        let deadline = Instant::now() + self.config.queue_deadline;
        self.queued += 1;
        self.queued_bytes += bytes;
        let request = Request { client, body, bytes, deadline, attempts: 0, shared };
        self.services.entry(service.clone()).or_default().queue.push_back(request);
        self.dispatch(&service, socket)
    }

    /// A request of `client` to `service` was answered, or its worker removed.
    fn served_end(&mut self, service: &[u8], client: Vec<u8>) {
        let key = (service.to_vec(), client);
        if let Some(n) = self.clients_served.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.clients_served.remove(&key);
            }
        }
    }

    /// Gives queued requests of `service` to its idle workers, least recently used first.
    ///
    /// A request holding descriptors goes to an idle worker of its sender's site if there is
    /// one. If there is none while another request of the same client to this service is being
    /// served, it waits: that client took its last reply from its reply pool ([`crate::reply`]),
    /// and the REPLY that frees its worker is on its way; without the shortcut, the client would
    /// have asked only after it, and found that worker idle.
    fn dispatch(&mut self, service: &[u8], socket: &Socket) -> Result<()> {
        loop {
            let Some(s) = self.services.get_mut(service) else { return Ok(()) };
            let (verifier, served) = (&self.verifier, &self.clients_served);
            let colocated = |r: &Request| s.idle.iter().position(|w| verifier.same_site(&r.client, w));
            let prefer = |r: &Request| r.shared && self.config.prefer_colocated;
            let busy = |r: &Request| served.contains_key(&(service.to_vec(), r.client.clone()));
            let waits = |r: &Request| prefer(r) && colocated(r).is_none() && busy(r);
            let Some(at) = s.queue.iter().position(|r| !waits(r)) else { break };
            let pick = s.queue.get(at).filter(|r| prefer(r)).and_then(colocated).unwrap_or(0);
            let Some(id) = s.idle.remove(pick) else { break };
            let Some(request) = s.queue.remove(at) else { break };
            self.queued -= 1;
            self.queued_bytes -= request.bytes;
            let copy =
                (request.bytes <= self.config.requeue_limit).then(|| request.body.iter().map(|f| f.to_vec()).collect());
            let body = match self.convey(request.body, &request.client, &id) {
                Ok(body) => body,
                Err((code, reason)) => {
                    // The worker cannot have the payload: it stays idle, the client is told.
                    if let Some(s) = self.services.get_mut(service) {
                        s.idle.push_front(id);
                    }
                    socket.send(mdp::client_reply(&request.client, service, mdp::error_body(code, &reason)))?;
                    continue;
                }
            };
            let Some(worker) = self.workers.get_mut(&id) else { continue };
            let attempts = request.attempts + 1;
            worker.in_flight =
                Some(InFlight { client: request.client.clone(), copy, attempts, shared: request.shared });
            *self.clients_served.entry((service.to_vec(), request.client.clone())).or_default() += 1;
            if self.request_pools.hand_over(&id, &request.client, &body) {
                self.counters.pooled_requests += 1;
            } else {
                socket.send(mdp::worker_request(&id, &request.client, body))?;
            }
        }
        self.forget_if_unused(service);
        Ok(())
    }

    fn forget_if_unused(&mut self, service: &[u8]) {
        if self.services.get(service).is_some_and(|s| s.workers == 0 && s.queue.is_empty()) {
            self.services.remove(service);
        }
    }

    /// Removes a worker; re-queues (at the front) the request it was serving if it may be.
    fn remove_worker(&mut self, id: &[u8], socket: &Socket) -> Result<()> {
        let Some(worker) = self.workers.remove(id) else { return Ok(()) };
        self.verifier.forget(id);
        self.request_pools.forget(id);
        let service = worker.service;
        if let Some(served) = &worker.in_flight {
            self.served_end(&service, served.client.clone());
        }
        if let Some(s) = self.services.get_mut(&service) {
            s.workers -= 1;
            s.idle.retain(|w| w != id);
            if let Some(InFlight { client, copy: Some(body), attempts, shared }) = worker.in_flight {
                if attempts < self.config.max_attempts {
                    let bytes = body.iter().map(Vec::len).sum();
                    let deadline = Instant::now() + self.config.queue_deadline;
                    let body = body.into_iter().map(Frame::from).collect();
                    s.queue.push_front(Request { client, body, bytes, deadline, attempts, shared });
                    self.queued += 1;
                    self.queued_bytes += bytes;
                    self.counters.requeued += 1;
                }
            }
        }
        self.dispatch(&service, socket)
    }

    /// Every heartbeat interval: drop dead workers, heartbeat the others, refuse expired requests.
    fn tick(&mut self, socket: &Socket) -> Result<()> {
        self.verifier.expire();
        let verifier = &self.verifier;
        self.request_pools.retain(|peer| verifier.site(peer).is_some());
        let now = Instant::now();
        let dead: Vec<Vec<u8>> =
            self.workers.iter().filter(|(_, w)| w.expiry <= now).map(|(id, _)| id.clone()).collect();
        for id in dead {
            self.counters.expired_workers += 1;
            self.remove_worker(&id, socket)?;
        }
        for id in self.workers.keys() {
            socket.send(mdp::to_worker(id, Command::Heartbeat))?;
        }
        let mut expired = Vec::new();
        for (name, s) in &mut self.services {
            while s.queue.front().is_some_and(|r| r.deadline <= now) {
                let Some(r) = s.queue.pop_front() else { break };
                self.queued -= 1;
                self.queued_bytes -= r.bytes;
                expired.push((name.clone(), r.client));
            }
        }
        for (service, client) in expired {
            self.counters.refused += 1;
            let reason = format!(
                "no worker of service {:?} within {} ms",
                String::from_utf8_lossy(&service),
                self.config.queue_deadline.as_millis()
            );
            socket.send(mdp::client_reply(&client, &service, mdp::error_body("503", &reason)))?;
            self.forget_if_unused(&service);
        }
        Ok(())
    }

    /// Answers a request to an `mmi.` service.
    fn mmi(&self, service: &[u8], body: &[Frame]) -> Vec<Frame> {
        match service {
            mdp::MMI_SERVICE => {
                let known = body.first().and_then(|name| self.services.get(&name[..])).is_some_and(|s| s.workers > 0);
                vec![Frame::from(if known { "200" } else { "404" })]
            }
            mdp::MMI_STATUS => vec![Frame::from(self.status().to_string().into_bytes())],
            _ => vec![Frame::from("501")],
        }
    }

    fn status(&self) -> serde_json::Value {
        let services: serde_json::Map<String, serde_json::Value> = self
            .services
            .iter()
            .map(|(name, s)| {
                let served: u64 = self.workers.values().filter(|w| &w.service == name).map(|w| w.served).sum();
                let value = serde_json::json!({
                    "workers": s.workers, "idle": s.idle.len(), "queued": s.queue.len(), "served": served,
                });
                (String::from_utf8_lossy(name).into_owned(), value)
            })
            .collect();
        let c = &self.counters;
        serde_json::json!({
            "services": services,
            "workers": self.workers.len(),
            "queued": self.queued,
            "queued_bytes": self.queued_bytes,
            "colocated_peers": self.verifier.proven_count().0,
            "off_host_site_peers": self.verifier.proven_count().1,
            "counters": {
                "requests": c.requests, "replies": c.replies, "refused": c.refused,
                "requeued": c.requeued, "expired_workers": c.expired_workers, "malformed": c.malformed,
                "descriptors_forwarded": c.descriptors_forwarded,
                "descriptors_forwarded_off_host": c.descriptors_forwarded_off_host,
                "descriptors_inlined": c.descriptors_inlined, "descriptors_refused": c.descriptors_refused,
                "pooled_requests": c.pooled_requests,
            },
        })
    }
}
