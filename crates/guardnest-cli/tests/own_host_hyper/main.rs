//! The tests of `tests/own_host.rs` once more, with every request on hyper's engine
//! (`test_all_to_hyper` in the gateway's file): both engines must refuse this host alike.
//! `own_host.rs` tells which build it is by the crate's name.

#[path = "../own_host.rs"]
mod own_host;

fn main() {
    own_host::main();
}
