//! One GuardNest per data directory, held by an OS lock.
//!
//! Two instances on one data dir would fight over the system-proxy snapshot, the list cache
//! and the control API's `control.json`. The lock is the OS's own (`flock` on Unix,
//! `LockFileEx` on Windows, through `std::fs::File::try_lock`): it is released when the
//! holder exits in any way, so a crashed instance never blocks the next one, and a PID file
//! is never trusted. Who holds it is written beside it (`instance.json`), for the message a
//! second instance shows.
//!
//! The lock file is opened only as itself ([`open_no_follow`]): a link planted where it goes
//! (in a data dir someone else could write to) is refused with an error naming it, and the
//! file it points at is never created, opened or locked; a named pipe there fails at once
//! instead of blocking the start.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sysproxy::fsutil::{open_no_follow, read_to_string_no_follow, NotAFile};

/// The lock file in a data dir.
pub const LOCK_FILE: &str = "instance.lock";
/// Who holds the lock, in a data dir.
pub const HOLDER_FILE: &str = "instance.json";

/// Which front end runs an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frontend {
    /// `guardnest run`.
    Cli,
    /// The desktop app.
    App,
}

/// Who holds a data dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The front end.
    pub frontend: Frontend,
    /// Its process.
    pub pid: u32,
    /// Where its proxy listens, once it does.
    pub listen: Option<SocketAddr>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.frontend {
            Frontend::Cli => "`guardnest run`",
            Frontend::App => "the GuardNest app",
        };
        write!(f, "{who} (PID {})", self.pid)?;
        match self.listen {
            Some(addr) => write!(f, ", listening on {addr}"),
            None => write!(f, ", not listening"),
        }
    }
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another instance holds it.
    #[error("another GuardNest uses the data directory {dir}: {}", holder.as_ref().map_or("its process is unknown".to_string(), ToString::to_string))]
    Held {
        /// The data dir.
        dir: String,
        /// Who, if it said.
        holder: Option<Holder>,
    },
    /// The lock file is not a plain file of its own: a link (or a pipe) someone put where
    /// it goes. GuardNest does not start on such a data dir.
    #[error("refusing the data directory: {0}")]
    NotAFile(NotAFile),
    /// The lock file could not be opened (a read-only or full data dir).
    #[error("cannot lock the data directory {dir}")]
    Io {
        /// The data dir.
        dir: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The data dir's lock, held for as long as this value lives.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    holder_file: PathBuf,
}

impl InstanceLock {
    /// Takes the lock at once or fails, naming the holder.
    pub fn acquire(data_dir: &Path, holder: &Holder) -> Result<InstanceLock, LockError> {
        let dir = data_dir.display().to_string();
        let io = |source| LockError::Io { dir: dir.clone(), source };
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true);
        let file = open_no_follow(&data_dir.join(LOCK_FILE), &mut options).map_err(|e| match NotAFile::of(&e) {
            Some(n) => LockError::NotAFile(n.clone()),
            None => io(e),
        })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(LockError::Held { dir, holder: holder_of(data_dir) }),
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let lock = InstanceLock { _file: file, holder_file: data_dir.join(HOLDER_FILE) };
        lock.describe(holder);
        Ok(lock)
    }

    /// Rewrites who holds the lock (the listen address changes with enable and restart).
    pub fn describe(&self, holder: &Holder) {
        let written = serde_json::to_vec_pretty(holder)
            .map_err(std::io::Error::other)
            .and_then(|json| crate::sysproxy::fsutil::write_atomic(&self.holder_file, &json, false));
        if let Err(e) = written {
            tracing::debug!(error = %e, "cannot record who holds the data directory");
        }
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Removed by the holder only, while it still holds the lock.
        let _ = std::fs::remove_file(&self.holder_file);
    }
}

/// Who holds `data_dir`, as the holder last described itself.
pub fn holder_of(data_dir: &Path) -> Option<Holder> {
    let text = read_to_string_no_follow(&data_dir.join(HOLDER_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether an instance holds `data_dir` now (the lock is taken).
pub fn is_held(data_dir: &Path) -> bool {
    let Ok(file) = open_no_follow(&data_dir.join(LOCK_FILE), OpenOptions::new().write(true)) else { return false };
    match file.try_lock() {
        Ok(()) => false, // released when `file` closes
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let me = Holder { frontend: Frontend::App, pid: 42, listen: Some("127.0.0.1:3000".parse().unwrap()) };
        let lock = InstanceLock::acquire(dir.path(), &me).unwrap();
        assert!(is_held(dir.path()));
        let other = Holder { frontend: Frontend::Cli, pid: 43, listen: None };
        match InstanceLock::acquire(dir.path(), &other) {
            Err(e @ LockError::Held { .. }) => {
                let text = e.to_string();
                assert!(text.contains("the GuardNest app (PID 42), listening on 127.0.0.1:3000"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        drop(lock);
        assert!(!is_held(dir.path()));
        assert!(holder_of(dir.path()).is_none(), "the holder file goes with the lock");
        let again = InstanceLock::acquire(dir.path(), &other).unwrap();
        assert_eq!(holder_of(dir.path()), Some(other));
        drop(again);
    }

    /// A named pipe planted where the lock goes would block opening it for writing until
    /// someone reads it: the start must fail at once instead, naming the file.
    #[cfg(unix)]
    #[test]
    fn a_fifo_planted_as_the_lock_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(LOCK_FILE);
        let c = std::ffi::CString::new(lock.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let data = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let me = Holder { frontend: Frontend::Cli, pid: 1, listen: None };
            let _ = tx.send(InstanceLock::acquire(&data, &me).map(|_| ()).map_err(|e| e.to_string()));
            is_held(&data);
            let _ = tx.send(Ok(()));
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        match got {
            Ok(Err(e)) => assert!(e.contains("instance.lock") && e.contains("not a regular file"), "{e}"),
            other => panic!("a FIFO as the lock file: {other:?} (blocked means the start hangs)"),
        }
        assert!(rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok(), "is_held blocked on the FIFO");
    }

    /// `is_held` never opens the lock through a link either (nor creates its target).
    #[cfg(unix)]
    #[test]
    fn a_link_as_the_lock_file_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::os::unix::fs::symlink(&victim, dir.path().join(LOCK_FILE)).unwrap();
        assert!(!is_held(dir.path()));
        let me = Holder { frontend: Frontend::Cli, pid: 1, listen: None };
        let e = InstanceLock::acquire(dir.path(), &me).map(|_| ()).unwrap_err().to_string();
        assert!(!victim.exists(), "the link's target was created");
        assert!(e.contains("instance.lock") && e.contains("link"), "{e}");
    }
}
