//! What a front end shows: the measured state ([`Status`]), the counters and blocks
//! ([`ServiceStats`]), and the one-word truth about protection ([`Protection`]), decided
//! here once so the CLI, the control API and the app never disagree.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::instance::Holder;
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

/// Why the caller's input was refused: front ends say it in their own words from this,
/// never by matching the English of `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputReason {
    /// Not a host name, URL or `host:port`.
    NotAHost,
    /// A pause out of range.
    PauseRange,
    /// A pause while protection is off.
    NothingToPause,
    /// Not on the allowlist itself: allowed through a parent the user allowed.
    AllowedByParent,
    /// Neither an http(s) URL nor a file path.
    NotAListLocation,
    /// Not one of the lists the user added.
    NotAUserList,
    /// Port 0 (or none) where a real port is needed.
    Port,
    /// The service keeps no data directory.
    NoDataDir,
}

/// An error as front ends show it: its kind, the whole cause chain in one line (what the
/// CLI prints), and the structured fields a window needs to say it in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// What kind of error.
    pub kind: ErrorKind,
    /// One line, the whole cause chain (technical: the CLI prints it).
    pub message: String,
    /// For `input`: why the input was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<InputReason>,
    /// For `input`: what was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// For `port_in_use` and `start`: the address that could not be bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    /// For `already_running`: who holds the data directory, as it described itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<Box<Holder>>,
    /// For `lists`: what went wrong with the list, as a kind and one short sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Box<Problem>>,
}

impl ErrorReport {
    /// A report with no structured fields.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ErrorReport {
        ErrorReport {
            kind,
            message: message.into(),
            reason: None,
            input: None,
            addr: None,
            holder: None,
            problem: None,
        }
    }
}

/// Whether GuardNest protects the user right now, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Protection {
    /// Blocking, with at least one block list that holds names. Some block lists may not
    /// be loaded yet (`missing`): then the user is only partly protected, and is told which.
    Protected {
        /// Distinct names the block lists hold that are not allowed.
        names: usize,
        /// Block lists that are not loaded (not downloaded yet, or failing), each with why.
        missing: Vec<MissingList>,
    },
    /// Running, but no block list with names is loaded: nothing is blocked.
    Unprotected {
        /// Why.
        reason: Unprotected,
        /// One sentence: why, and what to do.
        message: String,
        /// Block lists that are not loaded, each with why.
        missing: Vec<MissingList>,
    },
    /// Blocking is paused; it comes back by itself.
    Paused {
        /// Seconds left.
        secs: u64,
        /// When blocking comes back (seconds since the epoch).
        until: u64,
    },
    /// The proxy is not running.
    Off {
        /// Why it could not start, when it tried and failed.
        error: Option<ErrorReport>,
    },
}

