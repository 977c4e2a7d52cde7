//! Block and allow lists: sources, downloads, cache, parsing, and the matcher that serves
//! lookups.
//!
//! A refresh fetches or re-reads the sources that are due, builds a whole new [`Matcher`] on
//! a blocking thread and publishes it with one atomic swap; lookups never wait on a lock,
//! and a failed refresh keeps the previous version of that source.

mod cache;
mod fetch;
mod format;
mod matcher;
mod problem;
mod read;
mod source;

use parking_lot::{Mutex, MutexGuard};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use cache::{CacheEntry, CacheError, CacheMeta};
pub use fetch::{FetchError, Fetched, Fetcher, Progress};
pub use format::{detect, parse, parse_reader, parse_text, Format, Names, Parsed, Sink};
pub use matcher::{ListNames, Match, Matcher, MatcherBuilder, NameHasher, Role, TooManyLists, Verdict, MAX_LISTS};
pub use problem::{Problem, ProblemKind};

use crate::config::{BlocklistConfig, SourceSpec};
use crate::domain::Host;
use source::{Outcome, Source};

/// Built-in public lists of malware and phishing domains, used unless turned off.
pub const DEFAULT_LISTS: &[(&str, &str)] = &[
    ("urlhaus-malware", "https://urlhaus.abuse.ch/downloads/hostfile/"),
    ("blocklistproject-malware", "https://blocklistproject.github.io/Lists/malware.txt"),
    ("blocklistproject-phishing", "https://blocklistproject.github.io/Lists/phishing.txt"),
];

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
    /// More lists than one matcher can tell apart.
    #[error(transparent)]
    TooMany(#[from] TooManyLists),
    /// The HTTP client could not be built.
    #[error("cannot set up list downloads: {0}")]
    Client(#[from] FetchError),
    /// A list being added could not be read or downloaded (it was not added).
    #[error("cannot use {location}: {}", problem.detail)]
    Unusable {
        /// Its path or URL.
        location: String,
        /// What went wrong, as a kind and one short sentence.
        problem: Problem,
    },
}

impl ListError {
    /// What went wrong with one list, when it is about one list.
    pub fn problem(&self) -> Option<Problem> {
        match self {
            ListError::Unusable { problem, .. } => Some(problem.clone()),
            ListError::Read { path, source } => Some(source::unreadable(Path::new(path), source)),
            _ => None,
        }
    }
}

/// What status and `guardnest lists` show for one source.
#[derive(Debug, Clone)]
pub struct SourceStatus {
    /// Display name.
    pub name: String,
    /// Where it is read from: a path or a URL.
    pub location: String,
    /// Block or allow.
    pub role: Role,
    /// One of the built-in default lists.
    pub builtin: bool,
    /// The format of the current version.
    pub format: Option<Format>,
    /// Whether a version is loaded (false for a URL not downloaded or cached yet).
    pub loaded: bool,
    /// Whether the current version came from the on-disk cache.
    pub from_cache: bool,
    /// Names in the current version.
    pub entries: usize,
    /// Lines skipped in the current version (invalid plus unsupported).
    pub skipped: usize,
    /// Last successful check (changed or not).
    pub last_success: Option<SystemTime>,
    /// The error of the last attempt, if it failed (the whole chain).
    pub last_error: Option<String>,
    /// The same, as a kind and one short sentence.
    pub problem: Option<Problem>,
    /// When the source is checked next.
    pub next_check: SystemTime,
}

/// The result of one update pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UpdateReport {
    /// Sources with a new version.
    pub updated: Vec<String>,
    /// Sources checked and unchanged.
    pub unchanged: Vec<String>,
    /// Sources that failed, with why.
    pub failed: Vec<(String, String)>,
    /// Distinct names in the published matcher afterwards.
    pub names: usize,
}

/// Creates a progress reporter per download; the CLI draws bars, the service logs.
pub trait Reporter: Send + Sync {
    /// A reporter for the download of the named list.
    fn start(&self, list: &str) -> Box<dyn Progress>;
}

impl Reporter for () {
    fn start(&self, _: &str) -> Box<dyn Progress> {
        Box::new(())
    }
}

/// The loaded lists and the matcher built from them.
#[derive(Clone)]
pub struct Blocklists {
    inner: Arc<Inner>,
}

