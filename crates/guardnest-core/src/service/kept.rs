//! What the user chose and added, kept in the data dir across restarts and shared by every
//! front end on that data dir: their allowlist (`allowlist.txt`, see [`Allowlist`]), the
//! lists they added (`user-lists.json`), what they switched (`settings.json`, see
//! [`UserSettings`]) and today's block count (`blocked-today.json`). The service changes
//! them through its calls; the CLI's offline commands (`guardnest allow` with no GuardNest
//! running) use these types on the files directly. Below the service: no `ProxyService`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{InputError, ServiceError};
use crate::blocklist::{Blocklists, Role};
use crate::config::{DetailedSource, SourceSpec};
use crate::events::DayCount;
use crate::sysproxy::fsutil::{open_no_follow, read_to_string_no_follow, write_atomic, NotAFile};

/// The user's allowlist file in the data dir.
pub const USER_ALLOWLIST: &str = "allowlist.txt";
/// The display name of the user's allowlist.
pub const USER_ALLOWLIST_NAME: &str = "my allowlist";
/// The lists the user added, in the data dir.
pub const USER_LISTS: &str = "user-lists.json";
/// What the user switched, in the data dir.
pub const USER_SETTINGS: &str = "settings.json";
/// Today's block count, in the data dir.
pub const BLOCKED_TODAY: &str = "blocked-today.json";

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

/// What the user switched, kept for the next start. The service writes the protection,
/// pause and port fields whenever they change (see `ProxyService::transition`); the app
/// writes its own (start at login, the one-time tray notice).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserSettings {
    /// The port the user chose when the configured one was taken.
    pub listen: Option<SocketAddr>,
    /// Start the app (hidden, in the tray) at login.
    pub start_at_login: bool,
    /// The user turned protection off (the app then starts with protection off).
    pub protection_off: bool,
    /// Blocking is paused until then (seconds since the epoch); a start before then
    /// stays paused until then.
    pub paused_until: Option<u64>,
    /// The app said once that closing its window leaves GuardNest running in the tray.
    pub told_about_tray: bool,
    /// The app said once, on a desktop that shows no tray, that closing its window
    /// minimises it (told apart: a desktop that shows a tray later still gets the tray's).
    pub told_about_minimising: bool,
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

    /// Reads, changes and writes them back (the fields nobody changed are kept).
    pub fn update(data_dir: &Path, change: impl FnOnce(&mut UserSettings)) -> Result<(), ServiceError> {
        let mut settings = UserSettings::load(data_dir);
        let before = settings.clone();
        change(&mut settings);
        match settings == before && data_dir.join(USER_SETTINGS).exists() {
            true => Ok(()),
            false => settings.save(data_dir),
        }
    }
}

/// Today's block count as kept in `data_dir` (none when there is none, or it is unreadable).
pub fn load_day_count(data_dir: &Path) -> Option<DayCount> {
    serde_json::from_str(&read_to_string_no_follow(&data_dir.join(BLOCKED_TODAY)).ok()?).ok()
}

/// Keeps today's block count in `data_dir`.
pub fn save_day_count(data_dir: &Path, count: DayCount) -> Result<(), ServiceError> {
    save_json(&data_dir.join(BLOCKED_TODAY), &count)
}

/// The user's own allowlist: `allowlist.txt` in the data dir, one name per line (comments
/// kept). They and their subdomains are never blocked. Names are kept in normal form.
#[derive(Debug, Clone)]
pub struct Allowlist {
    path: PathBuf,
}

impl Allowlist {
    /// The allowlist of `data_dir`.
    pub fn of(data_dir: &Path) -> Allowlist {
        Allowlist { path: data_dir.join(USER_ALLOWLIST) }
    }

    /// Where it is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its names, in order.
    pub fn names(&self) -> Vec<String> {
        let text = read_to_string_no_follow(&self.path).unwrap_or_default();
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
    }

    /// Its text, read before it is rewritten: an allowlist that cannot be read (or is a
    /// link) is never replaced by one holding a single name.
    fn text(&self) -> Result<String, ServiceError> {
        match read_to_string_no_follow(&self.path) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(save_error(&self.path, e)),
        }
    }

    /// Creates the file, with a header, if it is missing.
    pub fn create(&self) -> Result<(), ServiceError> {
        if self.path.symlink_metadata().is_ok() {
            return Ok(());
        }
        let header = b"# Names you allowed in GuardNest, one per line. They and their subdomains are never blocked.\n";
        write_atomic(&self.path, header, false).map_err(|source| save_error(&self.path, source))
    }

    /// Adds the host of `input` (a name, `host:port` or a URL); the name in normal form, and
    /// whether it was new.
    pub fn add(&self, input: &str) -> Result<(String, bool), ServiceError> {
        let host = host_of(input)?;
        let text = self.text()?;
        if text.lines().any(|l| l.trim() == host) {
            return Ok((host, false));
        }
        let mut new_text = text;
        if !new_text.is_empty() && !new_text.ends_with('\n') {
            new_text.push('\n');
        }
        new_text.push_str(&host);
        new_text.push('\n');
        write_atomic(&self.path, new_text.as_bytes(), false).map_err(|source| save_error(&self.path, source))?;
        Ok((host, true))
    }

    /// Removes the host of `input`; the name in normal form, and whether it was there.
    pub fn remove(&self, input: &str) -> Result<(String, bool), ServiceError> {
        let host = host_of(input)?;
        let text = self.text()?;
        let kept: Vec<&str> = text.lines().filter(|l| l.trim() != host).collect();
        if kept.len() == text.lines().count() {
            return Ok((host, false));
        }
        let mut new_text = kept.join("\n");
        new_text.push('\n');
        write_atomic(&self.path, new_text.as_bytes(), false).map_err(|source| save_error(&self.path, source))?;
        Ok((host, true))
    }
}

