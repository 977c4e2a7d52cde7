//! Gateway mode behind a real HAProxy (TCP mode, `send-proxy-v2`, health checks), all on
//! loopback: two `guardnest run` instances, clients allowed and denied by their real
//! address, and one instance killed with HAProxy moving new connections to the other.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{echo_server, read_head, status_of, Running, BIN, WAIT};

/// HAProxy must be there when CI says so; elsewhere the test says why it did nothing.
fn haproxy() -> Option<&'static str> {
    let found = Command::new("haproxy").arg("-v").output().is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("GUARDNEST_REQUIRE_HAPROXY").is_some() {
        panic!("haproxy is not installed (apt-get install haproxy)");
    }
    found.then_some("haproxy")
}

fn instance(dir: &std::path::Path, name: &str) -> Running {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nproxy_protocol = true\n\
             [access]\nallow = [\"127.0.0.2/32\"]\ntrusted_proxies = [\"127.0.0.1\"]\n\
             [blocklist]\nsources = [\"{}\"]\ndefault_lists = false\n",
            dir.join("block.txt").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("run").arg("--config").arg(&config).arg("--data-dir").arg(&data).args(["--control", "none"]);
    cmd.env("RUST_LOG", "info");
    Running::start(&mut cmd)
}

struct HaProxy(Child);

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// CONNECT from a chosen loopback source address; returns the status and, on 200, whether
/// a round trip through the tunnel came back.
fn connect_from(source: &str, proxy: SocketAddr, target: &str) -> (u16, bool) {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.bind(&format!("{source}:0").parse::<SocketAddr>().unwrap().into()).unwrap();
    if sock.connect_timeout(&proxy.into(), WAIT).is_err() {
        return (0, false);
    }
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let status = status_of(&read_head(&mut s));
    if status != 200 {
        return (status, false);
    }
    s.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    (status, s.read_exact(&mut buf).is_ok() && &buf == b"ping")
}

#[test]
fn two_instances_behind_haproxy() {
    let Some(haproxy) = haproxy() else {
        eprintln!("skipped: haproxy not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("block.txt"), "evil.test\n").unwrap();
    let mut a = instance(dir.path(), "a");
    let mut b = instance(dir.path(), "b");
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 1000\n\
             defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 20s\n  timeout server 20s\n  retries 3\n  option redispatch\n\
             frontend proxy\n  bind {front}\n  default_backend guardnest\n\
             backend guardnest\n  balance roundrobin\n\
             \x20 server a {} send-proxy-v2 check check-send-proxy inter 200ms fall 1 rise 1\n\
             \x20 server b {} send-proxy-v2 check check-send-proxy inter 200ms fall 1 rise 1\n",
            a.addr, b.addr
        ),
    )
    .unwrap();
    let child = Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let _haproxy = HaProxy(child);
    let echo = echo_server().to_string();

    // Up: the allowed client gets through (retrying only while HAProxy starts).
    let deadline = Instant::now() + WAIT;
    while connect_from("127.0.0.2", front, &echo) != (200, true) {
        assert!(Instant::now() < deadline, "HAProxy never passed a tunnel");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Allowed and denied by the real client address that PROXY v2 carries.
    for _ in 0..4 {
        assert_eq!(connect_from("127.0.0.2", front, &echo), (200, true));
        assert_eq!(connect_from("127.0.0.3", front, &echo).0, 403);
        assert_eq!(connect_from("127.0.0.2", front, "evil.test:443").0, 403);
    }
    // Both instances served, and both saw the real client, not HAProxy's address.
    for run in [&mut a, &mut b] {
        let line = run.wait_for("blocked");
        assert!(line.contains("client=127.0.0.2:"), "{line}");
    }

    // One instance dies: HAProxy's checks take it out; every new client still gets through.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    for i in 0..20 {
        assert_eq!(connect_from("127.0.0.2", front, &echo), (200, true), "connection {i} after the switch");
    }
    assert_eq!(connect_from("127.0.0.3", front, &echo).0, 403);
    b.signal("-TERM");
    assert_eq!(b.wait_exit().code(), Some(0));
}

/// Reachable from the network with no [access] section: refused before anything is bound.
#[test]
fn refuses_to_be_an_open_proxy() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("run")
        .arg("--data-dir")
        .arg(data.path())
        .args(["--no-default-lists", "--control", "none", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reachable from other machines") && err.contains("[access] allow"), "{err}");
}

#[test]
fn hash_password_prints_an_argon2_hash() {
    let mut child =
        Command::new(BIN).arg("hash-password").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    assert!(guardnest_core::access::verify("s3cret", phc.trim()));
}
