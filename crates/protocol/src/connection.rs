//! [`Connection`]: send and receive messages once the handshake is done.
//!
//! Sending takes and fills the slots of the buffers that go through the pools first, then, under
//! the writer lock, publishes them (in frame order) and writes the frame. A reader thread per
//! connection decodes frames, takes the named slots, answers idleness with heartbeats and queues
//! messages for [`Connection::recv`].

use super::frame::{io_failure, read_frame_into, write_frame, Kind, Received, Wire};
use super::handshake::{Negotiated, Options, Protocol};
use super::heartbeat::{Liveness, Watched};
use super::lending::{release_code, LendableSlot, Lending, LentView, PoolSide, OWN_POOL};
use super::ready::Ready;
use super::recycle::{InlineBuf, Recycler};
use super::shm::{self, ShmRx, ShmTx};
use super::stats::{ConnStats, Counters};
use super::stream::Stream;
use crate::{Error, Result};
use shmpool::{Pool, ReadBuf, WriteBuf};
use std::ops::{Deref, DerefMut};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long taking a slot waits for the peer to act on releases just sent.
const RELEASE_WAIT: Duration = Duration::from_millis(50);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A received buffer: bytes that came on the socket, or a view of a pool slot that stays valid
/// (and keeps the slot) until it is dropped.
pub enum Payload {
    /// Bytes that came on the socket (their memory is reused for later messages once dropped).
    Inline(InlineBuf),
    /// A slot of the peer's pool.
    Shared(Arc<ReadBuf>),
    /// Bytes of a slot the peer keeps for this side, sent without a copy (see [`LentView`]).
    Lent(Arc<LentView>),
}

impl Payload {
    /// Whether the bytes are a view of shared memory (no copy was made).
    pub fn is_shared(&self) -> bool {
        !matches!(self, Payload::Inline(_))
    }
}

impl Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Payload::Inline(v) => v,
            Payload::Shared(b) => b,
            Payload::Lent(l) => l,
        }
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes, shared: {})", self.len(), self.is_shared())
    }
}

/// A received message.
#[derive(Debug)]
pub struct Message {
    pub header: Vec<u8>,
    pub buffers: Vec<Payload>,
}

/// A buffer allocated for sending: a pool slot on `shm` (filled in place, sent without a copy),
/// else memory of this process. Derefs to its `len` bytes.
pub struct AllocBuf {
    conn: u64,
    len: usize,
    store: Store,
}

enum Store {
    /// A slot of the pool generation given.
    Slot(u8, WriteBuf),
    Heap(Vec<u8>),
}

impl AllocBuf {
    /// Whether the buffer is a pool slot.
    pub fn is_shared(&self) -> bool {
        matches!(self.store, Store::Slot(..))
    }

    /// Shortens the buffer to `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl Deref for AllocBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.store {
            Store::Slot(_, w) => &w[..self.len],
            Store::Heap(v) => &v[..self.len],
        }
    }
}

impl DerefMut for AllocBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.store {
            Store::Slot(_, w) => &mut w[..self.len],
            Store::Heap(v) => &mut v[..self.len],
        }
    }
}

/// A buffer to send: borrowed bytes (copied into a slot or onto the socket) or an [`AllocBuf`].
pub enum SendBuf<'a> {
    Bytes(&'a [u8]),
    Alloc(AllocBuf),
}

impl<'a> From<&'a [u8]> for SendBuf<'a> {
    fn from(b: &'a [u8]) -> Self {
        SendBuf::Bytes(b)
    }
}

impl From<AllocBuf> for SendBuf<'_> {
    fn from(b: AllocBuf) -> Self {
        SendBuf::Alloc(b)
    }
}

impl SendBuf<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            SendBuf::Bytes(b) => b,
            SendBuf::Alloc(a) => a,
        }
    }
}

