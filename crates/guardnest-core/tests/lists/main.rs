//! List subsystem tests: the parser and the updater against a real HTTP server (the real
//! public lists are in `real_lists.rs`).

mod server;
mod updater;
