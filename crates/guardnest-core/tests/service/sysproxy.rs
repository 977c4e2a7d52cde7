//! The system-proxy transaction through the service: snapshot, apply, restore, foreign
//! changes, crash repair.

use guardnest_core::sysproxy::{ProcessId, SystemProxy, Transaction};

use crate::support::*;

#[tokio::test]
async fn enable_applies_and_disable_restores_exactly() {
    let env = service(true);
    env.os.set("mode", "auto");
    env.os.set("pac", "http://corp.example/proxy.pac");
    let on = env.service.enable().await.unwrap();
    assert!(on.message.contains("system proxy set (fake)"), "{on:?}");
    let addr = env.service.status().await.listen.unwrap();
    assert_eq!(env.os.get("mode").as_deref(), Some("manual"));
    assert_eq!(env.os.get("proxy"), Some(addr.to_string()));
    let st = env.service.status().await;
    assert!(st.system_proxy.applied && st.system_proxy.wanted);
    // The transaction is on disk before anything changed, with this process (PID and start).
    let t: Transaction =
        serde_json::from_str(&std::fs::read_to_string(env.dir.path().join("system-proxy.json")).unwrap()).unwrap();
    assert_eq!(t.owner, ProcessId::current());
    assert!(t.owner.started.is_some());
    assert_eq!(t.saved["mode"], "auto");
    let off = env.service.disable().await.unwrap();
    assert!(off.message.contains("restored your fake proxy settings"), "{off:?}");
    assert_eq!(env.os.get("mode").as_deref(), Some("auto"));
    assert_eq!(env.os.get("pac").as_deref(), Some("http://corp.example/proxy.pac"));
    assert_eq!(env.os.get("proxy"), None, "a key that was absent is removed again");
    assert!(!env.dir.path().join("system-proxy.json").exists());
}

#[tokio::test]
async fn another_programs_change_is_not_overwritten() {
    let env = service(true);
    env.os.set("mode", "none");
    env.service.enable().await.unwrap();
    // A VPN client takes over the proxy while GuardNest is on.
    env.os.set("proxy", "10.8.0.1:3128");
    let off = env.service.disable().await.unwrap();
    assert!(off.message.contains("left proxy as another program set them"), "{off:?}");
    assert_eq!(env.os.get("proxy").as_deref(), Some("10.8.0.1:3128"));
    assert_eq!(env.os.get("mode").as_deref(), Some("none"), "our own key is still restored");
}

