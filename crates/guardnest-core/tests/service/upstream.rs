//! The service behind the user's own proxy (issue 26): the user's settings, read through the
//! system-proxy backend (and its snapshot while GuardNest is the system proxy), become the
//! parent; the enable says so in one line; the status shows the upstream in plain words and a
//! parent the health check cannot reach; disable restores the user's settings exactly.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guardnest_core::config::{Config, UpstreamConfig, UpstreamMode};
use guardnest_core::sysproxy::{gnome, Backend, Settings, SysProxyError, SystemProxy, Target, UserProxy, UNSET};
use guardnest_core::{Blocklists, ProxyService};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{connect, echo_once, within, FakeOs, STEP};

/// GNOME's keys, in memory.
struct GnomeLike(FakeOs);

const KEYS: [&str; 7] = [
    "org.gnome.system.proxy mode",
    "org.gnome.system.proxy ignore-hosts",
    "org.gnome.system.proxy autoconfig-url",
    "org.gnome.system.proxy.http host",
    "org.gnome.system.proxy.http port",
    "org.gnome.system.proxy.https host",
    "org.gnome.system.proxy.https port",
];

impl Backend for GnomeLike {
    fn name(&self) -> &'static str {
        "gnome"
    }
    fn target_settings(&self, t: &Target) -> Settings {
        let Target::Fixed(a) = t else { panic!("fixed only") };
        let mut s = Settings::new();
        s.insert(KEYS[0].into(), "'manual'".into());
        s.insert(KEYS[1].into(), "['localhost', '127.0.0.0/8', '::1']".into());
        for k in [KEYS[3], KEYS[5]] {
            s.insert(k.into(), format!("'{}'", a.ip()));
        }
        for k in [KEYS[4], KEYS[6]] {
            s.insert(k.into(), a.port().to_string());
        }
        s
    }
    fn read(&self, keys: &[String]) -> Result<Settings, SysProxyError> {
        let os = self.0 .0.lock();
        Ok(keys.iter().filter_map(|k| os.get(k).map(|v| (k.clone(), v.clone()))).collect())
    }
    fn write(&self, values: &Settings) -> Result<(), SysProxyError> {
        let mut os = self.0 .0.lock();
        for (k, v) in values {
            match v.as_str() {
                UNSET => os.remove(k),
                _ => os.insert(k.clone(), v.clone()),
            };
        }
        Ok(())
    }
    fn upstream_keys(&self) -> Vec<String> {
        KEYS.iter().map(ToString::to_string).collect()
    }
    fn user_proxy(&self, settings: &Settings) -> UserProxy {
        gnome::user_proxy(settings)
    }
}

/// A parent that answers any CONNECT with 200 and then echoes; records the heads it read.
async fn echoing_parent() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if !matches!(s.read(&mut byte).await, Ok(1)) {
                        return;
                    }
                    head.push(byte[0]);
                }
                seen.lock().push(String::from_utf8_lossy(&head).into_owned());
                let _ = s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, heads)
}

fn config(upstream: UpstreamConfig, system_proxy: bool) -> Config {
    let mut config = Config::default();
    config.proxy.listen = "127.0.0.1:0".parse().unwrap();
    config.proxy.shutdown_timeout = Duration::from_millis(500);
    config.health.interval = Duration::from_millis(50);
    config.system_proxy.enabled = system_proxy;
    config.blocklist.default_lists = false;
    config.upstream = upstream;
    config
}

#[tokio::test]
async fn the_users_own_proxy_is_the_parent_and_enable_says_so() {
    let (parent, heads) = echoing_parent().await;
    let os = FakeOs::default();
    os.set(KEYS[0], "'manual'");
    os.set(KEYS[1], "['localhost', '*.corp.example']");
    for k in [KEYS[3], KEYS[5]] {
        os.set(k, "'127.0.0.1'");
    }
    for k in [KEYS[4], KEYS[6]] {
        os.set(k, &parent.port().to_string());
    }
    let before = os.0.lock().clone();
    let dir = tempfile::tempdir().unwrap();
    let config = config(UpstreamConfig::default(), true);
    let lists = Blocklists::load(&config.blocklist, None).unwrap();
    let system = SystemProxy::new(Some(Box::new(GnomeLike(os.clone()))), dir.path());
    let service = ProxyService::new(config, lists, system);

    let change = within("enable", service.enable()).await.unwrap();
    let words = format!("proxy {parent} for HTTP and HTTPS, except 2 bypassed hosts (from your GNOME proxy settings)");
    assert!(
        change.message.contains(&format!("your own proxy stays in use through GuardNest: {words}")),
        "{}",
        change.message
    );
    assert_eq!(change.message.lines().count(), 1);
    let status = service.status().await;
    assert_eq!(status.upstream.summary, words);
    assert!(status.upstream.chained && status.system_proxy.applied);
    assert_eq!(status.upstream.line(), format!("upstream: {words}"));

    // While GuardNest is the system proxy, a restart reads the user's proxy from the snapshot.
    within("restart", service.restart()).await.unwrap();
    assert_eq!(service.status().await.upstream.summary, words);
    let addr = service.status().await.listen.unwrap();
    let (mut s, code) = connect(addr, "www.example.test:443").await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(echo_once(&mut s, b"through the parent").await.unwrap(), b"through the parent");
    assert!(heads.lock().iter().any(|h| h.starts_with("CONNECT www.example.test:443 HTTP/1.1\r\n")));

    within("disable", service.disable()).await.unwrap();
    assert_eq!(*os.0.lock(), before, "the user's settings came back changed");
    assert_eq!(service.status().await.upstream.summary, "none while GuardNest is off");
}

#[tokio::test]
async fn a_parent_that_is_down_shows_in_the_status() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let upstream = UpstreamConfig {
        mode: UpstreamMode::Fixed,
        proxy: Some(format!("http://{dead}")),
        ..UpstreamConfig::default()
    };
    let config = config(upstream, false);
    let lists = Blocklists::load(&config.blocklist, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = ProxyService::new(config, lists, SystemProxy::new(None, dir.path()));
    let change = within("enable", service.enable()).await.unwrap();
    assert!(!change.message.contains("stays in use"), "a configured parent is not the user's own: {}", change.message);
    let deadline = Instant::now() + STEP;
    let status = loop {
        let status = service.status().await;
        if !status.upstream.unreachable.is_empty() {
            break status;
        }
        assert!(Instant::now() < deadline, "the upstream check never reported the dead parent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.upstream.summary, format!("parent proxy {dead} ([upstream] proxy)"));
    let line = status.upstream.line();
    assert!(line.contains(&format!("; parent proxy {dead} unreachable: ")), "{line}");
    assert!(status.healthy, "GuardNest itself is healthy");
    within("disable", service.disable()).await.unwrap();
}
