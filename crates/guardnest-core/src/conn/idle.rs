//! `idle_timeout` for what hyper moves: a body that stops arriving ([`IdleBody`]), a peer
//! that stops reading (`Deadline`, on the client's socket and the upstream's), and an
//! upstream that does not answer (`AnswerTimer`). The relay
//! and the tunnel bound their own reads and writes; these bound hyper's, both directions, so
//! no path holds a connection longer than `idle_timeout` without progress.
//!
//! A timer is armed only when a read or write has to wait, and reused after that: a body
//! or socket that never waits costs no timer.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The error a body or a write ends with when it waited `idle_timeout` for nothing.
#[derive(Debug, thiserror::Error)]
#[error("no progress for {0:?} (idle_timeout)")]
pub struct Stalled(pub Duration);

/// Counts how long one kind of wait lasts; fires after `idle` without progress.
pub(crate) struct Deadline {
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Deadline {
    pub(crate) fn new(idle: Duration) -> Self {
        Self { idle, timer: None, armed: false }
    }

    /// Passes `polled` on; while it is pending, the wait is timed, and past `idle` it
    /// becomes an error.
    pub(crate) fn check<T>(&mut self, cx: &mut Context<'_>, polled: Poll<T>) -> Poll<Result<T, Stalled>> {
        match polled {
            Poll::Ready(t) => {
                self.armed = false;
                Poll::Ready(Ok(t))
            }
            Poll::Pending => {
                let deadline = Instant::now() + self.idle;
                match &mut self.timer {
                    Some(timer) if !self.armed => timer.as_mut().reset(deadline),
                    Some(_) => {}
                    None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                }
                self.armed = true;
                match self.timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => {
                        self.armed = false;
                        Poll::Ready(Err(Stalled(self.idle)))
                    }
                    _ => Poll::Pending,
                }
            }
        }
    }

    /// A write's result, with a stalled wait as an I/O error.
    pub(crate) fn check_io<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match self.check(cx, polled) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            Poll::Ready(Err(stalled)) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, stalled))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A body whose next frame must come within `idle_timeout`; it also tells `counted` how
/// many data bytes went through.
pub struct IdleBody<B> {
    inner: B,
    deadline: Deadline,
    counted: Option<CountTo>,
}

/// Where a body's bytes are added.
pub(crate) type CountTo =
    (std::sync::Arc<crate::stats::Stats>, fn(&crate::stats::Stats) -> &std::sync::atomic::AtomicU64);

impl<B> IdleBody<B> {
    /// `inner`, cut after `idle` without a frame; data bytes added to `counted`.
    pub(crate) fn new(inner: B, idle: Duration, counted: Option<CountTo>) -> Self {
        Self { inner, deadline: Deadline::new(idle), counted }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match this.deadline.check(cx, polled) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(stalled)) => Poll::Ready(Some(Err(stalled.into()))),
            Poll::Ready(Ok(frame)) => {
                if let (Some(Ok(frame)), Some((stats, field))) = (&frame, &this.counted) {
                    if let Some(data) = frame.data_ref() {
                        field(stats).fetch_add(data.remaining() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The wait for an upstream's answer, timed by one timer per client connection. A timer
/// set up and torn down for every request costs a wheel insertion and removal each; this
/// one stays armed at the deadline of an earlier request, and when it fires before the
/// current deadline it is set again, so a connection's timer moves at most once per
/// `idle_timeout`, whatever its number of requests.
#[derive(Default)]
pub(crate) struct AnswerTimer {
    sleep: parking_lot::Mutex<Option<Pin<Box<Sleep>>>>,
}

impl AnswerTimer {
    /// Ready once `deadline` has passed.
    pub(crate) async fn expired(&self, deadline: Instant) {
        std::future::poll_fn(|cx| {
            let mut sleep = self.sleep.lock();
            let sleep = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            loop {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if Instant::now() >= deadline {
                    return Poll::Ready(());
                }
                sleep.as_mut().reset(deadline);
            }
        })
        .await;
    }
}
