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
//! or the app's `repair …`), written atomically. Each format has its own escaping, and each
//! is written so that the OS's own reader gives back exactly the registered arguments; a
//! command a format cannot carry safely (a newline in one desktop-entry line, a character
//! XML cannot hold, a Windows command line over its documented length) is refused with an
//! [`EntryError`] that says why, and nothing is written. What goes in an entry is pure and
//! tested here (and read back by GLib, desktop-file-validate and plistlib in
//! tests/login_entries.rs); writing it is a thin shell.

use std::ffi::OsString;
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

/// Why a command cannot be written as a login entry. Nothing is written then: an entry the
/// OS would refuse, or run with other arguments, is worse than none, because it fails at
/// the one moment no GuardNest is there to say so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// An empty command.
    #[error("a login entry needs a program to run")]
    NoProgram,
    /// A path that is not Unicode: every entry format here is text (UTF-8 or UTF-16).
    #[error("{0:?} is not valid Unicode, which a login entry cannot hold")]
    NotUnicode(String),
    /// A control character, which the format cannot carry through its reader unchanged.
    #[error("{arg:?} holds the control character U+{:04X}, which {format} cannot hold safely", u32::from(*.c))]
    Control {
        /// The argument.
        arg: String,
        /// The character.
        c: char,
        /// The entry's format, in words.
        format: &'static str,
    },
    /// `%` in the program's path: GLib's GDesktopAppInfo and systemd's
    /// xdg-autostart-generator look the program up before expanding `%%`, so no spelling of
    /// that path runs.
    #[error(
        "the program's path {0:?} holds '%', which an XDG autostart entry cannot name: GLib and systemd look the \
         program up before they turn %% into %, so the entry would never run (install GuardNest elsewhere)"
    )]
    PercentInProgram(String),
    /// `=` in the program's path, which the Desktop Entry Specification forbids there.
    #[error(
        "the program's path {0:?} holds '=', which the Desktop Entry Specification forbids in an Exec program \
         (install GuardNest elsewhere)"
    )]
    EqualsInProgram(String),
    /// A character XML 1.0 cannot hold, not even as a character reference.
    #[error("{arg:?} holds U+{:04X}, which XML 1.0 (a LaunchAgent property list) cannot hold", u32::from(*.c))]
    NotXml {
        /// The argument.
        arg: String,
        /// The character.
        c: char,
    },
    /// A quote in the program's path (Windows file names cannot hold one; the command line
    /// quotes the program without escapes).
    #[error("the program's path {0:?} holds '\"', which a Windows command line cannot quote")]
    QuoteInProgram(String),
    /// A RunOnce command line over Windows' documented limit.
    #[error(
        "the RunOnce command line would be {len} characters; Windows runs at most {max} (a shorter --data-dir \
         or install path fits)"
    )]
    TooLong {
        /// Its length in UTF-16 code units.
        len: usize,
        /// [`RUN_ONCE_MAX_CHARS`].
        max: usize,
    },
}

/// The one-shot repair of one program: what to run, and where it is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRepair {
    argv: Vec<OsString>,
    place: Place,
}

