//! What was blocked and who asked: totals by list, the most blocked names, the latest
//! events with the program behind each, for status, the control API and the desktop app.
//! Touched only on the blocked path (and by [`Who`]'s sweep).

use parking_lot::{Mutex, MutexGuard};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::who::{Asker, Who};

/// Recent events kept.
const RECENT: usize = 200;
/// Distinct names counted for the top list; beyond this, the least blocked are forgotten.
const TRACKED_NAMES: usize = 4096;

/// One blocked request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockEvent {
    /// When (seconds since the epoch).
    pub at: u64,
    /// The host refused.
    pub host: String,
    /// The list whose rule matched.
    pub list: String,
    /// The rule.
    pub rule: String,
    /// The program that asked (issue "Who asked").
    pub asked_by: Asker,
}

/// One blocked name among the latest blocks: how often and when last.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BlockedName {
    /// The host refused.
    pub host: String,
    /// The list whose rule matched last.
    pub list: String,
    /// The rule that matched last.
    pub rule: String,
    /// Who asked last.
    pub asked_by: Asker,
    /// Blocks of this name since the start (while it is among the most blocked).
    pub count: u64,
    /// The last block (seconds since the epoch).
    pub last: u64,
    /// Allowed since (on the user's own allowlist now): set by the service, which knows the
    /// lists, so that a window shows "Allowed" with an undo instead of "Allow" again.
    #[serde(default)]
    pub allowed: bool,
    /// The name on the user's allowlist that allows it: the host itself or a parent
    /// (allowing `evil.test` allows `www.evil.test`). What an undo must take off the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_by: Option<String>,
}

/// Blocks counted on one day (UTC), as kept in the data dir so that "blocked today"
/// survives a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DayCount {
    /// Days since the epoch (UTC).
    pub day: u64,
    /// Blocks that day.
    pub count: u64,
}

/// A counter bumped whenever something a window shows has changed (a block, the switch, a
/// list), and the way to wait for it: front ends redraw on change instead of on a tick.
#[derive(Debug, Clone)]
pub struct Changes(Arc<tokio::sync::watch::Sender<u64>>);

impl Default for Changes {
    fn default() -> Self {
        Changes(Arc::new(tokio::sync::watch::Sender::new(0)))
    }
}

