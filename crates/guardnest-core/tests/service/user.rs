//! What the desktop app needs from the service: pause, allow a name, add and remove lists,
//! all kept across restarts.

use guardnest_core::blocklist::Verdict;
use guardnest_core::config::{BlocklistConfig, Config, SourceSpec};
use guardnest_core::sysproxy::SystemProxy;
use guardnest_core::{Blocklists, ProxyService};

use crate::support::*;

fn service_in(dir: &std::path::Path) -> ProxyService {
    let list = dir.join("block.txt");
    if !list.exists() {
        std::fs::write(&list, "evil.test\n").unwrap();
    }
    let mut config = Config::default();
    config.proxy.listen = "127.0.0.1:0".parse().unwrap();
    config.blocklist = BlocklistConfig {
        sources: vec![SourceSpec::Location(list.display().to_string())],
        default_lists: false,
        ..BlocklistConfig::default()
    };
    let lists = Blocklists::load(&config.blocklist, Some(dir)).unwrap();
    ProxyService::new(config, lists, SystemProxy::new(None, dir)).with_data_dir(dir)
}

#[tokio::test]
async fn pause_allows_everything_then_blocking_returns() {
    let env = service(false);
    env.service.enable().await.unwrap();
    let proxy = env.service.status().await.listen.unwrap();
    assert_eq!(connect(proxy, "evil.test:443").await.unwrap().1, 403);
    assert!(env.service.pause(0).await.is_err());
    env.service.pause(15).await.unwrap();
    // The end is on the next whole minute (what the window shows is when it ends), never
    // sooner than asked.
    let paused = env.service.status().await.paused_secs.unwrap();
    assert!((899..=960).contains(&paused), "{paused}");
    let until = env.service.status().await.paused_until.unwrap();
    assert_eq!(until % 60, 0, "{until}");
    // Paused: the blocked name is let through (it fails later, at name resolution).
    assert_ne!(connect(proxy, "evil.test:443").await.unwrap().1, 403);
    assert!(env.service.resume().await.changed);
    assert_eq!(connect(proxy, "evil.test:443").await.unwrap().1, 403);
    assert_eq!(env.service.status().await.paused_secs, None);
    // Off, there is nothing to pause: refused, and nothing is left to outlive the off.
    env.service.disable().await.unwrap();
    let refused = env.service.pause(15).await.unwrap_err();
    assert_eq!(refused.report().reason, Some(guardnest_core::service::InputReason::NothingToPause), "{refused}");
    env.service.enable().await.unwrap();
    assert_eq!(env.service.status().await.paused_secs, None);
    let proxy = env.service.status().await.listen.unwrap();
    assert_eq!(connect(proxy, "evil.test:443").await.unwrap().1, 403);
}

#[tokio::test]
async fn allowed_names_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = service_in(dir.path());
    s.load_user_state().await.unwrap();
    assert!(s.check_domain("www.evil.test").unwrap().is_blocked());
    assert!(s.allow_domain("not a name").await.is_err());
    let c = s.allow_domain("WWW.Evil.Test.").await.unwrap();
    assert!(c.changed, "{c:?}");
    assert!(matches!(s.check_domain("www.evil.test").unwrap(), Verdict::Exempt(ref m) if &*m.list == "my allowlist"));
    assert!(s.check_domain("evil.test").unwrap().is_blocked(), "only the allowed name and its subdomains");
    assert!(!s.allow_domain("www.evil.test").await.unwrap().changed);
    drop(s);
    // A new process: the allowlist file is read again.
    let again = service_in(dir.path());
    again.load_user_state().await.unwrap();
    assert!(matches!(again.check_domain("a.www.evil.test").unwrap(), Verdict::Exempt(_)));
}

/// An allowlist planted as a link (to a file naming what a list blocks) is not read: the
/// name stays blocked, and allowing a name does not write through the link either.
#[cfg(unix)]
#[tokio::test]
async fn an_allowlist_planted_as_a_link_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere.txt");
    std::fs::write(&elsewhere, "evil.test\n").unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.path().join("allowlist.txt")).unwrap();
    let s = service_in(dir.path());
    s.load_user_state().await.unwrap();
    assert!(s.check_domain("www.evil.test").unwrap().is_blocked(), "the linked allowlist was read");
    let e = s.allow_domain("ok.test").await.unwrap_err().to_string();
    assert!(e.contains("allowlist.txt"), "{e}");
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "evil.test\n", "written through the link");
}

#[tokio::test]
async fn added_lists_block_and_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = service_in(dir.path());
    s.load_user_state().await.unwrap();
    let extra = dir.path().join("extra.hosts");
    std::fs::write(&extra, "0.0.0.0 tracker.test\n").unwrap();
    assert!(s.add_list("relative/path.txt").await.is_err());
    let c = s.add_list(&extra.display().to_string()).await.unwrap();
    assert!(c.message.ends_with(": 1 name"), "{c:?}");
    assert!(s.check_domain("x.tracker.test").unwrap().is_blocked());
    assert!(!s.add_list(&extra.display().to_string()).await.unwrap().changed);
    drop(s);
    let again = service_in(dir.path());
    again.load_user_state().await.unwrap();
    assert!(again.check_domain("tracker.test").unwrap().is_blocked(), "added list kept across restarts");
    again.remove_list(&extra.display().to_string()).await.unwrap();
    assert!(!again.check_domain("tracker.test").unwrap().is_blocked());
    assert!(again.remove_list("/nope").await.is_err());
    assert!(again.user_lists().is_empty());
}
