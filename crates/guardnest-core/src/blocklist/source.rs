//! One list source: where it comes from, its current version, and how to get a newer one.
//!
//! A source always has a version to serve (possibly empty); a refresh either replaces it
//! whole with a good new one or leaves it alone and records why, so one bad download or
//! one bad file never empties a list.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::cache::{self, CacheEntry, CacheError, CacheMeta};
use super::fetch::{FetchError, Fetched, Fetcher, Progress};
use super::format::Format;
use super::matcher::{ListNames, NameHasher, Role};
use super::problem::{host_of, Problem, ProblemKind};
use super::read::{read_list, Loaded};
use crate::config::SourceSpec;

/// First retry delay after a failure; doubles per failure.
const RETRY_FIRST: Duration = Duration::from_secs(5);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(15 * 60);
/// A list that keeps failing the same way is warned about at most this often.
const WARN_EVERY: Duration = Duration::from_secs(5 * 60);

/// Where a source's text comes from.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// A local file, re-read when its mtime or length changes.
    File(PathBuf),
    /// An http(s) URL, cached in the data dir when there is one.
    Url { url: String, cache: Option<CacheEntry> },
}

/// A source and its current version.
pub(crate) struct Source {
    pub(crate) spec: SourceSpec,
    pub(crate) role: Role,
    pub(crate) name: String,
    /// One of the built-in default lists.
    pub(crate) builtin: bool,
    pub(crate) origin: Origin,
    pub(crate) interval: Duration,
    pub(crate) version: Version,
    pub(crate) last_success: Option<SystemTime>,
    pub(crate) last_error: Option<Problem>,
    pub(crate) failures: u32,
    /// When a failure of this source was last logged as a warning.
    last_warned: Option<Instant>,
    pub(crate) next_check: Instant,
}

/// The version a source serves now.
#[derive(Clone)]
pub(crate) struct Version {
    pub(crate) names: Arc<ListNames>,
    pub(crate) format: Option<Format>,
    /// False until a first good version exists (a URL with no cache yet).
    pub(crate) loaded: bool,
    pub(crate) from_cache: bool,
    /// (mtime, len) of a file source's version.
    pub(crate) stamp: Option<(SystemTime, u64)>,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
}

impl Version {
    fn empty(hasher: &NameHasher) -> Self {
        Self {
            names: Arc::new(ListNames::new(hasher.clone())),
            format: None,
            loaded: false,
            from_cache: false,
            stamp: None,
            etag: None,
            last_modified: None,
        }
    }

    fn from_loaded(loaded: Loaded) -> Self {
        Self {
            names: Arc::new(loaded.names),
            format: Some(loaded.format),
            loaded: true,
            from_cache: false,
            stamp: None,
            etag: None,
            last_modified: None,
        }
    }
}

/// What a refresh of one source found.
pub(crate) enum Outcome {
    /// Nothing new (file unchanged, or 304).
    Unchanged,
    /// A new version to install.
    Updated(Version),
    /// The attempt failed; the current version stays.
    Failed(Problem),
}

impl Source {
    pub(crate) fn new(
        spec: &SourceSpec,
        role: Role,
        builtin: bool,
        default_interval: Duration,
        data_dir: Option<&std::path::Path>,
        hasher: &NameHasher,
    ) -> Self {
        let location = spec.location().to_string();
        let origin = if spec.is_url() {
            Origin::Url { cache: data_dir.map(|d| CacheEntry::new(d, &location)), url: location }
        } else {
            Origin::File(PathBuf::from(location))
        };
        Self {
            spec: spec.clone(),
            role,
            name: spec.display_name(),
            builtin,
            origin,
            interval: spec.interval().unwrap_or(default_interval),
            version: Version::empty(hasher),
            last_success: None,
            last_error: None,
            failures: 0,
            last_warned: None,
            next_check: Instant::now(),
        }
    }

    /// Reads the first version without the network: a file, or a URL's cache.
    pub(crate) fn load_local(&mut self, hasher: &NameHasher) -> std::io::Result<()> {
        match &self.origin {
            Origin::File(path) => {
                let version = read_file(path, self.spec.format(), hasher)?;
                self.install(version);
                self.next_check = Instant::now() + self.interval;
            }
            Origin::Url { cache: Some(cache), url } => {
                match load_cache(cache, self.spec.format(), hasher) {
                    Ok((meta, version)) => {
                        self.version = version;
                        self.last_success = Some(cache::from_secs(meta.checked_at));
                    }
                    Err(CacheError::Missing) => {}
                    Err(e) => tracing::warn!(list = %self.name, %url, error = %e, "ignoring the cached copy"),
                }
                if let Some(meta) = cache.meta() {
                    self.last_error = meta
                        .last_problem
                        .or_else(|| meta.last_error.map(|(_, e)| Problem::new(ProblemKind::Earlier, "", e)));
                }
                self.next_check = Instant::now(); // a conditional GET right away is cheap
            }
            Origin::Url { cache: None, .. } => self.next_check = Instant::now(),
        }
        Ok(())
    }

