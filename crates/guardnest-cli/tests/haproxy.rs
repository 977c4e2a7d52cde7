//! Gateway mode behind a real HAProxy (TCP mode, `send-proxy-v2`, health checks), all on
//! loopback: two `guardnest run` instances, clients allowed and denied by their real
//! address, and one instance killed with HAProxy moving new connections to the other.
//! Needs `haproxy`; reported as skipped without it (a failure in CI).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use guardnest_testkit::{needs_tools, passed, Outcome};
use support::{echo_server, read_head, status_of, Running, BIN, WAIT};

guardnest_testkit::main!(two_instances_behind_haproxy);

fn instance(dir: &std::path::Path, name: &str) -> Running {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nproxy_protocol = true\n\
             [access]\nallow = [\"127.0.0.2/32\"]\ntrusted_proxies = [\"127.0.0.1\"]\nallow_destinations = [\"127.0.0.0/8\"]\n\
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

/// Waits until HAProxy's own health checks mark `server` DOWN (read from its stats socket:
/// a condition, not a guess at how long checks take on a busy machine).
#[cfg(unix)]
fn server_down(socket: &std::path::Path, server: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut stats = String::new();
        if let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) {
            s.set_read_timeout(Some(WAIT)).unwrap();
            if s.write_all(b"show stat\n").is_ok() {
                let _ = s.read_to_string(&mut stats);
            }
        }
        let row = format!("guardnest,{server},");
        if stats.lines().any(|l| l.starts_with(&row) && l.split(',').nth(17).is_some_and(|st| st.starts_with("DOWN"))) {
            return;
        }
        assert!(Instant::now() < deadline, "HAProxy never marked {server} down: {stats}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(not(unix))]
fn server_down(_: &std::path::Path, _: &str) {}

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

fn two_instances_behind_haproxy() -> Outcome {
    if cfg!(windows) {
        return guardnest_testkit::platform_limit(
            "Wine 8: a Windows test cannot run HAProxy, a Linux program (CreateProcess on an ELF file starts it \
             without a process handle to wait for or stop); gateway mode itself runs in tests/gateway.rs",
        );
    }
    if let Some(skipped) = needs_tools(&["haproxy"], "apt-get install haproxy") {
        return skipped;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("block.txt"), "evil.test\n").unwrap();
    let mut a = instance(dir.path(), "a");
    let mut b = instance(dir.path(), "b");
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 1000\n  stats socket {} level user\n\
             defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 20s\n  timeout server 20s\n  retries 3\n  option redispatch\n\
             frontend proxy\n  bind {front}\n  default_backend guardnest\n\
             backend guardnest\n  balance roundrobin\n\
             \x20 server a {} send-proxy-v2 check check-send-proxy inter 200ms fall 1 rise 1\n\
             \x20 server b {} send-proxy-v2 check check-send-proxy inter 200ms fall 1 rise 1\n",
            dir.path().join("haproxy.sock").display(),
            a.addr,
            b.addr
        ),
    )
    .unwrap();
    let child = Command::new("haproxy")
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
    server_down(&dir.path().join("haproxy.sock"), "a");
    for i in 0..20 {
        assert_eq!(connect_from("127.0.0.2", front, &echo), (200, true), "connection {i} after the switch");
    }
    assert_eq!(connect_from("127.0.0.3", front, &echo).0, 403);
    b.signal("-TERM");
    assert_eq!(b.wait_exit().code(), Some(0));
    passed()
}
