//! The transaction of the OS layer: what a snapshot keeps, what a restore puts back and
//! leaves alone, and how a planted or unwritable file is met.

use super::*;

fn s(pairs: &[(&str, &str)]) -> Settings {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn restore_puts_back_exactly_what_was_there() {
    let current = s(&[("mode", "auto"), ("autoconfig-url", "http://corp/proxy.pac")]);
    let target = s(&[("mode", "manual"), ("http.host", "127.0.0.1"), ("http.port", "3000")]);
    let saved = plan_enable(&current, &target);
    assert_eq!(saved, s(&[("mode", "auto"), ("http.host", UNSET), ("http.port", UNSET)]));
    // Still ours: everything goes back, absent keys are removed again.
    let plan = plan_restore(&saved, &target, &target);
    assert_eq!(plan.writes, saved);
    assert!(plan.foreign.is_empty());
}

#[test]
fn points_at_ignores_edited_bypass_lists() {
    let wanted = s(&[("mode", "'manual'"), ("http host", "'127.0.0.1'"), ("ignore-hosts", "['localhost']")]);
    let edited = s(&[("mode", "'manual'"), ("http host", "'127.0.0.1'"), ("ignore-hosts", "['corp']")]);
    assert!(points_at(&wanted, &edited));
    let other = s(&[("mode", "'manual'"), ("http host", "'10.0.0.1'"), ("ignore-hosts", "['localhost']")]);
    assert!(!points_at(&wanted, &other));
    assert!(!points_at(&wanted, &s(&[("mode", "'manual'")])));
}

#[test]
fn restore_leaves_another_programs_changes() {
    let target = s(&[("mode", "manual"), ("http.host", "127.0.0.1"), ("http.port", "3000")]);
    let saved = s(&[("mode", "none"), ("http.host", "old"), ("http.port", "8080")]);
    let now = s(&[("mode", "manual"), ("http.host", "10.0.0.9"), ("http.port", "3128")]);
    let plan = plan_restore(&saved, &target, &now);
    assert_eq!(plan.writes, s(&[("mode", "none")]));
    assert_eq!(plan.foreign, ["http.host", "http.port"]);
}

/// A snapshot planted as a link (to a file someone else controls) is never read: a
/// repair would "restore" whatever settings that file names. (A data dir others can
/// write to is reported at start; GuardNest creates its own private.)
#[cfg(unix)]
#[test]
fn a_snapshot_planted_as_a_link_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let planted = Transaction {
        backend: "gnome".into(),
        owner: ProcessId { pid: 1, started: None, boot: None },
        saved: s(&[("mode", "'manual'"), ("http.host", "'attacker.example'")]),
        applied: s(&[("mode", "'none'")]),
    };
    let elsewhere = dir.path().join("planted.json");
    std::fs::write(&elsewhere, serde_json::to_vec(&planted).unwrap()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, data.join("system-proxy.json")).unwrap();
    match SystemProxy::new(None, &data).transaction() {
        Err(e) => assert!(e.to_string().contains("system-proxy.json") && e.to_string().contains("link"), "{e}"),
        Ok(t) => panic!("read through the link: {t:?}"),
    }
}

/// An in-memory OS for the transaction.
struct Memory(Mutex<Settings>);

impl Backend for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn target_settings(&self, _: &Target) -> Settings {
        s(&[("mode", "manual")])
    }
    fn read(&self, keys: &[String]) -> Result<Settings, SysProxyError> {
        let now = self.0.lock();
        Ok(keys.iter().filter_map(|k| now.get(k).map(|v| (k.clone(), v.clone()))).collect())
    }
    fn write(&self, values: &Settings) -> Result<(), SysProxyError> {
        self.0.lock().extend(values.clone());
        Ok(())
    }
}

/// An in-memory OS whose settings are GNOME's keys.
struct MemoryGnome(Mutex<Settings>);

impl Backend for MemoryGnome {
    fn name(&self) -> &'static str {
        "gnome"
    }
    fn target_settings(&self, t: &Target) -> Settings {
        gnome::target(t)
    }
    fn read(&self, keys: &[String]) -> Result<Settings, SysProxyError> {
        let now = self.0.lock();
        Ok(keys.iter().filter_map(|k| now.get(k).map(|v| (k.clone(), v.clone()))).collect())
    }
    fn write(&self, values: &Settings) -> Result<(), SysProxyError> {
        let mut now = self.0.lock();
        for (k, v) in values {
            match v.as_str() {
                UNSET => now.remove(k),
                _ => now.insert(k.clone(), v.clone()),
            };
        }
        Ok(())
    }
    fn upstream_keys(&self) -> Vec<String> {
        gnome::upstream_keys()
    }
    fn user_proxy(&self, settings: &Settings) -> UserProxy {
        gnome::user_proxy(settings)
    }
}

/// Before, while and after GuardNest is the system proxy, the user's proxy is theirs:
/// the OS's settings, then the snapshot laid over GuardNest's own, then the OS's again.
#[test]
fn the_users_proxy_is_read_through_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let users = s(&[
        ("org.gnome.system.proxy mode", "'manual'"),
        ("org.gnome.system.proxy.http host", "'corp.example'"),
        ("org.gnome.system.proxy.http port", "8123"),
        ("org.gnome.system.proxy.https host", "'corp.example'"),
        ("org.gnome.system.proxy.https port", "8123"),
        ("org.gnome.system.proxy ignore-hosts", "['*.corp.example']"),
    ]);
    let system = SystemProxy::new(Some(Box::new(MemoryGnome(Mutex::new(users.clone())))), dir.path());
    let corp = |u: &UserSettings| match &u.proxy {
        UserProxy::Manual { https: Some(h), bypass, .. } => {
            h.to_string() == "corp.example:8123" && bypass.matches("wiki.corp.example", 443)
        }
        _ => false,
    };
    let before = system.user_proxy().unwrap().unwrap();
    assert!(corp(&before) && !before.from_snapshot, "{before:?}");
    system.apply(&Target::Fixed("127.0.0.1:3000".parse().unwrap())).unwrap();
    let during = system.user_proxy().unwrap().unwrap();
    assert!(corp(&during) && during.from_snapshot, "{during:?}");
    system.restore().unwrap();
    let after = system.user_proxy().unwrap().unwrap();
    assert!(corp(&after) && !after.from_snapshot);
    assert_eq!(SystemProxy::new(None, dir.path()).user_proxy().unwrap(), None);
}

/// A repair entry that cannot be written is reported with the system proxy's change
/// (which still happens: GuardNest restores it itself on exit and at its next start),
/// and nothing half-right is left to run at login.
#[test]
fn a_login_entry_that_cannot_be_written_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let repair = login::LoginRepair::xdg(&config, ["/usr/bin/guardnest", "repair", "--data-dir", "/a\nExec=/bin/x"]);
    let system = SystemProxy::new(Some(Box::new(Memory(Mutex::default()))), dir.path()).with_login_repair(Some(repair));
    let out = system.apply(&Target::Fixed("127.0.0.1:3128".parse().unwrap())).unwrap();
    assert!(
        out.message.contains("system proxy set (memory); cannot register the repair at login")
            && out.message.contains("holds the control character U+000A"),
        "{}",
        out.message
    );
    assert!(!config.join("autostart").exists(), "an entry was written");
    assert!(system.restore().unwrap().message.contains("restored"));
}