    /// Gets a newer version if there is one. Runs its blocking parts off the async threads.
    pub(crate) async fn probe(
        origin: Origin,
        current: Version,
        format: Option<Format>,
        fetcher: &Fetcher,
        hasher: &NameHasher,
        progress: &dyn Progress,
    ) -> Outcome {
        let hasher = hasher.clone();
        match origin {
            Origin::File(path) => {
                blocking(move || match source_stamp(&path) {
                    Ok(stamp) if Some(stamp) == current.stamp => Outcome::Unchanged,
                    Ok(_) => match read_file(&path, format, &hasher) {
                        Ok(v) => Outcome::Updated(v),
                        Err(e) => Outcome::Failed(unreadable(&path, &e)),
                    },
                    Err(e) => Outcome::Failed(unreadable(&path, &e)),
                })
                .await
            }
            Origin::Url { url, cache } => {
                // Validators only make sense while we still hold the body they describe.
                let (etag, lm) = match current.loaded {
                    true => (current.etag.as_deref(), current.last_modified.as_deref()),
                    false => (None, None),
                };
                // Download beside the cache, so a good body is moved into place; a data dir
                // that is full or read-only must not stop the list from loading, so fall back
                // to the system's temp dir (and say the list is not cached).
                let beside_cache = match &cache {
                    Some(c) => c.temp_file().map_err(|e| FetchError::Disk(e.to_string())),
                    None => Err(FetchError::Disk("no data directory".into())),
                };
                let fetched = match beside_cache {
                    Ok(file) => fetcher.fetch(&url, etag, lm, progress, file).await,
                    Err(e) => Err(e),
                };
                let fetched = match fetched {
                    Err(FetchError::Disk(why)) => {
                        if cache.is_some() {
                            tracing::warn!(%url, error = %why, "cannot write the list into the data directory; downloading it uncached");
                        }
                        match tempfile::NamedTempFile::new() {
                            Ok(file) => fetcher.fetch(&url, etag, lm, progress, file).await,
                            Err(e) => Err(FetchError::Disk(e.to_string())),
                        }
                    }
                    other => other,
                };
                let limit = fetcher.max_bytes();
                blocking(move || match fetched {
                    Ok(Fetched::NotModified) => {
                        remember(cache.as_ref(), &url, None);
                        Outcome::Unchanged
                    }
                    Ok(Fetched::Body { file, etag, last_modified }) => {
                        match accept_download(&file, format, &hasher, limit) {
                            Ok(loaded) => {
                                let meta = CacheMeta {
                                    url: url.clone(),
                                    etag: etag.clone(),
                                    last_modified: last_modified.clone(),
                                    bytes: loaded.raw_bytes,
                                    crc32: loaded.crc32,
                                    fetched_at: cache::now_secs(),
                                    checked_at: cache::now_secs(),
                                    last_error: None,
                                    last_problem: None,
                                };
                                if let Some(c) = &cache {
                                    if let Err(e) = c.store(&meta, file) {
                                        tracing::warn!(%url, error = %e, "cannot cache the list; it will be downloaded again after a restart");
                                    }
                                }
                                Outcome::Updated(Version { etag, last_modified, ..Version::from_loaded(loaded) })
                            }
                            Err(e) => {
                                let problem = Problem::new(ProblemKind::NotAList, host_of(&url), e);
                                remember(cache.as_ref(), &url, Some(&problem));
                                Outcome::Failed(problem)
                            }
                        }
                    }
                    Err(e) => {
                        let problem = Problem::new(e.problem_kind(), host_of(&url), e.to_string());
                        remember(cache.as_ref(), &url, Some(&problem));
                        Outcome::Failed(problem)
                    }
                })
                .await
            }
        }
    }

    pub(crate) fn install(&mut self, version: Version) {
        self.version = version;
        self.last_success = Some(SystemTime::now());
        self.last_error = None;
        self.failures = 0;
    }

    /// Records a successful check that found nothing new.
    pub(crate) fn checked(&mut self) {
        self.last_success = Some(SystemTime::now());
        self.last_error = None;
        self.failures = 0;
        self.next_check = Instant::now() + self.interval;
    }

