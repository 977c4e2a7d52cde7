//! ProxyService, the control API and the system-proxy transaction, on real sockets, with an
//! in-memory system-proxy backend (the real GNOME and KDE ones are tested by the CLI tests).

mod api;
mod choices;
// Unix: the start refused on a planted symlink, and a new data dir's mode. (On Windows the
// same fsutil calls are tested by guardnest-sysproxy's tests/private_files.rs.)
#[cfg(unix)]
mod data_dir;
mod lifecycle;
#[path = "../common/loopback.rs"]
mod loopback;
mod support;
mod sysproxy;
mod upstream;
mod user;
