//! Block and allow lists: sources, parsing, and the matcher that serves lookups.
//!
//! A refresh reads the sources that changed, builds a whole new [`Matcher`] on a blocking
//! thread and publishes it with one atomic swap; lookups never wait on a lock and a failed
//! refresh keeps the previous version of that source.

mod format;
mod matcher;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

pub use format::{detect, parse, Format, Parsed};
pub use matcher::{ListId, Match, Matcher, MatcherBuilder, Verdict};

use crate::config::{BlocklistConfig, SourceSpec};
use crate::domain::Host;

/// Errors loading lists at startup.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// A configured list file could not be read.
    #[error("cannot read list {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A source location is not something GuardNest can load.
    #[error("unsupported list source {0:?} (expected a file path)")]
    Unsupported(String),
}

/// Whether a source's names block or exempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A block list.
    Block,
    /// An allowlist: every name in it is exempt.
    Allow,
}

/// What status and `guardnest lists` show for one source.
#[derive(Debug, Clone)]
pub struct SourceStatus {
    /// Display name.
    pub name: String,
    /// Where it is read from.
    pub location: String,
    /// Block or allow.
    pub role: Role,
    /// The format used for the current version.
    pub format: Option<Format>,
    /// Names in the current version.
    pub entries: usize,
    /// Lines skipped in the current version (invalid plus unsupported).
    pub skipped: usize,
    /// The last refresh error, if the last attempt failed.
    pub last_error: Option<String>,
}

struct Source {
    spec: SourceSpec,
    role: Role,
    name: String,
    path: PathBuf,
    /// (mtime, len) of the version loaded, to notice changes cheaply.
    stamp: Option<(SystemTime, u64)>,
    format: Option<Format>,
    parsed: Arc<Parsed>,
    last_error: Option<String>,
}

/// The loaded lists and the matcher built from them.
#[derive(Clone)]
pub struct Blocklists {
    inner: Arc<Inner>,
}

struct Inner {
    current: Arc<ArcSwap<Matcher>>,
    sources: Mutex<Vec<Source>>,
    config: BlocklistConfig,
}

/// A cheap, clonable handle that answers "is this host blocked?".
#[derive(Clone)]
pub struct Policy {
    matcher: Arc<ArcSwap<Matcher>>,
}

impl Policy {
    /// A policy that blocks nothing.
    pub fn allow_all() -> Self {
        Self { matcher: Arc::new(ArcSwap::from_pointee(Matcher::default())) }
    }

    /// A policy over a fixed matcher.
    pub fn from_matcher(matcher: Matcher) -> Self {
        Self { matcher: Arc::new(ArcSwap::from_pointee(matcher)) }
    }

    /// Decides for a request host. Never blocks on a lock: the matcher is read through an
    /// atomic pointer, so there is no poisoned state in which a request could slip through.
    pub fn check(&self, host: &Host) -> Verdict {
        let matcher = self.matcher.load();
        match host {
            Host::Name(n) => matcher.check_name(n),
            Host::Ip(ip) => matcher.check_exact(&ip.to_string()),
        }
    }
}

impl Blocklists {
    /// Reads every configured file; an unreadable file is an error, since starting without
    /// a list the user asked for would silently let its names through.
    pub fn load(config: &BlocklistConfig) -> Result<Self, ListError> {
        let specs = config.sources.iter().map(|s| (s, Role::Block));
        let specs = specs.chain(config.allowlist.iter().map(|s| (s, Role::Allow)));
        let mut sources = Vec::new();
        for (spec, role) in specs {
            let location = spec.location();
            if location.starts_with("http://") || location.starts_with("https://") {
                return Err(ListError::Unsupported(location.to_string()));
            }
            let mut source = Source {
                spec: spec.clone(),
                role,
                name: spec.display_name(),
                path: PathBuf::from(location),
                stamp: None,
                format: None,
                parsed: Arc::new(Parsed::default()),
                last_error: None,
            };
            source.reload().map_err(|e| ListError::Read { path: location.to_string(), source: e })?;
            sources.push(source);
        }
        let matcher = build_matcher(&sources);
        Ok(Self {
            inner: Arc::new(Inner {
                current: Arc::new(ArcSwap::from_pointee(matcher)),
                sources: Mutex::new(sources),
                config: config.clone(),
            }),
        })
    }

