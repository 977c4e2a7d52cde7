//! List subsystem tests: real public lists, and the updater against a real HTTP server.

mod real_files;
mod server;
mod updater;
