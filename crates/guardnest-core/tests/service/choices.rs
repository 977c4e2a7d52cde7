//! The service is the one brain: what the user switches (protection, the pause and its end,
//! the port), what they allow and undo, and the counters a window shows, whoever changes
//! them, kept across restarts and announced to every watcher.

use std::sync::Arc;
use std::time::{Duration, Instant};

use guardnest_core::config::{BlocklistConfig, Config, SourceSpec};
use guardnest_core::service::{ErrorKind, InputReason, Protection};
use guardnest_core::sysproxy::SystemProxy;
use guardnest_core::ProxyService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A config for an instance in `dir`: a local list blocking `evil.test`, free ports, no
/// system proxy backend.
fn config(dir: &std::path::Path) -> Config {
    let list = dir.join("block.txt");
    if !list.exists() {
        std::fs::write(&list, "evil.test\n").unwrap();
    }
    let mut config = Config::default();
    config.proxy.listen = "127.0.0.1:0".parse().unwrap();
    config.proxy.shutdown_timeout = Duration::from_millis(300);
    config.control.listen = "127.0.0.1:0".into();
    config.system_proxy.backend = guardnest_core::sysproxy::BackendKind::None;
    config.blocklist = BlocklistConfig {
        sources: vec![SourceSpec::Location(list.display().to_string())],
        default_lists: false,
        ..BlocklistConfig::default()
    };
    config
}

/// An instance started as the app starts one (as the user left it) or as `guardnest run`.
async fn start(dir: &std::path::Path, config: Config, as_left: bool) -> Arc<ProxyService> {
    let started = ProxyService::builder(config, dir)
        .system_proxy(SystemProxy::new(None, dir))
        .login_repair(None)
        .as_left(as_left)
        .start_up()
        .await
        .unwrap();
    started.service
}

async fn stop(service: Arc<ProxyService>) {
    service.shut_down(Duration::from_millis(100)).await.unwrap();
}

/// Waits until `ok` holds for the status, within [`STEP`].
async fn status_until(service: &ProxyService, what: &str, ok: impl Fn(&guardnest_core::service::Status) -> bool) {
    let deadline = Instant::now() + STEP;
    loop {
        let st = service.status().await;
        if ok(&st) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {:?}", st.protection);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn switching_on_during_a_pause_blocks_again() {
    let env = service(false);
    let s = &env.service;
    s.enable().await.unwrap();
    let proxy = s.status().await.listen.unwrap();
    s.pause(15).await.unwrap();
    assert!(matches!(s.status().await.protection, Protection::Paused { .. }));
    // Switched on while paused (the window's amber switch, the tray, `guardnest enable`).
    let on = s.enable().await.unwrap();
    assert!(on.changed && on.message.starts_with("resumed"), "{on:?}");
    assert!(matches!(s.status().await.protection, Protection::Protected { .. }));
    assert_eq!(connect(proxy, "evil.test:443").await.unwrap().1, 403);
    // Paused, switched off, switched on: blocking, not paused.
    s.pause(15).await.unwrap();
    s.disable().await.unwrap();
    s.enable().await.unwrap();
    let st = s.status().await;
    assert!(matches!(st.protection, Protection::Protected { .. }), "{:?}", st.protection);
    assert_eq!(st.paused_until, None);
    let proxy = st.listen.unwrap();
    assert_eq!(connect(proxy, "evil.test:443").await.unwrap().1, 403, "a listed name passed after switching on");
}

#[tokio::test]
async fn allowing_a_name_can_be_undone() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), config(dir.path()), true).await;
    let proxy = s.status().await.listen.unwrap();
    assert_eq!(connect(proxy, "www.evil.test:443").await.unwrap().1, 403);
    let recent = s.stats().recent_names;
    assert!(!recent[0].allowed, "not allowed yet");
    s.allow_domain("https://www.evil.test/some/path").await.unwrap();
    assert_eq!(s.allowed(), ["www.evil.test"]);
    assert_eq!(s.status().await.allowed, ["www.evil.test"]);
    let answer = s.check("www.evil.test").unwrap();
    assert!(answer.exempt && answer.by_you, "{answer:?}");
    assert_ne!(connect(proxy, "www.evil.test:443").await.unwrap().1, 403);
    // The recent row of the name says it is allowed now, whatever blocks came since.
    assert_eq!(connect(proxy, "evil.test:443").await.unwrap().1, 403);
    let rows = s.stats().recent_names;
    let row = rows.iter().find(|r| r.host == "www.evil.test").unwrap();
    assert!(row.allowed, "{rows:?}");
    assert!(!rows.iter().find(|r| r.host == "evil.test").unwrap().allowed);
    // Undo: blocked again, at once and after a restart.
    let undone = s.unallow_domain("www.evil.test").await.unwrap();
    assert!(undone.changed, "{undone:?}");
    assert!(s.allowed().is_empty());
    assert_eq!(connect(proxy, "www.evil.test:443").await.unwrap().1, 403);
    assert!(!s.unallow_domain("www.evil.test").await.unwrap().changed);
    // The list row tells the window which list holds the user's names.
    let st = s.status().await;
    let mine = st.lists.iter().find(|l| l.own_allowlist).expect("the user's allowlist");
    assert!(!mine.removable);
    stop(s).await;
    let s = start(dir.path(), config(dir.path()), true).await;
    assert!(s.check("www.evil.test").unwrap().blocked);
    stop(s).await;
}

