//! A repair that runs once at the next login, registered with the OS for as long as
//! GuardNest holds the system proxy: if the machine loses power or GuardNest is never
//! started again, the user's own settings still come back by themselves.
//!
//! - Linux desktops: an XDG autostart entry (`$XDG_CONFIG_HOME/autostart/…desktop`), which
//!   GNOME, KDE and the other XDG sessions run at login; the repair removes it.
//! - Windows: a value under `HKCU\Software\Microsoft\Windows\CurrentVersion\RunOnce`, which
//!   Windows deletes as it runs it at the next logon.
//! - macOS: a per-user LaunchAgent with `RunAtLoad`, which the repair removes.
//!
//! The entry is the command line of the program that registered it (`guardnest repair …`
//! or the app's `repair …`), its path quoted for the OS, written atomically. What goes in an
//! entry is pure and tested here; writing it is a thin shell.

use std::path::{Path, PathBuf};

use crate::SysProxyError;

/// The name the entry goes by (the file's stem, the registry value's name, the agent's label).
pub const ENTRY: &str = "org.guardnest.repair";

/// Where this OS keeps the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// An XDG autostart `.desktop` file.
    XdgAutostart(PathBuf),
    /// A value in HKCU's RunOnce key.
    WindowsRunOnce,
    /// A LaunchAgent property list.
    LaunchAgent(PathBuf),
}

/// The one-shot repair of one program: what to run, and where it is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRepair {
    argv: Vec<String>,
    place: Place,
}

impl LoginRepair {
    /// The entry this OS runs at login for `argv` (the program first); `None` where there
    /// is no such mechanism (or no home directory to keep it in).
    pub fn for_this_os(argv: Vec<String>) -> Option<LoginRepair> {
        if cfg!(windows) {
            return Some(LoginRepair { argv, place: Place::WindowsRunOnce });
        }
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        if cfg!(target_os = "macos") {
            return Some(LoginRepair::launch_agent(&home?, argv));
        }
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|c| !c.is_empty())
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".config")))?;
        Some(LoginRepair::xdg(&config, argv))
    }

    /// An XDG autostart entry under `config_home` (`$XDG_CONFIG_HOME`).
    pub fn xdg(config_home: &Path, argv: Vec<String>) -> LoginRepair {
        LoginRepair { argv, place: Place::XdgAutostart(config_home.join("autostart").join(format!("{ENTRY}.desktop"))) }
    }

    /// A LaunchAgent under `home`.
    pub fn launch_agent(home: &Path, argv: Vec<String>) -> LoginRepair {
        LoginRepair {
            argv,
            place: Place::LaunchAgent(home.join("Library/LaunchAgents").join(format!("{ENTRY}.plist"))),
        }
    }

    /// Where the entry is kept.
    pub fn place(&self) -> &Place {
        &self.place
    }

    /// What runs at login.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// Where, in words (for logs and the user).
    pub fn describe(&self) -> String {
        match &self.place {
            Place::XdgAutostart(p) | Place::LaunchAgent(p) => p.display().to_string(),
            Place::WindowsRunOnce => format!("HKCU\\{RUN_ONCE}\\{ENTRY}"),
        }
    }

    /// Registers the entry (replacing an older one).
    pub fn register(&self) -> Result<(), SysProxyError> {
        match &self.place {
            Place::XdgAutostart(path) => write(path, desktop_entry(&self.argv).as_bytes()),
            Place::LaunchAgent(path) => write(path, launch_agent_plist(ENTRY, &self.argv).as_bytes()),
            Place::WindowsRunOnce => run_once::set(ENTRY, &windows_command_line(&self.argv)),
        }
    }

    /// Removes the entry; its absence is fine.
    pub fn unregister(&self) -> Result<(), SysProxyError> {
        match &self.place {
            Place::XdgAutostart(path) | Place::LaunchAgent(path) => match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(SysProxyError::State { path: path.display().to_string(), source: e })
                }
                _ => Ok(()),
            },
            Place::WindowsRunOnce => run_once::delete(ENTRY),
        }
    }

    /// Whether the entry is registered now.
    pub fn is_registered(&self) -> bool {
        match &self.place {
            Place::XdgAutostart(path) | Place::LaunchAgent(path) => path.is_file(),
            Place::WindowsRunOnce => run_once::get(ENTRY).is_some(),
        }
    }
}

fn write(path: &Path, text: &[u8]) -> Result<(), SysProxyError> {
    crate::fsutil::write_atomic(path, text, false)
        .map_err(|source| SysProxyError::State { path: path.display().to_string(), source })
}

