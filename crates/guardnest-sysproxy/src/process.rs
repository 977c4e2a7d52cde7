//! Which process: a PID together with the moment that process started.
//!
//! Every OS reuses PIDs (Windows quickly, Wine restarts its numbering with a new
//! wineserver, and every OS starts again from the bottom at boot), so a bare PID never
//! proves that the process that wrote a snapshot still runs. A [`ProcessId`] also holds the
//! process's start time as the OS keeps it (Linux: clock ticks since boot plus the boot's
//! id; Windows: the creation time; macOS: the start time in µs), which no later process
//! with the same PID can have. [`ProcessId::is_alive`] is true only for that very process.
//!
//! The same module finds the other GuardNest processes of this user and asks them to quit
//! (`guardnest stop --all`, the uninstaller): the OS calls for that live here with the rest
//! of GuardNest's OS layer.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A process: its PID and when it started. Equal only for the same process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcessId {
    /// The PID.
    pub pid: u32,
    /// When it started, in the OS's own unit (absent in files from GuardNest 0.1, which
    /// recorded the bare PID: such a record never proves its writer alive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// Linux: the boot the start time counts from (`/proc/sys/kernel/random/boot_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
}

impl ProcessId {
    /// This process.
    pub fn current() -> ProcessId {
        let pid = std::process::id();
        ProcessId { pid, started: os::start_time(pid), boot: os::boot_id() }
    }

    /// The process running now with `pid`, if there is one we may look at.
    pub fn of(pid: u32) -> Option<ProcessId> {
        let started = os::start_time(pid)?;
        Some(ProcessId { pid, started: Some(started), boot: os::boot_id() })
    }

    /// Whether this very process still runs: its PID exists and started when this one did.
    /// A record without a start time proves nothing and counts as gone.
    pub fn is_alive(&self) -> bool {
        let Some(started) = self.started else { return false };
        if self.boot.is_some() && self.boot != os::boot_id() {
            return false;
        }
        os::start_time(self.pid) == Some(started) && os::running(self.pid)
    }

    /// Whether this is the calling process.
    pub fn is_current(&self) -> bool {
        *self == ProcessId::current()
    }
}

impl std::fmt::Display for ProcessId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PID {}", self.pid)
    }
}

/// Another GuardNest process of this user, as [`guardnest_processes`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Which process.
    pub id: ProcessId,
    /// Its program.
    pub exe: PathBuf,
    /// Its command line, where the OS gives it to us (Linux); empty elsewhere.
    pub command: Vec<String>,
}

/// The program names GuardNest runs as.
const PROGRAMS: &[&str] = &["guardnest", "guardnest-app"];

/// Whether `exe` is one of GuardNest's programs (by file name, `.exe` or not).
pub fn is_guardnest_program(exe: &std::path::Path) -> bool {
    let Some(name) = exe.file_name().and_then(|n| n.to_str()) else { return false };
    // A program replaced on disk while it runs (a package upgrade) reads "name (deleted)".
    let name = name.trim_end_matches(" (deleted)");
    let name = name.strip_suffix(".exe").or_else(|| name.strip_suffix(".EXE")).unwrap_or(name);
    PROGRAMS.iter().any(|p| name.eq_ignore_ascii_case(p))
}

/// Every GuardNest process of this user (same user on Unix, same session on Windows),
/// this one left out.
pub fn guardnest_processes() -> Vec<Found> {
    let me = std::process::id();
    os::processes().into_iter().filter(|f| f.id.pid != me && is_guardnest_program(&f.exe)).collect()
}

/// Asks a GuardNest process to quit as Ctrl-C would make it (its system proxy restored
/// first): SIGTERM on Unix, `WM_CLOSE` to its hidden session window on Windows. False when
/// it could not be asked (Windows: it has no such window).
pub fn ask_to_quit(process: &ProcessId) -> bool {
    process.is_alive() && os::ask_to_quit(process.pid)
}

/// Waits until `process` has exited, at most `within`; whether it has.
pub fn wait_gone(process: &ProcessId, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if !process.is_alive() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ends `process` at once (SIGKILL, TerminateProcess). Only that very process: a PID
/// reused since is left alone.
pub fn kill(process: &ProcessId) -> bool {
    process.is_alive() && os::kill(process.pid)
}

#[cfg(target_os = "linux")]
mod os {
    use super::{Found, ProcessId};

    /// Field 22 of `/proc/PID/stat`: clock ticks from boot to the process's start.
    pub fn start_time(pid: u32) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_start(&stat)
    }

    /// The fields after the command name, which may itself hold spaces and parentheses.
    pub fn parse_start(stat: &str) -> Option<u64> {
        let rest = &stat[stat.rfind(')')? + 1..];
        // After ")": state (3), then fields 4.. ; starttime is field 22.
        rest.split_whitespace().nth(22 - 3)?.parse().ok()
    }

    pub fn boot_id() -> Option<String> {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string())
    }

    /// A zombie has exited: only its parent has not read its status yet.
    pub fn running(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().starts_with(['Z', 'X'])))
            .is_some_and(|dead| !dead)
    }

    pub fn processes() -> Vec<Found> {
        // SAFETY: no arguments; cannot fail.
        let me = unsafe { libc::getuid() };
        let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
        let mut out = Vec::new();
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let owner = std::os::unix::fs::MetadataExt::uid(&match entry.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            });
            if owner != me {
                continue;
            }
            let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else { continue };
            let Some(id) = ProcessId::of(pid) else { continue };
            let command = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| {
                    raw.split(|b| *b == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            out.push(Found { id, exe, command });
        }
        out
    }

    pub fn ask_to_quit(pid: u32) -> bool {
        // SAFETY: sending a signal to a PID we just checked.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) == 0 }
    }

    pub fn kill(pid: u32) -> bool {
        // SAFETY: as above.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) == 0 }
    }
}