/// A blocked row allowed through a parent the user allowed names that parent, so that
/// its Undo (and `guardnest disallow`'s advice) takes the right name off the allowlist.
#[tokio::test]
async fn a_name_allowed_through_its_parent_is_undone_by_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), config(dir.path()), true).await;
    let proxy = s.status().await.listen.unwrap();
    assert_eq!(connect(proxy, "www.evil.test:443").await.unwrap().1, 403);
    let blocked = |st: &guardnest_core::service::Status| match &st.protection {
        Protection::Protected { names, .. } => (*names, st.names_blocked),
        other => panic!("{other:?}"),
    };
    assert_eq!(blocked(&s.status().await), (1, 1));
    s.allow_domain("evil.test").await.unwrap();
    // The allowed name is no longer counted as blocked (nor is the allowlist's entry).
    assert_eq!(blocked(&s.status().await), (0, 0));
    let rows = s.stats().recent_names;
    let row = rows.iter().find(|r| r.host == "www.evil.test").unwrap();
    assert!(row.allowed, "{rows:?}");
    assert_eq!(row.allowed_by.as_deref(), Some("evil.test"), "{rows:?}");
    let answer = s.check("www.evil.test").unwrap();
    assert!(answer.by_you && answer.rule.as_deref() == Some("evil.test"), "{answer:?}");
    // Undoing the subdomain itself is refused (it stays allowed), saying which name to take off.
    let not = s.unallow_domain("www.evil.test").await.unwrap_err();
    assert_eq!(not.report().reason, Some(InputReason::AllowedByParent), "{not:?}");
    assert_eq!(not.report().input.as_deref(), Some("www.evil.test"), "{not:?}");
    assert!(not.to_string().contains("because you allowed evil.test"), "{not:?}");
    // The row's Undo: the parent comes off, and the subdomain is blocked again.
    assert!(s.unallow_domain(row.allowed_by.as_deref().unwrap()).await.unwrap().changed);
    assert_eq!(connect(proxy, "www.evil.test:443").await.unwrap().1, 403);
    let rows = s.stats().recent_names;
    let row = rows.iter().find(|r| r.host == "www.evil.test").unwrap();
    assert!(!row.allowed && row.allowed_by.is_none(), "{rows:?}");
    stop(s).await;
}

/// `guardnest disable` sent to the app's instance is its user's choice: the app's next
/// start leaves protection off; `guardnest run` (not "as left") still protects.
#[tokio::test]
async fn disable_through_the_control_api_is_remembered_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), config(dir.path()), true).await;
    let control = s.control_addr().unwrap();
    let info = guardnest_core::control::RuntimeInfo::load(&dir.path().join("control.json")).unwrap();
    let (code, body) = post(control, "/v1/disable", &info.token).await;
    assert_eq!(code, 200, "{body}");
    stop(s).await;
    let settings = guardnest_core::service::user::UserSettings::load(dir.path());
    assert!(settings.protection_off, "{settings:?}");

    let s = start(dir.path(), config(dir.path()), true).await;
    assert!(!s.status().await.running, "the app came back on against the user's choice");
    stop(s).await;
    let s = start(dir.path(), config(dir.path()), false).await;
    assert!(s.status().await.running, "guardnest run protects");
    // Enabling through the API is remembered too.
    let control = s.control_addr().unwrap();
    let info = guardnest_core::control::RuntimeInfo::load(&dir.path().join("control.json")).unwrap();
    assert_eq!(post(control, "/v1/enable", &info.token).await.0, 200);
    stop(s).await;
    assert!(!guardnest_core::service::user::UserSettings::load(dir.path()).protection_off);
}

/// A port the user chose is the app's next start's too.
#[tokio::test]
async fn the_chosen_port_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), config(dir.path()), true).await;
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    s.listen_on_port(free).await.unwrap();
    stop(s).await;
    let s = start(dir.path(), config(dir.path()), true).await;
    assert_eq!(s.status().await.listen.map(|a| a.port()), Some(free));
    stop(s).await;
}

