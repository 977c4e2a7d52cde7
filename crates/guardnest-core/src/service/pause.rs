//! The pause: blocking stopped for a while, and back by itself when it ends. Each call is a
//! transition of the service ([`ProxyService`]); the end is announced to every front end.

use std::time::{Duration, SystemTime};

use super::{announce, minutes, now_secs, Change, InputError, ProxyService, ServiceError, PAUSE_MAX_MINUTES};

impl ProxyService {
    /// Stops blocking for `minutes` (1 to [`PAUSE_MAX_MINUTES`]); it comes back by itself.
    /// The end is the next whole minute after that, so "until 12:35" is 12:35:00 and the
    /// pause is never shorter than asked (a minute's pause asked at 12:33:25 ends at 12:35).
    pub async fn pause(&self, minutes: u64) -> Result<Change, ServiceError> {
        if minutes == 0 || minutes > PAUSE_MAX_MINUTES {
            return Err(ServiceError::Input(InputError::PauseRange));
        }
        let until = (now_secs() + minutes * 60).div_ceil(60) * 60;
        self.pause_until(until, minutes * 60).await
    }

    /// Stops blocking for exactly `length` (a second to a day): for scripts and tests that
    /// cannot wait for a whole minute.
    pub async fn pause_for(&self, length: Duration) -> Result<Change, ServiceError> {
        if length < Duration::from_secs(1) || length > Duration::from_secs(PAUSE_MAX_MINUTES * 60) {
            return Err(ServiceError::Input(InputError::PauseRange));
        }
        self.pause_until(now_secs() + length.as_secs(), length.as_secs()).await
    }

    /// Pauses until `until`; the message says the length asked for (`asked` seconds).
    /// Refused while protection is off: a pause would outlive the off and silently end
    /// blocking after the next switch on.
    async fn pause_until(&self, until: u64, asked: u64) -> Result<Change, ServiceError> {
        let t = self.transition().await;
        if t.protection_off {
            return Err(ServiceError::Input(InputError::NothingToPause));
        }
        self.lists.pause_until(until);
        self.watch_pause_end(until);
        drop(t);
        Ok(Change { changed: true, message: format!("protection paused for {}", minutes(asked)) })
    }

    /// Ends a pause now.
    pub async fn resume(&self) -> Change {
        let _t = self.transition().await;
        let changed = self.lists.paused_until().is_some();
        self.lists.resume();
        Change {
            changed,
            message: if changed { "protection resumed".into() } else { "protection was not paused".into() },
        }
    }

    /// Announces the end of the pause that ends at `until` when it comes (unless it was
    /// ended or replaced before), so that every front end stops saying "paused" then.
    pub(super) fn watch_pause_end(&self, until: u64) {
        let (lists, stop) = (self.lists.clone(), self.background.clone());
        self.tasks.spawn(async move {
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            // Just past the second the policy lets names through again.
            let left = Duration::from_secs(until).saturating_sub(now) + Duration::from_millis(20);
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(left) => {
                    if lists.pause_mark() == until {
                        tracing::info!("the pause ended; blocking again");
                        announce(lists.changes());
                    }
                }
            }
        });
    }
}
