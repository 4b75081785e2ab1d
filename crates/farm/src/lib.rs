//! # shmpool-farm: a Majordomo worker farm on ZeroMQ
//!
//! A broker ([`Broker`]) speaks 7/MDP (MDP/0.1) and 8/MMI on one ROUTER socket; [`Worker`]s
//! register a service and serve its requests; [`Client`]s send requests with Lazy Pirate retries.
//! A message is a list of [`Part`]s: bytes or arrays (dtype, shape, data). Any MDP/0.1 client or
//! worker written against the spec interoperates with these.
//!
//! ```no_run
//! use shmpool_farm::{Broker, BrokerConfig, Client, ClientConfig, Part, Worker, WorkerConfig};
//! use std::sync::atomic::AtomicBool;
//! let broker = Broker::bind(&["tcp://127.0.0.1:5555"], BrokerConfig::default())?;
//! std::thread::spawn(move || broker.run(&AtomicBool::new(false)));
//! let worker = Worker::connect("tcp://127.0.0.1:5555", "echo", WorkerConfig::default())?;
//! std::thread::spawn(move || {
//!     for request in &worker {
//!         let request = request.unwrap();
//!         let echo: Vec<Part> = request.parts().iter().map(|p| Part::bytes(p.data())).collect();
//!         request.reply(echo).unwrap();
//!     }
//! });
//! let mut client = Client::connect("tcp://127.0.0.1:5555", ClientConfig::default())?;
//! assert_eq!(client.request("echo", &[Part::bytes("hi")])?[0].data(), b"hi");
//! # Ok::<(), shmpool_farm::Error>(())
//! ```

pub mod broker;
pub mod cli;
pub mod client;
pub mod colocation;
pub mod error;
pub mod handoff;
pub mod mdp;
pub mod part;
pub mod reply;
pub mod shm;
pub mod transport;
pub mod worker;

pub use broker::{Broker, BrokerConfig};
pub use client::{Client, ClientConfig};
pub use error::{Error, Result};
pub use part::{Array, Part, Payload};
pub use shm::ShmConfig;
pub use worker::{Replier, Request, Worker, WorkerConfig};
