//! One GuardNest per data dir, and `check` / `lists` answering for what actually blocks:
//! the running instance's lists when one runs, else the lists it would load (the
//! configuration's plus what the user added in the app). The real binary throughout.

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{connect_status, Running, BIN};

fn run(data: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("run").arg("--data-dir").arg(data).args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"]);
    cmd.args(extra).env_remove("RUST_LOG");
    cmd
}

fn guardnest(data: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).args(args).arg("--data-dir").arg(data).env_remove("RUST_LOG").output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_second_instance_on_one_data_dir_refuses_and_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut first = Running::start(&mut run(data, &["--no-default-lists"]));
    first.wait_for("control API on");
    let control = std::fs::read_to_string(data.join("control.json")).unwrap();

    // The second refuses at once (exit 4), naming who holds the data dir.
    let out = run(data, &["--no-default-lists"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let holder = format!("`guardnest run` (PID {}), listening on {}", first.child.id(), first.addr);
    assert!(err.contains("another GuardNest uses the data directory") && err.contains(&holder), "{err}");
    // It touched nothing the first one owns: the control file is the first one's.
    assert_eq!(std::fs::read_to_string(data.join("control.json")).unwrap(), control);
    let (code, out) = guardnest(data, &["status"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("running on {}", first.addr)), "{out}");

    first.signal("-TERM");
    assert_eq!(first.wait_exit().code(), Some(0));
    for file in ["control.json", "instance.json"] {
        assert!(!data.join(file).exists(), "{file} left behind by a clean stop");
    }
    // The lock went with the process: the next one starts.
    let mut next = Running::start(&mut run(data, &["--no-default-lists"]));
    next.wait_for("control API on");
}

/// A link someone planted where the instance lock goes: `guardnest run` refuses to start,
/// naming it, and the file it points at is never created.
#[cfg(unix)]
#[test]
fn a_link_planted_as_the_instance_lock_stops_guardnest_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let victim = dir.path().join("victim");
    std::os::unix::fs::symlink(&victim, data.join("instance.lock")).unwrap();
    let mut child = run(&data, &["--no-default-lists"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its whole stderr, which ends when it exits; bounded, since it used to start and serve.
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let _ = tx.send(text);
    });
    let Ok(err) = rx.recv_timeout(support::WAIT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "guardnest run started on a data dir whose instance.lock is a planted link (victim created: {})",
            victim.exists()
        );
    };
    let status = child.wait().unwrap();
    assert_ne!(status.code(), Some(0), "{err}");
    let link = data.join("instance.lock");
    assert!(err.contains(&format!("{} is a symbolic link, not a regular file", link.display())), "{err}");
    assert!(!victim.exists(), "the link's target was created");
    assert!(!data.join("control.json").exists(), "it went on to serve the control API");
}

#[test]
fn a_killed_instance_does_not_block_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Running::start(&mut run(dir.path(), &["--no-default-lists"]));
    first.wait_for("control API on");
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // Its files are still there, but the OS released its lock.
    assert!(dir.path().join("instance.json").exists());
    let mut next = Running::start(&mut run(dir.path(), &["--no-default-lists"]));
    next.wait_for("control API on");
}

/// A program listening where a GuardNest that was killed recorded its control API, answering
/// every request with `{"changed":true,"message":"disabled"}`; what it was sent is kept.
struct Impostor {
    seen: std::sync::Arc<parking_lot::Mutex<Vec<u8>>>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Impostor {
    fn on(addr: &str) -> Impostor {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, c) = (seen.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match std::io::Read::read(&mut stream, &mut b) {
                        Ok(1) => head.push(b[0]),
                        _ => break,
                    }
                }
                s.lock().extend_from_slice(&head);
                let body = r#"{"changed":true,"message":"disabled"}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = std::io::Write::write_all(&mut stream, resp.as_bytes());
            }
        });
        Impostor { seen, connections }
    }
}

