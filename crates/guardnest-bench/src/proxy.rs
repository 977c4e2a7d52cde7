//! `guardnest-bench proxy`: drives any HTTP proxy (and a direct connection, the limit)
//! through the same scenarios, and reads the proxy process's CPU time from /proc so each
//! figure also comes as CPU per operation.

mod load;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::load::{blocked_op, http_rate, rate, tunnel_op, Rate};
use crate::procfs::{cpu_ns, open_fds, rss_kib};
use crate::through::{open, open_async};
use crate::upstream::{self, HalfBReports, Upstreams};

/// A proxy under test, or the direct path.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    /// `None`: connect straight to the upstream.
    pub proxy: Option<SocketAddr>,
    pub pid: Option<u32>,
}

impl std::str::FromStr for Target {
    type Err = String;
    /// `name=ADDR` or `name=ADDR@PID`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, rest) = s.split_once('=').ok_or("expected NAME=ADDR[@PID]")?;
        let (addr, pid) = match rest.split_once('@') {
            Some((a, p)) => (a, Some(p.parse().map_err(|_| "bad pid")?)),
            None => (rest, None),
        };
        Ok(Target { name: name.into(), proxy: Some(addr.parse().map_err(|_| "bad address")?), pid })
    }
}

/// Options of one run.
pub struct Options {
    pub quick: bool,
    /// Scenario numbers to run (all when empty).
    pub only: Vec<u32>,
    pub idle_tunnels: usize,
    /// Seconds the idle tunnels are held before the memory is read.
    pub hold_secs: u64,
    pub leak_tunnels: usize,
    /// Interleaved rounds of each rate scenario (2, 5, 6); each column is the median.
    pub rounds: usize,
}

/// Measures CPU of the target over `f`.
fn with_cpu<T>(t: &Target, f: impl FnOnce() -> T) -> (T, Option<f64>) {
    let before = cpu_ns(t.pid);
    let out = f();
    let after = cpu_ns(t.pid);
    (out, before.zip(after).map(|(b, a)| (a - b) as f64 / 1e9))
}

// ---------- statistics ----------

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

// ---------- scenarios ----------

