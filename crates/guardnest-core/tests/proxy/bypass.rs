//! Bypass attempts: every spelling of a blocked target is answered 403 or 400 and never
//! reaches the dial stage (no tunnel, no forward, no resolver lookup).

use std::net::SocketAddr;

use crate::support::*;

const LIST: &str = "evil.test\nxn--bcher-kva.example\n127.0.0.1\n";

/// Requests that must be refused; `{e}` is an echo server on 127.0.0.1 (itself listed).
fn attempts(e: SocketAddr) -> Vec<String> {
    let p = e.port();
    let mut v: Vec<String> = [
        // case, trailing dots, subdomains, userinfo
        "CONNECT EVIL.TEST:443 HTTP/1.1\r\n\r\n",
        "CONNECT Evil.Test.:443 HTTP/1.1\r\n\r\n",
        "CONNECT evil.test..:443 HTTP/1.1\r\n\r\n",
        "CONNECT www.EVIL.test:443 HTTP/1.1\r\n\r\n",
        "CONNECT user:pw@evil.test:443 HTTP/1.1\r\n\r\n",
        "CONNECT good.test@evil.test:443 HTTP/1.1\r\n\r\n",
        // percent-encoding and backslashes in the authority
        "CONNECT ev%69l.test:443 HTTP/1.1\r\n\r\n",
        "CONNECT evil%2Etest:443 HTTP/1.1\r\n\r\n",
        "CONNECT evil\\.test:443 HTTP/1.1\r\n\r\n",
        "CONNECT good.test\\@evil.test:443 HTTP/1.1\r\n\r\n",
        "GET http://ev%69l.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n",
        "GET http://evil.test\\@good.test/ HTTP/1.1\r\n\r\n",
        // IDN spellings of a listed punycode name
        "CONNECT xn--bcher-kva.example:443 HTTP/1.1\r\n\r\n",
        "CONNECT XN--BCHER-KVA.EXAMPLE:443 HTTP/1.1\r\n\r\n",
        "CONNECT b\u{fc}cher.example:443 HTTP/1.1\r\n\r\n",
        "CONNECT B\u{dc}CHER.example:443 HTTP/1.1\r\n\r\n",
        "GET http://b\u{fc}cher.example/ HTTP/1.1\r\n\r\n",
        // Host header disagreeing with the absolute URL: the URL decides
        "GET http://evil.test/ HTTP/1.1\r\nHost: good.test\r\n\r\n",
        "GET http://evil.test/ HTTP/1.1\r\nHost: good.test\r\nHost: other.test\r\n\r\n",
        // odd whitespace in the request line
        "CONNECT  evil.test:443 HTTP/1.1\r\n\r\n",
        "CONNECT\tevil.test:443 HTTP/1.1\r\n\r\n",
        "CONNECT evil.test:443  HTTP/1.1\r\n\r\n",
        "CONNECT evil.test :443 HTTP/1.1\r\n\r\n",
        " CONNECT evil.test:443 HTTP/1.1\r\n\r\n",
        "GET  http://evil.test/ HTTP/1.1\r\n\r\n",
        "CONNECT evil.test:443 HTTP/1.1\n\n",
        // HTTP/1.0 and absolute forms
        "CONNECT evil.test:443 HTTP/1.0\r\n\r\n",
        "GET http://evil.test/ HTTP/1.0\r\n\r\n",
        "GET HTTP://EVIL.TEST/ HTTP/1.1\r\n\r\n",
        "CONNECT http://evil.test:443/ HTTP/1.1\r\n\r\n",
        "CONNECT evil.test HTTP/1.1\r\n\r\n",
        // explicit and odd default ports
        "GET http://evil.test:80/ HTTP/1.1\r\n\r\n",
        "GET http://evil.test:0080/ HTTP/1.1\r\n\r\n",
        "CONNECT evil.test:0443 HTTP/1.1\r\n\r\n",
        "CONNECT evil.test:+443 HTTP/1.1\r\n\r\n",
        // numeric spellings the resolver would read as the listed 127.0.0.1
        "CONNECT 127.1:{p} HTTP/1.1\r\n\r\n",
        "CONNECT 2130706433:{p} HTTP/1.1\r\n\r\n",
        "CONNECT 0x7f000001:{p} HTTP/1.1\r\n\r\n",
        "CONNECT 0177.0.0.1:{p} HTTP/1.1\r\n\r\n",
        // IPv4-mapped IPv6 literals of the listed address
        "CONNECT [::ffff:127.0.0.1]:{p} HTTP/1.1\r\n\r\n",
        "CONNECT [::FFFF:7f00:1]:{p} HTTP/1.1\r\n\r\n",
        "CONNECT 127.0.0.1:{p} HTTP/1.1\r\n\r\n",
        "GET http://[::ffff:127.0.0.1]:{p}/ HTTP/1.1\r\n\r\n",
    ]
    .iter()
    .map(|s| s.replace("{p}", &p.to_string()))
    .collect();
    // Blocked CONNECT followed by pipelined bytes: nothing is tunnelled.
    v.push("CONNECT evil.test:443 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n".into());
    v
}

#[tokio::test]
async fn every_spelling_of_a_blocked_target_is_refused_before_dialing() {
    let l = lists(&[("plain.txt", LIST)], &[]);
    let echo = echo_server().await;
    let proxy = TestProxy::plain(l.blocklists.policy()).await;
    for attempt in attempts(echo) {
        let resp = raw(proxy.addr, attempt.as_bytes()).await;
        let status = status_of(&resp);
        assert!(status == 403 || status == 400, "{attempt:?} got {status}: {resp}");
        assert!(resp.lines().count() >= 1 && !resp.contains("Connection Established"), "{attempt:?}: {resp}");
    }
    let s = proxy.stats.snapshot();
    assert_eq!((s.tunnels_total, s.requests_total, s.dial_failures), (0, 0, 0), "something was dialed: {s:?}");
    // Still serving normally afterwards.
    let (_, status, _) = connect_via(proxy.addr, "evil.test:443").await;
    assert_eq!(status, 403);
    proxy.stop().await;
}

/// The documented limit: an IP literal is checked against the IP entries of the lists, not
/// against the names that might resolve to it. GuardNest cannot know which name a client
/// meant, and resolving every listed name to learn its addresses is neither possible (millions
/// of names, answers that change) nor right (shared hosting: one address, many sites).
#[tokio::test]
async fn ip_literals_are_checked_against_listed_addresses_only() {
    let echo = echo_server().await;
    let l = lists(&[("plain.txt", "evil.test\n")], &[]);
    let proxy = TestProxy::plain(l.blocklists.policy()).await;
    // Imagine evil.test resolving to 127.0.0.1: the literal is not refused.
    let (_, status, _) = connect_via(proxy.addr, &echo.to_string()).await;
    assert_eq!(status, 200);
    proxy.stop().await;
    // Listed as an address, the literal (in any spelling) is refused.
    let l = lists(&[("plain.txt", "127.0.0.1\n")], &[]);
    let proxy = TestProxy::plain(l.blocklists.policy()).await;
    for target in [echo.to_string(), format!("[::ffff:127.0.0.1]:{}", echo.port())] {
        let (_, status, _) = connect_via(proxy.addr, &target).await;
        assert_eq!(status, 403, "{target}");
    }
    proxy.stop().await;
}