    /// The handle the proxy consults.
    pub fn policy(&self) -> Policy {
        Policy { matcher: self.inner.current.clone() }
    }

    /// Re-reads the sources whose files changed and, if any did, publishes a new matcher.
    /// Returns whether the matcher was replaced.
    pub async fn refresh(&self) -> bool {
        let this = self.clone();
        // File reads, parsing and the rebuild all happen off the async threads.
        tokio::task::spawn_blocking(move || this.refresh_blocking()).await.unwrap_or(false)
    }

    fn refresh_blocking(&self) -> bool {
        let mut sources = self.sources();
        let mut changed = false;
        for source in sources.iter_mut() {
            match source.changed_on_disk() {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => {
                    source.fail(&e);
                    continue;
                }
            }
            match source.reload() {
                Ok(()) => {
                    tracing::info!(list = %source.name, entries = source.parsed.entries(), "list reloaded");
                    changed = true;
                }
                Err(e) => source.fail(&e),
            }
        }
        if changed {
            let matcher = build_matcher(&sources);
            drop(sources);
            self.inner.current.store(Arc::new(matcher));
        }
        changed
    }

    /// Refreshes every `update_interval` until cancelled.
    pub async fn run_updater(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.inner.config.update_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; lists were just loaded
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => { self.refresh().await; }
            }
        }
    }

    /// The state of every source.
    pub fn status(&self) -> Vec<SourceStatus> {
        self.sources()
            .iter()
            .map(|s| SourceStatus {
                name: s.name.clone(),
                location: s.spec.location().to_string(),
                role: s.role,
                format: s.format,
                entries: s.parsed.entries(),
                skipped: s.parsed.invalid + s.parsed.unsupported,
                last_error: s.last_error.clone(),
            })
            .collect()
    }

    /// Distinct names in the published matcher.
    pub fn len(&self) -> usize {
        self.inner.current.load().len()
    }

    /// Whether the published matcher holds no names.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sources(&self) -> MutexGuard<'_, Vec<Source>> {
        // The data stays consistent even if a holder panicked: each source is replaced whole.
        self.inner.sources.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Source {
    fn changed_on_disk(&self) -> std::io::Result<bool> {
        Ok(Some(file_stamp(&self.path)?) != self.stamp)
    }

    fn reload(&mut self) -> std::io::Result<()> {
        let stamp = file_stamp(&self.path)?;
        let bytes = std::fs::read(&self.path)?;
        let text = String::from_utf8_lossy(&bytes);
        let format = self.spec.format().unwrap_or_else(|| detect(&text));
        self.parsed = Arc::new(parse(&text, format));
        self.format = Some(format);
        self.stamp = Some(stamp);
        self.last_error = None;
        Ok(())
    }

    fn fail(&mut self, e: &std::io::Error) {
        tracing::warn!(list = %self.name, error = %e, "cannot reload list, keeping the previous version");
        self.last_error = Some(e.to_string());
    }
}

fn file_stamp(path: &std::path::Path) -> std::io::Result<(SystemTime, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified()?, meta.len()))
}

fn build_matcher(sources: &[Source]) -> Matcher {
    let total = sources.iter().map(|s| s.parsed.entries()).sum();
    let mut builder = MatcherBuilder::with_capacity(total);
    for source in sources {
        let id = builder.add_list(&source.name);
        let parsed = &source.parsed;
        match source.role {
            Role::Block => {
                parsed.block.iter().for_each(|n| builder.block(id, n));
                parsed.allow.iter().for_each(|n| builder.allow(id, n));
            }
            Role::Allow => {
                parsed.block.iter().chain(&parsed.allow).for_each(|n| builder.allow(id, n));
            }
        }
    }
    builder.build()
}
