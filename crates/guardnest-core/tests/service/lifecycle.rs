//! enable / disable / restart / status, alone and all at once.

use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn no_ops_say_so_and_status_tells_the_truth() {
    let env = service(false);
    let s = &env.service;
    assert!(!s.status().await.running);
    let first = s.enable().await.unwrap();
    assert!(first.changed && first.message.starts_with("enabled: listening on 127.0.0.1:"), "{first:?}");
    let again = s.enable().await.unwrap();
    assert!(!again.changed && again.message.starts_with("already enabled"), "{again:?}");
    let st = s.status().await;
    assert!(st.running && st.healthy, "{st:?}");
    let addr = st.listen.unwrap();
    let (_, code) = connect(addr, "evil.test:443").await.unwrap();
    assert_eq!(code, 403);
    assert_eq!(s.stats().blocked_total, 1);
    assert_eq!(s.stats().recent_blocked[0].host, "evil.test");
    let off = s.disable().await.unwrap();
    assert!(off.changed);
    assert!(!s.status().await.running);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener still open after disable");
    let again = s.disable().await.unwrap();
    assert!(!again.changed && again.message.starts_with("already disabled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_leave_a_consistent_state() {
    let env = service(false);
    let s = env.service.clone();
    s.enable().await.unwrap();
    let addr = s.status().await.listen.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60u32 {
        let s = s.clone();
        tasks.spawn(async move {
            match i % 3 {
                0 => s.enable().await.map(|_| ()),
                1 => s.disable().await.map(|_| ()),
                _ => s.restart().await.map(|_| ()),
            }
        });
    }
    within("all calls", async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
    })
    .await;
    // Whatever the interleaving: status matches reality, and one more enable serves.
    // (Enable after disable binds the configured 127.0.0.1:0 again: a new port.)
    let st = s.status().await;
    if let Some(now) = st.listen {
        let reachable = tokio::net::TcpStream::connect(now).await.is_ok();
        assert_eq!(st.running, reachable, "status says {} but the port says {}", st.running, reachable);
    }
    let _ = addr;
    s.enable().await.unwrap();
    let addr = s.status().await.listen.unwrap();
    let echo = echo_server().await;
    let (mut c, code) = connect(addr, &echo.to_string()).await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(echo_once(&mut c, b"ok").await.unwrap(), b"ok");
    s.disable().await.unwrap();
    // Exactly one listener was ever left: after disable the port is free to bind (the
    // listener's socket closes as its task ends: waited for, bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpListener::bind(addr).is_err() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(std::net::TcpListener::bind(addr).is_ok(), "a second listener survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_under_load_keeps_open_tunnels_and_serves_new_ones() {
    let env = service(false);
    let s = env.service.clone();
    s.enable().await.unwrap();
    let addr = s.status().await.listen.unwrap();
    let echo = echo_server().await;
    let mut open = Vec::new();
    for _ in 0..20 {
        let (c, code) = connect(addr, &echo.to_string()).await.unwrap();
        assert_eq!(code, 200);
        open.push(c);
    }
    let r = s.restart().await.unwrap();
    assert!(r.message.contains(&addr.to_string()), "{r:?}");
    assert_eq!(s.status().await.listen, Some(addr), "restart keeps the address");
    // Old tunnels still carry bytes during the drain.
    for c in open.iter_mut() {
        assert_eq!(within("old tunnel", echo_once(c, b"still here")).await.unwrap(), b"still here");
    }
    // New ones go to the new listener.
    for _ in 0..20 {
        let (mut c, code) = connect(addr, &echo.to_string()).await.unwrap();
        assert_eq!(code, 200);
        assert_eq!(echo_once(&mut c, b"new").await.unwrap(), b"new");
    }
    // After the old one's grace, its tunnels end cleanly (EOF, not a hang).
    for c in open.iter_mut() {
        let mut rest = Vec::new();
        let n = within("old tunnel closed", tokio::io::AsyncReadExt::read_to_end(c, &mut rest)).await.unwrap();
        assert_eq!(n, 0);
    }
    s.disable().await.unwrap();
}
