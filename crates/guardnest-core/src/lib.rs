//! GuardNest's proxy engine: a forward HTTP proxy that tunnels CONNECT, forwards plain
//! HTTP, and refuses hosts on block lists.
//!
//! A connection's life, one module per stage, in `conn/`: accept (`listener`) → the
//! connection task (`serve`: PROXY protocol header, [`proxy_protocol`], opt-in) → read the
//! head (`head`) → [`access`] → policy ([`blocklist`]) → `dial` (all three in `gate`; in
//! gateway mode [`own_addresses`] tells the dial stage which addresses are this host's) →
//! CONNECT + `tunnel`, or forwarding (`forward`, through hyper's engine, `http`, the one
//! plain-HTTP engine) → `respond` (the one place errors become
//! 400/403/407/429/431/502/504/508). [`server`] ties them together; [`health`] checks the
//! listener; [`stats`] and [`events`] count. Around the proxy: [`service::ProxyService`]
//! (the facade every front end uses), [`control`] (the local control API) and [`sysproxy`]
//! (the system proxy as a transaction).
//! `docs/ARCHITECTURE.md` in the repository has the diagrams.
//!
//! # Example
//!
//! A proxy on a free loopback port with one list, refusing a subdomain of a listed name:
//!
//! ```
//! use guardnest_core::config::{BlocklistConfig, HealthConfig, ProxyConfig, SourceSpec};
//! use guardnest_core::{Blocklists, Proxy};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let list = dir.path().join("block.txt");
//! std::fs::write(&list, "evil.test\n")?;
//! let lists = BlocklistConfig {
//!     sources: vec![SourceSpec::Location(list.display().to_string())],
//!     default_lists: false,
//!     ..BlocklistConfig::default()
//! };
//! let blocklists = Blocklists::load(&lists, None)?;
//!
//! let config = ProxyConfig { listen: "127.0.0.1:0".parse()?, ..ProxyConfig::default() };
//! let proxy = Proxy::bind(config, HealthConfig::default(), blocklists.policy()).await?;
//! let addr = proxy.local_addr();
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let running = tokio::spawn(proxy.run(shutdown.clone()));
//!
//! let mut client = tokio::net::TcpStream::connect(addr).await?;
//! client.write_all(b"CONNECT www.evil.test:443 HTTP/1.1\r\n\r\n").await?;
//! let mut answer = String::new();
//! client.read_to_string(&mut answer).await?; // the proxy closes after a refusal
//! assert!(answer.starts_with("HTTP/1.1 403"));
//! assert!(answer.contains("www.evil.test is blocked by list \"block.txt\" (rule evil.test)"));
//!
//! shutdown.cancel();
//! running.await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]
// No unwrap on locks, I/O or anything a peer controls; tests may.
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod access;
pub mod blocklist;
pub mod config;
mod conn;
pub mod control;
pub mod domain;
pub mod events;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod own_addresses;
pub mod pac;
pub mod proxy_protocol;
pub mod server;
pub mod service;
pub mod stats;
pub mod who;

pub use blocklist::{Blocklists, Policy, Verdict};
pub use config::Config;
pub use conn::respond::error_chain;
pub use conn::route::Router;
/// The OS layer (its own crate): the system proxy as a transaction, the firewall hook,
/// private files.
pub use guardnest_sysproxy as sysproxy;
pub use server::{Proxy, ServeError};
pub use service::ProxyService;
