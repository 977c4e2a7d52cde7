//! `guardnest check` and `guardnest lists`: the lists as the proxy would load them,
//! without a running proxy.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use guardnest_core::blocklist::{Progress, Reporter, Role, SourceStatus};
use guardnest_core::domain::Host;
use guardnest_core::{Blocklists, Verdict};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::cli::{CheckArgs, ListsAction, ListsArgs};

pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let config = args.lists.config()?;
    let host = Host::parse(args.name.trim()).map_err(|e| anyhow::anyhow!("{:?} is not a host name: {e}", args.name))?;
    let lists = Blocklists::load(&config.blocklist, Some(&args.common.data_dir())).context("cannot load lists")?;
    let mut out = std::io::stdout().lock();
    match lists.check(&host) {
        Verdict::Blocked(m) => writeln!(out, "blocked: {host} by list \"{}\" (rule {})", m.list, m.rule)?,
        Verdict::Exempt(m) => writeln!(out, "allowed: {host} is exempt by list \"{}\" (rule {})", m.list, m.rule)?,
        Verdict::Allowed => writeln!(out, "allowed: {host} (no rule matched)")?,
    }
    let missing: Vec<String> = lists.status().into_iter().filter(|s| !s.loaded).map(|s| s.name).collect();
    if !missing.is_empty() {
        writeln!(
            out,
            "note: not downloaded yet, so not consulted: {} (run `guardnest lists update`)",
            missing.join(", ")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn lists(args: ListsArgs) -> anyhow::Result<ExitCode> {
    let config = args.lists.config()?;
    let lists = Blocklists::load(&config.blocklist, Some(&args.common.data_dir())).context("cannot load lists")?;
    match args.action {
        None => {
            print_table(&lists.status())?;
            Ok(ExitCode::SUCCESS)
        }
        Some(ListsAction::Update) => update(lists),
    }
}

fn update(lists: Blocklists) -> anyhow::Result<ExitCode> {
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
        "{} updated, {} unchanged, {} failed; {} names loaded",
        report.updated.len(),
        report.unchanged.len(),
        report.failed.len(),
        report.names
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

fn print_table(status: &[SourceStatus]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if status.is_empty() {
        writeln!(out, "no lists configured")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<28} {:<5} {:<8} {:>9} {:>7}  {:<12} {:<10}  LAST ERROR",
        "LIST", "ROLE", "FORMAT", "ENTRIES", "SKIPPED", "LAST OK", "NEXT"
    )?;
    for s in status {
        let role = match s.role {
            Role::Block => "block",
            Role::Allow => "allow",
        };
        let format = s.format.map_or("-".to_string(), |f| f.to_string());
        let entries = if s.loaded { s.entries.to_string() } else { "-".to_string() };
        let last_ok = s.last_success.map_or("never".to_string(), |t| format!("{} ago", rough(since(t))));
        let next = match s.next_check.duration_since(SystemTime::now()) {
            Ok(d) if d >= Duration::from_secs(1) => format!("in {}", rough(d)),
            _ => "now".to_string(),
        };
        let error = s.last_error.as_deref().unwrap_or("-");
        writeln!(
            out,
            "{:<28} {:<5} {:<8} {:>9} {:>7}  {:<12} {:<10}  {}",
            s.name, role, format, entries, s.skipped, last_ok, next, error
        )?;
        writeln!(out, "    {}", s.location)?;
    }
    Ok(())
}

fn since(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
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