/// The XDG autostart entry that runs `argv` once at login.
pub fn desktop_entry(argv: &[String]) -> String {
    format!(
        "[Desktop Entry]\nType=Application\nName=GuardNest repair\n\
         Comment=Puts your own proxy settings back if GuardNest could not (runs once, then removes itself)\n\
         Exec={}\nTerminal=false\nNoDisplay=true\nX-GNOME-Autostart-enabled=true\n",
        desktop_exec(argv)
    )
}

/// `Exec=` of a desktop entry: each argument in double quotes with `"`, `` ` ``, `$` and
/// `\` escaped, and `%` doubled (the Desktop Entry Specification's quoting).
pub fn desktop_exec(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let mut q = String::with_capacity(a.len() + 2);
            q.push('"');
            for c in a.chars() {
                match c {
                    '"' | '`' | '$' | '\\' => {
                        q.push('\\');
                        q.push(c);
                    }
                    '%' => q.push_str("%%"),
                    c => q.push(c),
                }
            }
            q.push('"');
            q
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads an `Exec=` value back into arguments (what a session does before running it).
pub fn parse_desktop_exec(exec: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut chars = exec.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut arg = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => arg.extend(chars.next()),
                    '"' => break,
                    c => arg.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                arg.push(c);
                chars.next();
            }
        }
        args.push(arg.replace("%%", "%"));
    }
    args
}

/// A Windows command line for `argv`, quoted as the C runtime splits it: each argument in
/// double quotes, backslashes doubled before a quote, quotes escaped.
pub fn windows_command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let mut q = String::from("\"");
            let mut backslashes = 0;
            for c in a.chars() {
                match c {
                    '\\' => backslashes += 1,
                    '"' => {
                        q.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                        q.push('"');
                        backslashes = 0;
                    }
                    c => {
                        q.extend(std::iter::repeat_n('\\', backslashes));
                        q.push(c);
                        backslashes = 0;
                    }
                }
            }
            q.extend(std::iter::repeat_n('\\', backslashes * 2));
            q.push('"');
            q
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A LaunchAgent that runs `argv` once when the user logs in.
pub fn launch_agent_plist(label: &str, argv: &[String]) -> String {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let args: String = argv.iter().map(|a| format!("\t\t<string>{}</string>\n", escape(a))).collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n<dict>\n\t<key>Label</key>\n\t<string>{}</string>\n\
         \t<key>ProgramArguments</key>\n\t<array>\n{args}\t</array>\n\
         \t<key>RunAtLoad</key>\n\t<true/>\n</dict>\n</plist>\n",
        escape(label)
    )
}

/// The RunOnce key, under HKEY_CURRENT_USER.
pub const RUN_ONCE: &str = "Software\\Microsoft\\Windows\\CurrentVersion\\RunOnce";

#[cfg(windows)]
mod run_once {
    use windows_sys::Win32::Foundation::ERROR_FILE_NOT_FOUND;
    use windows_sys::Win32::System::Registry::{
        RegCloseKey, RegCreateKeyExW, RegDeleteValueW, RegGetValueW, RegSetValueExW, HKEY, HKEY_CURRENT_USER,
        KEY_QUERY_VALUE, KEY_SET_VALUE, REG_OPTION_NON_VOLATILE, REG_SZ, RRF_RT_REG_SZ,
    };

    use super::RUN_ONCE;
    use crate::SysProxyError;

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(std::iter::once(0)).collect()
    }

    fn failed(what: &str, code: u32) -> SysProxyError {
        SysProxyError::Command {
            command: format!("{what} HKCU\\{RUN_ONCE}"),
            detail: std::io::Error::from_raw_os_error(code as i32).to_string(),
        }
    }

    fn open(access: u32) -> Result<HKEY, SysProxyError> {
        let mut key: HKEY = std::ptr::null_mut();
        let path = wide(RUN_ONCE);
        // SAFETY: the path is NUL-terminated and outlives the call; `key` receives the handle.
        let rc = unsafe {
            RegCreateKeyExW(
                HKEY_CURRENT_USER,
                path.as_ptr(),
                0,
                std::ptr::null(),
                REG_OPTION_NON_VOLATILE,
                access,
                std::ptr::null(),
                &mut key,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(failed("open", rc));
        }
        Ok(key)
    }

    pub(super) fn set(name: &str, command: &str) -> Result<(), SysProxyError> {
        let key = open(KEY_SET_VALUE)?;
        let (name, data) = (wide(name), wide(command));
        // SAFETY: `key` is open; the buffers are NUL-terminated UTF-16 and outlive the call.
        let rc =
            unsafe { RegSetValueExW(key, name.as_ptr(), 0, REG_SZ, data.as_ptr().cast(), (data.len() * 2) as u32) };
        // SAFETY: the handle came from RegCreateKeyExW.
        unsafe { RegCloseKey(key) };
        if rc != 0 {
            return Err(failed("write", rc));
        }
        Ok(())
    }

    pub(super) fn delete(name: &str) -> Result<(), SysProxyError> {
        let key = open(KEY_SET_VALUE)?;
        let name = wide(name);
        // SAFETY: `key` is open; the name is NUL-terminated.
        let rc = unsafe { RegDeleteValueW(key, name.as_ptr()) };
        // SAFETY: the handle came from RegCreateKeyExW.
        unsafe { RegCloseKey(key) };
        if rc != 0 && rc != ERROR_FILE_NOT_FOUND {
            return Err(failed("delete from", rc));
        }
        Ok(())
    }

    pub(super) fn get(name: &str) -> Option<String> {
        let key = open(KEY_QUERY_VALUE).ok()?;
        let name = wide(name);
        let mut buf = vec![0u16; 4096];
        let mut bytes = (buf.len() * 2) as u32;
        // SAFETY: `key` is open; `buf` holds `bytes` bytes.
        let rc = unsafe {
            RegGetValueW(
                key,
                std::ptr::null(),
                name.as_ptr(),
                RRF_RT_REG_SZ,
                std::ptr::null_mut(),
                buf.as_mut_ptr().cast(),
                &mut bytes,
            )
        };
        // SAFETY: the handle came from RegCreateKeyExW.
        unsafe { RegCloseKey(key) };
        if rc != 0 {
            return None;
        }
        let len = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
        Some(String::from_utf16_lossy(&buf[..len]))
    }
}