struct Inner {
    current: Arc<ArcSwap<Matcher>>,
    paused_until: Arc<AtomicU64>,
    data_dir: Option<std::path::PathBuf>,
    default_interval: std::time::Duration,
    sources: Mutex<Vec<Source>>,
    /// One update pass at a time (the updater, `lists update`, the control API).
    updating: tokio::sync::Mutex<()>,
    fetcher: Fetcher,
    hasher: NameHasher,
    warned_defaults: AtomicBool,
    /// Bumped when a list, the pause or the published matcher changes.
    changes: crate::events::Changes,
}

/// A cheap, clonable handle that answers "is this host blocked?".
#[derive(Clone)]
pub struct Policy {
    matcher: Arc<ArcSwap<Matcher>>,
    /// Seconds since the epoch until which blocking is paused (0: not paused).
    paused_until: Arc<AtomicU64>,
}

impl Policy {
    /// A policy that blocks nothing.
    pub fn allow_all() -> Self {
        Self::from_matcher(Matcher::default())
    }

    /// A policy over a fixed matcher.
    pub fn from_matcher(matcher: Matcher) -> Self {
        Self { matcher: Arc::new(ArcSwap::from_pointee(matcher)), paused_until: Arc::default() }
    }

    /// Decides for a request host. Never blocks on a lock: the matcher is read through an
    /// atomic pointer, so there is no poisoned state in which a request could slip through.
    /// While protection is paused everything is allowed (the clock is read only then).
    pub fn check(&self, host: &Host) -> Verdict {
        let until = self.paused_until.load(Ordering::Relaxed);
        if until != 0 && cache::now_secs() < until {
            return Verdict::Allowed;
        }
        let matcher = self.matcher.load();
        match host {
            Host::Name(n) => matcher.check_name(n),
            Host::Ip(_) => matcher.check_exact(host.ip_text().unwrap_or_default().as_str()),
        }
    }
}

impl Blocklists {
    /// Loads every source without touching the network: files are read (an unreadable file
    /// is an error: starting without a list the user named would let its names through),
    /// URL sources start from their cache in `data_dir`, if any, and are fetched later by
    /// [`Blocklists::update`] or [`Blocklists::run_updater`].
    pub fn load(config: &BlocklistConfig, data_dir: Option<&Path>) -> Result<Self, ListError> {
        Self::load_with_defaults(config, data_dir, DEFAULT_LISTS)
    }

    /// [`Blocklists::load`] with another set of built-in lists (name, URL): for tests and
    /// for distributions that ship their own defaults.
    pub fn load_with_defaults(
        config: &BlocklistConfig,
        data_dir: Option<&Path>,
        builtin: &[(&str, &str)],
    ) -> Result<Self, ListError> {
        let defaults: Vec<SourceSpec> = match config.default_lists {
            true => builtin
                .iter()
                .map(|(name, url)| {
                    SourceSpec::Detailed(crate::config::DetailedSource {
                        source: url.to_string(),
                        name: Some(name.to_string()),
                        format: None,
                        interval: None,
                    })
                })
                .collect(),
            false => Vec::new(),
        };
        let specs = config.sources.iter().map(|s| (s, Role::Block, false));
        let specs = specs.chain(defaults.iter().map(|s| (s, Role::Block, true)));
        let specs = specs.chain(config.allowlist.iter().map(|s| (s, Role::Allow, false)));
        let hasher = NameHasher::new();
        let mut sources = Vec::new();
        for (spec, role, builtin) in specs {
            let mut source = Source::new(spec, role, builtin, config.update_interval, data_dir, &hasher);
            source.load_local(&hasher).map_err(|e| ListError::Read { path: spec.location().to_string(), source: e })?;
            sources.push(source);
        }
        let matcher = build_matcher(&sources, &hasher)?;
        Ok(Self {
            inner: Arc::new(Inner {
                current: Arc::new(ArcSwap::from_pointee(matcher)),
                paused_until: Arc::default(),
                data_dir: data_dir.map(Path::to_path_buf),
                default_interval: config.update_interval,
                sources: Mutex::new(sources),
                updating: tokio::sync::Mutex::new(()),
                fetcher: Fetcher::new(config.max_download_bytes, config.download_timeout)?,
                hasher,
                warned_defaults: AtomicBool::new(false),
                changes: crate::events::Changes::default(),
            }),
        })
    }

