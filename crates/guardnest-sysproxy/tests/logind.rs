//! The machine shutting down, as logind announces it, on a private D-Bus with a logind of
//! the test's own: GuardNest holds a delay inhibitor from the start, and on
//! `PrepareForShutdown(true)` restores first and only then lets the inhibitor go (logind
//! would otherwise wait for it). Needs `dbus-daemon`; reported as skipped without it.

#[cfg_attr(not(target_os = "linux"), allow(unused_imports))]
use guardnest_testkit::{passed, Outcome};

#[cfg(target_os = "linux")]
guardnest_testkit::main!(the_restore_runs_before_the_inhibitor_is_released);

#[cfg(not(target_os = "linux"))]
guardnest_testkit::main!(logind_is_linux_only);

#[cfg(not(target_os = "linux"))]
fn logind_is_linux_only() -> Outcome {
    guardnest_testkit::platform_limit("logind exists only on Linux")
}

#[cfg(target_os = "linux")]
fn the_restore_runs_before_the_inhibitor_is_released() -> Outcome {
    use parking_lot::Mutex;
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use guardnest_sysproxy::session::{before_shutdown, Restore};

    if let Some(skipped) = guardnest_testkit::needs_tools(&["dbus-daemon"], "apt-get install dbus") {
        return skipped;
    }
    let mut daemon = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut address = String::new();
    BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut address).unwrap();
    let address = address.trim().to_string();

    /// An `Inhibit` call's arguments: what, who, why, mode.
    type Inhibit = (String, String, String, String);

    /// What the test's logind saw: the inhibitor asked for, and the reading end of the
    /// descriptor it handed out (EOF once every copy of the other end is closed).
    #[derive(Default, Clone)]
    struct Logind {
        asked: Arc<Mutex<Vec<Inhibit>>>,
        held: Arc<Mutex<Option<std::io::PipeReader>>>,
    }

    #[zbus::interface(name = "org.freedesktop.login1.Manager")]
    impl Logind {
        fn inhibit(&self, what: String, who: String, why: String, mode: String) -> zbus::zvariant::OwnedFd {
            self.asked.lock().push((what, who, why, mode));
            let (reader, writer) = std::io::pipe().unwrap();
            *self.held.lock() = Some(reader);
            zbus::zvariant::OwnedFd::from(std::os::fd::OwnedFd::from(writer))
        }

        #[zbus(signal)]
        async fn prepare_for_shutdown(
            emitter: &zbus::object_server::SignalEmitter<'_>,
            start: bool,
        ) -> zbus::Result<()>;
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let logind = Logind::default();
    let restored = Arc::new(AtomicBool::new(false));
    runtime.block_on(async {
        let bus = zbus::connection::Builder::address(address.as_str())
            .unwrap()
            .name("org.freedesktop.login1")
            .unwrap()
            .serve_at("/org/freedesktop/login1", logind.clone())
            .unwrap()
            .build()
            .await
            .unwrap();
        let done = restored.clone();
        let restore: Restore = Arc::new(move || {
            std::thread::sleep(Duration::from_millis(300)); // a restore takes a moment
            done.store(true, Ordering::SeqCst);
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let watcher = tokio::spawn(before_shutdown(Some(address.clone()), restore, async {
            let _ = stopped.await;
        }));
        // The inhibitor is taken at once, as a delay lock for shutdown.
        let deadline = Instant::now() + Duration::from_secs(10);
        while logind.held.lock().is_none() {
            assert!(Instant::now() < deadline, "no inhibitor was asked for");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (what, who, _, mode) = logind.asked.lock()[0].clone();
        assert_eq!((what.as_str(), who.as_str(), mode.as_str()), ("shutdown", "GuardNest", "delay"));
        // Shutting down: the descriptor closes only after the restore finished.
        let reader = logind.held.lock().take().unwrap();
        let released = {
            let restored = restored.clone();
            tokio::task::spawn_blocking(move || {
                let mut reader = reader;
                let mut rest = Vec::new();
                let _ = reader.read_to_end(&mut rest); // EOF: the lock is let go
                restored.load(Ordering::SeqCst)
            })
        };
        let iface = bus.object_server().interface::<_, Logind>("/org/freedesktop/login1").await.unwrap();
        Logind::prepare_for_shutdown(iface.signal_emitter(), true).await.unwrap();
        let restored_first = tokio::time::timeout(Duration::from_secs(10), released)
            .await
            .expect("the inhibitor was never released")
            .unwrap();
        assert!(restored_first, "the inhibitor was let go before the settings were restored");
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    passed()
}