impl LoginRepair {
    /// The entry this OS runs at login for `argv` (the program first); `None` where there
    /// is no such mechanism (or no home directory to keep it in).
    pub fn for_this_os(argv: Vec<OsString>) -> Option<LoginRepair> {
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
    pub fn xdg(config_home: &Path, argv: impl IntoIterator<Item = impl Into<OsString>>) -> LoginRepair {
        LoginRepair {
            argv: argv.into_iter().map(Into::into).collect(),
            place: Place::XdgAutostart(config_home.join("autostart").join(format!("{ENTRY}.desktop"))),
        }
    }

    /// A LaunchAgent under `home`.
    pub fn launch_agent(home: &Path, argv: impl IntoIterator<Item = impl Into<OsString>>) -> LoginRepair {
        LoginRepair {
            argv: argv.into_iter().map(Into::into).collect(),
            place: Place::LaunchAgent(home.join("Library/LaunchAgents").join(format!("{ENTRY}.plist"))),
        }
    }

    /// Where the entry is kept.
    pub fn place(&self) -> &Place {
        &self.place
    }

    /// What runs at login.
    pub fn argv(&self) -> &[OsString] {
        &self.argv
    }

    /// Where, in words (for logs and the user).
    pub fn describe(&self) -> String {
        match &self.place {
            Place::XdgAutostart(p) | Place::LaunchAgent(p) => p.display().to_string(),
            Place::WindowsRunOnce => format!("HKCU\\{RUN_ONCE}\\{ENTRY}"),
        }
    }

    /// The entry's text as [`LoginRepair::register`] writes it (the whole file, or the
    /// RunOnce value), or why the command cannot be written in this format.
    pub fn entry(&self) -> Result<String, EntryError> {
        let argv = self
            .argv
            .iter()
            .map(|a| a.to_str().map(str::to_string).ok_or_else(|| EntryError::NotUnicode(a.to_string_lossy().into())))
            .collect::<Result<Vec<String>, EntryError>>()?;
        match &self.place {
            Place::XdgAutostart(_) => desktop_entry(&argv),
            Place::LaunchAgent(_) => launch_agent_plist(ENTRY, &argv),
            Place::WindowsRunOnce => windows_command_line(&argv),
        }
    }

    /// Registers the entry (replacing an older one). A command this format cannot carry is
    /// refused ([`SysProxyError::LoginEntry`]) and nothing is written.
    pub fn register(&self) -> Result<(), SysProxyError> {
        let text = self.entry()?;
        match &self.place {
            Place::XdgAutostart(path) | Place::LaunchAgent(path) => write(path, text.as_bytes()),
            Place::WindowsRunOnce => run_once::set(ENTRY, &text),
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

/// The XDG autostart entry that runs `argv` once at login (see [`desktop_exec`]).
pub fn desktop_entry(argv: &[String]) -> Result<String, EntryError> {
    Ok(format!(
        "[Desktop Entry]\nType=Application\nName=GuardNest repair\n\
         Comment=Puts your own proxy settings back if GuardNest could not (runs once, then removes itself)\n\
         Exec={}\nTerminal=false\nNoDisplay=true\nX-GNOME-Autostart-enabled=true\n",
        desktop_exec(argv)?
    ))
}

/// What `Exec=` of a desktop entry holds for `argv`, as written in the file.
///
/// The Desktop Entry Specification (1.5, "The Exec key") has two layers, undone in this
/// order by a reader:
/// 1. `Exec` is a value of type string, whose escapes `\s \n \t \r \\` are undone first
///    ("Possible value types"; GLib's `g_key_file_get_string` refuses any other escape, so
///    the whole entry is dropped). Only the backslash needs escaping here: "to unambiguously
///    represent a literal backslash character in a quoted argument in a desktop entry file
///    requires the use of four successive backslash characters".
/// 2. Exec quoting: "Quoting must be done by enclosing the argument between double quotes
///    and escaping the double quote character, backtick character ("`"), dollar sign ("$")
///    and backslash character ("\") by preceding it with an additional backslash
///    character" (GLib splits with `g_shell_parse_argv`, whose double quotes honour exactly
///    those escapes), and "Literal percentage characters must be escaped as %%".
///
/// Every argument is quoted. Refused ([`EntryError`]): control characters, because "Values
/// of type string may contain all ASCII characters except for control characters" and a
/// newline would end the line and start new keys (`\n` is an escape only GLib-like readers
/// undo, and a bare newline in quotes means something else to each shell-like splitter);
/// and in the program's path `=` ("The name or path of the executable program may not
/// contain the equal sign") and `%` (GLib's GDesktopAppInfo and systemd's
/// xdg-autostart-generator look the program up before expanding `%%`: the entry would
/// never run). Non-ASCII is written as UTF-8, as the specification's files are encoded.
///
/// One reader departs from the specification: systemd's xdg-autostart-generator (through
/// which KDE Plasma's systemd startup runs autostart entries) unescapes a backslash once
/// more (measured with systemd 252: `one\back` runs as `one<BS>ack`, and an argument ending
/// in a backslash makes it skip the entry). No spelling serves both it and GLib; the entry
/// follows the specification. Everything else reads the same there (tests/login_entries.rs).
pub fn desktop_exec(argv: &[String]) -> Result<String, EntryError> {
    let program = argv.first().ok_or(EntryError::NoProgram)?;
    if program.contains('%') {
        return Err(EntryError::PercentInProgram(program.clone()));
    }
    if program.contains('=') {
        return Err(EntryError::EqualsInProgram(program.clone()));
    }
    let mut exec = String::new();
    for (i, a) in argv.iter().enumerate() {
        if let Some(c) = a.chars().find(|c| c.is_control()) {
            return Err(EntryError::Control { arg: a.clone(), c, format: "an XDG autostart entry's Exec line" });
        }
        if i > 0 {
            exec.push(' ');
        }
        exec.push('"');
        for c in a.chars() {
            match c {
                // Exec quoting, then the string escape of the backslash that quoting wrote.
                '\\' => exec.push_str(r"\\\\"),
                '"' | '`' | '$' => {
                    exec.push_str(r"\\");
                    exec.push(c);
                }
                '%' => exec.push_str("%%"),
                c => exec.push(c),
            }
        }
        exec.push('"');
    }
    Ok(exec)
}

/// Reads an `Exec=` value, as written in the file, back into arguments the way a session
/// does ([`desktop_exec`]'s two layers undone, then `%%` as `%`); `None` where GLib would
/// refuse it (an unknown string escape, an unclosed quote) or where a field code other than
/// `%%` would be expanded.
pub fn parse_desktop_exec(value: &str) -> Option<Vec<String>> {
    // 1. The string escapes.
    let mut exec = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            exec.push(c);
            continue;
        }
        exec.push(match chars.next()? {
            's' => ' ',
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            '\\' => '\\',
            _ => return None,
        });
    }
    // 2. Shell-like splitting, as g_shell_parse_argv does.
    let mut args = Vec::new();
    let mut chars = exec.chars().peekable();
    loop {
        while chars.next_if(|&c| c == ' ' || c == '\t').is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut arg = String::new();
        while let Some(c) = chars.next_if(|&c| c != ' ' && c != '\t') {
            match c {
                '"' => loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '`' | '$' | '\\') => arg.push(c),
                            '\n' => {}
                            c => {
                                arg.push('\\');
                                arg.push(c);
                            }
                        },
                        c => arg.push(c),
                    }
                },
                '\'' => loop {
                    match chars.next()? {
                        '\'' => break,
                        c => arg.push(c),
                    }
                },
                '\\' => arg.push(chars.next()?),
                c => arg.push(c),
            }
        }
        // 3. Field codes: only `%%` is ours.
        let mut out = String::with_capacity(arg.len());
        let mut chars = arg.chars();
        while let Some(c) = chars.next() {
            if c == '%' && chars.next()? != '%' {
                return None;
            }
            out.push(c);
        }
        args.push(out);
    }
    Some(args)
}

