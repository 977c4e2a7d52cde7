//! What the user added, kept in the data dir across restarts and shared by every front end
//! on that data dir: their allowlist (`allowlist.txt`), the lists they added
//! (`user-lists.json`), and the app's own settings (`settings.json`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Change, InputError, ProxyService, ServiceError};
use crate::blocklist::{Blocklists, Role, Verdict};
use crate::config::{DetailedSource, SourceSpec};
use crate::sysproxy::fsutil::{open_no_follow, read_to_string_no_follow, write_atomic, NotAFile};

/// The user's allowlist file in the data dir.
pub const USER_ALLOWLIST: &str = "allowlist.txt";
/// The lists the user added, in the data dir.
pub const USER_LISTS: &str = "user-lists.json";
/// The app's settings, in the data dir.
pub const USER_SETTINGS: &str = "settings.json";

/// A list the user added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    /// Path or URL.
    pub location: String,
    /// An allowlist rather than a block list.
    #[serde(default)]
    pub allow: bool,
}

impl UserList {
    fn role(&self) -> Role {
        if self.allow {
            Role::Allow
        } else {
            Role::Block
        }
    }
}

/// Settings the app keeps for the user (the CLI takes its own from flags and the config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserSettings {
    /// The port the user chose when the configured one was taken.
    pub listen: Option<SocketAddr>,
    /// Start the app (hidden, in the tray) at login.
    pub start_at_login: bool,
    /// The user turned protection off in the app (it then starts with protection off).
    pub protection_off: bool,
}

impl UserSettings {
    /// Reads the settings (defaults when there are none or they cannot be read).
    pub fn load(data_dir: &Path) -> UserSettings {
        read_to_string_no_follow(&data_dir.join(USER_SETTINGS))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Writes them atomically.
    pub fn save(&self, data_dir: &Path) -> Result<(), ServiceError> {
        save_json(&data_dir.join(USER_SETTINGS), self)
    }
}

/// The user's lists, in order (none when there is no data dir or no file).
pub fn user_lists(data_dir: &Path) -> Vec<UserList> {
    read_to_string_no_follow(&data_dir.join(USER_LISTS))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Adds the user's allowlist and lists to `lists` (the allowlist file is created, with a
/// header, if it is missing). A list that cannot be loaded is skipped with a warning: one
/// bad list never keeps the others out.
pub async fn load_into(lists: &Blocklists, data_dir: &Path) -> Result<(), ServiceError> {
    let allow = data_dir.join(USER_ALLOWLIST);
    if !allow.exists() {
        let header = b"# Names you allowed in GuardNest, one per line. They and their subdomains are never blocked.\n";
        write_atomic(&allow, header, false).map_err(|source| save_error(&allow, source))?;
    }
    // The list loader reads the allowlist by its name: only when that is the file itself.
    match open_no_follow(&allow, std::fs::OpenOptions::new().read(true)) {
        Err(e) if NotAFile::of(&e).is_some() => tracing::warn!("your allowlist is not loaded: {e}"),
        _ => {
            lists.add_source(user_allowlist_spec(&allow), Role::Allow).await?;
        }
    }
    for l in user_lists(data_dir) {
        if let Err(e) = lists.add_source(SourceSpec::Location(l.location.clone()), l.role()).await {
            tracing::warn!(list = %l.location, error = %e, "cannot load a list you added");
        }
    }
    Ok(())
}

fn user_allowlist_spec(path: &Path) -> SourceSpec {
    SourceSpec::Detailed(DetailedSource {
        source: path.display().to_string(),
        name: Some("my allowlist".into()),
        format: Some(crate::blocklist::Format::Plain),
        interval: None,
    })
}

fn save_error(path: &Path, source: std::io::Error) -> ServiceError {
    ServiceError::Save { path: path.display().to_string(), source }
}

fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ServiceError> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| save_error(path, std::io::Error::other(e)))?;
    write_atomic(path, &json, false).map_err(|source| save_error(path, source))
}

impl ProxyService {
    fn user_dir(&self, what: &'static str) -> Result<&PathBuf, ServiceError> {
        self.data_dir.as_ref().ok_or(ServiceError::Input(InputError::NoDataDir(what)))
    }

    /// Loads what the user added from the app: their allowlist and their lists. Called by
    /// [`super::lifecycle::Builder::start_up`]; without a data dir there is nothing to load.
    pub async fn load_user_state(&self) -> Result<(), ServiceError> {
        match &self.data_dir {
            Some(dir) => load_into(&self.lists, dir).await,
            None => Ok(()),
        }
    }

