//! The iceoryx2 rows (feature `iceoryx2-bench`): publish–subscribe of `[u8]` samples of the row's
//! payload, the sender loaning a sample, stamping it in place and sending it, the receiver reading
//! it in place; acknowledgements go back on a second publish–subscribe service. `iceoryx2-poll`
//! busy-polls `receive`; `iceoryx2-blocking` pairs each service with an event service (notifier /
//! listener: iceoryx2's blocking wait) and waits in `Listener::timed_wait` when nothing is there.
//! Full buffers make the publisher retry (`RetryUntilDelivered`), like a shmpool pool that blocks.

use super::shm::data_slots;
use super::transport::{RecvSide, SendSide, Sent, Setup};
use super::TIMEOUT;
use crate::{frame, CliResult, Failure};
use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use iceoryx2::sample::Sample;
use shmpool::monotonic_ns;
use std::fmt::Debug;
use std::time::Instant;

const ACK_BYTES: usize = 8;
const ACK_SLOTS: usize = 4;

type Bytes = [u8];
type Pub = Publisher<ipc::Service, Bytes, ()>;
type Sub = Subscriber<ipc::Service, Bytes, ()>;

fn ice<T, E: Debug>(what: &str, result: Result<T, E>) -> CliResult<T> {
    result.map_err(|e| Failure::error(format!("iceoryx2 {what}: {e:?}")))
}

/// Service names unique to the row: the scratch directory's and the row directory's names.
fn service_name(setup: &Setup, part: &str) -> CliResult<ServiceName> {
    let name = |p: Option<&std::path::Path>| p.and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
    let row = format!(
        "shmpool-bench/{}/{}/{part}",
        name(setup.dir.parent()).unwrap_or_default(),
        name(Some(&setup.dir)).unwrap_or_default()
    );
    ice("service name", ServiceName::new(&row))
}

/// One direction of the exchange: a publish–subscribe service and, for blocking rows, an event
/// service that signals each sample.
struct Channel {
    pubsub: iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, Bytes, ()>,
    event: Option<iceoryx2::service::port_factory::event::PortFactory<ipc::Service>>,
}

impl Channel {
    fn new(node: &Node<ipc::Service>, setup: &Setup, part: &str, slots: usize, create: bool) -> CliResult<Channel> {
        let builder = node
            .service_builder(&service_name(setup, part)?)
            .publish_subscribe::<Bytes>()
            .max_publishers(1)
            .max_subscribers(1)
            .history_size(0)
            .subscriber_max_buffer_size(slots)
            .enable_safe_overflow(false);
        let pubsub =
            if create { ice("create service", builder.create())? } else { ice("open service", builder.open())? };
        let event = if setup.kind.spins() {
            None
        } else {
            let builder = node.service_builder(&service_name(setup, &format!("{part}-event"))?).event();
            Some(if create { ice("create event", builder.create())? } else { ice("open event", builder.open())? })
        };
        Ok(Channel { pubsub, event })
    }

    fn publisher(&self, max_len: usize) -> CliResult<(Pub, Option<Notifier<ipc::Service>>)> {
        let publisher = self
            .pubsub
            .publisher_builder()
            .initial_max_slice_len(max_len)
            .max_loaned_samples(1)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create();
        let notifier = self.event.as_ref().map(|e| ice("notifier", e.notifier_builder().create())).transpose()?;
        Ok((ice("publisher", publisher)?, notifier))
    }

    fn subscriber(&self, slots: usize) -> CliResult<(Sub, Option<Listener<ipc::Service>>)> {
        let subscriber = ice("subscriber", self.pubsub.subscriber_builder().buffer_size(slots).create())?;
        let listener = self.event.as_ref().map(|e| ice("listener", e.listener_builder().create())).transpose()?;
        Ok((subscriber, listener))
    }
}

/// Loans a sample of `len` bytes, lets `fill` write it (before and after `t0`), sends it and
/// signals the listener, if any. Returns when the send call was made.
fn send_sample(
    publisher: &Pub,
    notifier: Option<&Notifier<ipc::Service>>,
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> u64,
) -> CliResult<u64> {
    let mut sample = ice("loan", publisher.loan_slice_uninit(len))?;
    let uninit = sample.payload_mut();
    // SAFETY: the chunk lies in iceoryx2's shared-memory segment, pages the kernel handed out
    // zero-filled and earlier samples wrote: every byte holds a value, so viewing them as `u8` is
    // sound. `fill` writes the header and page stamps the receivers read.
    let bytes = unsafe { std::slice::from_raw_parts_mut(uninit.as_mut_ptr().cast::<u8>(), uninit.len()) };
    let t0 = fill(bytes);
    // SAFETY: see above: every byte of the chunk is initialized memory.
    let sample = unsafe { sample.assume_init() };
    ice("send", sample.send())?;
    if let Some(n) = notifier {
        ice("notify", n.notify())?;
    }
    Ok(t0)
}

