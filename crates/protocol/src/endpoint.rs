//! The two ends: a host's [`Listener`] and a worker's [`connect`]. Each new socket is
//! authenticated, then negotiated, then becomes a [`Connection`].

use super::connection::Connection;
use super::handshake::{self, parse_protocols, Options, Protocol, Side};
use super::stream::{Address, RawListener, Stream};
use super::{auth, Secret, ADDRESS_ENV, DEFAULT_PROTOCOLS, PROTOCOL_ENV, SECRET_ENV};
use crate::{Error, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Settings of one end.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// Protocols in order (the first is the fallback); `None`: `$SHMPOOL_PROTOCOL`, else `tcp,shm`.
    pub protocols: Option<Vec<Protocol>>,
    /// What this side accepts (negotiated with the peer's).
    pub options: Options,
    /// Directory of the `shm` pools and Unix sockets; `None`: `$SHMPOOL_DIR`, else `/dev/shm`.
    pub directory: Option<PathBuf>,
    /// Limit of authentication and handshake steps.
    pub timeout: Duration,
}

impl Default for ConnConfig {
    fn default() -> ConnConfig {
        ConnConfig { protocols: None, options: Options::default(), directory: None, timeout: Duration::from_secs(10) }
    }
}

impl ConnConfig {
    /// The protocol list in effect (an unknown name in the environment is an error).
    pub fn protocol_list(&self) -> Result<Vec<Protocol>> {
        match &self.protocols {
            Some(list) if list.is_empty() => Err(Error::invalid("empty protocol list")),
            Some(list) => parse_protocols(&list.iter().map(|p| p.name()).collect::<Vec<_>>().join(",")),
            None => match std::env::var(PROTOCOL_ENV) {
                Ok(v) => parse_protocols(&v).map_err(|e| match e {
                    Error::InvalidArgument(m) => Error::invalid(format!("{PROTOCOL_ENV}: {m}")),
                    e => e,
                }),
                Err(_) => parse_protocols(DEFAULT_PROTOCOLS),
            },
        }
    }
}

/// A host's listening socket; workers connect to it (and may open further channels).
pub struct Listener {
    raw: RawListener,
    secret: Secret,
    config: ConnConfig,
    protocols: Vec<Protocol>,
    directory: PathBuf,
}

impl Listener {
    /// Listens on the fallback protocol's socket with a fresh random secret.
    pub fn bind(config: ConnConfig) -> Result<Listener> {
        let protocols = config.protocol_list()?;
        let directory = handshake::directory(config.directory.as_deref());
        let raw = match protocols[0] {
            Protocol::Unix => RawListener::unix(directory.join(format!("sock-{}", auth::random_hex(6)?)))?,
            _ => RawListener::tcp()?,
        };
        Ok(Listener { raw, secret: Secret::random()?, config, protocols, directory })
    }

    pub fn address(&self) -> Address {
        self.raw.address().expect("a bound listener has an address")
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    pub fn protocols(&self) -> &[Protocol] {
        &self.protocols
    }

    /// The pool directory, as this host sees it.
    pub fn directory(&self) -> &std::path::Path {
        &self.directory
    }

    /// The environment a worker needs to connect: address, secret and protocol list.
    pub fn worker_env(&self) -> Vec<(String, String)> {
        let list = self.protocols.iter().map(|p| p.name()).collect::<Vec<_>>().join(",");
        vec![
            (ADDRESS_ENV.into(), self.address().to_string()),
            (SECRET_ENV.into(), self.secret.to_hex()),
            (PROTOCOL_ENV.into(), list),
        ]
    }

    /// Accepts, authenticates and negotiates one worker connection within `timeout`; `check` runs
    /// every 50 ms while waiting and can give up early (e.g. the worker exited).
    pub fn accept(&self, timeout: Duration, check: &mut dyn FnMut() -> Result<()>) -> Result<Connection> {
        self.accept_with(&self.protocols, timeout, check)
    }

    /// Like [`accept`](Self::accept) with another protocol list (e.g. only the fallback for a
    /// second channel).
    pub fn accept_with(
        &self,
        protocols: &[Protocol],
        timeout: Duration,
        check: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Connection> {
        let mut stream = self.raw.accept(timeout, check)?;
        auth::accept(&mut stream, &self.secret, self.config.timeout)?;
        let side = Side {
            options: &self.config.options,
            protocols,
            directory: &self.directory,
            secret: &self.secret,
            timeout: self.config.timeout,
        };
        Connection::start(handshake::host(stream, &side, self.protocols[0])?)
    }
}

/// A worker's side: connects to `address`, authenticates with `secret`, negotiates.
pub fn connect(address: &Address, secret: &Secret, config: &ConnConfig) -> Result<Connection> {
    let protocols = config.protocol_list()?;
    let directory = handshake::directory(config.directory.as_deref());
    let address = match address {
        // The host's socket lies in the pool directory, which a container may see elsewhere.
        Address::Unix(path) if !path.exists() => match path.file_name() {
            Some(name) => Address::Unix(directory.join(name)),
            None => address.clone(),
        },
        other => other.clone(),
    };
    let address = &address;
    let mut stream = Stream::connect(address)?;
    auth::connect(&mut stream, secret, config.timeout)?;
    let started_on = if matches!(address, Address::Unix(_)) { Protocol::Unix } else { Protocol::Tcp };
    let side = Side {
        options: &config.options,
        protocols: &protocols,
        directory: &directory,
        secret,
        timeout: config.timeout,
    };
    Connection::start(handshake::worker(stream, &side, started_on)?)
}

/// [`connect`] with the address and secret a host put in the environment.
pub fn connect_env(config: &ConnConfig) -> Result<Connection> {
    let var = |name: &str| {
        std::env::var(name).map_err(|_| Error::invalid(format!("{name} is not set: was this started by a host?")))
    };
    let address: Address = var(ADDRESS_ENV)?.parse()?;
    let secret = Secret::from_hex(&var(SECRET_ENV)?)?;
    connect(&address, &secret, config)
}