    /// Never blocks `name` (and its subdomains) again: it goes into the user's allowlist,
    /// which survives restarts.
    pub async fn allow_domain(&self, name: &str) -> Result<Change, ServiceError> {
        let host = crate::domain::normalize_name(name.trim())
            .ok_or_else(|| ServiceError::Input(InputError::NotAHost(name.to_string())))?;
        let path = self.user_dir("the allowlist")?.join(USER_ALLOWLIST);
        // Read before it is rewritten: an allowlist that cannot be read is not replaced by
        // one holding this name alone.
        let text = match read_to_string_no_follow(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(save_error(&path, e)),
        };
        if text.lines().any(|l| l.trim() == host) {
            return Ok(Change { changed: false, message: format!("{host} is already allowed") });
        }
        let mut new_text = text;
        if !new_text.is_empty() && !new_text.ends_with('\n') {
            new_text.push('\n');
        }
        new_text.push_str(&host);
        new_text.push('\n');
        write_atomic(&path, new_text.as_bytes(), false).map_err(|source| save_error(&path, source))?;
        self.lists.add_source(user_allowlist_spec(&path), Role::Allow).await?;
        self.lists.update(&()).await;
        Ok(Change { changed: true, message: format!("{host} is allowed from now on") })
    }

    /// What the lists say about a name: blocked (by which list and rule) or allowed.
    pub fn check_domain(&self, name: &str) -> Result<Verdict, ServiceError> {
        let host = crate::domain::Host::parse(name.trim())
            .map_err(|e| ServiceError::Input(InputError::NotAHostBecause(name.to_string(), e.to_string())))?;
        Ok(self.lists.check(&host))
    }

    /// [`ProxyService::check_domain`] as front ends show it, with the normalised name.
    pub fn check(&self, name: &str) -> Result<super::status::CheckAnswer, ServiceError> {
        let verdict = self.check_domain(name)?;
        let shown = crate::domain::Host::parse(name.trim()).map_or_else(|_| name.to_string(), |h| h.to_string());
        Ok(super::status::CheckAnswer::new(shown, verdict))
    }

    /// Turns blocking off for `minutes`; it comes back by itself.
    pub fn pause(&self, minutes: u64) -> Result<Change, ServiceError> {
        if minutes == 0 || minutes > 24 * 60 {
            return Err(ServiceError::Input(InputError::PauseRange));
        }
        self.lists.pause(std::time::Duration::from_secs(minutes * 60));
        Ok(Change { changed: true, message: format!("protection paused for {}", super::status::minutes(minutes * 60)) })
    }

    /// Ends a pause now.
    pub fn resume(&self) -> Change {
        let changed = self.lists.paused_for().is_some();
        self.lists.resume();
        Change {
            changed,
            message: if changed { "protection resumed".into() } else { "protection was not paused".into() },
        }
    }

    /// Adds a block list (path or URL), kept across restarts, and fetches it now.
    pub async fn add_list(&self, location: &str) -> Result<Change, ServiceError> {
        let location = location.trim();
        let is_url = location.starts_with("http://") || location.starts_with("https://");
        if location.is_empty() || (!is_url && !Path::new(location).is_absolute()) {
            return Err(ServiceError::Input(InputError::NotAListLocation(location.to_string())));
        }
        let dir = self.user_dir("your lists")?.clone();
        let added = self.lists.add_source(SourceSpec::Location(location.into()), Role::Block).await?;
        if !added {
            return Ok(Change { changed: false, message: format!("{location} is already a list") });
        }
        let mut lists = user_lists(&dir);
        lists.push(UserList { location: location.into(), allow: false });
        save_json(&dir.join(USER_LISTS), &lists)?;
        self.lists.update(&()).await;
        let state = self.lists.status().into_iter().find(|s| s.location == location);
        let message = match state {
            Some(s) if s.loaded => format!("added {location}: {}", super::status::plural(s.entries, "name", "names")),
            Some(s) => format!(
                "added {location}; not loaded yet: {}",
                s.problem.map_or_else(|| "not downloaded yet".to_string(), |p| p.summary)
            ),
            None => format!("added {location}"),
        };
        Ok(Change { changed: true, message })
    }

    /// Removes a list the user added.
    pub async fn remove_list(&self, location: &str) -> Result<Change, ServiceError> {
        let dir = self.user_dir("your lists")?.clone();
        let mut lists = user_lists(&dir);
        let before = lists.len();
        lists.retain(|l| l.location != location);
        if lists.len() == before {
            return Err(ServiceError::Input(InputError::NotAUserList(location.to_string())));
        }
        save_json(&dir.join(USER_LISTS), &lists)?;
        self.lists.remove_source(location).await;
        Ok(Change { changed: true, message: format!("removed {location}") })
    }

    /// Lists the user added (from the app), in order.
    pub fn user_lists(&self) -> Vec<UserList> {
        self.data_dir.as_deref().map(user_lists).unwrap_or_default()
    }
}
