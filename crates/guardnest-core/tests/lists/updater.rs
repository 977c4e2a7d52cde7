//! The updater against a real HTTP server: conditional GETs, failures of every kind, the
//! cache, and the schedule.

use std::time::{Duration, SystemTime};

use guardnest_core::blocklist::Verdict;
use guardnest_core::config::{BlocklistConfig, SourceSpec};
use guardnest_core::domain::Host;
use guardnest_core::Blocklists;
use tokio_util::sync::CancellationToken;

use crate::server::{ListServer, Reply};

fn config(urls: &[String]) -> BlocklistConfig {
    BlocklistConfig {
        sources: urls.iter().cloned().map(SourceSpec::Location).collect(),
        default_lists: false,
        max_download_bytes: 1024 * 1024,
        download_timeout: Duration::from_millis(800),
        update_interval: Duration::from_secs(3600),
        ..BlocklistConfig::default()
    }
}

fn blocked(lists: &Blocklists, name: &str) -> bool {
    lists.check(&Host::parse(name).unwrap()).is_blocked()
}

#[tokio::test]
async fn conditional_get_then_change() {
    let server = ListServer::start().await;
    server.list("/l.txt", "# list\nevil.test\n", "\"v1\"");
    let dir = tempfile::tempdir().unwrap();
    let lists = Blocklists::load(&config(&[server.url("/l.txt")]), Some(dir.path())).unwrap();
    assert!(!lists.status()[0].loaded);
    assert!(!blocked(&lists, "evil.test"), "nothing before the first download");

    let r = lists.update(&()).await;
    assert_eq!(r.updated.len(), 1, "{r:?}");
    assert!(blocked(&lists, "www.evil.test"));
    let st = &lists.status()[0];
    assert!(st.loaded && !st.from_cache && st.last_success.is_some() && st.last_error.is_none());
    assert_eq!(st.entries, 1);

    // Unchanged: a conditional GET answered 304, no rebuild.
    let r = lists.update(&()).await;
    assert_eq!((r.updated.len(), r.unchanged.len()), (0, 1), "{r:?}");
    assert_eq!(server.requests("/l.txt"), [None, Some("\"v1\"".to_string())]);

    // Changed: the new version replaces the old one whole.
    server.list("/l.txt", "other.test\nthird.test\n", "\"v2\"");
    let r = lists.update(&()).await;
    assert_eq!(r.updated.len(), 1);
    assert_eq!(r.names, 2);
    assert!(blocked(&lists, "other.test") && !blocked(&lists, "evil.test"));
}

#[tokio::test]
async fn every_kind_of_failure_keeps_the_previous_version() {
    let server = ListServer::start().await;
    server.list("/l.txt", "0.0.0.0 evil.test\n", "\"v1\"");
    let dir = tempfile::tempdir().unwrap();
    let lists = Blocklists::load(&config(&[server.url("/l.txt")]), Some(dir.path())).unwrap();
    assert_eq!(lists.update(&()).await.updated.len(), 1);

    let html = "<!doctype html>\n<html><head><title>502 Bad Gateway</title></head>\n<body>\n<h1>Bad Gateway</h1>\n</body></html>\n";
    let cases: Vec<(Reply, &str)> = vec![
        (Reply::Status(500), "500"),
        (Reply::Status(404), "404"),
        (Reply::Slow(Duration::from_secs(3)), "longer than"),
        (Reply::Huge { bytes: 2 << 20, chunked: true }, "limit"),
        (Reply::Huge { bytes: 2 << 20, chunked: false }, "limit"),
        (Reply::List { body: html.as_bytes().to_vec(), etag: "\"html\"".into(), gzip: false }, "error page"),
        (Reply::List { body: vec![], etag: "\"empty\"".into(), gzip: false }, "no names"),
        (Reply::Reset, ""),
        (Reply::Redirect("/l.txt".into()), "redirect"),
    ];
    for (reply, why) in cases {
        server.set("/l.txt", reply);
        let r = lists.update(&()).await;
        assert_eq!(r.failed.len(), 1, "{r:?}");
        assert!(r.failed[0].1.contains(why), "expected {why:?} in {:?}", r.failed[0].1);
        assert!(blocked(&lists, "evil.test"), "previous version lost after {why}");
        let st = &lists.status()[0];
        assert!(st.loaded && st.last_error.is_some());
        assert_eq!(st.entries, 1);
    }
    // And it recovers.
    server.list("/l.txt", "0.0.0.0 evil.test\n0.0.0.0 new.test\n", "\"v2\"");
    assert_eq!(lists.update(&()).await.updated.len(), 1);
    assert!(blocked(&lists, "new.test"));
    assert!(lists.status()[0].last_error.is_none());
}

#[tokio::test]
async fn one_bad_source_never_empties_the_others() {
    let server = ListServer::start().await;
    server.list("/good.txt", "good-list.test\n", "\"g\"");
    server.set("/bad.txt", Reply::Status(500));
    let urls = [server.url("/bad.txt"), server.url("/good.txt")];
    let lists = Blocklists::load(&config(&urls), None).unwrap();
    let r = lists.update(&()).await;
    assert_eq!((r.updated.len(), r.failed.len()), (1, 1), "{r:?}");
    assert!(blocked(&lists, "good-list.test"));
    let st = lists.status();
    assert!(!st[0].loaded && st[0].last_error.as_deref().unwrap_or("").contains("500"));
}