#[cfg(target_os = "macos")]
mod os {
    use super::Found;

    /// The start time (µs since the epoch) from `proc_pidinfo(PROC_PIDTBSDINFO)`.
    pub fn start_time(pid: u32) -> Option<u64> {
        let mut info: libc::proc_bsdinfo = unsafe_zeroed();
        let size = size_of::<libc::proc_bsdinfo>() as libc::c_int;
        // SAFETY: `info` is a buffer of `size` bytes for the flavour asked for.
        let n = unsafe {
            libc::proc_pidinfo(
                pid as libc::c_int,
                libc::PROC_PIDTBSDINFO,
                0,
                (&mut info as *mut libc::proc_bsdinfo).cast(),
                size,
            )
        };
        (n == size).then(|| info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec)
    }

    fn unsafe_zeroed() -> libc::proc_bsdinfo {
        // SAFETY: a plain C struct of integers and byte arrays: all zeroes is a valid value.
        unsafe { std::mem::zeroed() }
    }

    pub fn boot_id() -> Option<String> {
        None
    }

    pub fn running(pid: u32) -> bool {
        // SAFETY: signal 0 only checks for existence and permission.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }

    /// Not listed on macOS yet: `guardnest stop` there stops the data dir's instance only.
    pub fn processes() -> Vec<Found> {
        Vec::new()
    }

    pub fn ask_to_quit(pid: u32) -> bool {
        // SAFETY: sending a signal to a PID we just checked.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) == 0 }
    }

    pub fn kill(pid: u32) -> bool {
        // SAFETY: as above.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) == 0 }
    }
}

#[cfg(windows)]
mod os {
    pub(super) use crate::windows::os::{ask_to_quit, kill, processes, running, start_time};

    pub fn boot_id() -> Option<String> {
        None
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod os {
    use super::Found;

    pub fn start_time(_pid: u32) -> Option<u64> {
        None
    }
    pub fn boot_id() -> Option<String> {
        None
    }
    pub fn running(_pid: u32) -> bool {
        false
    }
    pub fn processes() -> Vec<Found> {
        Vec::new()
    }
    pub fn ask_to_quit(_pid: u32) -> bool {
        false
    }
    pub fn kill(_pid: u32) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = ProcessId::current();
        assert!(me.started.is_some(), "the OS gives this process's start time");
        assert!(me.is_alive() && me.is_current());
        // The same PID with another start time: a process that died, whose PID we got.
        let earlier = ProcessId { started: me.started.map(|s| s.wrapping_sub(1)), ..me.clone() };
        assert!(!earlier.is_alive(), "same PID, different process");
        assert!(!earlier.is_current());
        // A record from before start times were kept proves nothing.
        let bare = ProcessId { pid: me.pid, started: None, boot: None };
        assert!(!bare.is_alive());
    }

    #[test]
    fn a_child_is_alive_until_it_exits() {
        let mut child = guardnest_testkit_child();
        let id = ProcessId::of(child.id()).expect("a child's start time");
        assert!(id.is_alive());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!id.is_alive());
        assert!(wait_gone(&id, Duration::from_secs(5)));
    }

    /// A process that waits on its standard input until killed.
    fn guardnest_testkit_child() -> std::process::Child {
        let (program, args): (&str, &[&str]) =
            if cfg!(windows) { ("cmd", &["/C", "pause"]) } else { ("sh", &["-c", "read x"]) };
        std::process::Command::new(program).args(args).stdin(std::process::Stdio::piped()).spawn().unwrap()
    }

    #[test]
    fn programs_are_told_by_name() {
        for yes in
            ["/usr/bin/guardnest", "/opt/x/guardnest-app", "C:\\P\\GUARDNEST.EXE", "/usr/bin/guardnest (deleted)"]
        {
            assert!(is_guardnest_program(std::path::Path::new(&yes.replace('\\', "/"))), "{yes}");
        }
        for no in ["/usr/bin/guardnest-bench", "/bin/sh", "/usr/bin/guardnestx"] {
            assert!(!is_guardnest_program(std::path::Path::new(no)), "{no}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn stat_start_time_survives_odd_command_names() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(os::parse_start(stat), Some(987654));
    }
}
