//! The thin layer over the ZeroMQ binding (the `zmq` crate, libzmq 4.3): sockets that send and
//! receive multi-frame messages as [`Frame`]s. Everything else in this crate uses only this module,
//! so the binding can be swapped here.

use std::ffi::c_void;
use std::ops::Deref;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

/// One frame of a ZeroMQ message. Received frames keep libzmq's buffer (no copy); frames built
/// from a `Vec<u8>` hand it to libzmq without a copy; shared frames lend libzmq their buffer
/// (no copy) while the sender keeps it too, e.g. to send it again.
pub struct Frame(Inner);

enum Inner {
    Zmq(zmq::Message),
    Shared(Arc<Vec<u8>>),
}

impl Frame {
    /// An empty frame (the MDP delimiter).
    pub fn empty() -> Frame {
        Frame(Inner::Zmq(zmq::Message::new()))
    }

    /// A frame of `bytes`, sent without a copy: libzmq holds a reference until it has sent them.
    pub fn shared(bytes: Arc<Vec<u8>>) -> Frame {
        Frame(Inner::Shared(bytes))
    }
}

impl Deref for Frame {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Inner::Zmq(m) => m,
            Inner::Shared(b) => b,
        }
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for Frame {
    fn from(bytes: Vec<u8>) -> Frame {
        Frame(Inner::Zmq(zmq::Message::from(bytes.into_boxed_slice())))
    }
}

impl From<&[u8]> for Frame {
    fn from(bytes: &[u8]) -> Frame {
        Frame(Inner::Zmq(zmq::Message::from(bytes)))
    }
}

impl From<&str> for Frame {
    fn from(text: &str) -> Frame {
        Frame(Inner::Zmq(zmq::Message::from(text)))
    }
}

/// libzmq's message struct, aligned as libzmq declares it (the binding's type is not).
#[repr(C, align(8))]
struct RawMessage(zmq_sys::zmq_msg_t);

/// libzmq's callback when it is done with a shared frame: drops the reference lent to it.
unsafe extern "C" fn release_shared(_data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the `Box<Arc<Vec<u8>>>` leaked in `send_shared`, released once, here.
    drop(unsafe { Box::from_raw(hint.cast::<Arc<Vec<u8>>>()) });
}

/// Sends `bytes` as one frame on socket `raw`, lending libzmq a reference instead of a copy.
fn send_shared(raw: *mut c_void, bytes: Arc<Vec<u8>>, flags: i32) -> Result<(), TransportError> {
    let (data, len) = (bytes.as_ptr().cast_mut().cast::<c_void>(), bytes.len());
    let hint = Box::into_raw(Box::new(bytes)).cast::<c_void>();
    let mut msg = RawMessage(zmq_sys::zmq_msg_t::default());
    // SAFETY: `data`/`len` stay valid and unchanged until `release_shared` drops the reference
    // `hint` holds (libzmq only reads them); `msg` is initialised before use and either sent (then
    // libzmq owns it) or closed here; `raw` is the caller's live socket.
    unsafe {
        if zmq_sys::zmq_msg_init_data(&mut msg.0, data, len, Some(release_shared), hint) != 0 {
            drop(Box::from_raw(hint.cast::<Arc<Vec<u8>>>()));
            return Err(zmq::Error::from_raw(zmq_sys::zmq_errno()).into());
        }
        if zmq_sys::zmq_msg_send(&mut msg.0, raw, flags) == -1 {
            let error = zmq::Error::from_raw(zmq_sys::zmq_errno());
            zmq_sys::zmq_msg_close(&mut msg.0); // calls release_shared
            return Err(error.into());
        }
    }
    Ok(())
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({} bytes)", self.len())
    }
}

/// A transport error (libzmq's errno and text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("zeromq: {0}")]
pub struct TransportError(String);

impl From<zmq::Error> for TransportError {
    fn from(e: zmq::Error) -> Self {
        TransportError(e.to_string())
    }
}

/// A context: one per process is enough; sockets keep it alive.
#[derive(Clone, Default)]
pub struct Context(zmq::Context);

impl Context {
    pub fn new() -> Context {
        keep_message_memory();
        Context(zmq::Context::new())
    }

    /// A ROUTER socket (the broker's). Unroutable replies are dropped silently, as MDP expects;
    /// a reconnecting peer with the same identity takes over its old connection.
    pub fn router(&self) -> Result<Socket, TransportError> {
        let socket = self.socket(zmq::ROUTER)?;
        socket.0.set_router_handover(true)?;
        Ok(socket)
    }

    /// A DEALER socket (clients and workers).
    pub fn dealer(&self) -> Result<Socket, TransportError> {
        self.socket(zmq::DEALER)
    }

    fn socket(&self, kind: zmq::SocketType) -> Result<Socket, TransportError> {
        let mut socket = self.0.socket(kind)?;
        // Closing never blocks on unsent messages: peers retry by protocol.
        socket.set_linger(0)?;
        let raw = socket.as_mut_ptr() as usize;
        Ok(Socket(socket, raw))
    }
}

