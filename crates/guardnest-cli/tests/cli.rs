//! The real `guardnest` binary, run as a user would.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{connect_status, Running, BIN, WAIT};

fn guardnest(data: &tempfile::TempDir) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("run").arg("--data-dir").arg(data.path()).arg("--no-default-lists").args(["--control", "127.0.0.1:0"]);
    cmd.env_remove("RUST_LOG");
    cmd
}

fn output(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn help_and_version() {
    let help = output(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("run"), "{text}");
    let run_help = String::from_utf8_lossy(&output(&["run", "--help"]).stdout).into_owned();
    for flag in [
        "--listen",
        "--config",
        "--data-dir",
        "--blocklist",
        "--allowlist",
        "--no-default-lists",
        "--log-level",
        "--log-file",
    ] {
        assert!(run_help.contains(flag), "{flag} missing from run --help");
    }
    let version = output(&["--version"]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn run_blocks_and_stops_cleanly_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let list = data.path().join("block.hosts");
    std::fs::write(&list, "0.0.0.0 evil.test\n").unwrap();
    let mut run = Running::start(guardnest(&data).args(["--listen", "127.0.0.1:0", "--blocklist"]).arg(&list));
    assert_eq!(connect_status(run.addr, "www.evil.test:443"), 403);
    run.wait_for("blocked");
    // A real upstream through the proxy.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    assert_eq!(connect_status(run.addr, &upstream.local_addr().unwrap().to_string()), 200);
    run.signal("-TERM");
    let status = run.wait_exit();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigint_also_stops() {
    let data = tempfile::tempdir().unwrap();
    let run = Running::start(guardnest(&data).args(["--listen", "127.0.0.1:0"]));
    run.signal("-INT");
    assert_eq!(run.wait_exit().code(), Some(0));
}

#[test]
fn flags_override_the_config_file() {
    let data = tempfile::tempdir().unwrap();
    let list = data.path().join("plain.txt");
    std::fs::write(&list, "from-file.test\n").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = data.path().join("guardnest.toml");
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = \"{}\"\nconnect_timeout = \"2s\"\n[blocklist]\nsources = [{:?}]\n",
            taken.local_addr().unwrap(),
            list.display().to_string()
        ),
    )
    .unwrap();
    // The file's listen address is taken; the flag's wins, and the file's list applies.
    let run = Running::start(guardnest(&data).arg("--config").arg(&config).args(["--listen", "127.0.0.1:0"]));
    assert_ne!(run.addr, taken.local_addr().unwrap());
    assert_eq!(connect_status(run.addr, "from-file.test:443"), 403);
}

#[test]
fn log_file_receives_the_log() {
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("gn.log");
    let mut cmd = guardnest(&data);
    cmd.args(["--listen", "127.0.0.1:0", "--log-level", "debug", "--log-file"]).arg(&log);
    let mut child = cmd.stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("listening on") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("listening on 127.0.0.1:"), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI colour codes in a log file");
}

#[test]
fn config_errors_are_clear() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("bad.toml");
    std::fs::write(&config, "[proxy]\nlisten = \"127.0.0.1:0\"\nidle_timeot = \"5s\"\n").unwrap();
    let out = guardnest(&data).arg("--config").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("idle_timeot") && err.contains("bad.toml"), "{err}");

    let out =
        guardnest(&data).args(["--listen", "127.0.0.1:0", "--blocklist", "/nonexistent/list.txt"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/list.txt"));

    let out = guardnest(&data).args(["--listen", "not-an-address"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn port_in_use_is_a_distinct_error() {
    let data = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = guardnest(&data).args(["--listen", &addr]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")) && err.contains("in use"), "{err}");
    // Nothing half-done: no runtime file for an instance that never ran, no system-proxy
    // transaction, and the control port is free again.
    let left: Vec<_> = std::fs::read_dir(data.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!left.iter().any(|n| n == "control.json" || n == "system-proxy.json"), "left behind: {left:?}");
}

/// With a tiny descriptor limit, accept fails with EMFILE; the proxy backs off, keeps
/// running, and serves again once descriptors are free.
#[test]
#[cfg_attr(
    windows,
    ignore = "platform limit: Windows has no per-process descriptor limit to lower (ulimit -n), so accept cannot be made to fail with EMFILE"
)]
fn descriptor_exhaustion_is_survived() {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n 48 && exec {BIN} run --data-dir {} --no-default-lists --listen 127.0.0.1:0 --control none",
            data.path().display()
        ))
        .env_remove("RUST_LOG");
    let mut run = Running::start(&mut cmd);
    // Hold more connections than the limit allows the proxy to accept.
    let mut hogs = Vec::new();
    for _ in 0..80 {
        if let Ok(s) = TcpStream::connect_timeout(&run.addr, Duration::from_millis(500)) {
            hogs.push(s);
        }
    }
    run.wait_for("accept failed");
    drop(hogs);
    // Recovered: a tunnel works again (the accept loop retries with backoff).
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = upstream.local_addr().unwrap().to_string();
    let deadline = Instant::now() + WAIT;
    let mut status = 0;
    while Instant::now() < deadline {
        status = std::panic::catch_unwind(|| connect_status(run.addr, &target)).unwrap_or(0);
        if status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status, 200);
    run.signal("-TERM");
    assert_eq!(run.wait_exit().code(), Some(0));
}

/// A tiny list server on loopback: answers every request with `body` (ETag "v1"), or 304
/// when the client already has it; counts requests. Stops when the returned sender is dropped.
/// A list server: its URL, the requests it answered, and what closes it (dropping the
/// sender, then joining the thread: the listener is closed when the join returns).
type Closer = (mpsc::Sender<()>, std::thread::JoinHandle<()>);

fn list_server(body: &'static str) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>, Closer) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/list.txt", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (stop, stopped) = mpsc::channel::<()>();
    let counter = hits.clone();
    let thread = std::thread::spawn(move || loop {
        if !matches!(stopped.try_recv(), Err(mpsc::TryRecvError::Empty)) {
            return;
        }
        let Ok((mut s, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let reply = if head.contains("if-none-match: \"v1\"") {
            "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n".to_string()
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        let _ = s.write_all(reply.as_bytes());
    });
    (url, hits, (stop, thread))
}

fn guardnest_cmd(data: &tempfile::TempDir, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--data-dir").arg(data.path()).arg("--no-default-lists").env_remove("RUST_LOG");
    cmd
}

fn stdout_of(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn check_names_list_and_rule() {
    let data = tempfile::tempdir().unwrap();
    let block = data.path().join("block.hosts");
    let allow = data.path().join("allow.txt");
    std::fs::write(&block, "0.0.0.0 evil.test\n").unwrap();
    std::fs::write(&allow, "ok.evil.test\n").unwrap();
    let run = |name: &str| {
        let mut cmd = guardnest_cmd(&data, &["check", name]);
        cmd.arg("--blocklist").arg(&block).arg("--allowlist").arg(&allow);
        stdout_of(&mut cmd)
    };
    // Exit codes: 5 blocked, 0 not blocked (exempt or no rule), 2 not a name.
    let (code, out) = run("WWW.Evil.Test.");
    assert_eq!(code, Some(5));
    assert_eq!(out.trim(), "blocked: www.evil.test by list \"block.hosts\" (rule evil.test)");
    let (code, out) = run("a.ok.evil.test");
    assert_eq!(code, Some(0));
    assert_eq!(out.trim(), "allowed: a.ok.evil.test is exempt by list \"allow.txt\" (rule ok.evil.test)");
    let (code, out) = run("notevil.test");
    assert_eq!(code, Some(0));
    assert_eq!(out.trim(), "allowed: notevil.test (no rule matched)");
    let (code, out) = run("bad name");
    assert_eq!(code, Some(2));
    assert!(out.contains("not a host name"), "{out}");
}

#[test]
fn lists_update_bypasses_the_system_proxy_and_check_works_offline_from_the_cache() {
    let data = tempfile::tempdir().unwrap();
    let (url, hits, stop) = list_server("# downloaded\n0.0.0.0 downloaded.test\n");
    // A dead proxy in every variable a client might honour: the download must ignore them.
    let dead = format!("http://{}", closed_port());
    let proxied = |cmd: &mut Command| {
        for var in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
            cmd.env(var, &dead);
        }
    };
    let mut cmd = guardnest_cmd(&data, &["lists", "update", "--blocklist", &url]);
    proxied(&mut cmd);
    let (code, out) = stdout_of(&mut cmd);
    assert_eq!(code, Some(0), "{out}");
    // The list, and the user's own allowlist (an instance with these flags serves it too).
    assert!(out.contains("1 updated, 1 unchanged, 0 failed; 1 name loaded"), "{out}");
    // Again: a 304.
    let (code, out) = stdout_of(&mut guardnest_cmd(&data, &["lists", "update", "--blocklist", &url]));
    assert_eq!(code, Some(0));
    assert!(out.contains("0 updated, 2 unchanged"), "{out}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);

    // The server goes away: offline from here on.
    drop(stop.0);
    stop.1.join().unwrap();
    let (_, out) = stdout_of(&mut guardnest_cmd(&data, &["check", "x.downloaded.test", "--blocklist", &url]));
    assert!(out.starts_with("blocked: x.downloaded.test by list"), "{out}");
    let (code, out) = stdout_of(&mut guardnest_cmd(&data, &["lists", "--blocklist", &url]));
    assert_eq!(code, Some(0));
    let row = out.lines().nth(1).unwrap();
    assert!(row.contains("hosts") && row.contains(" 1 ") && row.contains("ago"), "{out}");
}

#[test]
fn lists_update_reports_failures() {
    let data = tempfile::tempdir().unwrap();
    let url = format!("http://{}/gone.txt", closed_port());
    let (code, out) = stdout_of(&mut guardnest_cmd(&data, &["lists", "update", "--blocklist", &url]));
    assert_eq!(code, Some(1));
    assert!(out.contains("failed: ") && out.contains("0 updated, 1 unchanged, 1 failed"), "{out}");
    let (_, out) = stdout_of(&mut guardnest_cmd(&data, &["lists", "--blocklist", &url]));
    assert!(out.contains("never") && out.contains("cannot reach 127.0.0.1 (no internet connection?)"), "{out}");
}

fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn client(data: &tempfile::TempDir, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).args(args).arg("--data-dir").arg(data.path()).env_remove("RUST_LOG").output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn status_enable_disable_restart_talk_to_the_running_instance() {
    let data = tempfile::tempdir().unwrap();
    let (code, out) = client(&data, &["status"]);
    assert_eq!(code, Some(2), "no instance: exit 2: {out}");
    assert!(out.contains("not running"), "{out}");

    let mut run = Running::start(guardnest(&data).args(["--listen", "127.0.0.1:0"]));
    run.wait_for("control API on");
    let (code, out) = client(&data, &["status"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with(&format!("running on {} (pid {}), healthy", run.addr, run.child.id())), "{out}");
    assert!(out.contains("\nNOT PROTECTED: No block list is set up"), "{out}");
    let (code, out) = client(&data, &["status", "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["listen"], run.addr.to_string());

    let (code, out) = client(&data, &["enable"]);
    assert_eq!((code, out.trim()), (Some(0), format!("already enabled on {}", run.addr).as_str()));
    let (code, out) = client(&data, &["disable"]);
    assert_eq!((code, out.trim()), (Some(0), "disabled"));
    assert!(TcpStream::connect_timeout(&run.addr, Duration::from_millis(500)).is_err(), "still listening");
    let (_, out) = client(&data, &["status"]);
    assert!(out.starts_with("not listening") && out.contains("\noff"), "{out}");
    let (code, out) = client(&data, &["enable"]);
    assert_eq!(code, Some(0));
    // Port 0 picked a port at the first enable; it is kept for the life of the process.
    assert_eq!(out.trim(), format!("enabled: listening on {}", run.addr), "{out}");
    let (code, out) = client(&data, &["restart"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("restarted: listening on"), "{out}");

    run.signal("-TERM");
    assert_eq!(run.wait_exit().code(), Some(0));
    let (code, out) = client(&data, &["status"]);
    assert_eq!(code, Some(2), "{out}");
}

#[test]
fn a_wrong_token_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let mut run = Running::start(guardnest(&data).args(["--listen", "127.0.0.1:0"]));
    run.wait_for("control API on");
    let file = data.path().join("control.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "token file must be owner-only");
    }
    let mut info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    info["token"] = "wrong".into();
    std::fs::write(&file, info.to_string()).unwrap();
    let (code, out) = client(&data, &["disable"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("401"), "{out}");
}

/// `guardnest allow`, `allowed` and `unallow`: the user's own allowlist (the app's Allow
/// button's), offline in the data dir and through a running instance alike.
#[test]
fn allow_allowed_and_unallow_work_offline_and_against_the_running_instance() {
    let data = tempfile::tempdir().unwrap();
    let block = data.path().join("block.hosts");
    std::fs::write(&block, "0.0.0.0 evil.test\n").unwrap();
    // Offline: the file in the data dir.
    let (code, out) = client(&data, &["allowed"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("your allowlist is empty"), "{out}");
    let (code, out) = client(&data, &["allow", "https://WWW.Evil.Test/some/path"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("www.evil.test is allowed from now on (in "), "{out}");
    let (_, out) = client(&data, &["allowed"]);
    assert_eq!(out.trim(), "www.evil.test");
    let (code, out) = client(&data, &["allow", "javascript:alert(1)"]);
    assert_eq!(code, Some(2), "not a name is a usage error: {out}");
    let (code, out) = client(&data, &["unallow", "a.www.evil.test"]);
    assert_eq!(code, Some(2), "allowed through its parent, offline too: {out}");
    assert!(out.contains("because you allowed www.evil.test"), "{out}");
    // A running instance: at once, whoever asks.
    let mut run = Running::start(guardnest(&data).args(["--listen", "127.0.0.1:0"]).arg("--blocklist").arg(&block));
    run.wait_for("control API on");
    assert_ne!(connect_status(run.addr, "www.evil.test:443"), 403, "the allowlist of the data dir applies");
    let (code, out) = client(&data, &["unallow", "www.evil.test"]);
    assert_eq!((code, out.trim()), (Some(0), "www.evil.test is no longer allowed"));
    assert_eq!(connect_status(run.addr, "www.evil.test:443"), 403);
    let (_, out) = client(&data, &["allowed"]);
    assert!(out.contains("your allowlist is empty"), "{out}");
    let (code, out) = client(&data, &["allow", "www.evil.test"]);
    assert_eq!((code, out.trim()), (Some(0), "www.evil.test is allowed from now on"));
    assert_ne!(connect_status(run.addr, "www.evil.test:443"), 403);
    let (_, out) = client(&data, &["allowed"]);
    assert_eq!(out.trim(), "www.evil.test");
    // The status counts block lists; the allowlist is said apart, not as a second list.
    let (_, out) = client(&data, &["status"]);
    assert!(out.contains("; 1 list, 1 name blocked (1 allowed)\n"), "{out}");
    // A name allowed through its parent cannot be taken off by itself: refused (exit 2),
    // naming the parent; it stays allowed.
    let (code, out) = client(&data, &["allow", "evil.test"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = client(&data, &["unallow", "a.evil.test"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("a.evil.test is allowed because you allowed evil.test; take evil.test off"), "{out}");
    assert_ne!(connect_status(run.addr, "a.evil.test:443"), 403);
    let (code, out) = client(&data, &["unallow", "evil.test"]);
    assert_eq!((code, out.trim()), (Some(0), "evil.test is no longer allowed"));
    // Off, the names are listed, not blocked.
    let (code, _) = client(&data, &["disable"]);
    assert_eq!(code, Some(0));
    let (_, out) = client(&data, &["status"]);
    assert!(out.contains("; 1 list, 1 name listed, none blocked now (1 allowed)\n"), "{out}");
    run.signal("-TERM");
    assert_eq!(run.wait_exit().code(), Some(0));
}

/// Who asked: the block's log line names the program behind the client's connection (this
/// test), and `guardnest programs` lists it with its connections and blocks.
#[cfg(target_os = "linux")]
#[test]
fn the_log_and_guardnest_programs_name_the_program_that_asked() {
    let data = tempfile::tempdir().unwrap();
    let block = data.path().join("block.hosts");
    std::fs::write(&block, "0.0.0.0 evil.test\n").unwrap();
    let (code, out) = client(&data, &["programs"]);
    assert_eq!(code, Some(2), "no instance: exit 2: {out}");
    let mut run = Running::start(guardnest(&data).args(["--listen", "127.0.0.1:0"]).arg("--blocklist").arg(&block));
    run.wait_for("control API on");
    assert_eq!(connect_status(run.addr, "evil.test:443"), 403);
    let exe = std::env::current_exe().unwrap();
    let me = format!("{} (pid {}", exe.display(), std::process::id());
    let line = run.wait_for("asked_by=");
    assert!(line.contains(&format!("asked_by={me}")), "{line}");
    let (code, out) = client(&data, &["programs"]);
    assert_eq!(code, Some(0), "{out}");
    // A row names the program (its path and user), whatever its process.
    let row = out.lines().find(|l| l.contains(&format!("{} (user ", exe.display()))).unwrap_or_else(|| panic!("{out}"));
    let counts: Vec<u64> = row.split_whitespace().take(2).map(|n| n.parse().unwrap()).collect();
    assert_eq!(counts[1], 1, "one block: {out}");
    assert!(out.ends_with("programs that ignore the system proxy are not listed, and not protected\n"), "{out}");
    let (_, json) = client(&data, &["programs", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(rows.as_array().unwrap().iter().any(|r| r["asker"]["pid"] == std::process::id()), "{json}");
    run.signal("-TERM");
    assert_eq!(run.wait_exit().code(), Some(0));
}

/// `guardnest check` with lists named by flags answers as `guardnest run` with the same
/// flags and data dir would: the user's own allowlist applies (before: "blocked").
#[test]
fn check_by_flags_answers_as_an_instance_with_those_flags_would() {
    let data = tempfile::tempdir().unwrap();
    let block = data.path().join("block.hosts");
    std::fs::write(&block, "0.0.0.0 evil.test\n").unwrap();
    client(&data, &["allow", "www.evil.test"]);
    let (code, out) = stdout_of(guardnest_cmd(&data, &["check", "www.evil.test"]).arg("--blocklist").arg(&block));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.trim(), "allowed: www.evil.test is exempt by list \"my allowlist\" (rule www.evil.test)");
    // A pasted URL is checked by its host.
    let (code, out) =
        stdout_of(guardnest_cmd(&data, &["check", "https://a.evil.test/x?y=1"]).arg("--blocklist").arg(&block));
    assert_eq!((code, out.trim()), (Some(5), "blocked: a.evil.test by list \"block.hosts\" (rule evil.test)"));
}

/// Without `--config`, the data dir's config.toml is the configuration (the file the app
/// reads too).
#[test]
fn run_and_check_read_the_data_dirs_config_toml() {
    let data = tempfile::tempdir().unwrap();
    let block = data.path().join("block.hosts");
    std::fs::write(&block, "0.0.0.0 evil.test\n").unwrap();
    std::fs::write(
        data.path().join("config.toml"),
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n[control]\nlisten = \"127.0.0.1:0\"\n[blocklist]\nsources = [{:?}]\n\
             default_lists = false\n",
            block.display().to_string()
        ),
    )
    .unwrap();
    let (code, out) = client(&data, &["check", "evil.test"]);
    assert_eq!((code, out.trim()), (Some(5), "blocked: evil.test by list \"block.hosts\" (rule evil.test)"));
    let mut cmd = Command::new(BIN);
    cmd.arg("run").arg("--data-dir").arg(data.path()).env_remove("RUST_LOG");
    let mut run = Running::start(&mut cmd);
    run.wait_for("control API on");
    assert_eq!(connect_status(run.addr, "www.evil.test:443"), 403);
    run.signal("-TERM");
    assert_eq!(run.wait_exit().code(), Some(0));
}

/// `guardnest check X | head -1`: a one-shot command whose reader has gone ends as any Unix
/// tool does (killed by SIGPIPE), never with a panic on the closed pipe.
#[cfg(unix)]
#[test]
fn a_one_shot_command_whose_reader_has_gone_ends_quietly() {
    use std::os::unix::process::ExitStatusExt as _;
    let data = tempfile::tempdir().unwrap();
    let block = data.path().join("block.hosts");
    std::fs::write(&block, "0.0.0.0 evil.test\n").unwrap();
    // The pipe's reading end is closed before the command starts: its first write fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = guardnest_cmd(&data, &["check", "www.evil.test"])
        .arg("--blocklist")
        .arg(&block)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?} {stderr}", out.status);
}
