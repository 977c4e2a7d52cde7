//! What a front end shows: the measured state ([`Status`]), the counters and blocks
//! ([`ServiceStats`]), and the one-word truth about protection ([`Protection`]), decided
//! here once so the CLI, the control API and the app never disagree.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::blocklist::{Problem, Role, SourceStatus};
use crate::events::{BlockEvent, BlockedName};

/// A closed set of error kinds, for front ends that act on them (the app offers another
/// port for `PortInUse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The listen address is taken by another program.
    PortInUse,
    /// The proxy could not start for another reason.
    Start,
    /// The system proxy could not be set or restored.
    SystemProxy,
    /// The old listener did not stop in time.
    StopTimeout,
    /// The caller's input is not usable.
    Input,
    /// A list could not be loaded or added.
    Lists,
    /// The user's state could not be saved.
    Save,
    /// Another GuardNest holds the data directory.
    AlreadyRunning,
    /// The control API could not be started.
    ControlApi,
}

/// An error as front ends show it: its kind and one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// What kind of error.
    pub kind: ErrorKind,
    /// One line for the user (the whole cause chain).
    pub message: String,
}

/// Whether GuardNest protects the user right now, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Protection {
    /// Blocking, with at least one block list that holds names.
    Protected {
        /// Distinct names the lists hold.
        names: usize,
    },
    /// Running, but no block list with names is loaded: nothing is blocked.
    Unprotected {
        /// Why.
        reason: Unprotected,
        /// One sentence: why, and what to do.
        message: String,
    },
    /// Blocking is paused; it comes back by itself.
    Paused {
        /// Seconds left.
        secs: u64,
    },
    /// The proxy is not running.
    Off {
        /// Why it could not start, when it tried and failed.
        error: Option<ErrorReport>,
    },
}

/// Why a running GuardNest blocks nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unprotected {
    /// No block list is configured.
    NoLists,
    /// The lists are not downloaded yet, and the downloads fail for lack of network.
    Offline,
    /// The lists could not be downloaded (the server refused, or sent no list).
    DownloadFailed,
    /// The first downloads are still under way.
    Loading,
    /// The lists are loaded but hold no names.
    Empty,
}

impl Protection {
    /// Decides from the running state, the pause, the lists and the distinct names loaded.
    pub fn of(
        running: bool,
        paused_secs: Option<u64>,
        lists: &[ListStatus],
        distinct: usize,
        error: Option<ErrorReport>,
    ) -> Protection {
        if !running {
            return Protection::Off { error };
        }
        if let Some(secs) = paused_secs {
            return Protection::Paused { secs };
        }
        let block: Vec<&ListStatus> = lists.iter().filter(|l| l.role == Role::Block).collect();
        if block.iter().any(|l| l.loaded && l.entries > 0) {
            return Protection::Protected { names: distinct };
        }
        let problems: Vec<&Problem> = block.iter().filter_map(|l| l.problem.as_ref()).collect();
        let (reason, message) = if block.is_empty() {
            (Unprotected::NoLists, "No block list is set up, so nothing is blocked: add a list.".to_string())
        } else if block.iter().all(|l| l.loaded) {
            (Unprotected::Empty, "The block lists hold no names, so nothing is blocked: add another list.".to_string())
        } else if !problems.is_empty() && problems.iter().all(|p| p.is_offline()) {
            (
                Unprotected::Offline,
                format!(
                    "The block lists are not downloaded yet: {}. GuardNest keeps trying; check your internet connection.",
                    problems[0].summary
                ),
            )
        } else if let Some(p) = problems.iter().find(|p| !p.is_offline()) {
            (
                Unprotected::DownloadFailed,
                format!("The block lists could not be downloaded: {}. Try Update now, or add another list.", p.summary),
            )
        } else {
            (Unprotected::Loading, "Downloading the block lists…".to_string())
        };
        Protection::Unprotected { reason, message }
    }

    /// One line for `guardnest status`.
    pub fn line(&self) -> String {
        match self {
            Protection::Protected { names } => format!("protected: {names} names blocked"),
            Protection::Unprotected { message, .. } => format!("NOT PROTECTED: {message}"),
            Protection::Paused { secs } => format!("paused: blocking again in {}", minutes(*secs)),
            Protection::Off { error: Some(e) } => format!("off: {}", e.message),
            Protection::Off { error: None } => "off".to_string(),
        }
    }
}