/// libzmq mallocs every received message and frees it once read; with glibc's defaults a message
/// of a few MiB gets fresh pages each time (a new mmap, or a heap grown again after a trim): about
/// 2,000 page faults per SSNet event, most of the time of the bytes path. Messages up to 64 MiB
/// come from the heap instead and up to 256 MiB of freed heap is kept for the next one. Once per
/// process; skipped if the user tunes the allocator (`GLIBC_TUNABLES`).
fn keep_message_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if std::env::var_os("GLIBC_TUNABLES").is_none() {
                // SAFETY: mallopt only sets allocator parameters; valid at any time.
                unsafe {
                    libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
                    libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
                }
            }
        });
    }
}

/// A socket of one of the kinds above (and libzmq's pointer to it, for shared frames).
pub struct Socket(zmq::Socket, usize);

/// Which of several sockets [`poll`] found readable.
pub type Readable = Vec<bool>;

impl Socket {
    pub fn bind(&self, endpoint: &str) -> Result<(), TransportError> {
        self.0.bind(endpoint).map_err(|e| TransportError(format!("bind {endpoint}: {e}")))
    }

    pub fn connect(&self, endpoint: &str) -> Result<(), TransportError> {
        self.0.connect(endpoint).map_err(|e| TransportError(format!("connect {endpoint}: {e}")))
    }

    /// The endpoint actually bound last (resolves `tcp://127.0.0.1:*`).
    pub fn last_endpoint(&self) -> Result<String, TransportError> {
        self.0.get_last_endpoint()?.map_err(|_| TransportError("endpoint is not UTF-8".into()))
    }

    /// Sets this socket's routing identity (before connecting).
    pub fn set_identity(&self, identity: &[u8]) -> Result<(), TransportError> {
        Ok(self.0.set_identity(identity)?)
    }

    /// Frames larger than `bytes` are refused by libzmq itself (the peer is disconnected), before
    /// they take memory here.
    pub fn set_max_frame_size(&self, bytes: usize) -> Result<(), TransportError> {
        Ok(self.0.set_maxmsgsize(i64::try_from(bytes).unwrap_or(i64::MAX))?)
    }

    /// Sends all frames as one message. A ROUTER drops a message to an unknown peer silently.
    pub fn send(&self, frames: Vec<Frame>) -> Result<(), TransportError> {
        let last = frames.len().saturating_sub(1);
        for (i, frame) in frames.into_iter().enumerate() {
            let flags = if i < last { zmq::SNDMORE } else { 0 };
            match frame.0 {
                Inner::Zmq(m) => self.0.send(m, flags)?,
                Inner::Shared(bytes) => send_shared(self.1 as *mut c_void, bytes, flags)?,
            }
        }
        Ok(())
    }

    /// Receives one whole message, waiting for it.
    pub fn recv(&self) -> Result<Vec<Frame>, TransportError> {
        self.recv_flags(0)
    }

    /// Receives one whole message if one is queued now.
    pub fn try_recv(&self) -> Result<Option<Vec<Frame>>, TransportError> {
        match self.0.recv_msg(zmq::DONTWAIT) {
            Ok(first) => self.recv_rest(first).map(Some),
            Err(zmq::Error::EAGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn recv_flags(&self, flags: i32) -> Result<Vec<Frame>, TransportError> {
        let first = self.0.recv_msg(flags)?;
        self.recv_rest(first)
    }

    fn recv_rest(&self, first: zmq::Message) -> Result<Vec<Frame>, TransportError> {
        let mut frames = vec![Frame(Inner::Zmq(first))];
        // The rest of a message is already queued: libzmq delivers messages atomically.
        while self.0.get_rcvmore()? {
            frames.push(Frame(Inner::Zmq(self.0.recv_msg(0)?)));
        }
        Ok(frames)
    }

    /// Waits up to `timeout` until this socket has a message.
    pub fn wait_readable(&self, timeout: Duration) -> Result<bool, TransportError> {
        Ok(poll(&[self], &[], timeout)?[0])
    }
}

/// Waits up to `timeout` until one of `sockets` has a message or one of `fds` (plain file
/// descriptors, e.g. a wake-up pipe) is readable; says which are (sockets first, then fds).
pub fn poll(sockets: &[&Socket], fds: &[BorrowedFd<'_>], timeout: Duration) -> Result<Readable, TransportError> {
    let mut items: Vec<_> = sockets.iter().map(|s| s.0.as_poll_item(zmq::POLLIN)).collect();
    items.extend(fds.iter().map(|fd| zmq::PollItem::from_fd(fd.as_raw_fd(), zmq::POLLIN)));
    let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    // EINTR (a signal, e.g. SIGINT for a clean shutdown) is "nothing yet".
    match zmq::poll(&mut items, ms) {
        Ok(_) => Ok(items.iter().map(|i| i.is_readable()).collect()),
        Err(zmq::Error::EINTR) => Ok(vec![false; items.len()]),
        Err(e) => Err(e.into()),
    }
}