#[tokio::test]
async fn a_crashed_session_is_repaired_at_the_next_start() {
    let env = service(true);
    env.os.set("mode", "auto");
    // What a GuardNest killed with -9 leaves: its settings applied and its transaction on
    // disk, with a PID that no longer runs.
    let dead = {
        let mut child = short_lived().spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let t = Transaction {
        backend: "fake".into(),
        owner: ProcessId { pid: dead, started: Some(1), boot: None },
        saved: [
            ("mode".to_string(), "auto".to_string()),
            ("proxy".to_string(), guardnest_core::sysproxy::UNSET.to_string()),
        ]
        .into_iter()
        .collect(),
        applied: [("mode".to_string(), "manual".to_string()), ("proxy".to_string(), "127.0.0.1:3000".to_string())]
            .into_iter()
            .collect(),
    };
    env.os.set("mode", "manual");
    env.os.set("proxy", "127.0.0.1:3000");
    std::fs::write(env.dir.path().join("system-proxy.json"), serde_json::to_vec(&t).unwrap()).unwrap();
    let repaired = env.service.repair().await.unwrap();
    assert!(repaired.unwrap().starts_with("repaired a crashed session"));
    assert_eq!(env.os.get("mode").as_deref(), Some("auto"));
    assert_eq!(env.os.get("proxy"), None);
    // Nothing left to repair; a live owner's transaction is never touched.
    assert_eq!(env.service.repair().await.unwrap(), None);
    let mut owner = long_lived().stdin(std::process::Stdio::piped()).spawn().unwrap();
    let live = Transaction { owner: ProcessId::of(owner.id()).unwrap(), ..t };
    std::fs::write(env.dir.path().join("system-proxy.json"), serde_json::to_vec(&live).unwrap()).unwrap();
    let kept = env.service.repair().await;
    let _ = owner.kill();
    let _ = owner.wait();
    assert_eq!(kept.unwrap(), None);
}

/// PIDs are reused: Wine gives the next GuardNest the PID of the one a killed session took
/// with it, Windows reuses PIDs quickly and every OS starts again at boot. A snapshot whose
/// PID now belongs to an unrelated live process, or to this very process, is still a dead
/// GuardNest's: the start time tells them apart.
#[tokio::test]
async fn a_snapshot_whose_pid_was_reused_is_repaired() {
    let mut unrelated = long_lived().stdin(std::process::Stdio::piped()).spawn().unwrap();
    let other = ProcessId::of(unrelated.id()).unwrap();
    let me = ProcessId::current();
    for (who, owner) in [
        ("an unrelated live process", ProcessId { started: other.started.map(|s| s - 1), ..other.clone() }),
        ("this process", ProcessId { started: me.started.map(|s| s - 1), ..me.clone() }),
        ("a record with no start time (GuardNest 0.1)", ProcessId { pid: other.pid, started: None, boot: None }),
    ] {
        let env = service(true);
        env.os.set("mode", "manual");
        env.os.set("proxy", "127.0.0.1:3000");
        let t = Transaction {
            backend: "fake".into(),
            owner,
            saved: [("mode".to_string(), "auto".to_string()), ("proxy".to_string(), "corp:8123".to_string())]
                .into_iter()
                .collect(),
            applied: [("mode".to_string(), "manual".to_string()), ("proxy".to_string(), "127.0.0.1:3000".to_string())]
                .into_iter()
                .collect(),
        };
        std::fs::write(env.dir.path().join("system-proxy.json"), serde_json::to_vec(&t).unwrap()).unwrap();
        assert!(!env.service.status().await.system_proxy.applied, "{who}: not this process's transaction");
        let repaired = env.service.repair().await.unwrap();
        assert!(repaired.is_some_and(|m| m.starts_with("repaired a crashed session")), "{who}");
        assert_eq!(env.os.get("mode").as_deref(), Some("auto"), "{who}");
        assert_eq!(env.os.get("proxy").as_deref(), Some("corp:8123"), "{who}");
    }
    let _ = unrelated.kill();
    let _ = unrelated.wait();
}

/// A program that exits at once (its PID is then free).
fn short_lived() -> std::process::Command {
    if cfg!(windows) {
        let mut c = std::process::Command::new("cmd");
        c.args(["/c", "exit"]);
        c
    } else {
        std::process::Command::new("true")
    }
}

/// A program that waits (for its standard input, or 30 s) until it is killed.
fn long_lived() -> std::process::Command {
    if cfg!(windows) {
        let mut c = std::process::Command::new("cmd");
        c.args(["/c", "pause"]);
        c
    } else {
        let mut c = std::process::Command::new("sleep");
        c.arg("30");
        c
    }
}

#[test]
fn a_failed_write_leaves_nothing_half_applied() {
    struct Flaky(FakeOs);
    impl guardnest_core::sysproxy::Backend for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn target_settings(&self, t: &guardnest_core::sysproxy::Target) -> guardnest_core::sysproxy::Settings {
            FakeBackend(self.0.clone()).target_settings(t)
        }
        fn read(
            &self,
            keys: &[String],
        ) -> Result<guardnest_core::sysproxy::Settings, guardnest_core::sysproxy::SysProxyError> {
            FakeBackend(self.0.clone()).read(keys)
        }
        fn write(
            &self,
            values: &guardnest_core::sysproxy::Settings,
        ) -> Result<(), guardnest_core::sysproxy::SysProxyError> {
            // Writes the first key, then fails: the worst case.
            if let Some((k, v)) = values.iter().next() {
                if v.as_str() == "manual" || k == "mode" && values.len() > 1 {
                    self.0.set(k, v);
                    return Err(guardnest_core::sysproxy::SysProxyError::Command {
                        command: "write".into(),
                        detail: "boom".into(),
                    });
                }
            }
            FakeBackend(self.0.clone()).write(values)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let os = FakeOs::default();
    os.set("mode", "none");
    let sp = SystemProxy::new(Some(Box::new(Flaky(os.clone()))), dir.path());
    let err = sp.apply(&guardnest_core::sysproxy::Target::Fixed("127.0.0.1:3000".parse().unwrap())).unwrap_err();
    assert!(err.to_string().contains("boom"));
    assert_eq!(os.get("mode").as_deref(), Some("none"), "the half-written setting was rolled back");
    assert!(!sp.is_applied());
}

/// Fail-open mode: the system points at a PAC file on the control API that says
/// `PROXY guardnest; DIRECT`, so a dead GuardNest means direct browsing, not none.
#[tokio::test]
async fn pac_mode_points_at_the_control_api() {
    let env = service_with(true, guardnest_core::config::SystemProxyMode::Pac);
    let control: std::net::SocketAddr = "127.0.0.1:45678".parse().unwrap();
    env.service.set_control_addr(control);
    env.service.enable().await.unwrap();
    assert_eq!(env.os.get("mode").as_deref(), Some("auto"));
    assert_eq!(env.os.get("pac"), Some(format!("http://{control}/proxy.pac")));
    let pac = env.service.pac().await.unwrap();
    let proxy = env.service.status().await.listen.unwrap();
    assert!(pac.contains(&format!("PROXY {proxy}; DIRECT")), "{pac}");
    env.service.disable().await.unwrap();
    assert_eq!(env.os.get("pac"), None);
}
