//! Tests of the start-at-login entries: escaping for each desktop, and register/unregister on real files.

use super::*;

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(ToString::to_string).collect()
}

/// Both layers: `\` is written `\\\\`, `"` `` ` `` `$` as `\\"` and so on, `%` as `%%`;
/// and the value reads back as written.
#[test]
fn desktop_exec_escapes_for_the_string_and_then_the_exec_layer() {
    let a = argv(&["/opt/My Apps/guardnest", "repair", "--data-dir", "/home/u/100% \"data\" $x\\y `z` é", ""]);
    let exec = desktop_exec(&a).unwrap();
    assert_eq!(
        exec,
        r#""/opt/My Apps/guardnest" "repair" "--data-dir" "/home/u/100%% \\"data\\" \\$x\\\\y \\`z\\` é" """#
    );
    assert_eq!(parse_desktop_exec(&exec), Some(a.clone()), "a session reads back what was written");
    let entry = desktop_entry(&a).unwrap();
    assert!(entry.starts_with("[Desktop Entry]\nType=Application\n") && entry.contains(&format!("\nExec={exec}\n")));
    assert_eq!(entry.lines().count(), 8, "one line per key");
}

/// What GLib refuses, the reader refuses too: an unknown string escape (as the old
/// writer made of `$`), a backslash ending the value, an unclosed quote, a field code.
#[test]
fn parse_desktop_exec_refuses_what_glib_refuses() {
    for bad in [r#""a\$b""#, r#""a\"#, r#""a\\"#, r#""a"#, r#""%f""#, r#""100%""#] {
        assert_eq!(parse_desktop_exec(bad), None, "{bad}");
    }
    assert_eq!(parse_desktop_exec(r#"a 'b c' "d\\\\e""#), Some(argv(&["a", "b c", "d\\e"])));
}

#[test]
fn desktop_entries_refuse_what_one_line_cannot_hold() {
    let refused = |a: &[&str]| desktop_exec(&argv(a)).unwrap_err();
    assert!(matches!(refused(&["/usr/bin/g", "/a\nExec=x"]), EntryError::Control { c: '\n', .. }));
    assert!(matches!(refused(&["/usr/bin/g", "/a\r"]), EntryError::Control { c: '\r', .. }));
    assert!(matches!(refused(&["/opt/10%/g"]), EntryError::PercentInProgram(_)));
    assert!(matches!(refused(&["/opt/a=b/g"]), EntryError::EqualsInProgram(_)));
    assert_eq!(refused(&[]), EntryError::NoProgram);
    let e = refused(&["/usr/bin/g", "/a\nb"]).to_string();
    assert_eq!(
        e,
        r#""/a\nb" holds the control character U+000A, which an XDG autostart entry's Exec line cannot hold safely"#
    );
}

/// A path that is not Unicode is refused, not written with replacement characters (a
/// different path).
#[cfg(unix)]
#[test]
fn a_path_that_is_not_unicode_is_refused() {
    use std::os::unix::ffi::OsStringExt as _;
    let dir = tempfile::tempdir().unwrap();
    let bad = OsString::from_vec(b"/home/u/\xff".to_vec());
    let r = LoginRepair::xdg(dir.path(), [OsString::from("/usr/bin/guardnest"), bad]);
    let e = r.register().unwrap_err().to_string();
    assert!(e.contains("not valid Unicode"), "{e}");
    assert!(!r.is_registered());
}

/// The rules CommandLineToArgvW splits a command line by (and the C runtime, for the
/// lines GuardNest writes: it never writes `""` inside quotes, where the two differ):
/// the program name runs to the next quote (or blank) with no escapes; then blanks
/// separate arguments outside quotes, 2n backslashes before a quote are n backslashes
/// and the quote toggles quoting, 2n+1 are n and a literal quote, and other backslashes
/// are literal.
fn command_line_to_argv(line: &str) -> Vec<String> {
    let mut chars = line.chars().peekable();
    let mut argv = Vec::new();
    let mut program = String::new();
    if chars.peek() == Some(&'"') {
        chars.next();
        program.extend(chars.by_ref().take_while(|&c| c != '"'));
    } else {
        while let Some(c) = chars.next_if(|&c| c != ' ' && c != '\t') {
            program.push(c);
        }
    }
    argv.push(program);
    loop {
        while chars.next_if(|&c| c == ' ' || c == '\t').is_some() {}
        if chars.peek().is_none() {
            return argv;
        }
        let (mut arg, mut quoted) = (String::new(), false);
        while let Some(&c) = chars.peek() {
            match c {
                ' ' | '\t' if !quoted => break,
                '\\' => {
                    let mut n = 0;
                    while chars.next_if_eq(&'\\').is_some() {
                        n += 1;
                    }
                    if chars.peek() == Some(&'"') {
                        arg.extend(std::iter::repeat_n('\\', n / 2));
                        if n % 2 == 1 {
                            arg.push('"');
                            chars.next();
                        }
                    } else {
                        arg.extend(std::iter::repeat_n('\\', n));
                    }
                }
                '"' => {
                    quoted = !quoted;
                    chars.next();
                }
                c => {
                    arg.push(c);
                    chars.next();
                }
            }
        }
        argv.push(arg);
    }
}

/// Paths that stress the quoting: spaces, quotes, backslashes before quotes and at the
/// end, `%`, `$`, backticks, an empty argument, non-ASCII.
fn windows_cases() -> Vec<Vec<String>> {
    let program = r"C:\Program Files\Guard Nest\guardnest.exe";
    [
        r"C:\Users\A B\AppData\Local\guardnest",
        r"C:\Users\A B\AppData\Local\guardnest\",
        r"C:\Users\A B\AppData\Local\guardnest\\",
        r"C:\Users\AB\AppData\Local\guardnest\",
        r#"say "hi""#,
        r#"a\"b"#,
        r#"a\\"b"#,
        r#"\\server\share\"#,
        "100% %PATH% $HOME `id` ^&|<>",
        "",
        r#"""#,
        "C:\\Users\\Renée\\日本\\🦀",
    ]
    .iter()
    .map(|d| argv(&[program, "repair", "--data-dir", d, "--at-login"]))
    .collect()
}

#[test]
fn run_once_command_lines_split_back_as_written() {
    assert_eq!(
        windows_command_line(&windows_cases()[1]).unwrap(),
        r#""C:\Program Files\Guard Nest\guardnest.exe" repair --data-dir "C:\Users\A B\AppData\Local\guardnest\\" --at-login"#
    );
    for a in windows_cases() {
        let line = windows_command_line(&a).unwrap();
        assert_eq!(command_line_to_argv(&line), a, "{line}");
    }
}

/// The same lines split by Windows itself (under Wine in CI).
#[cfg(windows)]
#[test]
fn run_once_command_lines_split_back_by_command_line_to_argv_w() {
    for a in windows_cases() {
        let line = windows_command_line(&a).unwrap();
        assert_eq!(guardnest_testkit::split_by_windows(&line), a, "{line}");
    }
}

/// "The data value for a key is a command line no longer than 260 characters" (Run and
/// RunOnce Registry Keys): a longer one is refused, not written for Windows to cut; 260
/// UTF-16 units exactly (non-ASCII counted as Windows counts it) are fine.
#[test]
fn run_once_command_lines_longer_than_260_characters_are_refused() {
    let line = |data: &str| {
        windows_command_line(&argv(&[r"C:\GuardNest\guardnest.exe", "repair", "--data-dir", data, "--at-login"]))
    };
    let fixed = line("").unwrap().encode_utf16().count() - 2; // less the empty argument's quotes
    let fits = "d".repeat(RUN_ONCE_MAX_CHARS - fixed);
    assert_eq!(line(&fits).unwrap().encode_utf16().count(), RUN_ONCE_MAX_CHARS);
    assert_eq!(line(&format!("{fits}d")), Err(EntryError::TooLong { len: 261, max: 260 }));
    let astral = "🦀".repeat((RUN_ONCE_MAX_CHARS - fixed) / 2 + 1);
    assert!(matches!(line(&astral), Err(EntryError::TooLong { .. })), "a 🦀 is two UTF-16 units");
    let long = format!(r"C:\Users\u\{}", "d".repeat(250));
    let e = line(&long).unwrap_err().to_string();
    assert!(e.contains("would be 319 characters; Windows runs at most 260"), "{e}");
}

#[test]
fn run_once_refuses_a_quote_in_the_program_and_control_characters() {
    assert!(matches!(windows_command_line(&argv(&[r#"C:\a"b.exe"#])), Err(EntryError::QuoteInProgram(_))));
    assert!(matches!(windows_command_line(&argv(&[r"C:\a.exe", "x\ny"])), Err(EntryError::Control { c: '\n', .. })));
}

#[test]
fn launch_agent_runs_at_load() {
    let plist = launch_agent_plist(
        ENTRY,
        &argv(&["/Applications/GuardNest.app/Contents/MacOS/guardnest-app", "repair", "a&b<c>d\"e'f\r\n\tg"]),
    )
    .unwrap();
    assert!(plist.contains("<key>RunAtLoad</key>\n\t<true/>"));
    assert!(plist.contains("<string>org.guardnest.repair</string>"));
    assert!(plist.contains("<string>a&amp;b&lt;c&gt;d&quot;e&apos;f&#13;&#10;&#9;g</string>"), "{plist}");
    let r = LoginRepair::launch_agent(Path::new("/Users/u"), ["x"]);
    assert_eq!(
        r.place(),
        &Place::LaunchAgent(PathBuf::from("/Users/u/Library/LaunchAgents/org.guardnest.repair.plist"))
    );
}

#[test]
fn launch_agents_refuse_what_xml_cannot_hold() {
    for c in ['\0', '\u{1}', '\u{1f}', '\u{fffe}', '\u{ffff}'] {
        let a = argv(&["/x", &format!("a{c}b")]);
        assert_eq!(launch_agent_plist(ENTRY, &a), Err(EntryError::NotXml { arg: a[1].clone(), c }));
    }
    for c in ['\u{7f}', '\u{85}', '\u{d7ff}', '\u{e000}', '\u{fffd}', '\u{10000}', '\u{10ffff}'] {
        assert!(launch_agent_plist(ENTRY, &argv(&["/x", &format!("a{c}b")])).is_ok(), "U+{:04X}", u32::from(c));
    }
}

#[test]
fn an_xdg_entry_is_written_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let r = LoginRepair::xdg(dir.path(), ["/usr/bin/guardnest", "repair"]);
    assert!(!r.is_registered());
    r.register().unwrap();
    let path = dir.path().join("autostart/org.guardnest.repair.desktop");
    assert!(std::fs::read_to_string(&path).unwrap().contains("Exec=\"/usr/bin/guardnest\" \"repair\"\n"));
    assert!(r.is_registered());
    r.unregister().unwrap();
    assert!(!path.exists());
    r.unregister().unwrap();
}
