//! A connection's life, one module per stage, each importing only the stages below it:
//!
//! 1. [`listener`]: take a permit, accept.
//! 2. [`serve`]: the connection's task: the PROXY protocol header (opt-in), then its heads.
//! 3. [`head`]: read and parse request heads (CONNECT, a simple GET or HEAD) before hyper.
//! 4. [`connect`] (decide, dial, `200`, then [`crate::tunnel`]), [`relay`] (a simple GET
//!    or HEAD without hyper), or [`http`]: hyper's engine, which routes each request to
//!    [`connect`] or [`forward`].
//!
//! Below them all: [`gate`] (the shared state and the checks every request passes, in one
//! order) and [`hop`] (the hop-by-hop rules both engines apply). Refusals become answers in
//! [`crate::respond`].

pub(crate) mod connect;
pub(crate) mod forward;
pub(crate) mod gate;
pub(crate) mod head;
pub(crate) mod hop;
pub(crate) mod http;
pub(crate) mod listener;
pub(crate) mod relay;
pub(crate) mod serve;
