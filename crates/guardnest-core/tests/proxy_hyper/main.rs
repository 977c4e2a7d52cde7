//! The proxy suites of `tests/proxy` once more, with every request on hyper's engine (none
//! on the first-head CONNECT answer or the relay): both engines must pass the same suites.
//! `support::all_to_hyper` tells the suites which build they are.

#[path = "../proxy/access.rs"]
mod access;
#[path = "../proxy/blocking.rs"]
mod blocking;
#[path = "../proxy/bypass.rs"]
mod bypass;
#[path = "../proxy/connect.rs"]
mod connect;
#[path = "../proxy/forward.rs"]
mod forward;
#[path = "../common/loopback.rs"]
mod loopback;
#[path = "../proxy/probed.rs"]
mod probed;
#[path = "../proxy/relay.rs"]
mod relay;
#[path = "../proxy/robustness.rs"]
mod robustness;
#[path = "../proxy/support.rs"]
mod support;
