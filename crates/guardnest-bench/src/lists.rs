//! `guardnest-bench lists`: what a million names cost, and that serving goes on while a
//! new matcher is built.

use std::collections::HashSet;
use std::hint::black_box;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use guardnest_core::blocklist::{parse_reader, Parsed};
use guardnest_core::config::{BlocklistConfig, HealthConfig, ProxyConfig, SourceSpec};
use guardnest_core::domain::Host;
use guardnest_core::{Blocklists, Policy, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::{alloc, procfs};

const LOOKUPS: usize = 20_000;
const BATCH: usize = 200;

pub fn run(data: &Path) -> anyhow::Result<()> {
    let hosts = data.join("stevenblack-unified.hosts");
    let big = data.join("bench-1m.domains.txt.gz");
    println!("# guardnest-bench lists");
    println!("machine: {} CPUs, {}", std::thread::available_parallelism().map_or(0, std::num::NonZero::get), kernel());
    println!();
    println!("| list | structure | names | build ms | heap B/name | RSS B/name | hit ns | miss ns | 5-label miss ns |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    // Each measurement in a fresh process, so one's freed memory does not hide the next's.
    for path in [&hosts, &big] {
        for structure in ["hashset", "guardnest"] {
            child(&["lists-row", structure, &path.display().to_string()])?;
        }
    }
    println!();
    child(&["lists-rebuild", &big.display().to_string()])
}

fn child(args: &[&str]) -> anyhow::Result<()> {
    let status = std::process::Command::new(std::env::current_exe()?).args(args).status()?;
    anyhow::ensure!(status.success(), "{args:?} failed");
    Ok(())
}

/// One table row, measured in this (fresh) process.
pub fn row(structure: &str, path: &Path) -> anyhow::Result<()> {
    let label = match path.file_name().and_then(|f| f.to_str()) {
        Some(f) if f.starts_with("stevenblack") => "StevenBlack hosts",
        Some(f) if f.starts_with("bench-1m") => "bench-1m",
        Some(f) => f,
        None => "?",
    };
    match structure {
        "hashset" => baseline(label, path),
        _ => guardnest(label, path),
    }
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown kernel".into(), |s| format!("Linux {}", s.trim()))
}

/// Text names of a list (for the baseline and for choosing lookup keys).
fn open(path: &Path) -> anyhow::Result<Box<dyn Read>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(match path.extension().is_some_and(|e| e == "gz") {
        true => Box::new(flate2::read::MultiGzDecoder::new(file)),
        false => Box::new(file),
    })
}

fn text_names(path: &Path) -> anyhow::Result<Vec<String>> {
    let mut parsed = Parsed::default();
    parse_reader(BufReader::new(open(path)?), None, &mut parsed)?;
    Ok(parsed.block.iter().map(str::to_owned).collect())
}

struct Keys {
    hit: Vec<Host>,
    miss: Vec<Host>,
    deep_miss: Vec<Host>,
}

fn keys(names: &[String]) -> Keys {
    let step = (names.len() / LOOKUPS).max(1);
    let hit = names.iter().step_by(step).take(LOOKUPS).map(|n| Host::Name(n.clone())).collect();
    let miss = (0..LOOKUPS).map(|i| Host::Name(format!("nohit{i}.example-{}.com", i % 97))).collect();
    let deep_miss = (0..LOOKUPS).map(|i| Host::Name(format!("w{i}.cdn.static.nohit{i}.com"))).collect();
    Keys { hit, miss, deep_miss }
}

/// Median nanoseconds per call over batches of `BATCH` calls.
fn median_ns(keys: &[Host], mut f: impl FnMut(&Host) -> bool) -> f64 {
    let mut per_batch: Vec<f64> = keys
        .chunks(BATCH)
        .map(|chunk| {
            let t = Instant::now();
            for k in chunk {
                black_box(f(black_box(k)));
            }
            t.elapsed().as_nanos() as f64 / chunk.len() as f64
        })
        .collect();
    per_batch.sort_by(f64::total_cmp);
    per_batch[per_batch.len() / 2]
}

/// Collects names straight into the baseline set.
struct SetSink(HashSet<String>);

impl guardnest_core::blocklist::Sink for SetSink {
    fn name(&mut self, name: &str, allow: bool) {
        if !allow {
            self.0.insert(name.to_owned());
        }
    }
    fn invalid(&mut self) {}
    fn unsupported(&mut self) {}
}

fn baseline(label: &str, path: &Path) -> anyhow::Result<()> {
    let heap0 = alloc::live();
    let rss0 = procfs::rss();
    let t = Instant::now();
    let mut sink = SetSink(HashSet::new());
    parse_reader(BufReader::new(open(path)?), None, &mut sink)?;
    let set = sink.0;
    let build = t.elapsed();
    let heap = alloc::live().saturating_sub(heap0);
    let rss = procfs::rss().saturating_sub(rss0);
    let names = text_names(path)?;
    let k = keys(&names);
    let name_of = |h: &Host| match h {
        Host::Name(n) => n.clone(),
        Host::Ip(ip) => ip.to_string(),
    };
    let (hit, miss, deep): (Vec<String>, Vec<String>, Vec<String>) = (
        k.hit.iter().map(name_of).collect(),
        k.miss.iter().map(name_of).collect(),
        k.deep_miss.iter().map(name_of).collect(),
    );
    let lookup = |keys: &[String]| {
        let hosts: Vec<Host> = keys.iter().map(|n| Host::Name(n.clone())).collect();
        median_ns(&hosts, |h| matches!(h, Host::Name(n) if set.contains(n.as_str())))
    };
    println!(
        "| {label} | HashSet<String>, exact only | {} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} |",
        set.len(),
        build.as_millis(),
        heap as f64 / set.len() as f64,
        rss as f64 / set.len() as f64,
        lookup(&hit),
        lookup(&miss),
        lookup(&deep)
    );
    drop(set);
    Ok(())
}

fn config_for(path: &Path) -> BlocklistConfig {
    BlocklistConfig {
        sources: vec![SourceSpec::Location(path.display().to_string())],
        default_lists: false,
        ..BlocklistConfig::default()
    }
}

fn guardnest(label: &str, path: &Path) -> anyhow::Result<()> {
    let heap0 = alloc::live();
    let rss0 = procfs::rss();
    let t = Instant::now();
    let lists = Blocklists::load(&config_for(path), None)?;
    let build = t.elapsed();
    let heap = alloc::live().saturating_sub(heap0);
    let rss = procfs::rss().saturating_sub(rss0);
    let n = lists.len();
    let k = keys(&text_names(path)?);
    let policy = lists.policy();
    let check = |h: &Host| policy.check(h).is_blocked();
    let hit = median_ns(&k.hit, check);
    assert!(k.hit.iter().all(check), "every listed name must be blocked");
    assert!(!k.miss.iter().any(check), "no unlisted name may be blocked");
    println!(
        "| {label} | GuardNest matcher, suffix walk | {n} | {} | {:.1} | {:.1} | {hit:.0} | {:.0} | {:.0} |",
        build.as_millis(),
        heap as f64 / n as f64,
        rss as f64 / n as f64,
        median_ns(&k.miss, check),
        median_ns(&k.deep_miss, check)
    );
    Ok(())
}

/// Samples of one kind of operation: latencies in microseconds.
#[derive(Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn summary(&mut self) -> String {
        if self.0.is_empty() {
            return "no samples".into();
        }
        self.0.sort_by(f64::total_cmp);
        let p = |q: f64| self.0[((self.0.len() - 1) as f64 * q) as usize];
        format!("{} ops, p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs", self.0.len(), p(0.5), p(0.99), p(1.0))
    }
}

