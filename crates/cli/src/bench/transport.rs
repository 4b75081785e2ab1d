//! The transports the benchmark compares, behind one sending and one receiving interface.
//!
//! The parent process is the sender; a child process (`__bench-peer`) is the receiver. The parent
//! [`prepare`]s what the receiver will open (pools, FIFOs, a listening socket, a futex page) in a
//! private directory, starts the child, then [`connect_sender`]s; the child [`open_receiver`]s.

#[cfg(feature = "iceoryx2-bench")]
use super::iceoryx;
use super::{futex, shm, stream};
use crate::CliResult;
use clap::ValueEnum;
use std::path::PathBuf;

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Kind {
    ShmpoolBlocking,
    ShmpoolSpin,
    FutexPingpong,
    Pipe,
    UnixSocket,
    /// Two consumers of a broadcast pool (both get every message).
    ShmpoolBlockingBcast2,
    ShmpoolSpinBcast2,
    /// Two consumers of a work-queue pool (each message goes to one).
    ShmpoolBlockingWq2,
    ShmpoolSpinWq2,
    /// TCP over 127.0.0.1 with TCP_NODELAY (copying, like the pipe and the Unix socket).
    TcpLoopback,
    /// iceoryx2 publish–subscribe, the receiver busy-polling `receive` (feature `iceoryx2-bench`).
    #[cfg(feature = "iceoryx2-bench")]
    Iceoryx2Poll,
    /// iceoryx2 publish–subscribe plus an event service: the receiver blocks in its listener.
    #[cfg(feature = "iceoryx2-bench")]
    Iceoryx2Blocking,
}

impl Kind {
    pub const ALL: [Kind; 5] =
        [Kind::ShmpoolBlocking, Kind::ShmpoolSpin, Kind::FutexPingpong, Kind::Pipe, Kind::UnixSocket];

    /// The row name: `shmpool-blocking`, `futex-pingpong`, …
    pub fn name(self) -> String {
        self.to_possible_value().expect("not skipped").get_name().to_string()
    }

    /// The transports of `bench --compare`.
    pub fn compared() -> Vec<Kind> {
        #[allow(unused_mut)] // pushed to with feature iceoryx2-bench
        let mut kinds = vec![
            Kind::ShmpoolBlocking,
            Kind::ShmpoolSpin,
            Kind::ShmpoolBlockingBcast2,
            Kind::ShmpoolSpinBcast2,
            Kind::ShmpoolBlockingWq2,
            Kind::ShmpoolSpinWq2,
            Kind::FutexPingpong,
            Kind::Pipe,
            Kind::UnixSocket,
            Kind::TcpLoopback,
        ];
        #[cfg(feature = "iceoryx2-bench")]
        kinds.extend([Kind::Iceoryx2Poll, Kind::Iceoryx2Blocking]);
        kinds
    }

    /// Whether both sides spin before sleeping (busy-poll for iceoryx2).
    pub fn spins(self) -> bool {
        match self {
            Kind::ShmpoolSpin | Kind::ShmpoolSpinBcast2 | Kind::ShmpoolSpinWq2 => true,
            #[cfg(feature = "iceoryx2-bench")]
            Kind::Iceoryx2Poll => true,
            _ => false,
        }
    }

    /// Receiving processes of a row.
    pub fn consumers(self) -> usize {
        match self {
            Kind::ShmpoolBlockingBcast2 | Kind::ShmpoolSpinBcast2 | Kind::ShmpoolBlockingWq2 | Kind::ShmpoolSpinWq2 => {
                2
            }
            _ => 1,
        }
    }

    /// Whether each message goes to one of the consumers (a work-queue pool) instead of all.
    pub fn work_queue(self) -> bool {
        matches!(self, Kind::ShmpoolBlockingWq2 | Kind::ShmpoolSpinWq2)
    }

    fn is_shmpool(self) -> bool {
        matches!(
            self,
            Kind::ShmpoolBlocking
                | Kind::ShmpoolSpin
                | Kind::ShmpoolBlockingBcast2
                | Kind::ShmpoolSpinBcast2
                | Kind::ShmpoolBlockingWq2
                | Kind::ShmpoolSpinWq2
        )
    }
}