#[cfg(not(windows))]
mod run_once {
    use crate::SysProxyError;

    pub(super) fn set(_: &str, _: &str) -> Result<(), SysProxyError> {
        Err(SysProxyError::Unavailable("windows"))
    }

    pub(super) fn delete(_: &str) -> Result<(), SysProxyError> {
        Err(SysProxyError::Unavailable("windows"))
    }

    pub(super) fn get(_: &str) -> Option<String> {
        None
    }
}

/// The value registered under RunOnce, if any (Windows; `None` elsewhere).
pub fn run_once_value() -> Option<String> {
    run_once::get(ENTRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn desktop_exec_quotes_paths_with_spaces_and_specials() {
        let a = argv(&["/opt/My Apps/guardnest", "repair", "--data-dir", "/home/u/100% \"data\" $x\\y", "--at-login"]);
        let exec = desktop_exec(&a);
        assert_eq!(
            exec,
            r#""/opt/My Apps/guardnest" "repair" "--data-dir" "/home/u/100%% \"data\" \$x\\y" "--at-login""#
        );
        assert_eq!(parse_desktop_exec(&exec), a, "a session reads back what was written");
        let entry = desktop_entry(&a);
        assert!(
            entry.starts_with("[Desktop Entry]\nType=Application\n") && entry.contains(&format!("\nExec={exec}\n"))
        );
    }

    #[test]
    fn windows_command_lines_split_back_as_written() {
        let a = argv(&[
            r"C:\Program Files\GuardNest\guardnest.exe",
            "repair",
            "--data-dir",
            r"C:\Users\A B\AppData\Local\guardnest\",
            r#"say "hi""#,
        ]);
        assert_eq!(
            windows_command_line(&a),
            r#""C:\Program Files\GuardNest\guardnest.exe" "repair" "--data-dir" "C:\Users\A B\AppData\Local\guardnest\\" "say \"hi\"""#
        );
    }

    #[test]
    fn launch_agent_runs_at_load() {
        let plist = launch_agent_plist(
            ENTRY,
            &argv(&["/Applications/GuardNest.app/Contents/MacOS/guardnest-app", "repair", "a&b"]),
        );
        assert!(plist.contains("<key>RunAtLoad</key>\n\t<true/>"));
        assert!(plist.contains("<string>org.guardnest.repair</string>"));
        assert!(plist.contains("<string>a&amp;b</string>"));
        let r = LoginRepair::launch_agent(Path::new("/Users/u"), argv(&["x"]));
        assert_eq!(
            r.place(),
            &Place::LaunchAgent(PathBuf::from("/Users/u/Library/LaunchAgents/org.guardnest.repair.plist"))
        );
    }

    #[test]
    fn an_xdg_entry_is_written_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let r = LoginRepair::xdg(dir.path(), argv(&["/usr/bin/guardnest", "repair"]));
        assert!(!r.is_registered());
        r.register().unwrap();
        let path = dir.path().join("autostart/org.guardnest.repair.desktop");
        assert!(std::fs::read_to_string(&path).unwrap().contains("Exec=\"/usr/bin/guardnest\" \"repair\"\n"));
        assert!(r.is_registered());
        r.unregister().unwrap();
        assert!(!path.exists());
        r.unregister().unwrap();
    }
}