#[tokio::test]
async fn gzip_redirects_and_formats() {
    let server = ListServer::start().await;
    let hosts = b"127.0.0.1 localhost\n0.0.0.0 zipped.test\n".to_vec();
    server.set("/enc", Reply::List { body: hosts.clone(), etag: "\"z\"".into(), gzip: true });
    // A .gz file served as plain bytes (no Content-Encoding).
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, b"||raw-gz.test^\n@@||ok.raw-gz.test^\n").unwrap();
    server.set("/list.gz", Reply::List { body: enc.finish().unwrap(), etag: "\"g\"".into(), gzip: false });
    server.set("/moved", Reply::Redirect("/json".into()));
    server.list("/json", r#"{"domains": ["json.test"], "allow": ["ok.json.test"]}"#, "\"j\"");
    let urls = [server.url("/enc"), server.url("/list.gz"), server.url("/moved")];
    let lists = Blocklists::load(&config(&urls), None).unwrap();
    let r = lists.update(&()).await;
    assert_eq!(r.updated.len(), 3, "{r:?}");
    assert!(blocked(&lists, "zipped.test") && !blocked(&lists, "localhost"));
    assert!(blocked(&lists, "a.raw-gz.test"));
    assert!(matches!(lists.check(&Host::parse("ok.raw-gz.test").unwrap()), Verdict::Exempt(_)));
    assert!(blocked(&lists, "json.test") && !blocked(&lists, "ok.json.test"));
    let formats: Vec<String> = lists.status().iter().map(|s| s.format.unwrap().to_string()).collect();
    assert_eq!(formats, ["hosts", "adblock", "json"]);
}

#[tokio::test]
async fn restart_offline_serves_the_cache_at_once() {
    let server = ListServer::start().await;
    server.list("/l.txt", "cached.test\n", "\"c1\"");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&[server.url("/l.txt")]);
    let first = Blocklists::load(&cfg, Some(dir.path())).unwrap();
    assert_eq!(first.update(&()).await.updated.len(), 1);
    drop(first);
    server.shut_down();

    let again = Blocklists::load(&cfg, Some(dir.path())).unwrap();
    assert!(blocked(&again, "cached.test"), "cache not served before any network");
    let st = &again.status()[0];
    assert!(st.loaded && st.from_cache && st.last_success.is_some());
    // Offline: the update fails, the cached version stays.
    let r = again.update(&()).await;
    assert_eq!(r.failed.len(), 1);
    assert!(blocked(&again, "cached.test"));
}

#[tokio::test]
async fn a_corrupt_cache_is_skipped() {
    let server = ListServer::start().await;
    server.list("/l.txt", "cached.test\n", "\"c1\"");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&[server.url("/l.txt")]);
    Blocklists::load(&cfg, Some(dir.path())).unwrap().update(&()).await;
    let body = std::fs::read_dir(dir.path().join("lists"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "list"))
        .unwrap();
    std::fs::write(&body, "cached.te").unwrap(); // truncated
    let lists = Blocklists::load(&cfg, Some(dir.path())).unwrap();
    assert!(!lists.status()[0].loaded, "a corrupt cache must not be served");
    // Without a trusted body no validators are sent, so the next download is a full one.
    assert_eq!(lists.update(&()).await.updated.len(), 1);
    assert_eq!(server.requests("/l.txt").last().unwrap(), &None);
    assert!(blocked(&lists, "cached.test"));
}

#[tokio::test]
async fn retries_back_off() {
    let server = ListServer::start().await;
    server.set("/l.txt", Reply::Status(503));
    let lists = Blocklists::load(&config(&[server.url("/l.txt")]), None).unwrap();
    let mut delays = Vec::new();
    for _ in 0..3 {
        lists.update(&()).await;
        let next = lists.status()[0].next_check.duration_since(SystemTime::now()).unwrap_or_default();
        delays.push(next.as_secs_f64().round() as u64);
    }
    assert_eq!(delays, [5, 10, 20]);
}

#[tokio::test]
async fn updater_follows_the_schedule_and_stops() {
    let server = ListServer::start().await;
    server.list("/l.txt", "first.test\n", "\"1\"");
    let mut cfg = config(&[server.url("/l.txt")]);
    cfg.update_interval = Duration::from_millis(150);
    let lists = Blocklists::load(&cfg, None).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(lists.clone().run_updater(stop.clone()));
    let wait_for = |name: &'static str| {
        let lists = lists.clone();
        async move {
            for _ in 0..100 {
                if blocked(&lists, name) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            panic!("{name} never blocked");
        }
    };
    wait_for("first.test").await;
    server.list("/l.txt", "second.test\n", "\"2\"");
    wait_for("second.test").await;
    // Between changes, checks are conditional: wait (bounded) for one that sends the ETag.
    let revalidated = || server.requests("/l.txt").iter().any(|v| v.as_deref() == Some("\"2\""));
    for _ in 0..300 {
        if revalidated() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(revalidated(), "no conditional check after the change");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

/// Offline at first start: one clear warning that the built-in lists are not loaded yet
/// (not one per retry), and one line when they arrive.
#[tokio::test]
async fn missing_default_lists_are_announced_once() {
    use parking_lot::Mutex;
    use std::io::Write;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);
    impl Write for Log {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = ListServer::start().await;
    server.set("/default.txt", Reply::Status(503));
    let url = server.url("/default.txt");
    let mut cfg = config(&[]);
    cfg.default_lists = true;
    let lists = Blocklists::load_with_defaults(&cfg, None, &[("builtin-test", &url)]).unwrap();
    for _ in 0..3 {
        lists.update(&()).await;
    }
    server.list("/default.txt", "builtin.test\n", "\"d\"");
    lists.update(&()).await;
    assert!(blocked(&lists, "builtin.test"));
    let text = String::from_utf8(log.0.lock().clone()).unwrap();
    assert_eq!(text.matches("built-in default lists are not loaded yet").count(), 1, "{text}");
    assert_eq!(text.matches("built-in default lists are loaded now").count(), 1, "{text}");
    assert!(lists.status()[0].builtin);
}
