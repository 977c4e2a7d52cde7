//! ProxyService, the control API and the system-proxy transaction, on real sockets, with an
//! in-memory system-proxy backend (the real GNOME and KDE ones are tested by the CLI tests).

mod api;
mod choices;
mod lifecycle;
#[path = "../common/loopback.rs"]
mod loopback;
mod support;
mod sysproxy;
mod user;
