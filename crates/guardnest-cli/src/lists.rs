//! `guardnest check` and `guardnest lists`: the lists that actually block. With an instance
//! running (the CLI's `run` or the app) they ask it; without one, or with lists named by
//! flags, they load what an instance with the same flags and data dir would serve: the
//! configuration's lists (with their cached downloads), plus the lists and the allowlist
//! the user added (`guardnest_core::service::lifecycle::load_lists`).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use guardnest_core::blocklist::{Progress, Reporter};
use guardnest_core::service::{lifecycle, plural, user, CheckAnswer, ListStatus};
use guardnest_core::Blocklists;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::cli::{CheckArgs, ListsAction, ListsArgs};
use crate::client::{finish, Failure, Instance};

/// `guardnest check`: the name is not blocked (allowed, or exempt by an allow rule).
pub const EXIT_NOT_BLOCKED: u8 = 0;
/// `guardnest check`: the name is blocked.
pub const EXIT_BLOCKED: u8 = 5;

pub fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.trim();
    if !args.lists.given() {
        if let Some(instance) = Instance::running(&args.common) {
            let path = format!("/v1/check?name={}", encode(name));
            return Ok(match instance.call(reqwest::Method::GET, &path) {
                Ok(v) => match serde_json::from_value::<CheckAnswer>(v) {
                    Ok(answer) => {
                        let code = answered(&answer, &format!("the running GuardNest (pid {})", instance.pid()));
                        // As below: an answer from lists that are not all loaded says so.
                        if let Ok(status) = instance.call(reqwest::Method::GET, "/v1/status") {
                            let lists = status["lists"].as_array().cloned().unwrap_or_default();
                            not_consulted(
                                &lists
                                    .iter()
                                    .filter_map(|l| serde_json::from_value::<ListStatus>(l.clone()).ok())
                                    .filter(|l| !l.loaded)
                                    .map(|l| l.name)
                                    .collect::<Vec<_>>(),
                            );
                        }
                        code
                    }
                    Err(e) => finish(Err(Failure::Failed(format!("bad answer: {e}")))),
                },
                Err(e) => finish(Err(e)),
            });
        }
    }
    let data_dir = args.common.data_dir();
    let config = args.lists.config(&data_dir)?;
    let host = match guardnest_core::domain::host_of_input(name) {
        Ok(host) => host,
        Err(e) => {
            eprintln!("guardnest: {name:?} is not a host name: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let lists = load(&config, &data_dir)?;
    let mut answer = CheckAnswer::new(host.to_string(), lists.check(&host));
    answer.by_you = answer.exempt && answer.list.as_deref() == Some(user::USER_ALLOWLIST_NAME);
    let code = answered(&answer, "the lists on disk (no GuardNest is running)");
    not_consulted(&lists.status().into_iter().filter(|s| !s.loaded).map(|s| s.name).collect::<Vec<_>>());
    Ok(code)
}

/// The note under an answer when some lists are not loaded (not downloaded yet, or failing).
fn not_consulted(missing: &[String]) {
    if !missing.is_empty() {
        println!("note: not downloaded yet, so not consulted: {} (run `guardnest lists update`)", missing.join(", "));
    }
}

fn answered(answer: &CheckAnswer, source: &str) -> ExitCode {
    println!("{}", answer.line());
    tracing::debug!("answered by {source}");
    ExitCode::from(if answer.blocked { EXIT_BLOCKED } else { EXIT_NOT_BLOCKED })
}

/// Percent-encodes a name for a query string.
pub fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The lists an instance with this configuration on this data dir would serve: the
/// configuration's, and what the user added (their allowlist applies whatever the flags).
fn load(config: &guardnest_core::Config, data_dir: &std::path::Path) -> anyhow::Result<Blocklists> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(lifecycle::load_lists(config, data_dir)).context("cannot load lists")
}

pub fn lists(args: &ListsArgs) -> anyhow::Result<ExitCode> {
    if !args.lists.given() {
        if let Some(instance) = Instance::running(&args.common) {
            return Ok(match args.action {
                None => finish(instance.call(reqwest::Method::GET, "/v1/status").map(|v| {
                    let lists: Vec<Value> = v["lists"].as_array().cloned().unwrap_or_default();
                    let mut out = format!("the lists of the running GuardNest (pid {}):\n", instance.pid());
                    out += &table(
                        &lists.iter().filter_map(|l| serde_json::from_value(l.clone()).ok()).collect::<Vec<_>>(),
                    );
                    out.trim_end().to_string()
                })),
                Some(ListsAction::Update) => {
                    println!("updating the lists of the running GuardNest (pid {})…", instance.pid());
                    match instance.call(reqwest::Method::POST, "/v1/lists/update") {
                        Ok(v) => report_update(&v),
                        Err(e) => finish(Err(e)),
                    }
                }
            });
        }
    }
    let data_dir = args.common.data_dir();
    let config = args.lists.config(&data_dir)?;
    let lists = load(&config, &data_dir)?;
    match args.action {
        None => {
            let rows: Vec<ListStatus> = lists.status().into_iter().map(ListStatus::from).collect();
            print!("{}", table(&rows));
            Ok(ExitCode::SUCCESS)
        }
        Some(ListsAction::Update) => update(&lists),
    }
}

/// Prints an update report from the control API; exit 1 when a list failed.
fn report_update(v: &Value) -> ExitCode {
    let strings = |k: &str| v[k].as_array().map_or(0, Vec::len);
    let failed = v["failed"].as_array().cloned().unwrap_or_default();
    for f in &failed {
        println!("failed: {}: {}", f[0].as_str().unwrap_or("?"), f[1].as_str().unwrap_or("?"));
    }
    println!(
        "{} updated, {} unchanged, {} failed; {} loaded",
        strings("updated"),
        strings("unchanged"),
        failed.len(),
        plural(v["names"].as_u64().unwrap_or(0) as usize, "name", "names")
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn update(lists: &Blocklists) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let bars = Bars(MultiProgress::new());
    let report = runtime.block_on(lists.update(&bars));
    drop(bars);
    let mut out = std::io::stdout().lock();
    for (name, why) in &report.failed {
        writeln!(out, "failed: {name}: {why}")?;
    }
    writeln!(
        out,
        "{} updated, {} unchanged, {} failed; {} loaded",
        report.updated.len(),
        report.unchanged.len(),
        report.failed.len(),
        plural(report.names, "name", "names")
    )?;
    Ok(if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// One progress bar per download (drawn only on a terminal).
struct Bars(MultiProgress);

struct Bar(ProgressBar);

impl Reporter for Bars {
    fn start(&self, list: &str) -> Box<dyn Progress> {
        let style = ProgressStyle::with_template("{prefix:>28} {bar:30} {bytes:>10}/{total_bytes:10} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = self.0.add(ProgressBar::new(0).with_style(style).with_prefix(list.to_string()));
        Box::new(Bar(bar))
    }
}

impl Progress for Bar {
    fn update(&self, received: u64, total: Option<u64>) {
        self.0.set_length(total.unwrap_or(received));
        self.0.set_position(received);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Every list, two lines each: the figures, then where it comes from.
fn table(rows: &[ListStatus]) -> String {
    if rows.is_empty() {
        return "no lists configured\n".into();
    }
    let mut out = format!(
        "{:<28} {:<5} {:<8} {:>9} {:>7}  {:<12} {:<10}  LAST ERROR\n",
        "LIST", "ROLE", "FORMAT", "ENTRIES", "SKIPPED", "LAST OK", "NEXT"
    );
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for s in rows {
        let format = s.format.clone().unwrap_or_else(|| "-".into());
        let entries = if s.loaded { s.entries.to_string() } else { "-".to_string() };
        let last_ok = s
            .last_success
            .map_or("never".to_string(), |t| format!("{} ago", rough(Duration::from_secs(now.saturating_sub(t)))));
        let next = match s.next_check_secs {
            0 => "now".to_string(),
            n => format!("in {}", rough(Duration::from_secs(n))),
        };
        let error = s.problem.as_ref().map_or("-".to_string(), |p| p.summary.clone());
        out += &format!(
            "{:<28} {:<5} {:<8} {:>9} {:>7}  {:<12} {:<10}  {}\n    {}\n",
            s.name,
            s.role.to_string(),
            format,
            entries,
            s.skipped,
            last_ok,
            next,
            error,
            s.location
        );
    }
    out
}

/// "3m", "2h", "45s": enough precision for a table.
fn rough(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}
