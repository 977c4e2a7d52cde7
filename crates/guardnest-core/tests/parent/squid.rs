//! Debian's Squid as a parent proxy: started by the test with a generated configuration on
//! 127.0.0.1:PORT (`-N`, in the foreground), its own log and state in a temporary directory,
//! optionally with Basic authentication (`basic_ncsa_auth` over an `apr1` password file),
//! and stopped when dropped.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SQUID: &str = "/usr/sbin/squid";
pub const NCSA: &str = "/usr/lib/squid/basic_ncsa_auth";
pub const INSTALL: &str = "apt-get install squid";

pub struct Squid {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Child,
}

/// Whether Squid is here; if not, why (for the skip).
pub fn missing() -> Option<String> {
    for path in [SQUID, NCSA] {
        if !Path::new(path).is_file() {
            return Some(format!("needs {path} ({INSTALL})"));
        }
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Squid {
    /// Starts Squid; `auth` is a Basic user and password it then requires.
    pub fn start(auth: Option<(&str, &str)>) -> Squid {
        let dir = tempfile::tempdir().unwrap();
        // Squid drops to its own user (proxy) to write its logs.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let d = dir.path().display().to_string();
        let port = free_port();
        let mut conf = format!(
            "http_port 127.0.0.1:{port}\n\
             pid_filename {d}/squid.pid\n\
             cache_log {d}/cache.log\n\
             access_log stdio:{d}/access.log squid\n\
             cache deny all\n\
             coredump_dir {d}\n\
             dns_nameservers 127.0.0.1\n\
             hosts_file {d}/hosts\n\
             netdb_filename none\n\
             logfile_rotate 0\n\
             shutdown_lifetime 0 seconds\n\
             connect_timeout 5 seconds\n\
             acl local_clients src 127.0.0.0/8\n"
        );
        std::fs::write(dir.path().join("hosts"), "127.0.0.1 origin.test\n").unwrap();
        match auth {
            Some((user, password)) => {
                let hash = Command::new("openssl").args(["passwd", "-apr1", password]).output().unwrap();
                assert!(hash.status.success(), "openssl passwd");
                let line = format!("{user}:{}", String::from_utf8_lossy(&hash.stdout).trim());
                std::fs::write(dir.path().join("passwd"), line + "\n").unwrap();
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(dir.path().join("passwd"), std::fs::Permissions::from_mode(0o644))
                        .unwrap();
                }
                conf += &format!(
                    "auth_param basic program {NCSA} {d}/passwd\n\
                     auth_param basic realm guardnest-test\n\
                     acl authed proxy_auth REQUIRED\n\
                     http_access deny !local_clients\n\
                     http_access allow authed\n\
                     http_access deny all\n"
                );
            }
            None => conf += "http_access allow local_clients\nhttp_access deny all\n",
        }
        let conf_path = dir.path().join("squid.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(SQUID)
            .args(["-N", "-d", "1", "-f"])
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut squid = Squid { addr, dir, child };
        squid.wait_ready();
        squid
    }

    /// Waits (at most 30 s) until Squid accepts connections; panics with its log if it died.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("squid exited ({status}) before listening: {err}\n{}", self.log("cache.log"));
            }
            assert!(Instant::now() < deadline, "squid did not listen within 30 s:\n{}", self.log("cache.log"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Waits (at most 10 s) until the access log has a line containing every one of `parts`
    /// (Squid writes a line when a request ends); returns that line.
    pub fn wait_for_access(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log("access.log");
            if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.to_string();
            }
            assert!(Instant::now() < deadline, "no access.log line with {parts:?}; the log:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
