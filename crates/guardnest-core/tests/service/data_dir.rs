//! The data directory belongs to its user: one GuardNest creates is private (0700 on Unix),
//! and a link planted in it, where the instance lock goes, stops the start with an error that
//! names it, and the file it points at is never created or touched.

use std::path::Path;
use std::time::Duration;

use guardnest_core::config::{BlocklistConfig, Config};
use guardnest_core::sysproxy::SystemProxy;
use guardnest_core::ProxyService;

use crate::support::within;

/// An instance on `data` with nothing outside it: port 0, no control API, no lists, no
/// system proxy, no login entry, protection left off.
fn builder(data: &Path) -> guardnest_core::service::lifecycle::Builder {
    let mut config = Config::default();
    config.proxy.listen = "127.0.0.1:0".parse().unwrap();
    config.control.listen = "none".into();
    config.system_proxy.enabled = false;
    config.blocklist = BlocklistConfig { sources: Vec::new(), default_lists: false, ..BlocklistConfig::default() };
    ProxyService::builder(config, data)
        .system_proxy(SystemProxy::new(None, data))
        .login_repair(None)
        .builtin_lists(Vec::new())
        .protect(false)
}

#[tokio::test]
async fn a_data_dir_guardnest_creates_is_private_to_its_user() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("share").join("guardnest");
    let started = within("start", builder(&data).start_up()).await.unwrap();
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    within("stop", started.service.shut_down(Duration::from_millis(100))).await.unwrap();
    assert_eq!(mode, 0o700, "the new data dir is mode {mode:o}");
}

#[tokio::test]
async fn a_link_planted_as_the_instance_lock_stops_the_start_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let victim = dir.path().join("victim");
    std::os::unix::fs::symlink(&victim, data.join("instance.lock")).unwrap();
    let started = within("start", builder(&data).start_up()).await;
    let created = victim.exists();
    let said = match &started {
        Ok(s) => {
            within("stop", s.service.shut_down(Duration::from_millis(100))).await.unwrap();
            "started".to_string()
        }
        Err(e) => e.report().message,
    };
    assert!(!created, "the lock's link target was created ({said})");
    assert!(said.contains(&data.join("instance.lock").display().to_string()) && said.contains("link"), "{said}");
}
