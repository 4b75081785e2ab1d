//! The sockets under a connection: TCP on loopback or a Unix stream socket, behind one type.

use crate::{Error, Result};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Where a host listens: `tcp:127.0.0.1:PORT` or `unix:/path/to/socket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "tcp:{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Address> {
        if let Some(a) = s.strip_prefix("tcp:") {
            let addr = a.parse().map_err(|e| Error::invalid(format!("bad TCP address {a:?}: {e}")))?;
            Ok(Address::Tcp(addr))
        } else if let Some(p) = s.strip_prefix("unix:") {
            Ok(Address::Unix(PathBuf::from(p)))
        } else {
            Err(Error::invalid(format!("bad address {s:?}: expected tcp:HOST:PORT or unix:PATH")))
        }
    }
}

/// A connected socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Connects to `address`.
    pub fn connect(address: &Address) -> Result<Stream> {
        let ctx = || format!("connecting to {address}");
        Ok(match address {
            Address::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, Duration::from_secs(10)).map_err(|e| Error::io(ctx(), e))?;
                s.set_nodelay(true).map_err(|e| Error::io(ctx(), e))?;
                Stream::Tcp(s)
            }
            Address::Unix(p) => Stream::Unix(UnixStream::connect(p).map_err(|e| Error::io(ctx(), e))?),
        })
    }

    pub fn try_clone(&self) -> Result<Stream> {
        let ctx = |e| Error::io("duplicating a socket", e);
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone().map_err(ctx)?),
            Stream::Unix(s) => Stream::Unix(s.try_clone().map_err(ctx)?),
        })
    }

    /// Timeout of every read (`None`: block).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
        .map_err(|e| Error::io("setting a socket timeout", e))
    }

    /// Timeout of every write (`None`: block).
    pub fn set_write_timeout(&self, t: Option<Duration>) -> Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
        }
        .map_err(|e| Error::io("setting a socket timeout", e))
    }

    /// Ends both directions: blocked readers and writers of every clone return at once.
    pub fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A listening socket.
#[derive(Debug)]
pub(crate) enum RawListener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl RawListener {
    /// Listens on an ephemeral loopback port.
    pub fn tcp() -> Result<RawListener> {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("listening on 127.0.0.1", e))?;
        Ok(RawListener::Tcp(l))
    }

    /// Listens on a Unix socket at `path` (removed again when the listener is dropped).
    pub fn unix(path: PathBuf) -> Result<RawListener> {
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).map_err(|e| Error::io(format!("listening on {}", path.display()), e))?;
        Ok(RawListener::Unix(l, path))
    }

    pub fn address(&self) -> Result<Address> {
        match self {
            RawListener::Tcp(l) => Ok(Address::Tcp(l.local_addr().map_err(|e| Error::io("local address", e))?)),
            RawListener::Unix(_, p) => Ok(Address::Unix(p.clone())),
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            RawListener::Tcp(l) => l.as_fd(),
            RawListener::Unix(l, _) => l.as_fd(),
        }
    }

    /// Accepts one connection within `timeout`, calling `check` every 50 ms (it can give up early,
    /// e.g. when the worker process exited).
    pub fn accept(&self, timeout: Duration, check: &mut dyn FnMut() -> Result<()>) -> Result<Stream> {
        let deadline = Instant::now() + timeout;
        loop {
            check()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            let mut pfd = libc::pollfd { fd: self.fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ms = left.min(Duration::from_millis(50)).as_millis() as libc::c_int;
            // SAFETY: `pfd` is one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut pfd, 1, ms.max(1)) };
            if n <= 0 {
                continue;
            }
            let ctx = |e| Error::io("accepting a worker", e);
            return Ok(match self {
                RawListener::Tcp(l) => {
                    let (s, _) = l.accept().map_err(ctx)?;
                    s.set_nodelay(true).map_err(ctx)?;
                    Stream::Tcp(s)
                }
                RawListener::Unix(l, _) => Stream::Unix(l.accept().map_err(ctx)?.0),
            });
        }
    }
}

impl Drop for RawListener {
    fn drop(&mut self) {
        if let RawListener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}