    /// The handle the proxy consults.
    pub fn policy(&self) -> Policy {
        Policy { matcher: self.inner.current.clone(), paused_until: self.inner.paused_until.clone() }
    }

    /// Stops blocking until `until` (seconds since the epoch); it resumes by itself then.
    /// (The service announces the change: it owns the pause.)
    pub fn pause_until(&self, until: u64) {
        self.inner.paused_until.store(until, Ordering::Relaxed);
        tracing::info!(until, "protection paused");
    }

    /// Blocks again now.
    pub fn resume(&self) {
        self.inner.paused_until.store(0, Ordering::Relaxed);
    }

    /// The end of the last pause set (seconds since the epoch; 0 after a resume), whether
    /// or not it has passed: tells a pause that ran out from one ended or replaced.
    pub fn pause_mark(&self) -> u64 {
        self.inner.paused_until.load(Ordering::Relaxed)
    }

    /// When a pause ends (seconds since the epoch), while paused.
    pub fn paused_until(&self) -> Option<u64> {
        let until = self.inner.paused_until.load(Ordering::Relaxed);
        (until > cache::now_secs()).then_some(until)
    }

    /// Downloads go where `router` sends them: through the user's own proxy when the system
    /// settings name one (never through GuardNest itself), else direct. Set by the service
    /// each time the proxy starts.
    pub fn set_upstream(&self, router: Arc<crate::Router>) {
        self.inner.fetcher.set_upstream(router);
    }

    /// What front ends watch to redraw: bumped when a list, the pause or the published
    /// matcher changes (and by whoever shares it, such as the block log).
    pub fn changes(&self) -> &crate::events::Changes {
        &self.inner.changes
    }

    /// Time left in a pause, if paused.
    pub fn paused_for(&self) -> Option<std::time::Duration> {
        let until = self.inner.paused_until.load(Ordering::Relaxed);
        let now = cache::now_secs();
        (until > now).then(|| std::time::Duration::from_secs(until - now))
    }

