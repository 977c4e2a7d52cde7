//! The repair registered to run at the next login, read back by the OS's own parsers: what
//! the login runs must be exactly the command GuardNest registered, whatever its paths hold
//! (spaces, quotes, backslashes, `%`, `$`, backticks, non-ASCII); a path no entry can hold
//! (a newline in a desktop entry, a control character in a property list) is refused with
//! an error, never written half-right.
//!
//! - XDG autostart: GLib itself (through Python's `gi`) loads the `.desktop` file, unescapes
//!   `Exec` and splits it (`g_shell_parse_argv`), then Gio launches it for real (field codes
//!   expanded as at login) and the program launched records its argv; `desktop-file-validate`
//!   checks each file too.
//! - macOS LaunchAgent: Python's `plistlib` parses the property list (`plutil` is not
//!   available on Linux).
//!
//! Run on Unix (the Linux suite); the Windows RunOnce line is tested in the crate's unit
//! tests, with the real `CommandLineToArgvW` under Wine.

#[cfg(unix)]
mod unix {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use guardnest_sysproxy::login::LoginRepair;
    use guardnest_testkit::{passed, skip, Outcome};

    const GI: &str = "apt-get install python3-gi gir1.2-glib-2.0";

    /// A Python 3 that can load GLib and Gio through GObject introspection.
    fn python_with_gi() -> Option<&'static str> {
        ["python3", "/usr/bin/python3"].into_iter().find(|p| {
            Command::new(p)
                .args(["-c", "import gi; gi.require_version('Gio', '2.0'); from gi.repository import Gio"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
    }

    /// Loads each desktop file (argument pairs: file, where its program records its argv)
    /// with GLib, splits `Exec` as GLib does, and launches it with Gio: one JSON object per
    /// file, with `exec` and `argv` (or `error`), and `launched` (or `launch_error`).
    const GLIB_READS: &str = r#"
import json, os, signal, sys
import gi
gi.require_version("GLib", "2.0")
gi.require_version("Gio", "2.0")
from gi.repository import GLib, Gio
signal.alarm(60)  # bounds every wait below
out = []
for path, record in zip(sys.argv[1::2], sys.argv[2::2]):
    r = {}
    try:
        kf = GLib.KeyFile()
        kf.load_from_file(path, GLib.KeyFileFlags.NONE)
        r["exec"] = kf.get_string("Desktop Entry", "Exec")
        r["argv"] = list(GLib.shell_parse_argv(r["exec"])[1])
    except GLib.Error as e:
        r["error"] = e.message
    try:
        info = Gio.DesktopAppInfo.new_from_filename(path)
    except TypeError:
        info = None
    if info is None:
        r["launch_error"] = "Gio.DesktopAppInfo.new_from_filename refused the entry"
    else:
        ctx = Gio.AppLaunchContext()
        ctx.setenv("GUARDNEST_ARGV_OUT", record)
        pids = []
        try:
            info.launch_uris_as_manager([], ctx, GLib.SpawnFlags.DO_NOT_REAP_CHILD, None, None,
                                        lambda _info, pid, *_: pids.append(pid), None)
            for pid in pids:
                os.waitpid(pid, 0)
            with open(record, "rb") as f:
                r["launched"] = [a.decode("utf-8", "surrogateescape") for a in f.read().split(b"\0")[:-1]]
        except Exception as e:
            r["launch_error"] = str(e)
    out.append(r)
print(json.dumps(out))
"#;

    /// A program that records its own path and arguments, NUL-separated.
    const RECORDER: &str = "#!/bin/sh\n{ printf '%s\\0' \"$0\"; for a in \"$@\"; do printf '%s\\0' \"$a\"; done; } > \"$GUARDNEST_ARGV_OUT\"\n";

    /// Directory names for the program's path: each must reach the program unchanged.
    const PROGRAM_DIRS: &[&str] = &[
        "My Apps",
        "two  spaces",
        "say \"hi\"",
        "it's",
        "one\\back",
        "two\\\\backs",
        "ends\\",
        "esc\\\"q",
        "dollar\\$",
        "$HOME",
        "`id`",
        "a;b|c&d<e>f*g?h#i(j)~k",
        "\\s\\n\\t\\r",
        "café 日本",
    ];

    /// Data directories: each must reach the repair unchanged (`%` included: it is an
    /// argument, written `%%`).
    const DATA_DIRS: &[&str] = &[
        "/home/u/My Data",
        "/home/u/say \"hi\"",
        "/home/u/it's",
        "/home/u/one\\back",
        "/home/u/two\\\\backs",
        "/home/u/data\\",
        "/home/u/esc\\\"q",
        "/home/u/100%",
        "/home/u/%f",
        "/home/u/%%",
        "/home/u/$HOME",
        "/home/u/`id`",
        "/home/u/a;b|c&d<e>f*g?h#i(j)~k=v",
        "/home/u/\\s\\n\\t\\r\\\\",
        "/home/u/café/日本",
        "/home/u/nbsp\u{a0}ls\u{2028}ps\u{2029}bom\u{feff}",
        "",
    ];

    /// [`RECORDER`] as `dir/guardnest`.
    fn recorder(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let program = dir.join("guardnest");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&program, RECORDER).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        program
    }

    fn argv(program: &Path, data: &str) -> Vec<String> {
        [program.to_str().unwrap(), "repair", "--data-dir", data, "--at-login"].map(String::from).to_vec()
    }

    /// Every written entry runs exactly the registered command when GLib reads and launches it.
    pub fn xdg_entries_run_what_was_registered_when_glib_launches_them() -> Outcome {
        let Some(python) = python_with_gi() else {
            return skip(format!("needs python3 with GObject introspection ({GI})"));
        };
        let root = tempfile::tempdir().unwrap();
        let mut cases: Vec<(Vec<String>, PathBuf, PathBuf)> = Vec::new();
        let mut add = |program: PathBuf, data: &str| {
            let n = cases.len();
            let config = root.path().join(format!("config{n}"));
            let a = argv(&program, data);
            if let Err(e) = LoginRepair::xdg(&config, a.clone()).register() {
                panic!("cannot register {a:?}: {e}");
            }
            let entry = config.join("autostart/org.guardnest.repair.desktop");
            cases.push((a, entry, root.path().join(format!("argv{n}"))));
        };
        for (i, dir) in PROGRAM_DIRS.iter().enumerate() {
            add(recorder(&root.path().join(format!("p{i}")).join(dir)), "/home/u/data");
        }
        let plain = recorder(&root.path().join("plain"));
        for data in DATA_DIRS {
            add(plain.clone(), data);
        }

        let mut cmd = Command::new(python);
        cmd.arg("-c").arg(GLIB_READS);
        for (_, entry, record) in &cases {
            cmd.arg(entry).arg(record);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
        let read: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        let mut wrong = Vec::new();
        for ((want, entry, _), got) in cases.iter().zip(&read) {
            let text = std::fs::read_to_string(entry).unwrap();
            let line = text.lines().filter(|l| l.starts_with("Exec")).collect::<Vec<_>>().join(" | ");
            // g_shell_parse_argv gives the arguments before field codes are expanded.
            let split: Option<Vec<String>> = got["argv"]
                .as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap_or("?").replace("%%", "%")).collect());
            let launched: Option<Vec<String>> =
                got["launched"].as_array().map(|a| a.iter().map(|s| s.as_str().unwrap_or("?").to_string()).collect());
            if split.as_ref() != Some(want) || launched.as_ref() != Some(want) {
                wrong.push(format!(
                    "registered {want:?}\n  wrote    {line}\n  GLib     {}\n  launched {}",
                    split.map_or_else(|| format!("ERROR {}", got["error"]), |s| format!("{s:?}")),
                    launched.map_or_else(|| format!("ERROR {}", got["launch_error"]), |s| format!("{s:?}")),
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {} entries run something else:\n{}",
            wrong.len(),
            cases.len(),
            wrong.join("\n")
        );
        passed()
    }

    /// systemd's xdg-autostart-generator (which KDE Plasma's systemd startup runs autostart
    /// entries through) turns each entry into a unit whose ExecStart runs the registered
    /// command: `%`, quotes, `$`, backticks, shell characters and non-ASCII alike. Backslashes
    /// are the exception, measured with systemd 252 and left out here: the generator
    /// unescapes them once more than the Desktop Entry Specification (and GLib) do, so
    /// `one\back` runs as `one<BS>ack` and a trailing backslash makes it skip the entry; the
    /// entries follow the specification, which GNOME's GLib reads as written.
    pub fn xdg_entries_read_by_systemds_autostart_generator_run_what_was_registered() -> Outcome {
        const GENERATOR: &str = "/usr/lib/systemd/user-generators/systemd-xdg-autostart-generator";
        if !Path::new(GENERATOR).exists() {
            return skip(format!("needs {GENERATOR} (apt-get install systemd)"));
        }
        let root = tempfile::tempdir().unwrap();
        let (config, units) = (root.path().join("config"), root.path().join("units"));
        std::fs::create_dir_all(&units).unwrap();
        let programs = PROGRAM_DIRS.iter().filter(|d| !d.contains('\\')).map(|d| recorder(&root.path().join(d)));
        let plain = recorder(&root.path().join("plain"));
        let cases: Vec<Vec<String>> = programs
            .map(|p| argv(&p, "/home/u/data"))
            .chain(DATA_DIRS.iter().filter(|d| !d.contains('\\')).map(|d| argv(&plain, d)))
            .collect();
        let mut wrong = Vec::new();
        for (n, a) in cases.iter().enumerate() {
            // One entry per name: the generator names a unit after its file.
            let entry = LoginRepair::xdg(&config, a.clone());
            entry.register().unwrap();
            let from = config.join("autostart/org.guardnest.repair.desktop");
            std::fs::rename(&from, config.join(format!("autostart/case{n:02}.desktop"))).unwrap();
        }
        let out = Command::new(GENERATOR)
            .args([&units, &units, &units])
            .env("XDG_CONFIG_HOME", &config)
            .env("XDG_CONFIG_DIRS", root.path().join("none"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for (n, want) in cases.iter().enumerate() {
            let unit = std::fs::read_to_string(units.join(format!("app-case{n:02}@autostart.service")));
            let line =
                unit.as_deref().unwrap_or("").lines().find_map(|l| l.strip_prefix("ExecStart=:")).map(str::to_string);
            match line.as_deref().map(exec_start_argv) {
                Some(Some(got)) if &got == want => {}
                other => wrong.push(format!("registered {want:?}\n  ExecStart {line:?}\n  read as   {other:?}")),
            }
        }
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(wrong.is_empty(), "{}\n(generator said: {said})", wrong.join("\n"));
        passed()
    }

    /// ExecStart's arguments as systemd reads the lines its generator writes: blank-separated
    /// words, double quotes with `\"`, `\\`, `\$` and `` \` `` inside, `%%` for `%`.
    fn exec_start_argv(line: &str) -> Option<Vec<String>> {
        let mut args = Vec::new();
        let mut chars = line.chars().peekable();
        loop {
            while chars.next_if_eq(&' ').is_some() {}
            if chars.peek().is_none() {
                return Some(args);
            }
            let mut arg = String::new();
            while let Some(c) = chars.next_if(|&c| c != ' ') {
                match c {
                    '"' => loop {
                        match chars.next()? {
                            '"' => break,
                            '\\' => arg.push(chars.next()?),
                            c => arg.push(c),
                        }
                    },
                    '%' => arg.push(chars.next().filter(|&c| c == '%')?),
                    c => arg.push(c),
                }
            }
            args.push(arg);
        }
    }

    /// desktop-file-validate finds nothing wrong in any entry written for those paths.
    pub fn xdg_entries_pass_desktop_file_validate() -> Outcome {
        if let Some(skipped) =
            guardnest_testkit::needs_tools(&["desktop-file-validate"], "apt-get install desktop-file-utils")
        {
            return skipped;
        }
        let root = tempfile::tempdir().unwrap();
        let mut wrong = Vec::new();
        let programs = PROGRAM_DIRS.iter().map(|d| format!("/opt/{d}/guardnest"));
        let cases = programs
            .map(|p| argv(Path::new(&p), "/home/u/data"))
            .chain(DATA_DIRS.iter().map(|d| argv(Path::new("/usr/bin/guardnest"), d)));
        for (n, a) in cases.enumerate() {
            let config = root.path().join(format!("config{n}"));
            LoginRepair::xdg(&config, a.clone()).register().unwrap();
            let entry = config.join("autostart/org.guardnest.repair.desktop");
            let out = Command::new("desktop-file-validate").arg(&entry).output().unwrap();
            let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            if !out.status.success() || said.contains("error") || said.contains("warning") {
                wrong.push(format!("{a:?}: {}", said.trim()));
            }
        }
        assert!(wrong.is_empty(), "desktop-file-validate:\n{}", wrong.join("\n"));
        passed()
    }

    /// A newline, carriage return, tab or other control character cannot be held by one
    /// `Exec` line that every reader splits alike; GLib looks a program up before it expands
    /// `%%`, and the spec forbids `=` in the program's path: each is refused with an error
    /// that says why, and nothing is written (no key is injected).
    pub fn xdg_entries_refuse_paths_one_exec_line_cannot_hold() -> Outcome {
        let root = tempfile::tempdir().unwrap();
        let refused = [
            ("/usr/bin/guardnest", "/home/u/data\nExec=/bin/sh -c 'echo owned'\nX-Y=", "control character"),
            ("/usr/bin/guardnest", "/home/u/data\r", "control character"),
            ("/usr/bin/guardnest", "/home/u/da\tta", "control character"),
            ("/usr/bin/guardnest", "/home/u/da\u{1b}[31mta", "control character"),
            ("/usr/bin/guardnest", "/home/u/da\u{7f}ta", "control character"),
            ("/usr/bin/guardnest", "/home/u/next\u{85}line", "control character"),
            ("/opt/new\nline/guardnest", "/home/u/data", "control character"),
            ("/opt/100%/guardnest", "/home/u/data", "%"),
            ("/opt/%f/guardnest", "/home/u/data", "%"),
            ("/opt/a=b/guardnest", "/home/u/data", "="),
        ];
        let mut wrong = Vec::new();
        for (n, (program, data, why)) in refused.iter().enumerate() {
            let config = root.path().join(format!("config{n}"));
            let a = argv(Path::new(program), data);
            let entry = config.join("autostart/org.guardnest.repair.desktop");
            match LoginRepair::xdg(&config, a.clone()).register() {
                Err(e) if e.to_string().contains(why) && !entry.exists() => {}
                Err(e) => wrong.push(format!("{a:?}: refused, but {e} (written: {})", entry.exists())),
                Ok(()) => wrong.push(format!(
                    "{a:?}: written as\n{}",
                    std::fs::read_to_string(&entry).unwrap_or_default().trim_end()
                )),
            }
        }
        assert!(wrong.is_empty(), "not refused:\n{}", wrong.join("\n"));
        passed()
    }

    /// A Python that can parse property lists.
    fn python() -> Option<&'static str> {
        ["python3", "/usr/bin/python3"]
            .into_iter()
            .find(|p| Command::new(p).args(["-c", "import plistlib"]).output().is_ok_and(|o| o.status.success()))
    }

    /// Each LaunchAgent parses as a property list whose ProgramArguments are the registered
    /// command, character for character (markup characters, a carriage return, which XML
    /// would otherwise read back as a newline, and characters beyond the BMP included).
    pub fn launch_agents_read_back_by_plistlib_as_written() -> Outcome {
        let Some(python) = python() else { return skip("needs python3 (plistlib)") };
        let root = tempfile::tempdir().unwrap();
        let paths = [
            "/Applications/Guard Nest.app/Contents/MacOS/guardnest-app",
            "/Users/u/a&b<c>d\"e'f",
            "/Users/u/]]><!--x-->&amp;",
            "/Users/u/tab\there",
            "/Users/u/new\nline",
            "/Users/u/car\rriage",
            "/Users/u/crlf\r\n",
            "/Users/u/100% $HOME `id` \\ \\\\",
            "/Users/u/café/日本/🦀",
            "/Users/u/\u{85}\u{2028}\u{fffd}",
        ];
        let mut wrong = Vec::new();
        for (n, path) in paths.iter().enumerate() {
            let home = root.path().join(format!("home{n}"));
            let a = argv(Path::new(paths[0]), path);
            if let Err(e) = LoginRepair::launch_agent(&home, a.clone()).register() {
                wrong.push(format!("{a:?}: {e}"));
                continue;
            }
            let plist = home.join("Library/LaunchAgents/org.guardnest.repair.plist");
            let out = Command::new(python)
                .args([
                    "-c",
                    "import json, plistlib, sys\n\
                     p = plistlib.load(open(sys.argv[1], 'rb'))\n\
                     print(json.dumps([p['Label'], p['ProgramArguments'], p['RunAtLoad']]))",
                ])
                .arg(&plist)
                .output()
                .unwrap();
            let got: Option<serde_json::Value> = serde_json::from_slice(&out.stdout).ok();
            let want = serde_json::json!(["org.guardnest.repair", a, true]);
            if got.as_ref() != Some(&want) {
                wrong.push(format!(
                    "{a:?}: plistlib read {}{}",
                    got.map_or_else(String::new, |g| g.to_string()),
                    String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        passed()
    }

    /// Characters XML 1.0 cannot hold at all (controls other than tab, newline and carriage
    /// return; U+FFFE and U+FFFF) are refused, naming the character, and nothing is written.
    pub fn launch_agents_refuse_what_xml_cannot_hold() -> Outcome {
        let root = tempfile::tempdir().unwrap();
        let mut wrong = Vec::new();
        for (n, path) in
            ["/Users/u/\u{0}", "/Users/u/\u{1}", "/Users/u/\u{1b}[0m", "/Users/u/\u{fffe}", "/Users/u/\u{ffff}"]
                .iter()
                .enumerate()
        {
            let home = root.path().join(format!("home{n}"));
            let a = argv(Path::new("/Applications/GuardNest.app/Contents/MacOS/guardnest-app"), path);
            let plist = home.join("Library/LaunchAgents/org.guardnest.repair.plist");
            match LoginRepair::launch_agent(&home, a.clone()).register() {
                Err(e) if e.to_string().contains("XML") && !plist.exists() => {}
                Err(e) => wrong.push(format!("{a:?}: refused, but {e} (written: {})", plist.exists())),
                Ok(()) => wrong.push(format!("{a:?}: written")),
            }
        }
        assert!(wrong.is_empty(), "not refused:\n{}", wrong.join("\n"));
        passed()
    }
}

#[cfg(unix)]
use unix::*;

#[cfg(unix)]
guardnest_testkit::main!(
    xdg_entries_run_what_was_registered_when_glib_launches_them,
    xdg_entries_pass_desktop_file_validate,
    xdg_entries_read_by_systemds_autostart_generator_run_what_was_registered,
    xdg_entries_refuse_paths_one_exec_line_cannot_hold,
    launch_agents_read_back_by_plistlib_as_written,
    launch_agents_refuse_what_xml_cannot_hold,
);

#[cfg(not(unix))]
fn main() {}