    /// Records a failure and schedules a retry with backoff. The log says so once, then at
    /// most every [`WARN_EVERY`] while it keeps failing the same way (offline, the retries
    /// would otherwise fill the log); each retry is logged at debug.
    pub(crate) fn failed(&mut self, why: Problem) {
        self.failures = self.failures.saturating_add(1);
        let delay = RETRY_FIRST.saturating_mul(1 << self.failures.min(16).saturating_sub(1)).min(RETRY_MAX);
        let now = Instant::now();
        self.next_check = now + delay;
        let kept = if self.version.loaded { "keeping the previous version" } else { "not loaded yet" };
        let same = self.last_error.as_ref().is_some_and(|p| p.kind == why.kind);
        if same && self.last_warned.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            tracing::debug!(list = %self.name, error = %why.detail, retry_in = ?delay, "list update failed again; {kept}");
        } else {
            self.last_warned = Some(now);
            tracing::warn!(list = %self.name, error = %why.detail, retry_in = ?delay, "list update failed: {}; {kept}", why.summary);
        }
        self.last_error = Some(why);
    }
}

/// A file that cannot be read, said plainly ("there is no file …"), the OS's words kept for
/// the details.
pub(crate) fn unreadable(path: &std::path::Path, e: &std::io::Error) -> Problem {
    let mut problem = Problem::new(
        ProblemKind::Unreadable,
        &path.display().to_string(),
        format!("cannot read {}: {e}", path.display()),
    );
    let plain = match e.kind() {
        std::io::ErrorKind::NotFound => Some(format!("there is no file {}", path.display())),
        std::io::ErrorKind::PermissionDenied => Some(format!("GuardNest may not read {}", path.display())),
        std::io::ErrorKind::IsADirectory => Some(format!("{} is a folder, not a list file", path.display())),
        _ => None,
    };
    if let Some(summary) = plain {
        problem.summary = summary;
    }
    problem
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Records the result of a check in the cache metadata, so `guardnest lists` can show it.
fn remember(cache: Option<&CacheEntry>, url: &str, error: Option<&Problem>) {
    let Some(cache) = cache else { return };
    let mut meta = cache.meta().unwrap_or_else(|| CacheMeta { url: url.to_string(), ..CacheMeta::default() });
    match error {
        None => {
            meta.checked_at = cache::now_secs();
            meta.last_error = None;
            meta.last_problem = None;
        }
        Some(e) => {
            meta.last_error = Some((cache::now_secs(), e.detail.clone()));
            meta.last_problem = Some(e.clone());
        }
    }
    // A cache that cannot be written is reported when the body is stored; not again here.
    let _ = cache.store_meta(&meta);
}

fn source_stamp(path: &std::path::Path) -> std::io::Result<(SystemTime, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified()?, meta.len()))
}

pub(crate) fn read_file(
    path: &std::path::Path,
    format: Option<Format>,
    hasher: &NameHasher,
) -> std::io::Result<Version> {
    let stamp = source_stamp(path)?;
    let loaded = read_list(std::fs::File::open(path)?, format, hasher, u64::MAX)?;
    Ok(Version { stamp: Some(stamp), ..Version::from_loaded(loaded) })
}

fn load_cache(
    cache: &CacheEntry,
    format: Option<Format>,
    hasher: &NameHasher,
) -> Result<(CacheMeta, Version), CacheError> {
    let (meta, file) = cache.open()?;
    let loaded = read_list(file, format, hasher, u64::MAX)?;
    meta.verify(loaded.raw_bytes, loaded.crc32)?;
    check_plausible(&loaded).map_err(CacheError::Corrupt)?;
    let version = Version {
        from_cache: true,
        etag: meta.etag.clone(),
        last_modified: meta.last_modified.clone(),
        ..Version::from_loaded(loaded)
    };
    Ok((meta, version))
}

/// Parses a download and refuses one that is clearly not a list.
fn accept_download(
    file: &tempfile::NamedTempFile,
    format: Option<Format>,
    hasher: &NameHasher,
    limit: u64,
) -> Result<Loaded, String> {
    let f = file.reopen().map_err(|e| format!("cannot read the download back: {e}"))?;
    let loaded = read_list(f, format, hasher, limit).map_err(|e| e.to_string())?;
    check_plausible(&loaded)?;
    Ok(loaded)
}

/// Why a list file's names are not a list's: none, or more invalid lines than names.
pub(crate) fn not_a_list(names: &ListNames) -> Option<String> {
    if names.entries() == 0 {
        return Some(format!("no names in it ({} lines that are not names)", names.invalid));
    }
    (names.invalid > names.entries())
        .then(|| format!("{} lines that are not names and only {} names", names.invalid, names.entries()))
}

/// An HTML error page or a captive portal parses to no names, or to more invalid lines
/// than names; neither may replace a good list.
fn check_plausible(loaded: &Loaded) -> Result<(), String> {
    let names = &loaded.names;
    if names.entries() == 0 {
        return Err(format!(
            "no names found in the download ({} bytes; an error page instead of a list?)",
            loaded.raw_bytes
        ));
    }
    if names.invalid > names.entries() {
        return Err(format!(
            "{} invalid lines and only {} names: not a {} list (an error page?)",
            names.invalid,
            names.entries(),
            loaded.format
        ));
    }
    Ok(())
}