/// After a `kill -9`, another program takes the control API's port. The CLI finds the
/// recorded GuardNest gone (its PID and start time, and the data dir's lock) and says so,
/// without a word to the impostor; and where it cannot tell (a record naming a live
/// process), it never sends the token and does not believe an answer that cannot prove it
/// holds the token.
#[test]
fn the_cli_never_hands_its_token_to_a_program_on_a_dead_instances_port() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut first = Running::start(&mut run(data, &["--no-default-lists"]));
    first.wait_for("control API on");
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("control.json")).unwrap()).unwrap();
    let (addr, token) =
        (recorded["addr"].as_str().unwrap().to_string(), recorded["token"].as_str().unwrap().to_string());
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let impostor = Impostor::on(&addr);

    let (code, out) = guardnest(data, &["disable"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("has exited") && !out.contains("\ndisabled"), "{out}");
    assert_eq!(impostor.connections.load(std::sync::atomic::Ordering::SeqCst), 0, "the CLI talked to the impostor");

    // A record that names a live process (its start time right): the CLI asks, proving it
    // holds the token without sending it, and the impostor cannot prove it back.
    let mut live = Command::new(if cfg!(windows) { "cmd" } else { "sleep" })
        .args(if cfg!(windows) { &["/C", "pause"][..] } else { &["60"][..] })
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let owner = guardnest_core::sysproxy::ProcessId::of(live.id()).unwrap();
    let mut forged = recorded.clone();
    forged["pid"] = owner.pid.into();
    forged["started"] = owner.started.into();
    forged["boot"] = owner.boot.clone().into();
    std::fs::write(data.join("control.json"), serde_json::to_vec(&forged).unwrap()).unwrap();
    for command in ["disable", "status"] {
        let (code, out) = guardnest(data, &[command]);
        assert_eq!(code, Some(1), "{command}: {out}");
        assert!(out.contains("cannot prove it holds the token") && !out.contains("\ndisabled"), "{command}: {out}");
    }
    let _ = live.kill();
    let _ = live.wait();
    let seen = String::from_utf8_lossy(&impostor.seen.lock()).into_owned();
    assert!(seen.contains("GuardNest-Proof nonce="), "{seen}");
    assert!(!seen.contains(&token), "the impostor was sent the token: {seen}");
}

/// The app's user state: an allowlisted name, and a list the user added.
fn user_state(data: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(data.join("allowlist.txt"), "# mine\nok.evil.test\n").unwrap();
    let added = data.join("added.txt");
    std::fs::write(&added, "tracker.test\n").unwrap();
    std::fs::write(
        data.join("user-lists.json"),
        serde_json::json!([{ "location": added.display().to_string(), "allow": false }]).to_string(),
    )
    .unwrap();
    added
}