/// Where one buffer of a message goes, decided before the writer lock is taken.
enum Placed {
    Socket,
    /// A filled slot of the pool generation given, to publish with its first `usize` bytes.
    Slot(u8, WriteBuf, usize),
    /// Bytes in a slot already held on one side: the reference to send.
    Held(Wire<'static>),
}

/// A full-duplex message connection between a host and a worker. `Send + Sync`: one thread may
/// block in [`recv`](Self::recv) while others send.
pub struct Connection {
    shared: Arc<Shared>,
    inbox: Mutex<Receiver<Result<Message>>>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    id: u64,
    writer: Mutex<Stream>,
    /// A clone of the socket for shutting it down while others block on it.
    control: Stream,
    tx: Option<ShmTx>,
    live: Liveness,
    options: Options,
    protocol: Protocol,
    /// Why the connection ended, once it has.
    failure: Mutex<Option<String>>,
    /// Slots held here that can be lent to the peer, and those lent.
    lending: Lending,
    counters: Counters,
    /// The descriptor of [`Connection::ready_fd`], written by the reader thread.
    ready: Ready,
}

impl Shared {
    fn fail(&self, why: &str) {
        let mut f = lock(&self.failure);
        if f.is_none() {
            *f = Some(why.to_string());
        }
        drop(f);
        self.control.shutdown();
    }

    fn ended(&self) -> Error {
        match lock(&self.failure).as_deref() {
            Some(why) => Error::Disconnected(why.to_string()),
            None => Error::Disconnected("the connection is closed".into()),
        }
    }

    /// At a reader timeout: flushes releases and sends a heartbeat if one is due and the writer
    /// is free.
    fn tick(&self, heartbeat_due: bool) {
        if let Ok(mut w) = self.writer.try_lock() {
            let _ = self.flush_releases(&mut w);
            if heartbeat_due && write_frame(&mut *w, Kind::Heartbeat, &[], &[]).is_ok() {
                self.live.sent();
            }
        }
    }

    /// Tells the peer which lent views were dropped (under the writer lock). Returns whether
    /// there were any.
    fn flush_releases(&self, w: &mut Stream) -> Result<bool> {
        let codes = self.lending.take_releases();
        if codes.is_empty() {
            return Ok(false);
        }
        let header: Vec<u8> = codes.iter().flat_map(|s| s.to_le_bytes()).collect();
        write_frame(w, Kind::Release, &header, &[])?;
        self.live.sent();
        Ok(true)
    }

