//! The abuse suite of `tests/abuse.rs` once more, with every request on hyper's engine
//! (`test_all_to_hyper` in the proxy's file): both engines must hold up the same way.
//! `abuse.rs` tells which build it is by the crate's name.

#[path = "../abuse.rs"]
mod abuse;