/// A block list that is not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingList {
    /// Its display name.
    pub name: String,
    /// Why, when an attempt failed (none while the first download is under way).
    pub problem: Option<Problem>,
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
    /// Decides from the running state, the pause (seconds left, and its end), the lists and
    /// the distinct names blocked (allowed names are not counted).
    pub fn of(
        running: bool,
        paused: Option<(u64, u64)>,
        lists: &[ListStatus],
        distinct: usize,
        error: Option<ErrorReport>,
    ) -> Protection {
        if !running {
            return Protection::Off { error };
        }
        if let Some((secs, until)) = paused {
            return Protection::Paused { secs, until };
        }
        let block: Vec<&ListStatus> = lists.iter().filter(|l| l.role == Role::Block).collect();
        let missing: Vec<MissingList> = block
            .iter()
            .filter(|l| !l.loaded)
            .map(|l| MissingList { name: l.name.clone(), problem: l.problem.clone() })
            .collect();
        if block.iter().any(|l| l.loaded && l.entries > 0) {
            return Protection::Protected { names: distinct, missing };
        }
        let problems: Vec<&Problem> = block.iter().filter_map(|l| l.problem.as_ref()).collect();
        let names = missing.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
        let (reason, message) = if block.is_empty() {
            (Unprotected::NoLists, "No block list is set up, so nothing is blocked: add a list.".to_string())
        } else if block.iter().all(|l| l.loaded) {
            (Unprotected::Empty, "The block lists hold no names, so nothing is blocked: add another list.".to_string())
        } else if !problems.is_empty() && problems.iter().all(|p| p.is_offline()) {
            (
                Unprotected::Offline,
                format!(
                    "The block lists are not downloaded yet ({}): {}. GuardNest keeps trying; check your internet \
                     connection, or add a list file you have.",
                    and_list(&names),
                    problems[0].summary
                ),
            )
        } else if let Some(p) = problems.iter().find(|p| !p.is_offline()) {
            (
                Unprotected::DownloadFailed,
                format!(
                    "The block lists could not be downloaded ({}): {}. Try Update now, or add another list.",
                    and_list(&names),
                    p.summary
                ),
            )
        } else {
            (Unprotected::Loading, "Downloading the block lists…".to_string())
        };
        Protection::Unprotected { reason, message, missing }
    }

    /// One line for `guardnest status`.
    pub fn line(&self) -> String {
        match self {
            Protection::Protected { names, missing } if missing.is_empty() => {
                format!("protected: {}", plural(*names, "name blocked", "names blocked"))
            }
            Protection::Protected { names, missing } => format!(
                "partly protected: {}; not loaded: {}",
                plural(*names, "name blocked", "names blocked"),
                missing.iter().map(MissingList::line).collect::<Vec<_>>().join("; ")
            ),
            Protection::Unprotected { message, .. } => format!("NOT PROTECTED: {message}"),
            Protection::Paused { secs, .. } => format!("paused: blocking again in {}", minutes(*secs)),
            Protection::Off { error: Some(e) } => format!("off: {}", e.message),
            Protection::Off { error: None } => "off".to_string(),
        }
    }
}

impl MissingList {
    /// "name: why".
    pub fn line(&self) -> String {
        match &self.problem {
            Some(p) => format!("{}: {}", self.name, p.summary),
            None => format!("{}: downloading", self.name),
        }
    }
}

/// "a", "a and b", "a, b and c".
pub fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// What a repair put back before this start, for the window to say in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairNote {
    /// When (seconds since the epoch).
    pub at: u64,
    /// Done at login by the one-shot repair (GuardNest was not running), rather than by
    /// this start.
    pub at_login: bool,
    /// The system-proxy backend whose settings were put back (`gnome`, `kde`, `windows`…).
    pub backend: String,
    /// One technical line (what the CLI prints).
    pub message: String,
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
    /// Distinct names loaded (block and allow rules).
    pub names: usize,
    /// Of them, the names blocked: a block rule, and no allow rule of their own.
    #[serde(default)]
    pub names_blocked: usize,
    /// Seconds left while protection is paused.
    pub paused_secs: Option<u64>,
    /// When a pause ends (seconds since the epoch), while paused.
    pub paused_until: Option<u64>,
    /// How long "Pause" pauses, in minutes ([`super::PAUSE_DEFAULT_MINUTES`]).
    pub pause_minutes: u64,
    /// The names on the user's own allowlist, in order.
    pub allowed: Vec<String>,
    /// Why the last enable failed, if it did (a taken port, at start).
    pub start_error: Option<ErrorReport>,
    /// What was repaired before this start (the system proxy of a GuardNest that died, at
    /// this start or at login), oldest first.
    pub repaired: Vec<RepairNote>,
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
    /// A list the user added, which they may remove.
    #[serde(default)]
    pub removable: bool,
    /// The user's own allowlist: its names are in [`Status::allowed`], each removable.
    #[serde(default)]
    pub own_allowlist: bool,
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
            removable: false,
            own_allowlist: false,
        }
    }
}

/// "15 minutes", "1 minute", "45 seconds": a duration for a sentence.
/// Whole minutes are the nearest ones: a pause ends on the next whole minute (up to 60 s
/// past the length asked for), and "5 minutes" must still say 5 at 5:20 left.
pub fn minutes(secs: u64) -> String {
    match secs {
        0..60 => plural(secs as usize, "second", "seconds"),
        _ => plural(((secs + 30) / 60) as usize, "minute", "minutes"),
    }
}

