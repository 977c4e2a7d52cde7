//! Gateway mode's `self` (this host's own addresses, refused to clients) against what the
//! host really delivers to itself, in network namespaces the test makes: the real
//! `guardnest` binary, its clients and its upstreams all live in them, so no test traffic
//! leaves them. Each test prints what it sent and got (`--nocapture`).
//!
//! * A prefix routed to the host (`ip -6 route add local 2001:db8:77::/64 dev lo`, the
//!   "AnyIP" set-up of floating and anycast addresses) is this host, though no interface
//!   carries its addresses: refused by address, by absolute-form GET, and by a name that
//!   resolves there (an /etc/hosts of the test's own, in a mount namespace of its own).
//! * `net.ipv4.ip_nonlocal_bind=1` (keepalived and HAProxy hosts) does not make every other
//!   host "self": a peer namespace behind a veth pair is served.
//! * A local route added while the gateway runs is refused from then on.
//!
//! Linux only (network namespaces), as root (the Linux CI runs as root): elsewhere reported
//! as skipped with the reason. A CONNECT is answered by the first-head stage and a plain
//! request by hyper's engine, so both paths are tested here.

mod support;

#[cfg(not(target_os = "linux"))]
use guardnest_testkit::platform_limit;
#[cfg(target_os = "linux")]
use guardnest_testkit::skip;
use guardnest_testkit::trial;
#[cfg(not(target_os = "linux"))]
use guardnest_testkit::Outcome;

fn main() {
    guardnest_testkit::run(vec![
        trial("addresses_routed_to_this_host_are_its_own", addresses_routed_to_this_host_are_its_own),
        trial("nonlocal_bind_does_not_make_other_hosts_its_own", nonlocal_bind_does_not_make_other_hosts_its_own),
        trial("local_routes_added_while_running_are_refused", local_routes_added_while_running_are_refused),
    ])
}

#[cfg(not(target_os = "linux"))]
fn addresses_routed_to_this_host_are_its_own() -> Outcome {
    platform_limit("network namespaces are Linux's; the OS layer's own tests read this host's table here")
}

#[cfg(not(target_os = "linux"))]
fn nonlocal_bind_does_not_make_other_hosts_its_own() -> Outcome {
    platform_limit("network namespaces (and ip_nonlocal_bind) are Linux's")
}

#[cfg(not(target_os = "linux"))]
fn local_routes_added_while_running_are_refused() -> Outcome {
    platform_limit("network namespaces are Linux's")
}

#[cfg(target_os = "linux")]
use linux::*;

#[cfg(target_os = "linux")]
mod linux {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::path::Path;
    use std::process::Command;
    use std::sync::mpsc;

    use guardnest_testkit::{needs_tools, passed, Outcome};

    use super::skip;
    use super::support::{read_head, status_of, Running, BIN, WAIT};