/// Measured state.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The proxy task runs and its accept loop is alive.
    pub running: bool,
    /// The last periodic health check passed.
    pub healthy: bool,
    /// Whether the user is protected now, and if not, why.
    pub protection: Protection,
    /// The bound address, when running.
    pub listen: Option<SocketAddr>,
    /// Seconds since the proxy started.
    pub uptime_secs: Option<u64>,
    /// Health checks run and failed.
    pub health_checks: u64,
    /// Health checks that failed.
    pub health_failures: u64,
    /// The system-proxy step.
    pub system_proxy: SystemProxyStatus,
    /// Where allowed traffic goes: direct, or through the user's own proxy.
    pub upstream: UpstreamStatus,
    /// Lists.
    pub lists: Vec<ListStatus>,
    /// Distinct names loaded.
    pub names: usize,
    /// Seconds left while protection is paused.
    pub paused_secs: Option<u64>,
    /// Why the last enable failed, if it did (a taken port, at start).
    pub start_error: Option<ErrorReport>,
    /// What the start repaired (the system proxy of a GuardNest that died), if anything.
    pub repaired: Option<String>,
    /// The process serving, for `guardnest status`.
    pub pid: u32,
}

/// The system-proxy part of [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct SystemProxyStatus {
    /// Whether enable also sets the system proxy.
    pub wanted: bool,
    /// Whether GuardNest's settings are applied now.
    pub applied: bool,
    /// Backend name.
    pub backend: String,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
}

/// The upstream part of [`Status`]: which parent proxy (the user's own) is in use.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    /// `system`, `none` or `fixed` (`[upstream] mode`).
    pub mode: String,
    /// In plain words: "proxy corp.example:8123 for HTTP and HTTPS, except 1 bypassed host
    /// (from your GNOME proxy settings)", "direct (no parent proxy)". Never a secret.
    pub summary: String,
    /// Whether any traffic may go through a parent proxy.
    pub chained: bool,
    /// Parent proxies the last upstream check could not reach, each with why.
    pub unreachable: Vec<String>,
}

impl UpstreamStatus {
    /// One line for `guardnest status`.
    pub fn line(&self) -> String {
        let mut line = format!("upstream: {}", self.summary);
        for p in &self.unreachable {
            line += &format!("; parent proxy {p}");
        }
        line
    }
}

/// One list in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListStatus {
    /// Display name.
    pub name: String,
    /// Path or URL.
    pub location: String,
    /// Block or allow.
    pub role: Role,
    /// One of the built-in default lists.
    pub builtin: bool,
    /// Format of the loaded version.
    pub format: Option<String>,
    /// Whether a version is loaded.
    pub loaded: bool,
    /// Names.
    pub entries: usize,
    /// Skipped lines.
    pub skipped: usize,
    /// Last successful check (seconds since the epoch).
    pub last_success: Option<u64>,
    /// Seconds until the next check.
    pub next_check_secs: u64,
    /// Last error (the whole chain).
    pub last_error: Option<String>,
    /// Last error as a kind and one short sentence.
    pub problem: Option<Problem>,
}

impl From<SourceStatus> for ListStatus {
    fn from(s: SourceStatus) -> Self {
        let epoch = |t: std::time::SystemTime| t.duration_since(std::time::SystemTime::UNIX_EPOCH).ok();
        ListStatus {
            name: s.name,
            location: s.location,
            role: s.role,
            builtin: s.builtin,
            format: s.format.map(|f| f.to_string()),
            loaded: s.loaded,
            entries: s.entries,
            skipped: s.skipped,
            last_success: s.last_success.and_then(epoch).map(|d| d.as_secs()),
            next_check_secs: s.next_check.duration_since(std::time::SystemTime::now()).map_or(0, |d| d.as_secs()),
            last_error: s.last_error,
            problem: s.problem,
        }
    }
}

/// "15 minutes", "1 minute", "45 seconds": a duration for a sentence.
pub fn minutes(secs: u64) -> String {
    match secs {
        0..60 => plural(secs as usize, "second", "seconds"),
        _ => plural(secs.div_ceil(60) as usize, "minute", "minutes"),
    }
}

/// "1 name", "2 names": a count with the right noun.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What the lists say about one name, as every front end shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckAnswer {
    /// The name as checked (normalised).
    pub name: String,
    /// Blocked now.
    pub blocked: bool,
    /// Exempt by an allow rule.
    pub exempt: bool,
    /// The list whose rule decided, if any.
    pub list: Option<String>,
    /// The rule, if any.
    pub rule: Option<String>,
}