pub fn rebuild_under_load(big: &Path) -> anyhow::Result<()> {
    println!("## Rebuild of a 1M-name list while the proxy serves");
    let dir = std::env::temp_dir().join(format!("guardnest-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let list = dir.join("big.txt.gz");
    std::fs::copy(big, &list)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let base_rss = procfs::rss();
    let base_heap = alloc::live();
    let lists = Blocklists::load(&config_for(&list), None)?;
    let steady_rss = procfs::rss();
    let steady_heap = alloc::live();
    println!(
        "steady state with {} names: process RSS {:.1} MiB (lists {:.1} MiB over the {:.1} MiB base), heap {:.1} MiB",
        lists.len(),
        mib(steady_rss),
        mib(steady_rss.saturating_sub(base_rss)),
        mib(base_rss),
        mib(steady_heap as u64)
    );
    let _ = base_heap;
    runtime.block_on(async {
        let echo = echo_server().await?;
        let proxy = Proxy::bind(
            ProxyConfig { listen: "127.0.0.1:0".parse()?, ..ProxyConfig::default() },
            HealthConfig::default(),
            lists.policy(),
        )
        .await?;
        let addr = proxy.local_addr();
        let stop = CancellationToken::new();
        let proxy_task = tokio::spawn(proxy.run(stop.clone()));

        let before = measure(addr, echo, lists.policy(), Duration::from_secs(1), None).await;
        // A changed file: an extra gzip member with one more name.
        let mut f = std::fs::OpenOptions::new().append(true).open(&list)?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"rebuild-marker.test\n")?;
        std::io::Write::write_all(&mut f, &gz.finish()?)?;
        drop(f);

        procfs::reset_hwm();
        alloc::reset_peak();
        let rebuilding = Arc::new(AtomicBool::new(true));
        let flag = rebuilding.clone();
        let lists2 = lists.clone();
        let rebuild = tokio::spawn(async move {
            let t = Instant::now();
            let report = lists2.update(&()).await;
            flag.store(false, Ordering::SeqCst);
            (t.elapsed(), report)
        });
        let during = measure(addr, echo, lists.policy(), Duration::from_secs(30), Some(rebuilding)).await;
        let (took, report) = rebuild.await?;
        let peak_rss = procfs::hwm();
        let peak_heap = alloc::peak();
        anyhow::ensure!(report.updated.len() == 1, "rebuild did not happen: {report:?}");
        anyhow::ensure!(lists.policy().check(&Host::Name("rebuild-marker.test".into())).is_blocked());
        println!(
            "rebuild (re-read + parse + index, 1M names): {} ms; whole-process peak RSS {:.1} MiB = {:.2}x steady; peak heap {:.1} MiB = {:.2}x steady",
            took.as_millis(),
            mib(peak_rss),
            peak_rss as f64 / steady_rss as f64,
            mib(peak_heap as u64),
            peak_heap as f64 / steady_heap as f64
        );
        let (mut b_setup, mut b_lookup) = before;
        let (mut d_setup, mut d_lookup) = during;
        println!("tunnel setups before: {}", b_setup.summary());
        println!("tunnel setups during: {}", d_setup.summary());
        println!("lookups before:       {}", b_lookup.summary());
        println!("lookups during:       {}", d_lookup.summary());
        stop.cancel();
        let _ = proxy_task.await;
        anyhow::Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

async fn echo_server() -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}

/// Runs tunnel setups (CONNECT, 200, 32-byte echo, close) and policy lookups for `max`, or
/// until `until` turns false; returns the latencies of each.
async fn measure(
    proxy: std::net::SocketAddr,
    echo: std::net::SocketAddr,
    policy: Policy,
    max: Duration,
    until: Option<Arc<AtomicBool>>,
) -> (Samples, Samples) {
    let deadline = Instant::now() + max;
    let running = || Instant::now() < deadline && until.as_ref().is_none_or(|f| f.load(Ordering::SeqCst));
    let mut setups = Samples::default();
    let mut lookups = Samples::default();
    let host = Host::Name("www.some-allowed-site.example".into());
    while running() {
        let t = Instant::now();
        if tunnel_once(proxy, echo).await.is_ok() {
            setups.0.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let t = Instant::now();
        black_box(policy.check(&host));
        lookups.0.push(t.elapsed().as_secs_f64() * 1e6);
        tokio::task::yield_now().await;
    }
    (setups, lookups)
}

async fn tunnel_once(proxy: std::net::SocketAddr, echo: std::net::SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    s.write_all(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").as_bytes()).await?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    let msg = [7u8; 32];
    s.write_all(&msg).await?;
    let mut back = [0u8; 32];
    s.read_exact(&mut back).await?;
    Ok(())
}