/// Takes the next sample: busy-polls, or sleeps in the listener between attempts.
fn receive(subscriber: &Sub, listener: Option<&Listener<ipc::Service>>) -> CliResult<Sample<ipc::Service, Bytes, ()>> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(sample) = ice("receive", subscriber.receive())? {
            return Ok(sample);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::error("iceoryx2: the peer did not send in time"));
        }
        match listener {
            Some(l) => {
                ice("wait", l.timed_wait(|_| {}, left))?;
            }
            None => std::hint::spin_loop(),
        }
    }
}

/// A process's node and the two services: created by the parent, opened by the child.
pub struct Services {
    _node: Node<ipc::Service>,
    data: Channel,
    acks: Channel,
    slots: usize,
}

impl Services {
    fn new(setup: &Setup, create: bool) -> CliResult<Services> {
        let node = ice("node", NodeBuilder::new().create::<ipc::Service>())?;
        let slots = data_slots(setup.payload) as usize;
        let data = Channel::new(&node, setup, "data", slots, create)?;
        let acks = Channel::new(&node, setup, "acks", ACK_SLOTS, create)?;
        Ok(Services { _node: node, data, acks, slots })
    }

    pub fn create(setup: &Setup) -> CliResult<Services> {
        Services::new(setup, true)
    }
}

pub struct Sender {
    publisher: Pub,
    notifier: Option<Notifier<ipc::Service>>,
    acks: Sub,
    ack_listener: Option<Listener<ipc::Service>>,
    payload: usize,
    _services: Services,
}

impl Sender {
    pub fn new(services: Services, setup: &Setup) -> CliResult<Sender> {
        let (publisher, notifier) = services.data.publisher(setup.payload)?;
        let (acks, ack_listener) = services.acks.subscriber(ACK_SLOTS)?;
        Ok(Sender { publisher, notifier, acks, ack_listener, payload: setup.payload, _services: services })
    }
}

impl SendSide for Sender {
    fn send(&mut self, index: u64) -> CliResult<Sent> {
        let start = monotonic_ns();
        let mut acquire_ns = 0;
        let t0 = send_sample(&self.publisher, self.notifier.as_ref(), self.payload, |buf| {
            acquire_ns = monotonic_ns() - start;
            frame::stamp(buf, index);
            let t0 = monotonic_ns();
            frame::set_sent_at(buf, t0);
            t0
        })?;
        Ok(Sent { t0, acquire_ns })
    }

    fn wait_ack(&mut self) -> CliResult {
        receive(&self.acks, self.ack_listener.as_ref())?;
        Ok(())
    }
}

pub struct Receiver {
    subscriber: Sub,
    listener: Option<Listener<ipc::Service>>,
    acks: Pub,
    ack_notifier: Option<Notifier<ipc::Service>>,
    held: Option<Sample<ipc::Service, Bytes, ()>>,
    _services: Services,
}

impl Receiver {
    pub fn open(setup: &Setup) -> CliResult<Receiver> {
        let services = Services::new(setup, false)?;
        let (subscriber, listener) = services.data.subscriber(services.slots)?;
        let (ack_publisher, ack_notifier) = services.acks.publisher(ACK_BYTES)?;
        Ok(Receiver { subscriber, listener, acks: ack_publisher, ack_notifier, held: None, _services: services })
    }
}

impl RecvSide for Receiver {
    fn recv(&mut self) -> CliResult<&[u8]> {
        let sample = self.held.insert(receive(&self.subscriber, self.listener.as_ref())?);
        Ok(sample.payload())
    }

    fn release(&mut self) -> CliResult {
        self.held = None;
        Ok(())
    }

    fn ack(&mut self) -> CliResult {
        send_sample(&self.acks, self.ack_notifier.as_ref(), ACK_BYTES, |_| 0)?;
        Ok(())
    }
}
