//! A connection's life, one module per stage, each importing only the stages below it:
//!
//! 1. [`listener`]: take a permit, accept.
//! 2. [`serve`]: the connection's task: the PROXY protocol header (opt-in), then its first
//!    head.
//! 3. [`head`]: read and parse the first request head before hyper (CONNECT heads are
//!    answered without it).
//! 4. [`connect`] (decide, dial, `200`, then [`crate::conn::tunnel`]) or [`http`]: hyper's engine,
//!    which routes each request to [`connect`] or [`forward`].
//!
//! Below them all: [`gate`] (the shared state and the checks every request passes, in one
//! order), [`route`] (direct, or through a parent proxy: the user's own) and [`hop`] (the hop-by-hop rules of the forward stage). Refusals become answers
//! in [`crate::conn::respond`].

pub(crate) mod connect;
pub(crate) mod dial;
pub(crate) mod forward;
pub(crate) mod gate;
pub(crate) mod head;
pub(crate) mod hop;
pub(crate) mod http;
pub(crate) mod idle;
pub(crate) mod listener;
pub(crate) mod respond;
pub(crate) mod route;
pub(crate) mod serve;
pub(crate) mod tunnel;
pub(crate) mod upstream;
