//! The pipe, Unix-socket and TCP-loopback baselines: the sender writes each message from its own buffer, the
//! receiver reads it whole into its own buffer (a copy each way), acknowledgements go back as
//! 8 bytes. The data pipe is enlarged to the system's maximum pipe size.

use super::transport::{RecvSide, SendSide, Sent, Setup};
use super::TIMEOUT;
use crate::{fifo, frame, CliResult, Failure};
use shmpool::monotonic_ns;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

const DATA_FIFO: &str = "data.fifo";
const ACK_FIFO: &str = "ack.fifo";
const SOCKET: &str = "socket";
const TCP_PORT: &str = "tcp-port";
const ACK: [u8; 8] = *b"ack\0\0\0\0\0";

pub struct Sender<W, R> {
    data: W,
    acks: R,
    buf: Vec<u8>,
}

impl<W: Write, R: Read> SendSide for Sender<W, R> {
    fn send(&mut self, index: u64) -> CliResult<Sent> {
        frame::stamp(&mut self.buf, index);
        let t0 = monotonic_ns();
        frame::set_sent_at(&mut self.buf, t0);
        self.data.write_all(&self.buf)?;
        Ok(Sent { t0, acquire_ns: 0 })
    }

    fn wait_ack(&mut self) -> CliResult {
        let mut ack = [0u8; ACK.len()];
        self.acks.read_exact(&mut ack)?;
        Ok(())
    }
}

pub struct Receiver<R, W> {
    data: R,
    acks: W,
    buf: Vec<u8>,
}

impl<R: Read, W: Write> RecvSide for Receiver<R, W> {
    fn recv(&mut self) -> CliResult<&[u8]> {
        self.data.read_exact(&mut self.buf)?;
        Ok(&self.buf)
    }

    fn release(&mut self) -> CliResult {
        Ok(())
    }

    fn ack(&mut self) -> CliResult {
        self.acks.write_all(&ACK)?;
        Ok(())
    }
}

pub fn create_fifos(setup: &Setup) -> CliResult {
    fifo::create(&setup.dir.join(DATA_FIFO))?;
    fifo::create(&setup.dir.join(ACK_FIFO))?;
    Ok(())
}

pub fn pipe_sender(setup: &Setup, peer_alive: impl FnMut() -> bool) -> CliResult<Sender<File, File>> {
    let acks = fifo::open_reader_now(&setup.dir.join(ACK_FIFO))?;
    let data = fifo::open_writer_within(&setup.dir.join(DATA_FIFO), TIMEOUT, peer_alive)?;
    fifo::enlarge(&data)?;
    Ok(Sender { data, acks, buf: vec![0; setup.payload] })
}

pub fn pipe_receiver(setup: &Setup) -> CliResult<Receiver<File, File>> {
    let data = fifo::open_reader(&setup.dir.join(DATA_FIFO))?;
    let acks = fifo::open_writer(&setup.dir.join(ACK_FIFO))?;
    Ok(Receiver { data, acks, buf: vec![0; setup.payload] })
}

pub fn listen(setup: &Setup) -> CliResult<UnixListener> {
    let listener = UnixListener::bind(setup.dir.join(SOCKET))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

pub fn socket_sender(
    listener: &UnixListener,
    setup: &Setup,
    peer_alive: impl FnMut() -> bool,
) -> CliResult<Sender<UnixStream, UnixStream>> {
    let stream = accept_within(|| listener.accept().map(|(s, _)| s), peer_alive)?;
    stream.set_nonblocking(false)?;
    let acks = stream.try_clone()?;
    Ok(Sender { data: stream, acks, buf: vec![0; setup.payload] })
}

/// Polls a non-blocking `accept` until the receiver connects, it dies, or [`TIMEOUT`] passes.
fn accept_within<S>(
    mut accept: impl FnMut() -> std::io::Result<S>,
    mut peer_alive: impl FnMut() -> bool,
) -> CliResult<S> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match accept() {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !peer_alive() || Instant::now() >= deadline {
                    return Err(Failure::error("the receiver did not connect"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// TCP loopback: the parent listens on 127.0.0.1 (a free port, written to a file of the row's
/// directory for the child); both ends set TCP_NODELAY.
pub fn tcp_listen(setup: &Setup) -> CliResult<TcpListener> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    listener.set_nonblocking(true)?;
    std::fs::write(setup.dir.join(TCP_PORT), listener.local_addr()?.port().to_string())?;
    Ok(listener)
}

pub fn tcp_sender(
    listener: &TcpListener,
    setup: &Setup,
    peer_alive: impl FnMut() -> bool,
) -> CliResult<Sender<TcpStream, TcpStream>> {
    let stream = accept_within(|| listener.accept().map(|(s, _)| s), peer_alive)?;
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    let acks = stream.try_clone()?;
    Ok(Sender { data: stream, acks, buf: vec![0; setup.payload] })
}

pub fn tcp_receiver(setup: &Setup) -> CliResult<Receiver<TcpStream, TcpStream>> {
    let port: u16 = std::fs::read_to_string(setup.dir.join(TCP_PORT))?
        .trim()
        .parse()
        .map_err(|e| Failure::error(format!("TCP port file: {e}")))?;
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    let acks = stream.try_clone()?;
    Ok(Receiver { data: stream, acks, buf: vec![0; setup.payload] })
}

pub fn socket_receiver(setup: &Setup) -> CliResult<Receiver<UnixStream, UnixStream>> {
    let stream = UnixStream::connect(setup.dir.join(SOCKET))?;
    let acks = stream.try_clone()?;
    Ok(Receiver { data: stream, acks, buf: vec![0; setup.payload] })
}
