//! Integration tests: the real proxy on 127.0.0.1:0 with real upstreams on loopback.

mod access;
mod answers;
mod blocking;
mod bypass;
mod connect;
mod forward;
#[path = "../common/loopback.rs"]
mod loopback;
mod robustness;
mod support;
mod who;
