//! Who asked: every block names the program behind the client's connection, and the
//! programs seen through GuardNest are counted; a client on another machine is an address.

use guardnest_core::who::Asker;
#[cfg(any(target_os = "linux", windows))]
use tokio::io::AsyncWriteExt;
#[cfg(any(target_os = "linux", windows))]
use tokio::net::TcpStream;

use crate::access::{access, v1};
use crate::support::*;

/// This test process, as GuardNest should name it.
#[cfg(any(target_os = "linux", windows))]
fn is_this_process(asker: &Asker) -> bool {
    let exe = std::env::current_exe().unwrap();
    match asker {
        Asker::Program { pid, path, name, .. } => {
            // Windows (and Wine) may spell the same file differently (`\\?\` prefix, case):
            // there the file name is compared, and the `.exe` is not part of the name.
            let same_path = match cfg!(windows) {
                true => path.as_deref().is_some_and(|p| {
                    let file = p.rsplit(['\\', '/']).next().unwrap_or(p);
                    exe.file_name().is_some_and(|f| f.to_string_lossy().eq_ignore_ascii_case(file))
                }),
                false => path.as_deref().map(std::path::Path::new) == Some(exe.as_path()),
            };
            *pid == std::process::id()
                && same_path
                && exe.file_stem().is_some_and(|f| f.to_string_lossy().eq_ignore_ascii_case(name))
        }
        _ => false,
    }
}

#[cfg(any(target_os = "linux", windows))]
#[tokio::test]
async fn a_block_names_the_program_that_asked() {
    let l = lists(&[("bad.txt", "evil.test\n")], &[]);
    let proxy = TestProxy::plain(l.blocklists.policy()).await;
    let (_s, status, head) = connect_via(proxy.addr, "evil.test:443").await;
    assert_eq!(status, 403, "{head}");
    let mut plain = TcpStream::connect(proxy.addr).await.unwrap();
    plain.write_all(b"GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n").await.unwrap();
    let head = read_head(&mut plain).await;
    assert_eq!(status_of(&head), 403, "{head}");
    // The 403s are written at once; each block is named (in a batch) while its client's
    // connection is still open, then recorded.
    let recent = within("both blocks recorded", async {
        loop {
            let recent = proxy.blocks.recent(10);
            if recent.len() == 2 {
                return recent;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    for event in &recent {
        if cfg!(windows) && matches!(event.asked_by, Asker::Restricted { pid: None, .. }) {
            // Wine 8 lists every connection with owner PID 0 (README, "What runs where").
            continue;
        }
        assert!(is_this_process(&event.asked_by), "{:?}", event.asked_by);
        assert!(event.asked_by.to_string().contains(&format!("(pid {}", std::process::id())));
    }
    // The program's row counts both blocks.
    let rows = proxy.blocks.who().programs();
    let row = rows.iter().find(|r| r.blocks > 0).expect("a row with blocks");
    assert_eq!(row.blocks, 2, "{rows:?}");
    proxy.stop().await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn programs_seen_count_open_connections_and_closed_ones_are_not_guessed() {
    let echo = raw_origin(b"").await;
    let proxy = TestProxy::plain(guardnest_core::Policy::allow_all()).await;
    // Three tunnels held open while they are named.
    let mut open = Vec::new();
    for _ in 0..3 {
        let (s, status, head) = connect_via(proxy.addr, &echo.to_string()).await;
        assert_eq!(status, 200, "{head}");
        open.push(s);
    }
    let who = proxy.blocks.who().clone();
    let mine = |rows: &[guardnest_core::who::ProgramSeen]| {
        rows.iter().find(|r| is_this_process(&r.asker)).map_or(0, |r| r.connections)
    };
    within("three connections named", async {
        while mine(&who.programs()) < 3 {
            who.sweep().await;
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(mine(&who.programs()), 3);
    let label = &who.programs().into_iter().find(|r| is_this_process(&r.asker)).unwrap().label;
    let exe = std::env::current_exe().unwrap();
    assert!(label.starts_with(&format!("{} (user ", exe.display())), "a row names the program: {label}");

    // A connection that is gone by the time it is named counts as closed, never as a program.
    // Connected and closed without yielding to the runtime (a blocking connect, which on
    // loopback the kernel completes at once): the proxy, on this thread, can only accept it
    // and ask who it is afterwards. An async connect would yield, and the proxy could name
    // the connection while it is still open.
    let s = std::net::TcpStream::connect_timeout(&proxy.addr, std::time::Duration::from_secs(10)).unwrap();
    s.shutdown(std::net::Shutdown::Both).unwrap();
    drop(s);
    within("the connection closed", async {
        while proxy.stats.snapshot().connections_active > 3 || proxy.stats.snapshot().connections_total < 4 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // Counted by a sweep: this one, or the proxy's own, which may have taken it first.
    within("the closed connection counted", async {
        while !who.programs().iter().any(|r| r.asker == Asker::Closed) {
            who.sweep().await;
            tokio::task::yield_now().await;
        }
    })
    .await;
    let rows = who.programs();
    assert_eq!(mine(&rows), 3, "{rows:?}");
    let closed = rows.iter().find(|r| r.asker == Asker::Closed).expect("a closed row");
    assert_eq!(closed.connections, 1);
    drop(open);
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_on_another_machine_is_named_by_its_address() {
    let l = lists(&[("bad.txt", "evil.test\n")], &[]);
    let config = guardnest_core::config::ProxyConfig { proxy_protocol: true, ..config() };
    let proxy = TestProxy::start_with_access(config, l.blocklists.policy(), access(&["192.0.2.0/24"], &[])).await;
    let answer = raw(proxy.addr, format!("{}CONNECT evil.test:443 HTTP/1.1\r\n\r\n", v1("192.0.2.7")).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // A remote client's block needs no lookup: it is recorded before its 403 is written.
    let event = proxy.blocks.recent(1).pop().expect("the block");
    assert_eq!(event.asked_by, Asker::Remote { address: "192.0.2.7".parse().unwrap() });
    assert_eq!(event.asked_by.to_string(), "remote client 192.0.2.7");
    let rows = proxy.blocks.who().programs();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].connections, rows[0].blocks), (1, 1));
    proxy.stop().await;
}
