//! A short run of the benchmark harness (`--quick`, small tunnel counts) against GuardNest,
//! served by this test process, and the floor proxy: every scenario prints its rows, nothing
//! errors, half-close passes. It measures nothing; BENCHMARKS.md has the real runs.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use guardnest_core::config::{BlocklistConfig, HealthConfig, ProxyConfig, SourceSpec};
use guardnest_core::{Blocklists, Proxy};
use tokio_util::sync::CancellationToken;

/// Waits (bounded) until something accepts on `addr`.
fn wait_for(addr: SocketAddr) {
    for _ in 0..250 {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {addr}");
}

#[test]
fn harness_runs_every_scenario_against_guardnest() {
    let dir = std::env::temp_dir().join(format!("guardnest-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("blocked.txt");
    std::fs::write(&list, "blocked.test\n").unwrap();
    let lists = Blocklists::load(
        &BlocklistConfig {
            sources: vec![SourceSpec::Location(list.display().to_string())],
            default_lists: false,
            ..BlocklistConfig::default()
        },
        None,
    )
    .unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let config = ProxyConfig { listen: "127.0.0.1:0".parse().unwrap(), ..ProxyConfig::default() };
    let proxy = runtime.block_on(Proxy::bind(config, HealthConfig::default(), lists.policy())).unwrap();
    let guardnest = proxy.local_addr();
    let stop = CancellationToken::new();
    let served = runtime.spawn(proxy.run(stop.clone()));

    let floor_addr = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap();
    let mut floor = Command::new(env!("CARGO_BIN_EXE_floor-proxy")).arg(floor_addr.to_string()).spawn().unwrap();
    wait_for(floor_addr);

    let out = Command::new(env!("CARGO_BIN_EXE_guardnest-bench"))
        .args(["proxy", "--quick", "--idle-tunnels", "200", "--leak-tunnels", "2000"])
        .arg("--target")
        .arg(format!("guardnest={guardnest}@{}", std::process::id()))
        .arg("--target")
        .arg(format!("floor={floor_addr}@{}", floor.id()))
        .output()
        .unwrap();
    let _ = floor.kill();
    let _ = floor.wait();
    stop.cancel();
    runtime.block_on(served).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "harness failed: {}", String::from_utf8_lossy(&out.stderr));
    for scenario in 1..=8 {
        assert!(text.contains(&format!("\n## {scenario}. ")), "scenario {scenario} missing");
    }
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("| guardnest |"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 8, "one GuardNest row per scenario");
    // Setup, HTTP and blocked rows end with an error count.
    for row in [&rows[1], &rows[4], &rows[5]] {
        assert_eq!(row.last(), Some(&"0"), "errors in {row:?}");
    }
    assert_eq!(rows[6][1..], ["pass", "pass"], "half-close");
    assert!(text.lines().any(|l| l.starts_with("| floor |") && l.ends_with("| pass | pass |")));
}