    /// Adds a list at run time (a file is read now; a URL starts from its cache and is
    /// fetched by the next update). Adding a location already present is a no-op.
    pub async fn add_source(&self, spec: SourceSpec, role: Role) -> Result<bool, ListError> {
        if self.sources().iter().any(|s| s.spec.location() == spec.location() && s.role == role) {
            return Ok(false);
        }
        if self.sources().len() >= MAX_LISTS {
            return Err(ListError::TooMany(TooManyLists));
        }
        let inner = self.inner.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let mut source =
                Source::new(&spec, role, false, inner.default_interval, inner.data_dir.as_deref(), &inner.hasher);
            source
                .load_local(&inner.hasher)
                .map(|()| source)
                .map_err(|e| ListError::Read { path: spec.location().to_string(), source: e })
        })
        .await
        .map_err(|e| ListError::Read { path: "?".into(), source: std::io::Error::other(e.to_string()) })??;
        self.sources().push(loaded);
        self.republish().await;
        self.inner.changes.bump();
        Ok(true)
    }

    /// Removes a list at run time; returns whether it was there.
    pub async fn remove_source(&self, location: &str) -> bool {
        let removed = {
            let mut sources = self.sources();
            let before = sources.len();
            sources.retain(|s| s.spec.location() != location);
            sources.len() != before
        };
        if removed {
            self.republish().await;
            self.inner.changes.bump();
        }
        removed
    }

    /// Adds a list at run time only if it can be used: a file is read now; a URL is
    /// downloaded now (or its cached copy used). A list that cannot be read or downloaded
    /// (a 404, an error page, no such file) is refused with why, and not kept. `Ok(false)`
    /// when the location is already a list.
    pub async fn add_checked(&self, spec: SourceSpec, role: Role) -> Result<bool, ListError> {
        if self.sources().iter().any(|s| s.spec.location() == spec.location() && s.role == role) {
            return Ok(false);
        }
        if self.sources().len() >= MAX_LISTS {
            return Err(ListError::TooMany(TooManyLists));
        }
        let location = spec.location().to_string();
        let inner = self.inner.clone();
        let local = tokio::task::spawn_blocking(move || {
            let mut source =
                Source::new(&spec, role, false, inner.default_interval, inner.data_dir.as_deref(), &inner.hasher);
            source.load_local(&inner.hasher).map(|()| source).map_err(|e| (spec.location().to_string(), e))
        })
        .await
        .map_err(|e| ListError::Read { path: location.clone(), source: std::io::Error::other(e.to_string()) })?;
        let mut source = local.map_err(|(path, source)| ListError::Read { path, source })?;
        if let source::Origin::File(path) = &source.origin {
            // A file with no names is not a list (a page saved by mistake): refused, as a
            // download that is not one is.
            if let Some(why) = source::not_a_list(&source.version.names) {
                let problem = Problem::new(ProblemKind::NoNames, &path.display().to_string(), why);
                return Err(ListError::Unusable { location, problem });
            }
        }
        if matches!(source.origin, source::Origin::Url { .. }) {
            let outcome = Source::probe(
                source.origin.clone(),
                source.version.clone(),
                source.spec.format(),
                &self.inner.fetcher,
                &self.inner.hasher,
                &(),
            )
            .await;
            match outcome {
                Outcome::Updated(v) => {
                    source.install(v);
                    source.next_check = Instant::now() + source.interval;
                }
                Outcome::Unchanged => source.checked(),
                Outcome::Failed(problem) if !source.version.loaded => {
                    return Err(ListError::Unusable { location, problem });
                }
                Outcome::Failed(problem) => source.failed(problem),
            }
        }
        {
            let mut sources = self.sources();
            if sources.iter().any(|s| s.spec.location() == location && s.role == role) {
                return Ok(false);
            }
            sources.push(source);
        }
        self.republish().await;
        self.inner.changes.bump();
        Ok(true)
    }

    /// Reads a file list again now, whatever its time stamp says (the user's allowlist after
    /// a change, which may land within the file system's time resolution).
    pub async fn reread(&self, location: &str) -> Result<(), ListError> {
        let found =
            self.sources().iter().find(|s| s.spec.location() == location).map(|s| (s.origin.clone(), s.spec.format()));
        let Some((source::Origin::File(path), format)) = found else { return Ok(()) };
        let hasher = self.inner.hasher.clone();
        let read_path = path.clone();
        let version = tokio::task::spawn_blocking(move || source::read_file(&read_path, format, &hasher))
            .await
            .map_err(|e| ListError::Read { path: location.to_string(), source: std::io::Error::other(e.to_string()) })?
            .map_err(|source| ListError::Read { path: location.to_string(), source })?;
        if let Some(s) = self.sources().iter_mut().find(|s| s.spec.location() == location) {
            s.install(version);
            s.next_check = Instant::now() + s.interval;
        }
        self.republish().await;
        self.inner.changes.bump();
        Ok(())
    }

    /// Checks a host against the current lists.
    pub fn check(&self, host: &Host) -> Verdict {
        self.policy().check(host)
    }

    /// Checks every source now (files re-read if changed, URLs fetched conditionally),
    /// and publishes a new matcher if anything changed.
    pub async fn update(&self, reporter: &dyn Reporter) -> UpdateReport {
        self.update_pass(true, reporter).await
    }

    /// Checks the sources that are due.
    async fn update_pass(&self, force: bool, reporter: &dyn Reporter) -> UpdateReport {
        let _one_at_a_time = self.inner.updating.lock().await;
        let now = Instant::now();
        let due: Vec<usize> =
            self.sources().iter().enumerate().filter(|(_, s)| force || s.next_check <= now).map(|(i, _)| i).collect();
        let mut report = UpdateReport::default();
        for i in due {
            let (origin, version, format, name) = {
                let sources = self.sources();
                let s = &sources[i];
                (s.origin.clone(), s.version.clone(), s.spec.format(), s.name.clone())
            };
            let progress = reporter.start(&name);
            let outcome =
                Source::probe(origin, version, format, &self.inner.fetcher, &self.inner.hasher, &*progress).await;
            let mut sources = self.sources();
            let s = &mut sources[i];
            match outcome {
                Outcome::Unchanged => {
                    s.checked();
                    report.unchanged.push(name);
                }
                Outcome::Updated(v) => {
                    tracing::info!(list = %name, entries = v.names.entries(), skipped = v.names.invalid + v.names.unsupported, "list updated");
                    s.install(v);
                    s.next_check = Instant::now() + s.interval;
                    report.updated.push(name);
                }
                Outcome::Failed(why) => {
                    report.failed.push((name, why.detail.clone()));
                    s.failed(why);
                }
            }
        }
        if !report.updated.is_empty() {
            self.republish().await;
        }
        if !report.updated.is_empty() || !report.failed.is_empty() {
            self.inner.changes.bump();
        }
        self.warn_about_defaults();
        report.names = self.len();
        report
    }

    /// Builds a new matcher from every source's current version and swaps it in.
    async fn republish(&self) {
        let this = self.clone();
        let built = tokio::task::spawn_blocking(move || {
            // Build from a snapshot of Arcs: the sources lock is not held while indexing.
            let lists: Vec<(String, Role, Arc<ListNames>)> =
                this.sources().iter().map(|s| (s.name.clone(), s.role, s.version.names.clone())).collect();
            build_index(lists, &this.inner.hasher)
        })
        .await;
        match built {
            Ok(Ok(matcher)) => self.inner.current.store(Arc::new(matcher)),
            Ok(Err(e)) => tracing::error!(error = %e, "cannot rebuild the matcher; keeping the previous one"),
            Err(e) => tracing::error!(error = %e, "matcher rebuild panicked; keeping the previous one"),
        }
    }

    /// Says once, clearly, when the built-in lists could not be loaded yet, and once when they are.
    fn warn_about_defaults(&self) {
        let sources = self.sources();
        let missing: Vec<&str> =
            sources.iter().filter(|s| s.builtin && !s.version.loaded).map(|s| s.name.as_str()).collect();
        let warned = &self.inner.warned_defaults;
        if !missing.is_empty() && !warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                lists = %missing.join(", "),
                "the built-in default lists are not loaded yet (no network?); blocking with the other lists meanwhile and retrying"
            );
        } else if missing.is_empty() && warned.swap(false, Ordering::Relaxed) {
            tracing::info!("the built-in default lists are loaded now");
        }
    }

    /// Checks due sources until cancelled; sleeps in between (no periodic wake-ups beyond
    /// the sources' own schedules).
    pub async fn run_updater(self, shutdown: CancellationToken) {
        loop {
            let next = self.sources().iter().map(|s| s.next_check).min();
            let wait = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = wait => {}
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = self.update_pass(false, &()) => {}
            }
        }
    }

    /// The state of every source.
    pub fn status(&self) -> Vec<SourceStatus> {
        let now = Instant::now();
        self.sources()
            .iter()
            .map(|s| SourceStatus {
                name: s.name.clone(),
                location: s.spec.location().to_string(),
                role: s.role,
                builtin: s.builtin,
                format: s.version.format,
                loaded: s.version.loaded,
                from_cache: s.version.from_cache,
                entries: s.version.names.entries(),
                skipped: s.version.names.invalid + s.version.names.unsupported,
                last_success: s.last_success,
                last_error: s.last_error.as_ref().map(|p| p.detail.clone()),
                problem: s.last_error.clone(),
                next_check: SystemTime::now() + s.next_check.saturating_duration_since(now),
            })
            .collect()
    }

    /// Distinct names in the published matcher.
    pub fn len(&self) -> usize {
        self.inner.current.load().len()
    }

    /// Names the published matcher blocks ([`Matcher::blocking`]).
    pub fn blocking(&self) -> usize {
        self.inner.current.load().blocking()
    }

    /// Whether the published matcher holds no names.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sources(&self) -> MutexGuard<'_, Vec<Source>> {
        // Each source is replaced whole under the lock, so the data is consistent even if
        // a holder panicked.
        self.inner.sources.lock()
    }
}

fn build_matcher(sources: &[Source], hasher: &NameHasher) -> Result<Matcher, TooManyLists> {
    build_index(sources.iter().map(|s| (s.name.clone(), s.role, s.version.names.clone())).collect(), hasher)
}

fn build_index(lists: Vec<(String, Role, Arc<ListNames>)>, hasher: &NameHasher) -> Result<Matcher, TooManyLists> {
    let mut builder = MatcherBuilder::new(hasher.clone());
    for (name, role, names) in lists {
        builder.add(&name, role, names)?;
    }
    Ok(builder.build())
}