#[test]
fn check_and_lists_answer_for_what_blocks_with_and_without_an_instance() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    user_state(&data);
    let block = dir.path().join("block.hosts");
    std::fs::write(&block, "0.0.0.0 evil.test\n").unwrap();
    let config = dir.path().join("guardnest.toml");
    std::fs::write(
        &config,
        format!("[blocklist]\nsources = [{:?}]\ndefault_lists = false\n", block.display().to_string()),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();

    // No instance: the config's lists plus the user's allowlist and added list.
    let expectations = [
        ("www.evil.test", Some(5), "blocked: www.evil.test by list \"block.hosts\" (rule evil.test)"),
        ("a.ok.evil.test", Some(0), "allowed: a.ok.evil.test is exempt by list \"my allowlist\" (rule ok.evil.test)"),
        ("x.tracker.test", Some(5), "blocked: x.tracker.test by list \"added.txt\" (rule tracker.test)"),
        ("fine.test", Some(0), "allowed: fine.test (no rule matched)"),
    ];
    for (name, code, line) in expectations {
        let (got, out) = guardnest(&data, &["check", name, "--config", cfg]);
        assert_eq!((got, out.lines().next().unwrap_or("")), (code, line), "{out}");
    }
    // An instance runs with an extra --blocklist: `check` without list flags asks it.
    let extra = dir.path().join("extra.txt");
    std::fs::write(&extra, "only-in-the-instance.test\n").unwrap();
    let mut instance =
        Running::start(run(&data, &["--config", cfg]).arg("--blocklist").arg(&block).arg("--blocklist").arg(&extra));
    instance.wait_for("control API on");
    for (name, code, line) in [
        (
            "only-in-the-instance.test",
            Some(5),
            "blocked: only-in-the-instance.test by list \"extra.txt\" (rule only-in-the-instance.test)",
        ),
        ("a.ok.evil.test", Some(0), "allowed: a.ok.evil.test is exempt by list \"my allowlist\" (rule ok.evil.test)"),
        ("x.tracker.test", Some(5), "blocked: x.tracker.test by list \"added.txt\" (rule tracker.test)"),
    ] {
        let (got, out) = guardnest(&data, &["check", name]);
        assert_eq!((got, out.trim()), (code, line), "{out}");
        assert_eq!(connect_status(instance.addr, &format!("{name}:443")) == 403, code == Some(5), "{name}");
    }
    let (code, out) = guardnest(&data, &["check", "not a name"]);
    assert_eq!(code, Some(2), "{out}");
    // Lists named by flags are used as given, not the instance's.
    let (code, out) = guardnest(&data, &["check", "only-in-the-instance.test", "--blocklist", block.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    // `lists` shows the instance's lists.
    let (code, out) = guardnest(&data, &["lists"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("running GuardNest (pid {})", instance.child.id())), "{out}");
    for name in ["extra.txt", "my allowlist", "added.txt"] {
        assert!(out.contains(name), "{name} missing: {out}");
    }
    let (code, out) = guardnest(&data, &["lists", "update"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("0 failed"), "{out}");
    // Pause and resume, as the app's button does.
    let (code, out) = guardnest(&data, &["pause", "5"]);
    assert_eq!(code, Some(0), "{out}");
    // When it ends, on the local clock (Unix): "…, until 15:24; `guardnest resume` ends it sooner".
    if cfg!(unix) {
        let until =
            out.trim().strip_prefix("protection paused for 5 minutes, until ").unwrap_or_else(|| panic!("{out}"));
        let (hm, rest) = until.split_at(5);
        assert!(hm.as_bytes()[2] == b':' && hm.replace(':', "").bytes().all(|b| b.is_ascii_digit()), "{out}");
        assert_eq!(rest, "; `guardnest resume` ends it sooner", "{out}");
    } else {
        assert_eq!(out.trim(), "protection paused for 5 minutes");
    }
    assert_ne!(connect_status(instance.addr, "www.evil.test:443"), 403, "still blocking while paused");
    let (_, out) = guardnest(&data, &["status"]);
    // The pause ends on the next whole minute after 5 minutes (5:00 to 6:00 away), said in
    // whole minutes: 5, or 6 when the status is read before the half minute.
    assert!(out.contains("in 5 minutes\n") || out.contains("in 6 minutes\n"), "{out}");
    assert!(out.contains("\npaused: blocking again "), "{out}");
    if cfg!(unix) {
        assert!(out.contains("\npaused: blocking again at "), "the clock time: {out}");
    }
    // A value the instance rejects is a usage error (exit 2), in its own words.
    let (code, out) = guardnest(&data, &["pause", "0"]);
    assert_eq!((code, out.trim()), (Some(2), "guardnest: pause for 1 to 1440 minutes"));
    let (code, out) = guardnest(&data, &["resume"]);
    assert_eq!((code, out.trim()), (Some(0), "protection resumed"));
    assert_eq!(connect_status(instance.addr, "www.evil.test:443"), 403);
    // Off, a pause is refused in plain words (it would silently end blocking at the next on).
    let (code, out) = guardnest(&data, &["disable"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = guardnest(&data, &["pause", "5"]);
    assert_eq!(
        (code, out.trim()),
        (Some(2), "guardnest: protection is off: there is nothing to pause (turn it on with guardnest enable)")
    );
    let (code, out) = guardnest(&data, &["enable"]);
    assert_eq!(code, Some(0), "{out}");
    let (_, out) = guardnest(&data, &["status"]);
    assert!(!out.contains("paused"), "{out}");
}

#[test]
fn listen_addresses_are_explained_and_errors_said_once() {
    let dir = tempfile::tempdir().unwrap();
    for (listen, wanted) in [
        ("localhost:3200", "expected IP:PORT, e.g. 127.0.0.1:3200 for localhost"),
        ("127.0.0.1", "has no port: expected IP:PORT, e.g. 127.0.0.1:3000"),
    ] {
        let (code, out) = guardnest(dir.path(), &["run", "--listen", listen]);
        assert_eq!(code, Some(2), "{out}");
        assert!(out.contains(wanted), "{listen}: {out}");
    }
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[proxy]\nmax_connections = 0\n").unwrap();
    let (code, out) = guardnest(dir.path(), &["run", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(out.matches("invalid configuration").count(), 1, "{out}");
}

#[test]
fn an_offline_list_is_warned_about_once_then_retried_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let gone = format!("http://{}/list.txt", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap());
    let mut running = Running::start(
        run(dir.path(), &["--no-default-lists", "--blocklist", &gone]).env("RUST_LOG", "guardnest_core=debug"),
    );
    // The first retry comes 5 s after the first failure: it is logged at debug only.
    running.wait_for("list update failed again");
    let warnings = running.seen_matching("list update failed:");
    assert_eq!(warnings, 1, "warned more than once while offline");
    assert!(TcpStream::connect_timeout(&running.addr, Duration::from_secs(1)).is_ok(), "still serving");
    // `check` answers from the running instance and says which list it could not consult.
    let (code, out) = guardnest(dir.path(), &["check", "fine.test"]);
    assert_eq!(code, Some(0), "{out}");
    let note = out.lines().nth(1).unwrap_or("");
    assert!(note.starts_with("note: not downloaded yet, so not consulted: "), "{out}");
    drop(running);
    // Started again: a list that never downloaded is "not downloaded yet", not a corrupt cache.
    let mut again = Running::start(
        run(dir.path(), &["--no-default-lists", "--blocklist", &gone]).env("RUST_LOG", "guardnest_core=debug"),
    );
    again.wait_for("list update failed");
    assert_eq!(again.seen_matching("corrupt"), 0, "a list that never downloaded was called corrupt");
}