/// "1 name", "2 names": a count with the right noun.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What the lists say about one name, as every front end shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckAnswer {
    /// The name as checked (normalised: lower case, IDNs in their ASCII `xn--` form).
    pub name: String,
    /// The name in Unicode, when it differs from `name` (an IDN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unicode: Option<String>,
    /// Exempt by the user's own allowlist (they allowed it, and may undo that).
    #[serde(default)]
    pub by_you: bool,
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
        let unicode = unicode_of(&name);
        CheckAnswer {
            name,
            unicode,
            by_you: false,
            blocked,
            exempt,
            list: m.as_ref().map(|m| m.list.to_string()),
            rule: m.map(|m| m.rule.into()),
        }
    }

    /// One line, as `guardnest check` prints it.
    pub fn line(&self) -> String {
        let name = match &self.unicode {
            Some(u) => format!("{} ({u})", self.name),
            None => self.name.clone(),
        };
        match (self.blocked, self.exempt, &self.list, &self.rule) {
            (true, _, Some(list), Some(rule)) => format!("blocked: {name} by list \"{list}\" (rule {rule})"),
            (_, true, Some(list), Some(rule)) => {
                format!("allowed: {name} is exempt by list \"{list}\" (rule {rule})")
            }
            _ => format!("allowed: {name} (no rule matched)"),
        }
    }
}

/// The Unicode form of an ASCII name with `xn--` labels, when it has any.
pub fn unicode_of(name: &str) -> Option<String> {
    if !name.split('.').any(|l| l.starts_with("xn--")) {
        return None;
    }
    let (unicode, result) = idna::domain_to_unicode(name);
    (result.is_ok() && unicode != name).then_some(unicode)
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
    /// The programs seen through GuardNest in the last hour, most connections first
    /// (programs that ignore the system proxy are not among them, and not protected).
    pub programs: Vec<crate::who::ProgramSeen>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_the_nearest_whole_ones() {
        assert_eq!(minutes(59), "59 seconds");
        assert_eq!(minutes(60), "1 minute");
        assert_eq!(minutes(300), "5 minutes");
        assert_eq!(minutes(329), "5 minutes", "a 5-minute pause ending on the next whole minute");
        assert_eq!(minutes(271), "5 minutes");
        assert_eq!(minutes(330), "6 minutes");
    }
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
            removable: false,
            own_allowlist: false,
        }
    }

    #[test]
    fn protected_only_with_a_block_list_that_holds_names() {
        let offline = || Some(Problem::new(ProblemKind::Offline, "lists.test", "dns error"));
        let refused = || Some(Problem::new(ProblemKind::Refused, "lists.test", "server answered 404 Not Found"));
        let of = |lists: &[ListStatus]| Protection::of(true, None, lists, 7, None);
        assert_eq!(and_list(&["a".into(), "b".into(), "c".into()]), "a, b and c");
        assert_eq!(unicode_of("xn--bcher-kva.example").as_deref(), Some("bücher.example"));
        assert_eq!(unicode_of("example.org"), None);
        assert!(matches!(of(&[]), Protection::Unprotected { reason: Unprotected::NoLists, .. }));
        assert!(matches!(
            of(&[list("block", false, 0, offline()), list("allow", true, 5, None)]),
            Protection::Unprotected { reason: Unprotected::Offline, .. }
        ));
        let failed = of(&[list("block", false, 0, offline()), list("block", false, 0, refused())]);
        match &failed {
            Protection::Unprotected { reason: Unprotected::DownloadFailed, message, .. } => {
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
        // One list loaded, another not: protected, and told which is missing and why.
        let partly = of(&[list("block", true, 7, None), list("block", false, 0, offline())]);
        match &partly {
            Protection::Protected { names: 7, missing } => {
                assert_eq!(missing.len(), 1);
                assert_eq!(missing[0].problem.as_ref().map(|p| p.kind), Some(ProblemKind::Offline));
                assert!(partly.line().starts_with("partly protected: 7 names blocked; not loaded: l: cannot reach"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Protection::of(true, Some((60, 1000)), &[], 0, None), Protection::Paused { secs: 60, until: 1000 });
        assert_eq!(Protection::of(false, Some((60, 1000)), &[], 0, None), Protection::Off { error: None });
    }
}