impl Changes {
    /// Something changed.
    pub fn bump(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every later change (`changed().await`).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// Blocked-request bookkeeping shared by every connection.
#[derive(Debug, Default)]
pub struct BlockLog {
    inner: Mutex<Inner>,
    changes: Changes,
    who: Arc<Who>,
}

#[derive(Debug, Default)]
struct Inner {
    by_list: HashMap<Arc<str>, u64>,
    by_name: HashMap<String, u64>,
    recent: VecDeque<BlockEvent>,
    /// (minute since the epoch, blocks in it), the last hour.
    minutes: VecDeque<(u64, u64)>,
    /// (day since the epoch, UTC; blocks that day).
    today: (u64, u64),
}

/// Minutes kept for the per-minute chart.
const MINUTES: u64 = 60;

impl BlockLog {
    /// A log whose blocks bump `changes`.
    pub fn with_changes(changes: Changes) -> Self {
        Self { inner: Mutex::default(), changes, who: Arc::default() }
    }

    /// The programs behind client connections.
    pub fn who(&self) -> &Arc<Who> {
        &self.who
    }

    /// Records a block of a request `asked_by` a program.
    pub fn record(&self, host: &str, list: &Arc<str>, rule: &str, asked_by: Asker) {
        self.who.note_block(&asked_by);
        let at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut inner = self.lock();
        *inner.by_list.entry(list.clone()).or_default() += 1;
        if inner.by_name.len() >= TRACKED_NAMES && !inner.by_name.contains_key(host) {
            // Forget the least blocked name to stay bounded.
            if let Some(min) = inner.by_name.iter().min_by_key(|(_, c)| **c).map(|(k, _)| k.clone()) {
                inner.by_name.remove(&min);
            }
        }
        // A name seen before (the usual case) costs no allocation.
        match inner.by_name.get_mut(host) {
            Some(count) => *count += 1,
            None => {
                inner.by_name.insert(host.to_string(), 1);
            }
        }
        if inner.recent.len() == RECENT {
            inner.recent.pop_front();
        }
        let minute = at / 60;
        match inner.minutes.back_mut() {
            Some((m, n)) if *m == minute => *n += 1,
            _ => inner.minutes.push_back((minute, 1)),
        }
        while inner.minutes.front().is_some_and(|(m, _)| *m + MINUTES <= minute) {
            inner.minutes.pop_front();
        }
        let day = at / 86_400;
        inner.today = if inner.today.0 == day { (day, inner.today.1 + 1) } else { (day, 1) };
        inner.recent.push_back(BlockEvent {
            at,
            host: host.into(),
            list: list.to_string(),
            rule: rule.into(),
            asked_by,
        });
        drop(inner);
        self.changes.bump();
    }

    /// The `n` names blocked last, newest first, one row per name with its count.
    pub fn recent_names(&self, n: usize) -> Vec<BlockedName> {
        let inner = self.lock();
        let mut rows: Vec<BlockedName> = Vec::new();
        for e in inner.recent.iter().rev() {
            if rows.len() == n {
                break;
            }
            if rows.iter().any(|r| r.host == e.host) {
                continue;
            }
            let count = inner.by_name.get(&e.host).copied().unwrap_or(1);
            rows.push(BlockedName {
                host: e.host.clone(),
                list: e.list.clone(),
                rule: e.rule.clone(),
                asked_by: e.asked_by.clone(),
                count,
                last: e.at,
                allowed: false,
                allowed_by: None,
            });
        }
        rows
    }

    /// Blocks per list, most first.
    pub fn by_list(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self.lock().by_list.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// The `n` most blocked names.
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self.lock().by_name.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    /// Blocks per minute over the last hour, oldest first (60 values, ending with this minute).
    pub fn per_minute(&self) -> Vec<u64> {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) / 60;
        let inner = self.lock();
        (0..MINUTES)
            .map(|i| {
                let minute = now + 1 + i - MINUTES;
                inner.minutes.iter().find(|(m, _)| *m == minute).map_or(0, |(_, n)| *n)
            })
            .collect()
    }

    /// Today's count, to be kept (see [`BlockLog::restore_today`]).
    pub fn day_count(&self) -> DayCount {
        let inner = self.lock();
        DayCount { day: inner.today.0, count: inner.today.1 }
    }

    /// Adds a count kept by an earlier run, if it is today's (a restart keeps "blocked
    /// today"); another day's is ignored.
    pub fn restore_today(&self, kept: DayCount) {
        let day = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) / 86_400;
        if kept.day != day {
            return;
        }
        let mut inner = self.lock();
        inner.today = match inner.today.0 == day {
            true => (day, inner.today.1 + kept.count),
            false => (day, kept.count),
        };
    }

    /// Blocks since midnight (UTC).
    pub fn today(&self) -> u64 {
        let day = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) / 86_400;
        let inner = self.lock();
        if inner.today.0 == day {
            inner.today.1
        } else {
            0
        }
    }

    /// The latest events, newest last.
    pub fn recent(&self, n: usize) -> Vec<BlockEvent> {
        let inner = self.lock();
        inner.recent.iter().skip(inner.recent.len().saturating_sub(n)).cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Counters stay usable after a panic elsewhere; they are statistics.
        self.inner.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_recent() {
        let log = BlockLog::default();
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        for _ in 0..3 {
            log.record("x.test", &a, "x.test", Asker::Closed);
        }
        log.record("y.test", &b, "y.test", Asker::Closed);
        assert_eq!(log.by_list(), [("a".to_string(), 3), ("b".to_string(), 1)]);
        assert_eq!(log.top(1), [("x.test".to_string(), 3)]);
        let recent = log.recent(2);
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[1].host, "y.test");
        for i in 0..300 {
            log.record(&format!("n{i}.test"), &a, "r", Asker::Closed);
        }
        assert_eq!(log.recent(1000).len(), RECENT);
        let minutes = log.per_minute();
        assert_eq!(minutes.len(), 60);
        assert_eq!(minutes[59], 304, "this minute's blocks are last");
        assert_eq!(log.today(), 304);
        // A restart adds today's kept count; another day's is ignored.
        let again = BlockLog::default();
        again.restore_today(log.day_count());
        again.restore_today(DayCount { day: 3, count: 99 });
        assert_eq!(again.today(), 304);
    }

    #[test]
    fn one_row_per_recent_name_newest_first() {
        let changes = Changes::default();
        let seen = changes.subscribe();
        let log = BlockLog::with_changes(changes);
        let a: Arc<str> = "a".into();
        for host in ["x.test", "y.test", "x.test", "x.test"] {
            log.record(host, &a, host, Asker::Closed);
        }
        assert!(seen.has_changed().unwrap(), "a block is a change");
        let rows = log.recent_names(10);
        let summary: Vec<(&str, u64)> = rows.iter().map(|r| (r.host.as_str(), r.count)).collect();
        assert_eq!(summary, [("x.test", 3), ("y.test", 1)]);
        assert_eq!(log.recent_names(1).len(), 1);
    }
}
