//! What counts as blocked: list forms, spellings, subdomains, allowlists.

use guardnest_core::domain::Host;
use guardnest_core::Verdict;

use crate::support::*;

const HOSTS: &str = "# hosts list\n127.0.0.1 localhost\n0.0.0.0 evil.test\n127.0.0.1  tracker.test # inline\n";
const PLAIN: &str = "# plain list\nmalware.test\nBÜCHER.example\nbad.example.com.\n";
const ALLOW: &str = "good.evil.test\n";

fn blocked_by(lists: &Lists, name: &str) -> Option<String> {
    match lists.blocklists.policy().check(&Host::parse(name).unwrap()) {
        Verdict::Blocked(m) => Some(format!("{}:{}", m.list, m.rule)),
        _ => None,
    }
}

#[test]
fn list_forms_and_spellings() {
    let l = lists(&[("hosts.txt", HOSTS), ("plain.txt", PLAIN)], &[("allow.txt", ALLOW)]);
    assert_eq!(blocked_by(&l, "evil.test").as_deref(), Some("hosts.txt:evil.test"));
    assert_eq!(blocked_by(&l, "EVIL.Test").as_deref(), Some("hosts.txt:evil.test"));
    assert_eq!(blocked_by(&l, "evil.test.").as_deref(), Some("hosts.txt:evil.test"));
    assert_eq!(blocked_by(&l, "a.b.evil.test").as_deref(), Some("hosts.txt:evil.test"));
    assert_eq!(blocked_by(&l, "tracker.test").as_deref(), Some("hosts.txt:tracker.test"));
    assert_eq!(blocked_by(&l, "malware.test").as_deref(), Some("plain.txt:malware.test"));
    assert_eq!(blocked_by(&l, "x.bad.example.com").as_deref(), Some("plain.txt:bad.example.com"));
    // IDN: the list's Unicode spelling and the request's punycode are one name.
    assert_eq!(blocked_by(&l, "xn--bcher-kva.example").as_deref(), Some("plain.txt:xn--bcher-kva.example"));
    assert_eq!(blocked_by(&l, "bücher.example").as_deref(), Some("plain.txt:xn--bcher-kva.example"));
    // Lookalikes and parents are not blocked; localhost from the hosts header is not.
    for name in ["notevil.test", "evil.test.example", "test", "example.com", "localhost", "malware.test0"] {
        assert_eq!(blocked_by(&l, name), None, "{name}");
    }
    // Allowlisted names and their subdomains win.
    assert_eq!(blocked_by(&l, "good.evil.test"), None);
    assert_eq!(blocked_by(&l, "www.good.evil.test"), None);
    assert!(blocked_by(&l, "bad.evil.test").is_some());
}

#[tokio::test]
async fn blocked_connect_is_403_with_a_reason() {
    let l = lists(&[("hosts.txt", HOSTS), ("plain.txt", PLAIN)], &[("allow.txt", ALLOW)]);
    let proxy = TestProxy::plain(l.blocklists.policy()).await;
    for target in [
        "evil.test:443",
        "EVIL.TEST:443",
        "evil.test.:443",
        "a.evil.test:8443",
        "malware.test:443",
        "user:pw@evil.test:443",
    ] {
        let (mut s, status, head) = connect_via(proxy.addr, target).await;
        assert_eq!(status, 403, "{target}: {head}");
        let body = read_body(&mut s, &head).await;
        assert_eq!(body.lines().count(), 1, "{body}");
        assert!(body.contains("blocked by list"), "{body}");
    }
    // A lookalike is not blocked: it gets as far as name resolution (502), not 403.
    let (_, status, _) = connect_via(proxy.addr, "notevil.test:443").await;
    assert_ne!(status, 403);
    let (_, status, _) = connect_via(proxy.addr, "good.evil.test:443").await;
    assert_ne!(status, 403);
    assert_eq!(proxy.stats.snapshot().blocked_total, 6);
    proxy.stop().await;
}

#[tokio::test]
async fn blocked_plain_http_gets_an_html_page() {
    let l = lists(&[("hosts.txt", HOSTS)], &[]);
    let proxy = TestProxy::plain(l.blocklists.policy()).await;
    let resp = raw(proxy.addr, b"GET http://www.evil.test/page HTTP/1.1\r\nHost: www.evil.test\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(resp.contains("text/html"), "{resp}");
    assert!(resp.contains("<code>www.evil.test</code>") && resp.contains("hosts.txt"), "{resp}");
    // Userinfo does not hide the host.
    let resp = raw(proxy.addr, b"GET http://me@evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
}

/// The URL decides, never a disagreeing Host header.
#[tokio::test]
async fn host_header_cannot_steer_policy() {
    let l = lists(&[("hosts.txt", HOSTS)], &[]);
    let origin = origin().await;
    let proxy = TestProxy::plain(l.blocklists.policy()).await;
    let req = format!("GET http://evil.test/ HTTP/1.1\r\nHost: {}\r\n\r\n", origin.addr);
    assert!(raw(proxy.addr, req.as_bytes()).await.starts_with("HTTP/1.1 403"));
    let req = format!("GET http://{}/x HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n", origin.addr);
    let resp = raw(proxy.addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(&format!("host: {}\n", origin.addr)), "{resp}");
}

#[tokio::test]
async fn edited_list_file_is_picked_up() {
    let l = lists(&[("plain.txt", "one.test\n")], &[]);
    let policy = l.blocklists.policy();
    assert!(policy.check(&Host::parse("one.test").unwrap()).is_blocked());
    assert!(!policy.check(&Host::parse("two.test").unwrap()).is_blocked());
    // A different length guarantees the change is seen even within one mtime tick.
    std::fs::write(l.dir.path().join("plain.txt"), "two.test\nthree.test\n").unwrap();
    assert_eq!(l.blocklists.update(&()).await.updated, ["plain.txt"]);
    assert!(policy.check(&Host::parse("two.test").unwrap()).is_blocked());
    assert!(!policy.check(&Host::parse("one.test").unwrap()).is_blocked());
    // A vanished file keeps its last version and reports why.
    std::fs::remove_file(l.dir.path().join("plain.txt")).unwrap();
    let report = l.blocklists.update(&()).await;
    assert_eq!(report.failed.len(), 1);
    assert!(report.updated.is_empty());
    assert!(policy.check(&Host::parse("two.test").unwrap()).is_blocked());
    assert!(l.blocklists.status()[0].last_error.is_some());
}
