use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use guardnest_core::config::{BlocklistConfig, Config, SourceSpec};
use guardnest_core::sysproxy::{Backend, Settings, SysProxyError, SystemProxy, Target, UNSET};
use guardnest_core::{Blocklists, ProxyService};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const STEP: Duration = Duration::from_secs(10);

pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// An in-memory "OS": settings shared between the backend and the test.
#[derive(Clone, Default)]
pub struct FakeOs(pub Arc<Mutex<Settings>>);

impl FakeOs {
    pub fn get(&self, k: &str) -> Option<String> {
        self.0.lock().get(k).cloned()
    }
    pub fn set(&self, k: &str, v: &str) {
        self.0.lock().insert(k.into(), v.into());
    }
}

pub struct FakeBackend(pub FakeOs);

impl Backend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn target_settings(&self, t: &Target) -> Settings {
        let mut s = BTreeMap::new();
        match t {
            Target::Fixed(a) => {
                s.insert("mode".into(), "manual".into());
                s.insert("proxy".into(), a.to_string());
            }
            Target::Pac(u) => {
                s.insert("mode".into(), "auto".into());
                s.insert("pac".into(), u.clone());
            }
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
            if v == UNSET {
                os.remove(k);
            } else {
                os.insert(k.clone(), v.clone());
            }
        }
        Ok(())
    }
}

pub struct Env {
    pub service: Arc<ProxyService>,
    pub os: FakeOs,
    pub dir: tempfile::TempDir,
}

/// A service on 127.0.0.1:0 blocking `evil.test`, with the fake backend.
pub fn service(system_proxy: bool) -> Env {
    service_with(system_proxy, guardnest_core::config::SystemProxyMode::Fixed)
}

pub fn service_with(system_proxy: bool, mode: guardnest_core::config::SystemProxyMode) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("block.txt");
    std::fs::write(&list, "evil.test\n").unwrap();
    let mut config = Config::default();
    config.proxy.listen = "127.0.0.1:0".parse().unwrap();
    config.proxy.shutdown_timeout = Duration::from_millis(500);
    config.control.listen = "127.0.0.1:0".into();
    config.system_proxy.enabled = system_proxy;
    config.system_proxy.mode = mode;
    config.blocklist = BlocklistConfig {
        sources: vec![SourceSpec::Location(list.display().to_string())],
        default_lists: false,
        ..BlocklistConfig::default()
    };
    let lists = Blocklists::load(&config.blocklist, None).unwrap();
    let os = FakeOs::default();
    let system = SystemProxy::new(Some(Box::new(FakeBackend(os.clone()))), dir.path());
    Env { service: Arc::new(ProxyService::new(config, lists, system)), os, dir }
}

pub use crate::loopback::echo_server;

/// CONNECT through `proxy`; the stream and the status.
pub async fn connect(proxy: SocketAddr, target: &str) -> std::io::Result<(TcpStream, u16)> {
    let mut s = TcpStream::connect(proxy).await?;
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes()).await?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    let status = String::from_utf8_lossy(&head).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((s, status))
}

pub async fn echo_once(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).await?;
    Ok(back)
}