/// A pause ends on the minute it shows, and its end is announced when it comes, so a
/// window stops saying "paused" then; a restart within it stays paused.
#[tokio::test]
async fn a_pause_ends_when_it_says_and_its_end_is_announced() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), config(dir.path()), true).await;
    s.pause(15).await.unwrap();
    let until = s.status().await.paused_until.unwrap();
    assert_eq!(until % 60, 0, "a pause 'until 12:35' ends at 12:35:00");
    stop(s).await;
    let s = start(dir.path(), config(dir.path()), true).await;
    assert_eq!(s.status().await.paused_until, Some(until), "a restart keeps the pause");
    s.resume().await;

    let mut changes = s.changes();
    s.pause_for(Duration::from_secs(2)).await.unwrap();
    let until = s.status().await.paused_until.unwrap();
    changes.borrow_and_update();
    // The next change is the end (nothing else happens meanwhile).
    within("the pause's end", changes.changed()).await.unwrap();
    let ended = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(ended >= until as f64 && ended < until as f64 + 1.0, "announced at {ended}, the pause ended at {until}");
    assert!(matches!(s.status().await.protection, Protection::Protected { .. }));
    stop(s).await;
}

#[tokio::test]
async fn every_change_is_announced_whoever_makes_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), config(dir.path()), true).await;
    let mut changes = s.changes();
    let mut saw = |what: &str| {
        assert!(changes.has_changed().unwrap(), "{what} was not announced");
        changes.borrow_and_update();
    };
    s.disable().await.unwrap();
    saw("disable");
    s.enable().await.unwrap();
    saw("enable");
    s.pause(5).await.unwrap();
    saw("pause");
    s.resume().await;
    saw("resume");
    s.allow_domain("a.test").await.unwrap();
    saw("allow");
    s.unallow_domain("a.test").await.unwrap();
    saw("unallow");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(s.listen_on_port(taken.local_addr().unwrap().port()).await.is_err());
    saw("a failed move to a taken port");
    stop(s).await;
}

#[tokio::test]
async fn blocked_today_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), config(dir.path()), true).await;
    let proxy = s.status().await.listen.unwrap();
    for _ in 0..2 {
        assert_eq!(connect(proxy, "evil.test:443").await.unwrap().1, 403);
    }
    assert_eq!(s.stats().blocked_today, 2);
    stop(s).await;
    let s = start(dir.path(), config(dir.path()), true).await;
    assert_eq!(s.stats().blocked_today, 2, "the restart lost today's count");
    let proxy = s.status().await.listen.unwrap();
    assert_eq!(connect(proxy, "evil.test:443").await.unwrap().1, 403);
    assert_eq!(s.stats().blocked_today, 3);
    // Kept while running too (a kill -9 keeps what was written).
    let deadline = Instant::now() + STEP;
    while guardnest_core::service::user::load_day_count(dir.path()).map(|c| c.count) != Some(3) {
        assert!(Instant::now() < deadline, "today's count was not written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(s).await;
}

/// "Connections" are the user's: the proxy's own health checks are not counted.
#[tokio::test]
async fn connections_do_not_count_the_health_checks() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.health.interval = Duration::from_millis(20);
    let s = start(dir.path(), c, true).await;
    status_until(&s, "five health checks", |st| st.health_checks >= 5).await;
    assert_eq!(s.stats().connections_total, 0, "health checks were counted as connections");
    let proxy = s.status().await.listen.unwrap();
    assert_eq!(connect(proxy, "evil.test:443").await.unwrap().1, 403);
    status_until(&s, "five more health checks", |st| st.health_checks >= 10).await;
    assert_eq!(s.stats().connections_total, 1);
    stop(s).await;
}