/// The longest RunOnce command line Windows runs: "The data value for a key is a command
/// line no longer than 260 characters" (Run and RunOnce Registry Keys,
/// <https://learn.microsoft.com/windows/win32/setupapi/run-and-runonce-registry-keys>).
/// Characters are UTF-16 code units, as the registry stores them. (The value's name,
/// [`ENTRY`], is far below the registry's 16,383-character limit on value names.)
pub const RUN_ONCE_MAX_CHARS: usize = 260;

/// A Windows command line for `argv`, as `CommandLineToArgvW` and the C runtime split it
/// ("Parsing C command-line arguments",
/// <https://learn.microsoft.com/cpp/c-language/parsing-c-command-line-arguments>): the
/// program in double quotes with no escapes (a program name runs to the next quote, so it
/// cannot hold one: Windows file names never do); each other argument as is when it has no
/// blank or quote, otherwise in double quotes, where 2n backslashes before a quote stand for
/// n and `\"` for a quote, so backslashes are doubled before a quote and at the end. Control
/// characters (which Windows file names cannot hold) are refused, and so is a line over
/// [`RUN_ONCE_MAX_CHARS`].
pub fn windows_command_line(argv: &[String]) -> Result<String, EntryError> {
    let program = argv.first().ok_or(EntryError::NoProgram)?;
    if program.contains('"') {
        return Err(EntryError::QuoteInProgram(program.clone()));
    }
    if let Some((a, c)) = argv.iter().find_map(|a| a.chars().find(|c| c.is_control()).map(|c| (a, c))) {
        return Err(EntryError::Control { arg: a.clone(), c, format: "a RunOnce command line" });
    }
    let mut line = format!("\"{program}\"");
    for a in &argv[1..] {
        line.push(' ');
        if !a.is_empty() && !a.contains([' ', '\t', '"']) {
            line.push_str(a);
            continue;
        }
        line.push('"');
        let mut backslashes = 0;
        for c in a.chars() {
            match c {
                '\\' => backslashes += 1,
                '"' => {
                    line.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                    line.push('"');
                    backslashes = 0;
                }
                c => {
                    line.extend(std::iter::repeat_n('\\', backslashes));
                    line.push(c);
                    backslashes = 0;
                }
            }
        }
        line.extend(std::iter::repeat_n('\\', backslashes * 2));
        line.push('"');
    }
    match line.encode_utf16().count() {
        len if len > RUN_ONCE_MAX_CHARS => Err(EntryError::TooLong { len, max: RUN_ONCE_MAX_CHARS }),
        _ => Ok(line),
    }
}

/// A LaunchAgent that runs `argv` once when the user logs in.
pub fn launch_agent_plist(label: &str, argv: &[String]) -> Result<String, EntryError> {
    let args =
        argv.iter().map(|a| Ok(format!("\t\t<string>{}</string>\n", xml_text(a)?))).collect::<Result<String, _>>()?;
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n<dict>\n\t<key>Label</key>\n\t<string>{}</string>\n\
         \t<key>ProgramArguments</key>\n\t<array>\n{args}\t</array>\n\
         \t<key>RunAtLoad</key>\n\t<true/>\n</dict>\n</plist>\n",
        xml_text(label)?
    ))
}

/// `s` as XML character data: the five markup characters as entities, and tab, newline and
/// carriage return as character references, because XML 1.0 reads a bare CR (or CRLF) back
/// as a newline ("End-of-Line Handling", §2.11) and whitespace must survive as written.
/// Characters outside XML 1.0's `Char` production (§2.2: `#x9 | #xA | #xD | [#x20-#xD7FF] |
/// [#xE000-#xFFFD] | [#x10000-#x10FFFF]`; surrogates cannot occur in a Rust string) are
/// refused: not even a character reference may name them.
fn xml_text(s: &str) -> Result<String, EntryError> {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                return Err(EntryError::NotXml { arg: s.to_string(), c })
            }
            c => out.push(c),
        }
    }
    Ok(out)
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
mod tests;
