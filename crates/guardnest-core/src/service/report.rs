//! What front ends read: the status (measured, not remembered), the lists with what the user
//! may do with each, and the counters.

use std::time::SystemTime;

use super::{
    kept, now_secs, ListStatus, Protection, ProxyService, Running, ServiceStats, Status, SystemProxyStatus,
    UpstreamStatus, PAUSE_DEFAULT_MINUTES,
};
use crate::health::Health;
use crate::stats::StatsSnapshot;

impl ProxyService {
    /// What is true now: the serving task alive, its accept loop running, and the last
    /// periodic self-connect health check passing; and whether that protects anyone.
    pub async fn status(&self) -> Status {
        let state = self.state.lock().await;
        let (running, listen, uptime, health) = match &state.running {
            // Alive: the task runs and its accept loop has not stopped. Read from the
            // listener's own state, not by connecting (which would count as traffic).
            Some(r) if !r.task.is_finished() && !r.stopped_accepting.is_cancelled() => {
                let uptime = SystemTime::now().duration_since(r.started).map(|d| d.as_secs()).ok();
                (true, Some(r.addr), uptime, Some(r.health.clone()))
            }
            _ => (false, None, None, None),
        };
        let lists = self.list_status();
        let names = self.lists.len();
        let blocking = self.lists.blocking();
        let paused_until = self.lists.paused_until();
        let paused = paused_until.map(|until| (until.saturating_sub(now_secs()), until));
        Status {
            running,
            healthy: running && health.as_ref().is_some_and(|h| h.checks() == 0 || h.last_ok()),
            protection: Protection::of(running, paused, &lists, blocking, state.start_error.clone()),
            listen,
            uptime_secs: uptime,
            health_checks: health.as_ref().map_or(0, |h| h.checks()),
            health_failures: health.as_ref().map_or(0, |h| h.failures()),
            system_proxy: SystemProxyStatus {
                wanted: self.config.system_proxy.enabled,
                applied: self.system.is_applied(),
                backend: self.system.backend_name().into(),
                last_error: state.system_error.clone(),
            },
            upstream: self.upstream_status(state.running.as_ref().filter(|_| running), health.as_deref()),
            lists,
            names,
            names_blocked: blocking,
            paused_secs: paused.map(|(secs, _)| secs),
            paused_until,
            pause_minutes: PAUSE_DEFAULT_MINUTES,
            allowed: self.allowed(),
            start_error: state.start_error.clone(),
            repaired: self.repaired.lock().clone(),
            pid: std::process::id(),
        }
    }

    /// Every list, with what the user may do with it: remove a list they added, see and
    /// undo the names of their own allowlist.
    fn list_status(&self) -> Vec<ListStatus> {
        let mine: Vec<String> = self.user_lists().into_iter().map(|l| l.location).collect();
        let allowlist = self.data_dir.as_deref().map(|d| kept::Allowlist::of(d).path().display().to_string());
        self.lists
            .status()
            .into_iter()
            .map(|s| {
                let mut l = ListStatus::from(s);
                l.own_allowlist = l.role == crate::blocklist::Role::Allow && Some(&l.location) == allowlist.as_ref();
                l.removable = !l.builtin && mine.contains(&l.location);
                l
            })
            .collect()
    }

    /// Counters and block events.
    pub fn stats(&self) -> ServiceStats {
        let StatsSnapshot {
            connections_total,
            connections_active,
            tunnels_total,
            requests_total,
            blocked_total,
            dial_failures,
            bytes_up,
            bytes_down,
            ..
        } = self.stats.snapshot();
        ServiceStats {
            connections_active,
            connections_total,
            tunnels_total,
            requests_total,
            blocked_total,
            bytes_up,
            bytes_down,
            dial_failures,
            blocked_by_list: self.blocks.by_list(),
            top_blocked: self.blocks.top(10),
            recent_blocked: self.blocks.recent(50),
            recent_names: self
                .blocks
                .recent_names(30)
                .into_iter()
                .map(|mut r| {
                    r.allowed_by = crate::domain::Host::parse(&r.host).ok().and_then(|h| match self.lists.check(&h) {
                        crate::blocklist::Verdict::Exempt(m) if &*m.list == kept::USER_ALLOWLIST_NAME => {
                            Some(m.rule.to_string())
                        }
                        _ => None,
                    });
                    r.allowed = r.allowed_by.is_some();
                    r
                })
                .collect(),
            blocked_per_minute: self.blocks.per_minute(),
            blocked_today: self.blocks.today(),
            programs: self.blocks.who().programs(),
        }
    }

    /// Raw counters (for metrics).
    pub fn counters(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Moves whenever the programs in [`ServiceStats::programs`] were counted again (their
    /// connections are named in batches, seconds after the counters moved).
    pub fn programs_counted(&self) -> u64 {
        self.blocks.who().counted()
    }

    /// The upstream part of the status: the running proxy's router and its last check.
    fn upstream_status(&self, running: Option<&Running>, health: Option<&Health>) -> UpstreamStatus {
        let mode = self.config.upstream.mode.name().to_string();
        let Some(r) = running else {
            return UpstreamStatus {
                mode,
                summary: "none while GuardNest is off".into(),
                chained: false,
                unreachable: Vec::new(),
            };
        };
        let unreachable = health
            .and_then(Health::parents)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(parent, failure)| failure.map(|why| format!("{parent} unreachable: {why}")))
            .collect();
        UpstreamStatus { mode, summary: r.router.describe().to_string(), chained: r.router.is_chained(), unreachable }
    }
}