/// A list whose URL answers 404 is refused, with why, and not kept; a missing file is said
/// plainly; `~/` is the home folder.
#[tokio::test]
async fn a_list_that_cannot_be_read_or_downloaded_is_refused_and_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), config(dir.path()), true).await;
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/blocklist.txt", server.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut c, _)) = server.accept().await {
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf).await;
            let _ = c.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        }
    });
    let e = s.add_list(&url).await.unwrap_err().report();
    assert_eq!(e.kind, ErrorKind::Lists, "{e:?}");
    let problem = e.problem.expect("the list's problem");
    assert_eq!(problem.kind, guardnest_core::blocklist::ProblemKind::Refused);
    assert!(problem.summary.ends_with("answered 404 Not Found"), "{problem:?}");
    assert!(s.user_lists().is_empty(), "a broken list was kept");
    assert!(s.status().await.lists.iter().all(|l| l.location != url));

    let missing = dir.path().join("nope.txt");
    let e = s.add_list(&missing.display().to_string()).await.unwrap_err().report();
    let problem = e.problem.expect("the list's problem");
    assert_eq!(problem.summary, format!("there is no file {}", missing.display()));
    assert!(!problem.summary.contains("os error"));

    let e = s.add_list("blocks.txt").await.unwrap_err().report();
    assert_eq!(
        (e.kind, e.reason, e.input.as_deref()),
        (ErrorKind::Input, Some(InputReason::NotAListLocation), Some("blocks.txt"))
    );
    // A web page saved by mistake: no names in it, so not a list (as a download is not).
    let page = dir.path().join("page.html");
    std::fs::write(&page, "<!doctype html>\n<html><head><title>Lists</title></head>\n<body>hello</body></html>\n")
        .unwrap();
    let e = s.add_list(&page.display().to_string()).await.unwrap_err().report();
    let problem = e.problem.expect("the page's problem");
    assert_eq!(problem.kind, guardnest_core::blocklist::ProblemKind::NoNames, "{problem:?}");
    assert!(problem.summary.starts_with(&format!("{} is not a list: no names in it", page.display())), "{problem:?}");
    assert!(s.user_lists().is_empty(), "a page was kept as a list");
    let mine = dir.path().join("mine.txt");
    std::fs::write(&mine, "tracker.test\n").unwrap();
    let mut changes = s.changes();
    let before = *changes.borrow_and_update();
    let added = s.add_list(&mine.display().to_string()).await.unwrap();
    assert!(added.message.ends_with(": 1 name"), "{added:?}");
    // A window that redrew at the list's arrival redraws again once it is the user's (its
    // Remove shows at once, not at the next unrelated change).
    assert!(*changes.borrow_and_update() >= before + 2, "no change announced after the list became removable");
    let st = s.status().await;
    assert!(st.lists.iter().find(|l| l.location == mine.display().to_string()).unwrap().removable);
    assert!(st.lists.iter().find(|l| l.name == "block.txt").is_some_and(|l| !l.removable), "a configured list");
    stop(s).await;
}

/// What a person pastes is checked by its host; what is not a host is said with fields.
#[tokio::test]
async fn check_takes_urls_and_host_port_and_shows_idn_in_unicode() {
    let env = service(false);
    let s = &env.service;
    for input in ["https://evil.test/some/path?x=1", "http://www.evil.test:8081", "evil.test:443", " EVIL.TEST. "] {
        let answer = s.check(input).unwrap();
        assert!(answer.blocked, "{input}: {answer:?}");
    }
    let idn = s.check("bücher.example").unwrap();
    assert_eq!((idn.name.as_str(), idn.unicode.as_deref()), ("xn--bcher-kva.example", Some("bücher.example")));
    for bad in ["javascript:alert(1)", "<img src=x onerror=alert(1)>", ""] {
        let e = s.check(bad).unwrap_err().report();
        assert_eq!((e.kind, e.reason), (ErrorKind::Input, Some(InputReason::NotAHost)), "{bad:?}");
        assert_eq!(e.input.as_deref(), Some(bad.trim()));
    }
}

/// `guardnest check` with lists named by flags answers as `guardnest run` with those flags
/// on that data dir would: the user's allowlist still applies.
#[tokio::test]
async fn check_by_flags_answers_as_an_instance_would() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), config(dir.path()), false).await;
    s.allow_domain("www.evil.test").await.unwrap();
    stop(s).await;
    let lists = guardnest_core::service::lifecycle::load_lists(&config(dir.path()), dir.path()).await.unwrap();
    let host = guardnest_core::domain::Host::parse("www.evil.test").unwrap();
    assert!(!lists.check(&host).is_blocked(), "the user's allowlist was not consulted");
}

/// A taken port comes with the address; a second instance names who holds the data dir.
#[tokio::test]
async fn errors_carry_the_fields_a_window_needs() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), config(dir.path()), true).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = s.listen_on_port(addr.port()).await.unwrap_err().report();
    assert_eq!((e.kind, e.addr), (ErrorKind::PortInUse, Some(addr)), "{e:?}");
    let second = ProxyService::builder(config(dir.path()), dir.path()).login_repair(None).start_up().await;
    let e = second.err().expect("a second instance").report();
    assert_eq!(e.kind, ErrorKind::AlreadyRunning);
    let holder = e.holder.expect("who holds it");
    assert_eq!(holder.pid, std::process::id());
    stop(s).await;
}

/// `POST path` with the bearer token; (status, body).
async fn post(addr: std::net::SocketAddr, path: &str, token: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = String::new();
    within("the control API's answer", s.read_to_string(&mut out)).await.unwrap();
    let code = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string())
}
