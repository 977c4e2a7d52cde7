//! Command-line syntax, and how flags combine with the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use guardnest_core::config::{Config, SourceSpec};

/// GuardNest: a local HTTP/HTTPS forward proxy that keeps you off malicious domains.
#[derive(Debug, Parser)]
#[command(name = "guardnest", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy in the foreground until Ctrl-C or SIGTERM.
    Run(RunArgs),
    /// Tell whether a name is blocked, and by which list and rule (no running proxy needed:
    /// reads local list files and the cached downloads).
    Check(CheckArgs),
    /// Show every list source; `lists update` downloads them now.
    Lists(ListsArgs),
    /// Show the running instance's status (via its control API).
    Status(StatusArgs),
    /// Show the programs seen through the running instance in the last hour, with their
    /// connections and blocks. Programs that ignore the system proxy are not listed: they
    /// are not protected.
    Programs(StatusArgs),
    /// Turn protection on in the running instance (and the system proxy, if configured).
    Enable(ClientArgs),
    /// Turn protection off in the running instance, restoring the system proxy settings.
    Disable(ClientArgs),
    /// Restart the running instance's listener.
    Restart(ClientArgs),
    /// Stop blocking for a while in the running instance; it comes back by itself.
    Pause(PauseArgs),
    /// End a pause now.
    Resume(ClientArgs),
    /// Never block a name (and its subdomains) again: it goes on your allowlist, the one
    /// the app's "Allow" button fills. A URL or host:port allows its host. Works with or
    /// without a running GuardNest.
    Allow(NameArgs),
    /// Show the names on your allowlist.
    Allowed(ClientArgs),
    /// Undo `allow`: take a name off your allowlist (it is blocked again if a list has it).
    Unallow(NameArgs),
    /// Put your own proxy settings back without a running GuardNest: restores the snapshot
    /// a crashed or killed GuardNest left, or turns off a system proxy that still points at
    /// a GuardNest that is not running. Use it when "my internet stopped working".
    Repair(RepairArgs),
    /// Stop the running GuardNest as Ctrl-C would (your proxy settings are put back first),
    /// wait until it has exited, then repair what a killed one left. For upgrades and
    /// uninstalling: `--all` stops every GuardNest of this user.
    Stop(StopArgs),
    /// Start again, in the background, what `stop --save-running FILE` stopped.
    StartAgain(StartAgainArgs),
    /// Read a password from standard input (first line) and print its argon2 hash for
    /// `[access] users` in the config file.
    HashPassword,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The name (e.g. www.example.com; a URL or host:port means its host).
    pub name: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Minutes, 1 to 1440.
    #[arg(default_value_t = guardnest_core::service::PAUSE_DEFAULT_MINUTES)]
    pub minutes: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Configuration file (TOML): its listen address, control address and system-proxy
    /// backend say what a GuardNest setting looks like. Default: DATA_DIR/config.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Also treat a system proxy pointing at this address as GuardNest's.
    #[arg(long, value_name = "ADDR", value_parser = guardnest_core::config::parse_listen)]
    pub listen: Option<SocketAddr>,
    /// Run as the one-shot repair the OS starts at login (registered while GuardNest holds
    /// the system proxy): a running GuardNest is left alone, a repair is recorded for the
    /// next start to tell.
    #[arg(long)]
    pub at_login: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Also stop every other GuardNest of this user (the app, other data dirs).
    #[arg(long)]
    pub all: bool,
    /// Write how the stopped instances were started to FILE, for `start-again FILE`.
    #[arg(long, value_name = "FILE")]
    pub save_running: Option<PathBuf>,
    /// How long each may take to stop before it is ended.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct StartAgainArgs {
    /// The file `stop --save-running` wrote.
    pub file: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the full status as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The host name to check (e.g. www.example.com).
    pub name: String,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub lists: ListArgs,
}

#[derive(Debug, Args)]
pub struct ListsArgs {
    #[command(subcommand)]
    pub action: Option<ListsAction>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub lists: ListArgs,
}

#[derive(Debug, Subcommand)]
pub enum ListsAction {
    /// Download or re-read every list now (conditional: unchanged lists cost a 304).
    Update,
}

/// Which lists to use: the config file's, replaced by flags when given.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Configuration file (TOML). Flags given here override its values. Default:
    /// DATA_DIR/config.toml when it exists (the file the app reads too).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// A block list (file path or http(s) URL); repeatable. Replaces the config file's sources.
    #[arg(long = "blocklist", value_name = "SRC", global = true)]
    pub blocklists: Vec<String>,
    /// An allowlist (file path or http(s) URL); repeatable. Replaces the config file's allowlist.
    #[arg(long = "allowlist", value_name = "SRC", global = true)]
    pub allowlists: Vec<String>,
    /// Use only the lists given, not the built-in default lists.
    #[arg(long, global = true)]
    pub no_default_lists: bool,
}

impl ListArgs {
    /// Built-in defaults, then the config file (`--config`, else the data dir's
    /// `config.toml`), then these flags.
    pub fn config(&self, data_dir: &std::path::Path) -> anyhow::Result<Config> {
        let mut config = guardnest_core::ProxyService::config_for(data_dir, self.config.as_deref())?;
        if !self.blocklists.is_empty() {
            config.blocklist.sources = self.blocklists.iter().cloned().map(SourceSpec::Location).collect();
        }
        if !self.allowlists.is_empty() {
            config.blocklist.allowlist = self.allowlists.iter().cloned().map(SourceSpec::Location).collect();
        }
        if self.no_default_lists {
            config.blocklist.default_lists = false;
        }
        config.validate()?;
        Ok(config)
    }

    /// Whether flags name the lists themselves (then `check` and `lists` answer as an
    /// instance run with these flags would, not as the running instance does). `--config`
    /// alone does not: it is the configuration an instance would run with.
    pub fn given(&self) -> bool {
        !self.blocklists.is_empty() || !self.allowlists.is_empty() || self.no_default_lists
    }
}

/// Flags every command shares.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Directory for GuardNest's state (cached lists, runtime files).
    /// Default: ~/.local/share/guardnest on Linux, %LOCALAPPDATA%\guardnest on Windows.
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace (or a tracing filter such as
    /// "guardnest_core=debug"). Default: $RUST_LOG, else info.
    #[arg(long, value_name = "LEVEL", global = true)]
    pub log_level: Option<String>,
    /// Append logs to this file instead of standard error.
    #[arg(long, value_name = "FILE", global = true)]
    pub log_file: Option<PathBuf>,
}

impl CommonArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(guardnest_core::sysproxy::fsutil::data_dir)
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub lists: ListArgs,
    /// Address to listen on, IP:PORT [default: 127.0.0.1:3000]; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", value_parser = guardnest_core::config::parse_listen)]
    pub listen: Option<SocketAddr>,
    /// Control API address (loopback) or `none` [default: 127.0.0.1:3001].
    #[arg(long, value_name = "ADDR|none")]
    pub control: Option<String>,
    /// Also make GuardNest the system proxy while it runs (restored on exit).
    #[arg(long)]
    pub system_proxy: bool,
}

impl RunArgs {
    /// Built-in defaults, then the config file, then flags.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = self.lists.config(&self.common.data_dir())?;
        if let Some(listen) = self.listen {
            config.proxy.listen = listen;
        }
        if let Some(control) = &self.control {
            config.control.listen = control.clone();
        }
        if self.system_proxy {
            config.system_proxy.enabled = true;
        }
        config.validate()?;
        Ok(config)
    }
}