    /// A free slot of `tx` for `len` bytes and its generation: now, or, when the peer was just told
    /// of dropped views (which may be what holds the slots), within [`RELEASE_WAIT`]; else from a
    /// new, larger pool. `None` past the maximum slot size or the pools' budget.
    fn take_slot(&self, tx: &ShmTx, len: usize, just_released: bool) -> Result<Option<(u8, WriteBuf)>> {
        tx.take(len, just_released.then_some(RELEASE_WAIT))
    }
}

impl Connection {
    /// Starts the reader thread on a negotiated socket.
    pub(crate) fn start(n: Negotiated) -> Result<Connection> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let live = Liveness::new(n.options.heartbeat(), n.options.dead_after());
        n.stream.set_read_timeout(Some(live.tick()))?;
        n.stream.set_write_timeout(Some(live.dead_after()))?;
        let (tx, rx) = match n.shm {
            Some(pair) => (Some(pair.tx), Some(pair.rx)),
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            id: NEXT.fetch_add(1, Relaxed),
            writer: Mutex::new(n.stream.try_clone()?),
            control: n.stream.try_clone()?,
            tx,
            live,
            options: n.options,
            protocol: n.protocol,
            failure: Mutex::new(None),
            lending: Lending::new(),
            counters: Counters::default(),
            ready: Ready::default(),
        });
        shared.live.received();
        shared.live.sent();
        let (out, inbox) = mpsc::channel();
        let s = shared.clone();
        let reader = std::thread::Builder::new()
            .name("shmpool-conn".into())
            .spawn(move || read_loop(&s, n.stream, rx, &out))
            .map_err(|e| Error::io("starting the connection's reader thread", e))?;
        Ok(Connection { shared, inbox: Mutex::new(inbox), reader: Mutex::new(Some(reader)) })
    }

    /// The transport in use: `tcp`, `unix` or `shm`.
    pub fn protocol(&self) -> Protocol {
        self.shared.protocol
    }

    /// The negotiated options.
    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    /// A buffer of `len` bytes to fill and pass to [`send`](Self::send): a pool slot when the
    /// connection is on `shm` and `len` is within the maximum slot size (the pools grow for it),
    /// else process memory.
    pub fn alloc(&self, len: usize) -> Result<AllocBuf> {
        if !self.is_alive() {
            // The peer's holds may have been swept: its slots must not be reused under our views.
            return Err(self.shared.ended());
        }
        if let Some(tx) = &self.shared.tx {
            if len as u64 >= self.shared.options.inline_threshold {
                if let Some((gen, w)) = self.shared.take_slot(tx, len, self.release_now())? {
                    return Ok(AllocBuf { conn: self.shared.id, len, store: Store::Slot(gen, w) });
                }
            }
        }
        Ok(AllocBuf { conn: self.shared.id, len, store: Store::Heap(vec![0; len]) })
    }

    /// A slot of this side's pools kept for lending (see [`LendableSlot`]); the pools grow for it.
    /// Fails with [`Error::Unsupported`] unless the connection is on `shm`, with
    /// [`Error::InvalidArgument`] past the negotiated maximum slot size, and with
    /// [`Error::Pool`]`(Timeout)` when every slot is held and the pools may not grow further.
    pub fn alloc_lendable(&self, len: usize) -> Result<LendableSlot> {
        if !self.is_alive() {
            return Err(self.shared.ended());
        }
        let tx = self.shared.tx.as_ref().ok_or(Error::Unsupported("the connection is not on shm"))?;
        if len as u64 > self.shared.options.max_slot_size {
            return Err(Error::invalid(format!(
                "{len} bytes exceed the negotiated maximum slot size of {} bytes",
                self.shared.options.max_slot_size
            )));
        }
        let (gen, w) =
            self.shared.take_slot(tx, len, self.release_now())?.ok_or(Error::Pool(shmpool::Error::Timeout))?;
        Ok(LendableSlot::new(gen, w, len, &self.shared.lending))
    }

    /// What went where: buffers through the pools and on the socket, and the pools' growth.
    pub fn stats(&self) -> ConnStats {
        self.shared.counters.snapshot(&self.shared.options, self.shared.tx.as_ref().map(|t| t.set.stats()))
    }

    /// Sends pending releases now; returns whether there were any.
    fn release_now(&self) -> bool {
        let mut w = lock(&self.shared.writer);
        self.shared.flush_releases(&mut w).unwrap_or(false)
    }

    /// Sends a message: `header` and `buffers`, which the peer receives in order.
    pub fn send(&self, header: &[u8], buffers: Vec<SendBuf<'_>>) -> Result<()> {
        let o = &self.shared.options;
        let total: u64 = buffers.iter().map(|b| b.bytes().len() as u64).sum();
        if header.len() as u64 > o.max_header as u64 || buffers.len() as u64 > o.max_buffers as u64 {
            return Err(Error::invalid(format!(
                "message with a {}-byte header and {} buffers exceeds the limits ({} bytes, {} buffers)",
                header.len(),
                buffers.len(),
                o.max_header,
                o.max_buffers
            )));
        }
        if total > o.max_message {
            return Err(Error::invalid(format!("message of {total} bytes exceeds the limit of {}", o.max_message)));
        }
        if !self.is_alive() {
            return Err(self.shared.ended());
        }
        let mut buffers = buffers;
        // Slots are taken and filled before the writer lock (growing a pool or copying a large
        // buffer must not hold up heartbeats or other senders) and published under it, in frame
        // order. Once a slot is published, its frame must follow: any failure from here on ends
        // the connection (the peer's pools and the socket would disagree otherwise).
        let released = self.release_now();
        let result = self.stage(&mut buffers, released).and_then(|placed| {
            let mut w = lock(&self.shared.writer);
            if lock(&self.shared.failure).is_some() {
                return Err(self.shared.ended());
            }
            self.shared.flush_releases(&mut w)?;
            let mut wires = Vec::with_capacity(placed.len());
            for (b, p) in buffers.iter().zip(placed) {
                wires.push(match p {
                    Placed::Socket => Wire::Inline(b.bytes()),
                    Placed::Slot(gen, slot, len) => ShmTx::publish(gen, slot, len)?,
                    Placed::Held(wire) => wire,
                });
            }
            write_frame(&mut *w, Kind::Message, header, &wires)
        });
        match result {
            Ok(()) => {
                self.shared.live.sent();
                Ok(())
            }
            Err(e) => {
                let why = match e {
                    Error::Disconnected(why) => why,
                    e => e.to_string(),
                };
                self.shared.fail(&format!("sending failed: {why}"));
                Err(self.shared.ended())
            }
        }
    }

    /// Decides where each buffer goes: a filled slot (taken, copied into, not yet published), a
    /// slot already held (lent), or the socket.
    fn stage(&self, buffers: &mut [SendBuf<'_>], released: bool) -> Result<Vec<Placed>> {
        let threshold = self.shared.options.inline_threshold;
        let counters = &self.shared.counters;
        let mut out = Vec::with_capacity(buffers.len());
        for b in buffers.iter_mut() {
            let len = b.bytes().len();
            let Some(tx) = self.shared.tx.as_ref() else {
                counters.socket(len, false);
                out.push(Placed::Socket);
                continue;
            };
            // Bytes already in a held slot are lent whatever their size (no copy either way);
            // others below the threshold are cheaper on the socket.
            let placed = match b {
                SendBuf::Alloc(a) if a.conn == self.shared.id && a.is_shared() => {
                    let Store::Slot(gen, w) = std::mem::replace(&mut a.store, Store::Heap(Vec::new())) else {
                        unreachable!("checked above")
                    };
                    a.len = 0;
                    Placed::Slot(gen, w, len)
                }
                b => match self.shared.lending.lend(b.bytes()) {
                    Some(wire) => Placed::Held(wire),
                    None if (len as u64) < threshold => Placed::Socket,
                    None => match self.shared.take_slot(tx, len, released)? {
                        Some((gen, mut w)) => {
                            w[..len].copy_from_slice(b.bytes());
                            Placed::Slot(gen, w, len)
                        }
                        None => Placed::Socket,
                    },
                },
            };
            match placed {
                // Past the maximum slot size or the pools' budget: on the socket, counted.
                Placed::Socket => counters.socket(len, len as u64 >= threshold),
                _ => counters.shm(len),
            }
            out.push(placed);
        }
        Ok(out)
    }

    /// Receives the next message, waiting up to `timeout` (`None`: until the peer goes away).
    pub fn recv(&self, timeout: Option<Duration>) -> Result<Message> {
        let inbox = lock(&self.inbox);
        let got = match timeout {
            Some(t) => inbox.recv_timeout(t),
            None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => Err(Error::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(self.shared.ended()),
        }
    }

    /// Receives the next message if one is waiting now. With a [readiness
    /// descriptor](Self::ready_fd), `Ok(None)` also re-arms it.
    pub fn try_recv(&self) -> Result<Option<Message>> {
        self.shared.ready.arm();
        match lock(&self.inbox).try_recv() {
            Ok(m) => m.map(Some),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(self.shared.ended()),
        }
    }

    /// A descriptor (an `eventfd`) that becomes readable when a message may be waiting, for event
    /// loops: after it is readable, call [`try_recv`](Self::try_recv) until `Ok(None)`, then wait
    /// again; spurious readiness is allowed (see `ready.rs`). Created on first call and owned by
    /// the connection; ask for it before the first `try_recv`.
    pub fn ready_fd(&self) -> Result<RawFd> {
        self.shared.ready.fd()
    }

    /// Says goodbye and closes the socket: pending and later calls on both sides fail with
    /// [`Error::Disconnected`]. Buffers already received stay valid.
    pub fn close(&self) {
        self.shared.live.closed.store(true, Relaxed);
        if let Ok(mut w) = self.shared.writer.try_lock() {
            let _ = write_frame(&mut *w, Kind::Goodbye, &[], &[]);
        }
        self.shared.fail("the connection was closed by this side");
        if let Some(t) = lock(&self.reader).take() {
            let _ = t.join();
        }
    }

    /// Whether the connection still works (as far as this side knows).
    pub fn is_alive(&self) -> bool {
        lock(&self.shared.failure).is_none()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("protocol", &self.shared.protocol).finish_non_exhaustive()
    }
}

/// A view of bytes the peer lent: in slot `at = (gen, slot)` of `pool`, which is this side's own
/// (`Own`) or the peer's. The view is registered, so that it can be lent on in turn.
fn lent_view(
    shared: &Shared,
    pool: &Pool,
    side: PoolSide,
    at: (u8, u32),
    offset: u64,
    len: u64,
) -> Result<Arc<LentView>> {
    let (gen, slot) = at;
    let (base, ptr) = shm::region(pool, slot, offset, len)?;
    // The lender's view of the slot is the other way round: our own pool is its peer's.
    let code = release_code(gen, slot) | if side == PoolSide::Peer { OWN_POOL } else { 0 };
    let view = Arc::new(LentView {
        _pool: pool.clone(),
        ptr,
        len: len as usize,
        code,
        releases: shared.lending.releases.clone(),
    });
    shared.lending.register(&view, (side, gen, slot), base, &view);
    Ok(view)
}

/// The reader thread: frames in, messages out, until the socket fails.
fn read_loop(shared: &Shared, stream: Stream, rx: Option<ShmRx>, out: &Sender<Result<Message>>) {
    let limits = shared.options.limits();
    let recycler = Arc::new(Recycler::default());
    let mut take = |len| recycler.take(len);
    let mut reader = Watched { stream, live: &shared.live, tick: |due| shared.tick(due) };
    let err = loop {
        let frame = match read_frame_into(&mut reader, &limits, &mut take) {
            Ok(f) => f,
            Err(e) => break e,
        };
        match frame.kind {
            Kind::Heartbeat => continue,
            Kind::Goodbye => break Error::Disconnected("the peer closed the connection".into()),
            Kind::Control => break Error::Protocol("a handshake record after the handshake".into()),
            Kind::Release => match shared.lending.released(&frame.header) {
                Ok(()) => {
                    // Ending loans may have dropped views of the peer's slots: say so now, so that
                    // its slots come back without waiting for the next message or heartbeat.
                    shared.tick(false);
                    continue;
                }
                Err(e) => break e,
            },
            Kind::Message => {}
        }
        let mut buffers = Vec::with_capacity(frame.buffers.len());
        let mut bad = None;
        for b in frame.buffers {
            match (b, rx.as_ref()) {
                (Received::Inline(v), _) => buffers.push(Payload::Inline(InlineBuf::new(v, &recycler))),
                (Received::Slot { gen, slot, len, seq }, Some(rx)) => match rx.take(gen, slot, len, seq) {
                    Ok(buf) => {
                        let buf = Arc::new(buf);
                        shared.lending.register(&buf, (PoolSide::Peer, gen, slot), buf.as_ptr(), &buf);
                        buffers.push(Payload::Shared(buf));
                    }
                    Err(e) => {
                        bad = Some(e);
                        break;
                    }
                },
                (Received::Lent { gen, slot, offset, len }, Some(_)) => {
                    // A slot of our own pools, held by the peer.
                    let set = &shared.tx.as_ref().expect("pools come in pairs").set;
                    let view = set
                        .pool(gen)
                        .ok_or_else(|| Error::Protocol(format!("a lent buffer names pool {gen}, which is gone")))
                        .and_then(|pool| lent_view(shared, &pool, PoolSide::Own, (gen, slot), offset, len));
                    match view {
                        Ok(view) => buffers.push(Payload::Lent(view)),
                        Err(e) => {
                            bad = Some(e);
                            break;
                        }
                    }
                }
                (Received::Held { gen, slot, offset, len }, Some(rx)) => {
                    // A slot of the peer's pools that it keeps for us.
                    let view = rx
                        .follower
                        .pool(gen)
                        .map_err(|e| Error::Protocol(format!("a held buffer names pool {gen}: {e}")))
                        .and_then(|pool| lent_view(shared, &pool, PoolSide::Peer, (gen, slot), offset, len));
                    match view {
                        Ok(view) => buffers.push(Payload::Lent(view)),
                        Err(e) => {
                            bad = Some(e);
                            break;
                        }
                    }
                }
                (Received::Slot { .. } | Received::Lent { .. } | Received::Held { .. }, None) => {
                    bad = Some(Error::Protocol("a slot reference on a connection without pools".into()));
                    break;
                }
            }
        }
        if let Some(e) = bad {
            break e;
        }
        if out.send(Ok(Message { header: frame.header, buffers })).is_err() {
            break Error::Disconnected("the connection was dropped".into());
        }
        shared.ready.notify();
    };
    let err = match err {
        Error::Io { source, .. } => io_failure(source),
        e => e,
    };
    shared.fail(&match &err {
        Error::Disconnected(why) => why.clone(),
        e => e.to_string(),
    });
    let _ = out.send(Err(err));
    shared.ready.notify();
}

#[cfg(test)]
mod tests {
    use super::super::frame::{encode, Limits};
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    /// A connection on one end of a socket pair; the test speaks raw bytes on the other.
    fn pair(options: Options) -> (Connection, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        let n = Negotiated { stream: Stream::Unix(a), options, protocol: Protocol::Unix, shm: None };
        (Connection::start(n).unwrap(), b)
    }

    fn small() -> Options {
        Options { max_message: 1000, max_buffers: 4, max_header: 100, ..Options::default() }
    }

    fn expect_protocol_error(bytes: &[u8], what: &str) {
        let (conn, mut peer) = pair(small());
        peer.write_all(bytes).unwrap();
        let e = conn.recv(Some(Duration::from_secs(5))).unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{what}: {e}");
        assert!(!conn.is_alive(), "{what}");
        assert!(matches!(conn.send(b"x", vec![]), Err(Error::Disconnected(_))), "{what}");
    }

    #[test]
    fn malformed_or_oversized_frames_close_the_connection() {
        let ok = encode(Kind::Message, b"hdr", &[Wire::Inline(b"data")]);
        let mut bad_magic = ok.clone();
        bad_magic[0] = 0;
        expect_protocol_error(&bad_magic, "bad magic");
        let mut bad_kind = ok.clone();
        bad_kind[1] = 9;
        expect_protocol_error(&bad_kind, "unknown kind");
        expect_protocol_error(&encode(Kind::Message, &[0; 101], &[]), "header too large");
        expect_protocol_error(&encode(Kind::Message, b"", &[Wire::Inline(&[0; 1001])]), "message too large");
        expect_protocol_error(&encode(Kind::Message, b"", &[Wire::Inline(b""); 5]), "too many buffers");
        expect_protocol_error(
            &encode(Kind::Message, b"", &[Wire::Slot { gen: 0, slot: 0, len: 1, seq: 1 }]),
            "no pools",
        );
        expect_protocol_error(&encode(Kind::Control, b"{}", &[]), "late handshake");
        // Truncated: the peer ends the stream inside a frame.
        let (conn, mut peer) = pair(small());
        peer.write_all(&ok[..ok.len() - 2]).unwrap();
        drop(peer);
        let e = conn.recv(Some(Duration::from_secs(5))).unwrap_err();
        assert!(matches!(e, Error::Protocol(ref m) if m.contains("truncated")), "{e}");
    }

    #[test]
    fn good_frames_and_heartbeats_pass() {
        let (conn, mut peer) = pair(small());
        peer.write_all(&encode(Kind::Heartbeat, b"", &[])).unwrap();
        peer.write_all(&encode(Kind::Message, b"hdr", &[Wire::Inline(b"data")])).unwrap();
        let m = conn.recv(Some(Duration::from_secs(5))).unwrap();
        assert_eq!((&m.header[..], &*m.buffers[0]), (&b"hdr"[..], &b"data"[..]));
        conn.send(b"back", vec![SendBuf::Bytes(b"xyz")]).unwrap();
        let limits = Limits { max_message: 10, max_buffers: 1, max_header: 10 };
        let f = super::super::frame::read_frame(&mut peer, &limits).unwrap();
        assert_eq!((f.kind, &f.header[..]), (Kind::Message, &b"back"[..]));
        peer.write_all(&encode(Kind::Goodbye, b"", &[])).unwrap();
        let e = conn.recv(Some(Duration::from_secs(5))).unwrap_err();
        assert!(e.to_string().contains("the peer closed the connection"), "{e}");
    }
}