    /// Runs `test` on a thread of its own that has left for a new network namespace (only
    /// `lo`, brought up): the sockets it makes and the processes it starts are in there, and
    /// the namespace goes when the last of them does. The test process itself, and every
    /// other test, stay where they were. Skipped when namespaces cannot be made.
    pub fn in_new_netns(test: impl FnOnce() -> Outcome + Send) -> Outcome {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    if let Some(skipped) = needs_tools(
                        &["ip", "unshare", "sysctl", "mount"],
                        "apt-get install iproute2 util-linux procps mount",
                    ) {
                        return skipped;
                    }
                    if let Err(why) = leave_for_new_netns() {
                        return skip(format!("cannot make a network namespace ({why}): run as root"));
                    }
                    ip(&["link", "set", "lo", "up"]);
                    test()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    fn leave_for_new_netns() -> std::io::Result<()> {
        // SAFETY: unshare changes only this thread's namespaces (it has no pointers).
        match unsafe { libc::unshare(libc::CLONE_NEWNET) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    }

    /// Runs a command in the calling thread's namespace; panics on failure, with its stderr.
    pub fn run(program: &str, args: &[&str]) {
        let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(out.status.success(), "{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }

    pub fn ip(args: &[&str]) {
        run("ip", args);
    }

    /// A small HTTP service on `bind`: every request head is answered 200 with a body naming
    /// the service, on the same connection (so a tunnel to it can be used for a GET too).
    pub fn service(bind: &str, name: &'static str) -> SocketAddr {
        let listener = TcpListener::bind(bind).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in listener.incoming().map_while(Result::ok) {
                std::thread::spawn(move || answer_forever(s, name));
            }
        });
        addr
    }

    fn answer_forever(mut s: TcpStream, name: &str) {
        let _ = s.set_read_timeout(Some(WAIT));
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                seen.drain(..end + 4);
                let body = format!("secret of {name}");
                let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                if s.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
            match s.read(&mut buf) {
                Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                _ => return,
            }
        }
    }

    /// Starts `guardnest run` as a gateway on `[::]:0` whose clients are on loopback, with
    /// `hosts` (if any) as its /etc/hosts (bind-mounted in a mount namespace of its own).
    pub fn gateway(dir: &Path, hosts: Option<&str>) -> Running {
        let config = dir.join("guardnest.toml");
        std::fs::write(
            &config,
            "[proxy]\nlisten = \"[::]:0\"\nconnect_timeout = \"3s\"\n\
             [access]\nallow = [\"127.0.0.0/8\", \"::1/128\"]\n",
        )
        .unwrap();
        let data = dir.join("data");
        let mut cmd = match hosts {
            Some(text) => {
                let file = dir.join("hosts");
                std::fs::write(&file, text).unwrap();
                let mut cmd = Command::new("unshare");
                cmd.args(["--mount", "--", "sh", "-c", "mount --bind \"$0\" /etc/hosts && exec \"$@\""]);
                cmd.arg(&file).arg(BIN);
                cmd
            }
            None => Command::new(BIN),
        };
        cmd.arg("run").arg("--config").arg(&config).arg("--data-dir").arg(&data);
        cmd.args(["--no-default-lists", "--control", "none"]);
        cmd.env("RUST_LOG", "info,guardnest_core=debug");
        Running::start(&mut cmd)
    }

    /// The loopback address clients use to reach a gateway listening on `[::]`.
    pub fn via_loopback(gateway: &Running) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], gateway.addr.port()))
    }

    /// Sends `request` to the proxy; returns the status line and, after a 200 to a CONNECT,
    /// what a GET through the tunnel brought back (the service's secret), else the body.
    pub fn send(proxy: SocketAddr, request: &str) -> (u16, String) {
        let mut s = TcpStream::connect_timeout(&proxy, WAIT).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let head = read_head(&mut s);
        let status = status_of(&head);
        if status == 200 && request.starts_with("CONNECT") {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let inner = read_head(&mut s);
            return (
                status,
                format!("through the tunnel: {} {}", inner.lines().next().unwrap_or(""), body(&mut s, &inner)),
            );
        }
        (status, body(&mut s, &head))
    }

    fn body(s: &mut TcpStream, head: &str) -> String {
        let length = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length.min(4096)];
        let _ = s.read_exact(&mut body);
        String::from_utf8_lossy(&body).trim().to_string()
    }

    pub fn connect(target: &str) -> String {
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")
    }

    pub fn get(target: &str) -> String {
        format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n")
    }

    /// Sends each request and checks its status; prints what was sent and got.
    pub fn expect(proxy: SocketAddr, cases: &[(String, u16)]) {
        let mut wrong = Vec::new();
        for (request, want) in cases {
            let (status, said) = send(proxy, request);
            let first = request.lines().next().unwrap_or("");
            eprintln!("sent {first:?}: got {status} ({said}); want {want}");
            if status != *want {
                wrong.push(format!("{first:?}: got {status} ({said}), want {want}"));
            }
        }
        assert!(wrong.is_empty(), "{} of {} answers wrong:\n  {}", wrong.len(), cases.len(), wrong.join("\n  "));
    }

    /// F-A: a locally routed IPv6 prefix, and its IPv4 counterpart, are this host.
    pub fn addresses_routed_to_this_host_are_its_own() -> Outcome {
        in_new_netns(|| {
            ip(&["-6", "route", "add", "local", "2001:db8:77::/64", "dev", "lo"]);
            ip(&["route", "add", "local", "198.51.100.0/24", "dev", "lo"]);
            // A local route in a table of its own, chosen by a rule for its prefix.
            ip(&["-6", "route", "add", "local", "2001:db8:66::/64", "dev", "lo", "table", "100"]);
            ip(&["-6", "rule", "add", "to", "2001:db8:66::/64", "lookup", "100", "pref", "100"]);
            let svc = service("[::]:0", "a service of this host on [::]").port();
            let dir = tempfile::tempdir().unwrap();
            let gw = gateway(dir.path(), Some("127.0.0.1 localhost\n2001:db8:77::5 anycast.test\n"));
            let proxy = via_loopback(&gw);
            let own = gw.addr.port();
            expect(
                proxy,
                &[
                    (connect(&format!("[2001:db8:77::5]:{svc}")), 403),
                    (get(&format!("[2001:db8:77::5]:{svc}")), 403),
                    (connect(&format!("anycast.test:{svc}")), 403),
                    (get(&format!("anycast.test:{svc}")), 403),
                    (connect(&format!("[2001:db8:66::9]:{svc}")), 403),
                    (connect(&format!("198.51.100.5:{svc}")), 403),
                    (get(&format!("198.51.100.5:{svc}")), 403),
                    (connect(&format!("[::ffff:198.51.100.5]:{svc}")), 403),
                    // The gateway's own listener, reached through the routed prefix.
                    (connect(&format!("[2001:db8:77::5]:{own}")), 403),
                ],
            );
            passed()
        })
    }

    /// F-D: with `ip_nonlocal_bind` on, another host is still served and this one refused.
    pub fn nonlocal_bind_does_not_make_other_hosts_its_own() -> Outcome {
        in_new_netns(|| {
            let peer = Peer::start();
            ip(&["addr", "add", "198.18.0.1/24", "dev", "va"]);
            ip(&["addr", "add", "2001:db8:1::1/64", "dev", "va", "nodad"]);
            ip(&["link", "set", "va", "up"]);
            ip(&["-6", "route", "add", "local", "2001:db8:77::/64", "dev", "lo"]);
            run("sysctl", &["-q", "-w", "net.ipv4.ip_nonlocal_bind=1", "net.ipv6.ip_nonlocal_bind=1"]);
            let remote = peer.serve();
            let here = service("[::]:0", "a service of this host on [::]").port();
            let dir = tempfile::tempdir().unwrap();
            let gw = gateway(dir.path(), None);
            let proxy = via_loopback(&gw);
            expect(
                proxy,
                &[
                    (connect(&format!("198.18.0.2:{remote}")), 200),
                    (get(&format!("198.18.0.2:{remote}")), 200),
                    (connect(&format!("[2001:db8:1::2]:{remote}")), 200),
                    (get(&format!("[2001:db8:1::2]:{remote}")), 200),
                    (connect(&format!("198.18.0.1:{here}")), 403),
                    (connect(&format!("[2001:db8:1::1]:{here}")), 403),
                    (connect(&format!("[2001:db8:77::5]:{here}")), 403),
                ],
            );
            passed()
        })
    }

    /// Routes and addresses added while the gateway runs are refused once the kernel has
    /// told it: it logs each change it reads (`own addresses: ... +NET`), and the test
    /// waits for those lines, not for time.
    pub fn local_routes_added_while_running_are_refused() -> Outcome {
        in_new_netns(|| {
            let svc = service("[::]:0", "a service of this host on [::]").port();
            let dir = tempfile::tempdir().unwrap();
            let mut gw = gateway(dir.path(), None);
            let proxy = via_loopback(&gw);
            ip(&["-6", "route", "add", "local", "2001:db8:99::/64", "dev", "lo"]);
            ip(&["route", "add", "local", "203.0.113.0/24", "dev", "lo"]);
            // An address on an interface, not a route: the other kind of change.
            ip(&["addr", "add", "192.0.2.50/32", "dev", "lo"]);
            for added in ["+2001:db8:99::/64", "+203.0.113.0/24", "+192.0.2.50/32"] {
                let line = gw.wait_for(added);
                eprintln!("the gateway saw the change: {line}");
            }
            expect(
                proxy,
                &[
                    (connect(&format!("[2001:db8:99::1]:{svc}")), 403),
                    (get(&format!("[2001:db8:99::1]:{svc}")), 403),
                    (connect(&format!("203.0.113.7:{svc}")), 403),
                    (connect(&format!("192.0.2.50:{svc}")), 403),
                    (get(&format!("192.0.2.50:{svc}")), 403),
                ],
            );
            passed()
        })
    }

    /// Another host: a network namespace of its own, made by a thread of this test, joined
    /// to the test's namespace by a veth pair (`va` here, `vb` there, 198.18.0.0/24 and
    /// 2001:db8:1::/64), with an HTTP service of its own.
    pub struct Peer {
        go: mpsc::Sender<()>,
        port: mpsc::Receiver<u16>,
    }

    impl Peer {
        /// Makes the peer's namespace and the veth pair between the two.
        pub fn start() -> Peer {
            let (tid_tx, tid_rx) = mpsc::channel();
            let (go, go_rx) = mpsc::channel();
            let (port_tx, port) = mpsc::channel();
            std::thread::spawn(move || {
                leave_for_new_netns().expect("a second network namespace");
                // SAFETY: no arguments; returns this thread's id.
                tid_tx.send(unsafe { libc::gettid() }).unwrap();
                if go_rx.recv().is_err() {
                    return;
                }
                ip(&["link", "set", "lo", "up"]);
                ip(&["addr", "add", "198.18.0.2/24", "dev", "vb"]);
                ip(&["addr", "add", "2001:db8:1::2/64", "dev", "vb", "nodad"]);
                ip(&["link", "set", "vb", "up"]);
                let _ = port_tx.send(service("[::]:0", "another host").port());
            });
            let tid: i32 = tid_rx.recv_timeout(WAIT).expect("the peer's namespace");
            ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &tid.to_string()]);
            Peer { go, port }
        }

        /// Configures the peer's side and starts its service; returns the service's port.
        pub fn serve(self) -> u16 {
            self.go.send(()).unwrap();
            self.port.recv_timeout(WAIT).expect("the peer's service")
        }
    }
}