/// GB/s and proxy CPU seconds per GB for `streams` parallel transfers of `bytes` each.
fn throughput(t: &Target, ups: &Upstreams, streams: usize, upload: bool, bytes: u64) -> (f64, Option<f64>) {
    let start = Instant::now();
    let (res, cpu) = with_cpu(t, || {
        let handles: Vec<_> = (0..streams)
            .map(|_| {
                let t = t.clone();
                let bulk = ups.bulk;
                std::thread::spawn(move || -> io::Result<()> {
                    let mut s = open(&t, bulk)?;
                    let buf = vec![0x5au8; 256 * 1024];
                    if upload {
                        s.write_all(b"U")?;
                        s.write_all(&bytes.to_be_bytes())?;
                        let mut left = bytes;
                        while left > 0 {
                            let n = left.min(buf.len() as u64) as usize;
                            s.write_all(&buf[..n])?;
                            left -= n as u64;
                        }
                        let mut got = [0u8; 8];
                        s.read_exact(&mut got)?;
                        if u64::from_be_bytes(got) != bytes {
                            return Err(io::Error::other("upload truncated"));
                        }
                    } else {
                        s.write_all(b"D")?;
                        s.write_all(&bytes.to_be_bytes())?;
                        let mut buf = vec![0u8; 256 * 1024];
                        let mut got = 0u64;
                        while got < bytes {
                            let n = s.read(&mut buf)?;
                            if n == 0 {
                                break;
                            }
                            got += n as u64;
                        }
                        if got != bytes {
                            return Err(io::Error::other("download truncated"));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("panic"))))
            .collect::<io::Result<Vec<_>>>()
    });
    let secs = start.elapsed().as_secs_f64();
    if let Err(e) = res {
        eprintln!("  {}: throughput failed: {e}", t.name);
        return (f64::NAN, None);
    }
    let gb = (bytes * streams as u64) as f64 / 1e9;
    (gb / secs, cpu.map(|c| c / gb))
}

/// p50/p99 µs of a 64-byte round trip over one established tunnel.
fn round_trip(t: &Target, echo: SocketAddr, iterations: usize) -> io::Result<(f64, f64)> {
    let mut s = open(t, echo)?;
    let msg = [0x33u8; 64];
    let mut back = [0u8; 64];
    for _ in 0..200 {
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
    }
    let mut lat = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t0 = Instant::now();
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
        lat.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    let lat = sorted(lat);
    Ok((percentile(&lat, 0.5), percentile(&lat, 0.99)))
}

/// Pins the calling thread to CPU 0.
fn pin_self() {
    // SAFETY: a zeroed cpu_set_t is valid; we set one bit and pass its real size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

fn unpin_self() {
    // SAFETY: as in pin_self.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

fn pin_process(pid: Option<u32>, cpus: &str) {
    if let Some(pid) = pid {
        let _ = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// RSS per idle tunnel: open `n` tunnels, each echoing one byte, and compare RSS.
fn idle_memory(t: &Target, echo: SocketAddr, n: usize, hold: Duration) -> Option<(f64, u64, u64, u64)> {
    let before = rss_kib(t.pid)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    let streams = rt.block_on(async {
        let mut streams = Vec::with_capacity(n);
        let mut batch = Vec::new();
        for _ in 0..n {
            batch.push(async {
                let mut s = open_async(t, echo).await.ok()?;
                s.write_all(b"x").await.ok()?;
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await.ok()?;
                Some(s)
            });
            if batch.len() == 64 {
                for s in join_all(std::mem::take(&mut batch)).await.into_iter().flatten() {
                    streams.push(s);
                }
            }
        }
        for s in join_all(batch).await.into_iter().flatten() {
            streams.push(s);
        }
        streams
    });
    std::thread::sleep(hold);
    let open = streams.len();
    let during = rss_kib(t.pid)?;
    drop(streams);
    drop(rt);
    std::thread::sleep(Duration::from_secs(3));
    let after = rss_kib(t.pid)?;
    if open < n {
        eprintln!("  {}: only {open} of {n} tunnels opened", t.name);
    }
    Some(((during.saturating_sub(before)) as f64 * 1024.0 / open.max(1) as f64, before, during, after))
}

/// Polls all futures concurrently (a small join_all, to stay off extra dependencies).
async fn join_all<F: std::future::Future>(fs: Vec<F>) -> Vec<F::Output> {
    let mut fs: Vec<_> = fs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..fs.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in fs.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("all ready")).collect()
}

/// Half-close both ways; returns (client FIN first, upstream FIN first) pass/fail.
fn half_close(t: &Target, ups: &Upstreams, reports: &HalfBReports) -> (bool, bool) {
    let a = (|| -> io::Result<bool> {
        let mut s = open(t, ups.half_a)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(&[1u8; 1000])?;
        s.shutdown(Shutdown::Write)?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)?;
        Ok(reply == "got 1000")
    })()
    .unwrap_or(false);
    let b = (|| -> io::Result<bool> {
        while reports.try_recv().is_ok() {}
        let mut s = open(t, ups.half_b)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut banner = Vec::new();
        s.read_to_end(&mut banner)?;
        if banner != b"banner" {
            return Ok(false);
        }
        s.write_all(b"still talking")?;
        s.shutdown(Shutdown::Write)?;
        Ok(reports.recv_timeout(Duration::from_secs(3)).map(|got| got == b"still talking").unwrap_or(false))
    })()
    .unwrap_or(false);
    (a, b)
}

/// Opens and closes `n` tunnels, then compares descriptors and RSS with before.
fn leaks(t: &Target, echo: SocketAddr, n: usize) -> Option<(usize, usize, u64, u64, f64)> {
    let (fd0, rss0) = (open_fds(t.pid)?, rss_kib(t.pid)?);
    let start = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    let done = rt.block_on(async {
        let local = tokio::task::LocalSet::new();
        let per = n / 32;
        let hs: Vec<_> = (0..32)
            .map(|_| {
                let t = t.clone();
                local.spawn_local(async move {
                    let mut ok = 0;
                    for _ in 0..per {
                        if tunnel_op(t.clone(), echo).await.is_ok() {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        local
            .run_until(async {
                let mut total = 0;
                for h in hs {
                    total += h.await.unwrap_or(0);
                }
                total
            })
            .await
    });
    let secs = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    let (fd1, rss1) = (open_fds(t.pid)?, rss_kib(t.pid)?);
    if done < n / 32 * 32 {
        eprintln!("  {}: {} of {} tunnels failed", t.name, n / 32 * 32 - done, n / 32 * 32);
    }
    Some((fd0, fd1, rss0, rss1, done as f64 / secs))
}

fn idle_cpu(t: &Target, secs: u64) -> Option<f64> {
    let ((), cpu) = with_cpu(t, || std::thread::sleep(Duration::from_secs(secs)));
    cpu.map(|c| c * 1e3 / secs as f64)
}

fn fmt(v: f64, digits: usize) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{v:.digits$}")
    }
}

/// Measures every target `rounds` times, round-robin (a, b, c, a, b, c, …), so a slow
/// spell of the machine lands on every target alike rather than on one; each column of a
/// row is then that target's median. One pass per target, as before, let the same build
/// differ by 15% between two runs on this 2-core VM, more than the margins the figures are
/// held to.
fn interleaved(targets: &[&Target], rounds: usize, mut measure: impl FnMut(&Target) -> Rate) -> Vec<Rate> {
    let mut all: Vec<Vec<Rate>> = targets.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds.max(1) {
        for (t, runs) in targets.iter().zip(&mut all) {
            runs.push(measure(t));
        }
    }
    all.iter().map(|runs| median_rate(runs)).collect()
}

/// The median of each column of `runs` (taken apart: the CPU per operation and the rate of
/// one round are both noisy, and not in step).
fn median_rate(runs: &[Rate]) -> Rate {
    let mid = |f: &dyn Fn(&Rate) -> f64| percentile(&sorted(runs.iter().map(f).collect()), 0.5);
    let cpu: Vec<f64> = runs.iter().filter_map(|r| r.cpu_us_per_op).collect();
    Rate {
        per_sec: mid(&|r| r.per_sec),
        p50_us: mid(&|r| r.p50_us),
        p99_us: mid(&|r| r.p99_us),
        cpu_us_per_op: (!cpu.is_empty()).then(|| percentile(&sorted(cpu), 0.5)),
        errors: runs.iter().map(|r| r.errors).sum(),
    }
}

/// How a rate table's figures were taken, for its heading.
fn medians(rounds: usize) -> String {
    if rounds > 1 {
        format!("median of {rounds} interleaved rounds")
    } else {
        "one round".into()
    }
}

/// One rate table's rows: each target warmed up (unmeasured) and measured with `measure`
/// in every round, then its medians printed.
fn rate_rows(
    targets: &[&Target],
    opts: &Options,
    warm: Duration,
    dur: Duration,
    measure: impl Fn(&Target, Duration) -> Rate,
) {
    let rates = interleaved(targets, opts.rounds, |t| {
        measure(t, warm);
        measure(t, dur)
    });
    for (t, r) in targets.iter().zip(&rates) {
        print_rate(&t.name, r);
    }
}

/// One row of a rate table: rate, p50, p99, CPU per operation, errors.
fn print_rate(name: &str, r: &Rate) {
    println!(
        "| {name} | {} | {} | {} | {} | {} |",
        fmt(r.per_sec, 0),
        fmt(r.p50_us, 0),
        fmt(r.p99_us, 0),
        fmt_opt(r.cpu_us_per_op, 1),
        r.errors
    );
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| fmt(v, digits))
}

/// Runs every scenario for every target and prints Markdown tables.
pub fn run(targets: &[Target], opts: &Options) -> anyhow::Result<()> {
    raise_fd_limit();
    let (ups, reports) = upstream::start()?;
    let mut all = vec![Target { name: "direct".into(), proxy: None, pid: None }];
    all.extend(targets.iter().cloned());
    let scale = if opts.quick { 8 } else { 1 };
    let dur = Duration::from_millis(if opts.quick { 500 } else { 3000 });
    // Each rate is measured after an unmeasured warm-up of the same load, for every target
    // alike: without it, the proxy measured right after `direct` gave setup costs far apart
    // from one run to the next with the same build (BENCHMARKS.md, tunnel setup).
    let warm = dur / 6;
    println!("# guardnest-bench proxy");
    println!(
        "machine: {} CPUs, {}; harness on a current-thread runtime; CPU = proxy process user+system time from /proc/PID/stat (threads and children included)",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim()
    );

    if opts.wants(1) {
        println!("\n## 1. Tunnel throughput (GB/s; proxy CPU s/GB)\n");
        println!("| target | 1 stream down | 1 stream up | 8 streams down | 8 streams up |");
        println!("|---|---:|---:|---:|---:|");
        for t in &all {
            let one = (1u64 << 30) / scale;
            let eight = (256u64 << 20) / scale;
            let cells: Vec<String> = [(1, false, one), (1, true, one), (8, false, eight), (8, true, eight)]
                .iter()
                .map(|&(n, up, bytes)| {
                    let (gbs, cpu) = throughput(t, &ups, n, up, bytes);
                    format!("{} ({})", fmt(gbs, 2), fmt_opt(cpu, 2))
                })
                .collect();
            println!("| {} | {} |", t.name, cells.join(" | "));
        }
    }
    if opts.wants(2) {
        println!(
            "\n## 2. Tunnel setup: connect, CONNECT, 200, 32-byte echo, close (32 concurrent clients; {})\n",
            medians(opts.rounds)
        );
        println!("| target | tunnels/s | p50 µs | p99 µs | proxy CPU µs/tunnel | errors |");
        println!("|---|---:|---:|---:|---:|---:|");
        let echo = ups.echo;
        rate_rows(&all.iter().collect::<Vec<_>>(), opts, warm, dur, |t, d| rate(t, 32, d, move |t| tunnel_op(t, echo)));
    }
    if opts.wants(3) {
        println!("\n## 3. Round trip of 64 bytes over an established tunnel (µs)\n");
        println!("| target | free p50 | free p99 | pinned p50 | pinned p99 | added pinned p50 | added pinned p99 |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        let iters = 20_000 / scale as usize;
        let mut direct_pinned = (f64::NAN, f64::NAN);
        for t in &all {
            let free = round_trip(t, ups.echo_blocking, iters).unwrap_or((f64::NAN, f64::NAN));
            pin_process(t.pid, "0");
            pin_self();
            // The echo server's threads are spawned per connection; pin the process's threads too.
            pin_process(Some(std::process::id()), "0");
            let pinned = round_trip(t, ups.echo_blocking, iters).unwrap_or((f64::NAN, f64::NAN));
            pin_process(Some(std::process::id()), "0-63");
            unpin_self();
            pin_process(t.pid, "0-63");
            if t.proxy.is_none() {
                direct_pinned = pinned;
            }
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                t.name,
                fmt(free.0, 1),
                fmt(free.1, 1),
                fmt(pinned.0, 1),
                fmt(pinned.1, 1),
                fmt(pinned.0 - direct_pinned.0, 1),
                fmt(pinned.1 - direct_pinned.1, 1)
            );
        }
    }
    if opts.wants(4) {
        println!("\n## 4. Memory per idle tunnel ({} open tunnels) and the idle process\n", opts.idle_tunnels);
        println!("| target | KiB per idle tunnel | RSS before KiB | RSS with tunnels KiB | RSS after close KiB | idle CPU ms/s |");
        println!("|---|---:|---:|---:|---:|---:|");
        for t in all.iter().filter(|t| t.pid.is_some()) {
            let idle = idle_cpu(t, if opts.quick { 1 } else { 5 });
            match idle_memory(t, ups.echo, opts.idle_tunnels, Duration::from_secs(opts.hold_secs)) {
                Some((per, before, during, after)) => println!(
                    "| {} | {} | {before} | {during} | {after} | {} |",
                    t.name,
                    fmt(per / 1024.0, 2),
                    fmt_opt(idle, 3)
                ),
                None => println!("| {} | - | - | - | - | - |", t.name),
            }
        }
    }
    if opts.wants(5) {
        println!("\n## 5. Plain HTTP: keep-alive GETs (16 connections; {})\n", medians(opts.rounds));
        println!("| target | requests/s | p50 µs | p99 µs | proxy CPU µs/request | errors |");
        println!("|---|---:|---:|---:|---:|---:|");
        rate_rows(&all.iter().collect::<Vec<_>>(), opts, warm, dur, |t, d| http_rate(t, ups.http, 16, d));
    }
    if opts.wants(6) {
        println!("\n## 6. Blocked CONNECTs answered 403 (32 concurrent clients; {})\n", medians(opts.rounds));
        println!("| target | 403/s | p50 µs | p99 µs | proxy CPU µs per 403 | errors |");
        println!("|---|---:|---:|---:|---:|---:|");
        let proxies: Vec<&Target> = all.iter().filter(|t| t.proxy.is_some()).collect();
        rate_rows(&proxies, opts, warm, dur, |t, d| rate(t, 32, d, blocked_op));
    }
    if opts.wants(7) {
        println!("\n## 7. Half-close\n");
        println!("| target | client FIN, then upstream answers | upstream FIN, client still sends |");
        println!("|---|---|---|");
        for t in &all {
            let (a, b) = half_close(t, &ups, &reports);
            let word = |ok| if ok { "pass" } else { "FAIL" };
            println!("| {} | {} | {} |", t.name, word(a), word(b));
        }
    }
    if opts.wants(8) {
        println!("\n## 8. Leaks: {} tunnels opened and closed\n", opts.leak_tunnels);
        println!("| target | fds before | fds after | RSS before KiB | RSS after KiB | tunnels/s |");
        println!("|---|---:|---:|---:|---:|---:|");
        for t in all.iter().filter(|t| t.pid.is_some()) {
            match leaks(t, ups.echo, opts.leak_tunnels) {
                Some((f0, f1, r0, r1, rate)) => {
                    println!("| {} | {f0} | {f1} | {r0} | {r1} | {} |", t.name, fmt(rate, 0));
                }
                None => println!("| {} | - | - | - | - | - |", t.name),
            }
        }
    }
    Ok(())
}

impl Options {
    fn wants(&self, n: u32) -> bool {
        self.only.is_empty() || self.only.contains(&n)
    }
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The quick engine check CI runs (`guardnest-bench check`): tunnel throughput, tunnel
/// setups and plain-HTTP requests through GuardNest, each as a ratio to the same operation
/// done directly in the same run, against a floor. Ratios, not absolute figures: a busy or
/// slow machine slows both sides alike, and a regression that makes GuardNest several times
/// slower than it was still falls through the floor.
pub struct Floors {
    pub throughput: f64,
    pub setups: f64,
    pub http: f64,
}

/// The floors CI holds (BENCHMARKS.md, "The quick engine check" has what they were set from).
pub const FLOORS: Floors = Floors { throughput: 0.15, setups: 0.1, http: 0.1 };

/// Runs the check against the GuardNest at `target`; whether every ratio holds its floor.
pub fn check(target: &Target, floors: &Floors) -> anyhow::Result<bool> {
    raise_fd_limit();
    let (ups, _reports) = upstream::start()?;
    let direct = Target { name: "direct".into(), proxy: None, pid: None };
    let dur = Duration::from_millis(1500);
    let warm = Duration::from_millis(300);
    let bytes = 256u64 << 20;
    let mut ok = true;
    let mut row = |what: &str, unit: &str, direct: f64, guardnest: f64, floor: f64| {
        let ratio = guardnest / direct;
        let verdict = if ratio >= floor { "ok" } else { "BELOW THE FLOOR" };
        ok &= ratio >= floor;
        println!(
            "| {what} | {} {unit} | {} {unit} | {} | {floor} | {verdict} |",
            fmt(direct, 2),
            fmt(guardnest, 2),
            fmt(ratio, 3)
        );
    };
    println!("| operation | direct | through GuardNest | ratio | floor | |");
    println!("|---|---:|---:|---:|---:|---|");
    let (d, _) = throughput(&direct, &ups, 1, false, bytes);
    let (g, _) = throughput(target, &ups, 1, false, bytes);
    row("tunnel throughput, 1 stream down", "GB/s", d, g, floors.throughput);
    let echo = ups.echo;
    rate(&direct, 16, warm, move |t| tunnel_op(t, echo));
    let d = rate(&direct, 16, dur, move |t| tunnel_op(t, echo)).per_sec;
    rate(target, 16, warm, move |t| tunnel_op(t, echo));
    let g = rate(target, 16, dur, move |t| tunnel_op(t, echo)).per_sec;
    row("tunnel setup (connect, CONNECT, echo, close)", "/s", d, g, floors.setups);
    http_rate(&direct, ups.http, 8, warm);
    let d = http_rate(&direct, ups.http, 8, dur).per_sec;
    http_rate(target, ups.http, 8, warm);
    let g = http_rate(target, ups.http, 8, dur).per_sec;
    row("plain-HTTP keep-alive requests", "/s", d, g, floors.http);
    Ok(ok)
}
