//! GuardNest's proxy engine: a forward HTTP proxy that tunnels CONNECT, forwards plain
//! HTTP, and refuses hosts on block lists.
//!
//! A connection's life, one module per stage: [`listener`] (accept) → `connection` (read
//! the request head) → policy ([`blocklist`]) → [`dial`] → `connect` + [`tunnel`] (CONNECT) or
//! `forward` (plain HTTP) → [`respond`] (the one place errors become 400/403/502/504/508).
//! [`server`] ties them together; [`health`] checks the listener; [`stats`] counts.

#![warn(missing_docs)]

pub mod access;
pub mod blocklist;
pub mod config;
mod connect;
mod connection;
pub mod control;
pub mod dial;
pub mod domain;
pub mod events;
mod forward;
pub mod fsutil;
pub mod health;
mod listener;
pub mod proxy_protocol;
pub mod respond;
pub mod server;
pub mod service;
pub mod stats;
pub mod sysproxy;
pub mod tunnel;

pub use blocklist::{Blocklists, Policy, Verdict};
pub use config::Config;
pub use server::{Proxy, ServeError};
pub use service::ProxyService;