/// The host a person means (see [`crate::domain::host_of_input`]), as the allowlist keeps it.
fn host_of(input: &str) -> Result<String, ServiceError> {
    let host = crate::domain::host_of_input(input)
        .map_err(|e| ServiceError::Input(InputError::NotAHostBecause(input.trim().to_string(), e.to_string())))?;
    Ok(match host {
        crate::domain::Host::Name(n) => n,
        ip => ip.policy_name().into_owned(),
    })
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
    let allow = Allowlist::of(data_dir);
    allow.create()?;
    // The list loader reads the allowlist by its name: only when that is the file itself.
    match open_no_follow(allow.path(), std::fs::OpenOptions::new().read(true)) {
        Err(e) if NotAFile::of(&e).is_some() => tracing::warn!("your allowlist is not loaded: {e}"),
        _ => {
            lists.add_source(user_allowlist_spec(allow.path()), Role::Allow).await?;
        }
    }
    for l in user_lists(data_dir) {
        if let Err(e) = lists.add_source(SourceSpec::Location(l.location.clone()), l.role()).await {
            tracing::warn!(list = %l.location, error = %e, "cannot load a list you added");
        }
    }
    Ok(())
}

pub(crate) fn user_allowlist_spec(path: &Path) -> SourceSpec {
    SourceSpec::Detailed(DetailedSource {
        source: path.display().to_string(),
        name: Some(USER_ALLOWLIST_NAME.into()),
        format: Some(crate::blocklist::Format::Plain),
        interval: None,
    })
}

fn save_error(path: &Path, source: std::io::Error) -> ServiceError {
    ServiceError::Save { path: path.display().to_string(), source }
}

pub(crate) fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ServiceError> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| save_error(path, std::io::Error::other(e)))?;
    write_atomic(path, &json, false).map_err(|source| save_error(path, source))
}

/// Where a list the user names is: an http(s) URL, or a file path (`~/` is their home
/// folder; a relative path is refused, as the service has no current directory of theirs).
pub fn list_location(input: &str) -> Result<String, InputError> {
    let input = input.trim();
    if input.starts_with("http://") || input.starts_with("https://") {
        return Ok(input.to_string());
    }
    let path = match input.strip_prefix("~/").or_else(|| (input == "~").then_some("")) {
        Some(rest) => match std::env::home_dir() {
            Some(home) => home.join(rest),
            None => return Err(InputError::NotAListLocation(input.to_string())),
        },
        None => PathBuf::from(file_url_path(input)),
    };
    if input.is_empty() || !path.is_absolute() {
        return Err(InputError::NotAListLocation(input.to_string()));
    }
    Ok(path.display().to_string())
}

/// The path of a `file://` URL (`file:///C:/lists/a.txt` is `C:/lists/a.txt` on Windows),
/// or the input itself.
fn file_url_path(input: &str) -> &str {
    let Some(rest) = input.strip_prefix("file://") else { return input };
    let drive = rest.strip_prefix('/').filter(|r| {
        let b = r.as_bytes();
        cfg!(windows) && b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
    });
    drive.unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn list_locations_are_urls_or_absolute_paths() {
        assert_eq!(list_location(" https://lists.test/a.txt ").as_deref(), Ok("https://lists.test/a.txt"));
        assert_eq!(list_location("/etc/hosts").as_deref(), Ok("/etc/hosts"));
        assert_eq!(list_location("file:///etc/hosts").as_deref(), Ok("/etc/hosts"));
        if let Some(home) = std::env::home_dir() {
            assert_eq!(list_location("~/blocks.txt"), Ok(home.join("blocks.txt").display().to_string()));
        }
        for bad in ["", "blocks.txt", "./blocks.txt"] {
            assert!(list_location(bad).is_err(), "{bad:?}");
        }
    }

    #[cfg(windows)]
    #[test]
    fn list_locations_are_urls_or_absolute_paths() {
        assert_eq!(list_location(" https://lists.test/a.txt ").as_deref(), Ok("https://lists.test/a.txt"));
        assert_eq!(list_location(r"C:\lists\hosts").as_deref(), Ok(r"C:\lists\hosts"));
        assert_eq!(list_location("file:///C:/lists/hosts").as_deref(), Ok("C:/lists/hosts"));
        for bad in ["", "blocks.txt", r".\blocks.txt", "/etc/hosts", "file:///etc/hosts"] {
            assert!(list_location(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_allowlist_adds_and_removes_names_in_normal_form() {
        let dir = tempfile::tempdir().unwrap();
        let a = Allowlist::of(dir.path());
        a.create().unwrap();
        assert_eq!(a.add("https://WWW.Evil.Test/x?y").unwrap(), ("www.evil.test".to_string(), true));
        assert_eq!(a.add("www.evil.test.").unwrap(), ("www.evil.test".to_string(), false));
        assert_eq!(a.add("vm:8081").unwrap(), ("vm".to_string(), true));
        assert_eq!(a.names(), ["www.evil.test", "vm"]);
        assert_eq!(a.remove("www.evil.test").unwrap(), ("www.evil.test".to_string(), true));
        assert_eq!(a.remove("www.evil.test").unwrap(), ("www.evil.test".to_string(), false));
        assert_eq!(a.names(), ["vm"]);
        assert!(std::fs::read_to_string(a.path()).unwrap().starts_with("# Names you allowed"), "the header is kept");
        assert!(a.add("javascript:alert(1)").is_err());
    }
}
