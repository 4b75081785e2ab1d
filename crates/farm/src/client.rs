//! A Majordomo client with Lazy Pirate retries: each attempt waits up to a timeout (2.5 s by
//! default); after a timeout the socket is replaced (dropping any late reply) and the request
//! sent again, up to a bounded number of attempts (3), then [`Error::NoReply`].
//!
//! ```no_run
//! use shmpool_farm::{Client, ClientConfig, Part};
//! let mut client = Client::connect("tcp://127.0.0.1:5555", ClientConfig::default())?;
//! let reply = client.request("echo", &[Part::bytes("hello")])?;
//! assert_eq!(reply[0].data(), b"hello");
//! # Ok::<(), shmpool_farm::Error>(())
//! ```

use crate::mdp::{self, Limits};
use crate::part::Part;
use crate::transport::{Context, Socket};
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
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig { timeout: Duration::from_millis(2500), attempts: 3, limits: Limits::default() }
    }
}

/// A client of a broker. Not thread-safe: one per thread.
pub struct Client {
    ctx: Context,
    endpoint: String,
    config: ClientConfig,
    socket: Option<Socket>,
}

impl Client {
    /// A client of the broker at `endpoint` (connects lazily, at the first request).
    pub fn connect(endpoint: &str, config: ClientConfig) -> Result<Client> {
        if config.attempts == 0 {
            return Err(Error::Invalid("a client needs at least one attempt".into()));
        }
        Ok(Client { ctx: Context::new(), endpoint: endpoint.to_string(), config, socket: None })
    }

    /// Sends `parts` to `service` and returns the reply's parts.
    pub fn request(&mut self, service: &str, parts: &[Part]) -> Result<Vec<Part>> {
        if service.is_empty() || service.len() > mdp::MAX_SERVICE {
            return Err(Error::Invalid(format!("service name {service:?}: 1 to {} bytes", mdp::MAX_SERVICE)));
        }
        for _ in 0..self.config.attempts {
            let socket = match self.socket.take() {
                Some(s) => s,
                None => {
                    let s = self.ctx.dealer()?;
                    s.connect(&self.endpoint)?;
                    s
                }
            };
            socket.send(mdp::client_request(service.as_bytes(), parts.iter().map(Part::to_frame)))?;
            if let Some(reply) = self.wait_reply(&socket, service)? {
                self.socket = Some(socket);
                return reply;
            }
            // Timed out: this socket is dropped (Lazy Pirate), a late reply dies with it.
        }
        Err(Error::NoReply {
            service: service.to_string(),
            attempts: self.config.attempts,
            timeout_ms: self.config.timeout.as_millis(),
        })
    }

    /// Waits one attempt's time for a valid reply from `service`; malformed messages are skipped.
    fn wait_reply(&self, socket: &Socket, service: &str) -> Result<Option<Result<Vec<Part>>>> {
        let deadline = Instant::now() + self.config.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !socket.wait_readable(left)? {
                return Ok(None);
            }
            let Some(mut frames) = socket.try_recv()? else { continue };
            let Ok((name, body)) = mdp::decode_client(&frames, &self.config.limits) else { continue };
            if name != service.as_bytes() {
                continue;
            }
            let body: Vec<_> = frames.drain(body).collect();
            if let Some((code, reason)) = mdp::parse_error(&body) {
                return Ok(Some(Err(Error::Refused { service: service.to_string(), code, reason })));
            }
            return Ok(Some(Ok(body.into_iter().map(Part::from_frame).collect())));
        }
    }
}