/// What both sides of one row agree on.
pub struct Setup {
    pub kind: Kind,
    pub dir: PathBuf,
    pub payload: usize,
}

/// A sent message: when it was sent (CLOCK_MONOTONIC ns, just before the transport's send call)
/// and how long the sender waited for room (a free slot, a free mailbox) before filling it.
pub struct Sent {
    pub t0: u64,
    pub acquire_ns: u64,
}

pub trait SendSide {
    /// Waits for room, stamps message `index` (see [`crate::frame`]) and sends it.
    fn send(&mut self, index: u64) -> CliResult<Sent>;
    /// Waits for the receiver's acknowledgement of the last message.
    fn wait_ack(&mut self) -> CliResult;
    /// Messages are streamed from now on: timings only the latency phase reports are not taken.
    fn start_streaming(&mut self) {}
}

pub trait RecvSide {
    /// Waits for the next message; its bytes stay valid until [`RecvSide::release`].
    fn recv(&mut self) -> CliResult<&[u8]>;
    /// Gives the message back (a slot, a mailbox); a no-op for copying transports.
    fn release(&mut self) -> CliResult;
    /// Acknowledges the message to the sender (latency phase only).
    fn ack(&mut self) -> CliResult;
}

/// What the parent made for one row before the child starts.
pub enum Prepared {
    Shm(shm::Pools),
    Futex(futex::Region),
    Pipe,
    Socket(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
    #[cfg(feature = "iceoryx2-bench")]
    Iceoryx2(iceoryx::Services),
}

pub fn prepare(setup: &Setup) -> CliResult<Prepared> {
    Ok(match setup.kind {
        k if k.is_shmpool() => Prepared::Shm(shm::Pools::create(setup)?),
        Kind::FutexPingpong => Prepared::Futex(futex::Region::create(setup)?),
        Kind::Pipe => {
            stream::create_fifos(setup)?;
            Prepared::Pipe
        }
        Kind::UnixSocket => Prepared::Socket(stream::listen(setup)?),
        Kind::TcpLoopback => Prepared::Tcp(stream::tcp_listen(setup)?),
        #[cfg(feature = "iceoryx2-bench")]
        Kind::Iceoryx2Poll | Kind::Iceoryx2Blocking => Prepared::Iceoryx2(iceoryx::Services::create(setup)?),
        _ => unreachable!("every shmpool kind is matched by is_shmpool"),
    })
}

/// The parent's side, once the child runs; `peer_alive` says whether it still does.
pub fn connect_sender(
    prepared: Prepared,
    setup: &Setup,
    peer_alive: impl FnMut() -> bool,
) -> CliResult<Box<dyn SendSide>> {
    Ok(match prepared {
        Prepared::Shm(pools) => Box::new(shm::Sender::new(pools, setup)?),
        Prepared::Futex(region) => Box::new(futex::Sender::new(region, setup)),
        Prepared::Pipe => Box::new(stream::pipe_sender(setup, peer_alive)?),
        Prepared::Socket(listener) => Box::new(stream::socket_sender(&listener, setup, peer_alive)?),
        Prepared::Tcp(listener) => Box::new(stream::tcp_sender(&listener, setup, peer_alive)?),
        #[cfg(feature = "iceoryx2-bench")]
        Prepared::Iceoryx2(services) => Box::new(iceoryx::Sender::new(services, setup)?),
    })
}

/// The child's side.
pub fn open_receiver(setup: &Setup) -> CliResult<Box<dyn RecvSide>> {
    Ok(match setup.kind {
        k if k.is_shmpool() => Box::new(shm::Receiver::open(setup)?),
        Kind::FutexPingpong => Box::new(futex::Receiver::open(setup)?),
        Kind::Pipe => Box::new(stream::pipe_receiver(setup)?),
        Kind::UnixSocket => Box::new(stream::socket_receiver(setup)?),
        Kind::TcpLoopback => Box::new(stream::tcp_receiver(setup)?),
        #[cfg(feature = "iceoryx2-bench")]
        Kind::Iceoryx2Poll | Kind::Iceoryx2Blocking => Box::new(iceoryx::Receiver::open(setup)?),
        _ => unreachable!("every shmpool kind is matched by is_shmpool"),
    })
}