impl CheckAnswer {
    /// The answer for `name` given the lists' verdict.
    pub fn new(name: String, verdict: crate::blocklist::Verdict) -> CheckAnswer {
        use crate::blocklist::Verdict;
        let (blocked, exempt, m) = match verdict {
            Verdict::Blocked(m) => (true, false, Some(m)),
            Verdict::Exempt(m) => (false, true, Some(m)),
            Verdict::Allowed => (false, false, None),
        };
        CheckAnswer {
            name,
            blocked,
            exempt,
            list: m.as_ref().map(|m| m.list.to_string()),
            rule: m.map(|m| m.rule.into()),
        }
    }

    /// One line, as `guardnest check` prints it.
    pub fn line(&self) -> String {
        match (self.blocked, self.exempt, &self.list, &self.rule) {
            (true, _, Some(list), Some(rule)) => format!("blocked: {} by list \"{list}\" (rule {rule})", self.name),
            (_, true, Some(list), Some(rule)) => {
                format!("allowed: {} is exempt by list \"{list}\" (rule {rule})", self.name)
            }
            _ => format!("allowed: {} (no rule matched)", self.name),
        }
    }
}

/// Counters and block events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStats {
    /// Connections open now.
    pub connections_active: u64,
    /// Connections accepted in total.
    pub connections_total: u64,
    /// Tunnels established.
    pub tunnels_total: u64,
    /// Plain HTTP requests forwarded.
    pub requests_total: u64,
    /// Requests blocked.
    pub blocked_total: u64,
    /// Bytes client → upstream (tunnels and plain HTTP).
    pub bytes_up: u64,
    /// Bytes upstream → client (tunnels and plain HTTP).
    pub bytes_down: u64,
    /// Failed dials.
    pub dial_failures: u64,
    /// Blocks per list.
    pub blocked_by_list: Vec<(String, u64)>,
    /// Most blocked names.
    pub top_blocked: Vec<(String, u64)>,
    /// Latest blocks, newest last.
    pub recent_blocked: Vec<BlockEvent>,
    /// The names blocked last, one row each with a count, newest first.
    pub recent_names: Vec<BlockedName>,
    /// Blocks per minute over the last hour, oldest first.
    pub blocked_per_minute: Vec<u64>,
    /// Blocks since midnight (UTC).
    pub blocked_today: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::{Problem, ProblemKind};

    fn list(role: &str, loaded: bool, entries: usize, problem: Option<Problem>) -> ListStatus {
        ListStatus {
            name: "l".into(),
            location: "https://lists.test/l".into(),
            role: if role == "allow" { Role::Allow } else { Role::Block },
            builtin: true,
            format: None,
            loaded,
            entries,
            skipped: 0,
            last_success: None,
            next_check_secs: 0,
            last_error: problem.as_ref().map(|p| p.detail.clone()),
            problem,
        }
    }

    #[test]
    fn protected_only_with_a_block_list_that_holds_names() {
        let offline = || Some(Problem::new(ProblemKind::Offline, "lists.test", "dns error"));
        let refused = || Some(Problem::new(ProblemKind::Refused, "lists.test", "server answered 404 Not Found"));
        let of = |lists: &[ListStatus]| Protection::of(true, None, lists, 7, None);
        assert!(matches!(of(&[]), Protection::Unprotected { reason: Unprotected::NoLists, .. }));
        assert!(matches!(
            of(&[list("block", false, 0, offline()), list("allow", true, 5, None)]),
            Protection::Unprotected { reason: Unprotected::Offline, .. }
        ));
        let failed = of(&[list("block", false, 0, offline()), list("block", false, 0, refused())]);
        match &failed {
            Protection::Unprotected { reason: Unprotected::DownloadFailed, message } => {
                assert!(message.contains("lists.test answered 404 Not Found"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            of(&[list("block", false, 0, None)]),
            Protection::Unprotected { reason: Unprotected::Loading, .. }
        ));
        assert!(matches!(
            of(&[list("block", true, 0, None)]),
            Protection::Unprotected { reason: Unprotected::Empty, .. }
        ));
        assert_eq!(
            of(&[list("block", true, 7, None), list("block", false, 0, offline())]),
            Protection::Protected { names: 7 }
        );
        assert_eq!(Protection::of(true, Some(60), &[], 0, None), Protection::Paused { secs: 60 });
        assert_eq!(Protection::of(false, Some(60), &[], 0, None), Protection::Off { error: None });
    }
}
