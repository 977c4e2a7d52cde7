//! `guardnest-bench login-flood`: how long a valid login takes while wrong Basic passwords
//! flood a gateway. Runs the release `guardnest` binary with proxy users (argon2, default
//! parameters) and measures valid logins, each a user's first (so never answered from the
//! cache of verified credentials), each from its own loopback address, while other
//! addresses guess: quiet, during 200 concurrent wrong guesses, during 20 keep-alive
//! connections guessing for 10 s (one address, as an attacker's client), and during one
//! keep-alive connection guessing from each of 20 addresses.
//!
//! A login is timed from the connect to the `200` of a CONNECT to a local echo server.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::procfs::cpu_ns;

/// Bound on any one step (connect, an answer).
const STEP: Duration = Duration::from_secs(10);
/// Users made, one per valid login measured.
const USERS: usize = 120;
/// Gap between two valid logins during a sustained flood.
const EVERY: Duration = Duration::from_millis(250);

/// Options of one run.
pub struct Options {
    /// The `guardnest` binary (release build).
    pub guardnest: PathBuf,
    /// Seconds each sustained flood lasts.
    pub secs: u64,
}

/// A running `guardnest run`, killed when dropped.
struct Gateway {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile_dir::Dir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory removed when dropped (the bench has no tempfile dependency).
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(tag: &str) -> std::io::Result<Dir> {
            let path = std::env::temp_dir().join(format!("guardnest-bench-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&path)?;
            Ok(Dir(path))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn user(i: usize) -> (String, String) {
    (format!("user{i}"), format!("right-password-{i}"))
}

fn basic(name: &str, password: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{name}:{password}");
    let mut out = String::new();
    for c in raw.as_bytes().chunks(3) {
        let n = c.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= c.len() { T[(n >> (18 - 6 * i)) as usize & 63] as char } else { '=' });
        }
    }
    out
}

/// Starts the gateway; also returns how long each argon2 hash took here (a check costs the
/// same: the floor of a valid uncached login at the time of the run).
fn start_gateway(binary: &Path) -> anyhow::Result<(Gateway, Vec<Duration>)> {
    let dir = tempfile_dir::Dir::new("login")?;
    let mut users = String::new();
    let mut hashing = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let (name, password) = user(i);
        let t = Instant::now();
        let hash = guardnest_core::access::hash_password(&password).map_err(anyhow::Error::msg)?;
        hashing.push(t.elapsed());
        users += &format!("  {{ name = \"{name}\", password_hash = \"{hash}\" }},\n");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = dir.path().join("guardnest.toml");
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = \"{addr}\"\n[access]\nallow_destinations = [\"127.0.0.0/8\"]\nusers = [\n{users}]\n\
             [blocklist]\ndefault_lists = false\n"
        ),
    )?;
    let child = Command::new(binary)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--control", "none", "--log-level", "warn"])
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {} (cargo build --release -p guardnest-cli)", binary.display()))?;
    let gateway = Gateway { child, addr, _dir: dir };
    let deadline = Instant::now() + STEP;
    while std::net::TcpStream::connect(addr).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "guardnest did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((gateway, hashing))
}

/// An echo server for the CONNECTs that get through.
async fn echo() -> anyhow::Result<SocketAddr> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}

async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
    tokio::time::timeout(STEP, socket.connect(to)).await.map_err(|_| std::io::ErrorKind::TimedOut)?
}

/// Reads one answer (head and a Content-Length body); its status, or 0 when the connection
/// closed first.
async fn answer(s: &mut TcpStream) -> std::io::Result<u16> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(STEP, s.read(&mut chunk)).await.map_err(|_| std::io::ErrorKind::TimedOut)??;
        if n == 0 {
            return Ok(0);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse().ok())).unwrap_or(0);
    let mut left = length.saturating_sub(buf.len() - head_end);
    while left > 0 {
        let n = tokio::time::timeout(STEP, s.read(&mut chunk)).await.map_err(|_| std::io::ErrorKind::TimedOut)??;
        if n == 0 {
            break;
        }
        left = left.saturating_sub(n);
    }
    Ok(status)
}

/// One valid login: connect from `source`, CONNECT with user `i`'s credentials, `200`.
/// Returns how long it took.
async fn valid_login(gateway: SocketAddr, echo: SocketAddr, source: Ipv4Addr, i: usize) -> anyhow::Result<Duration> {
    let (name, password) = user(i);
    let started = Instant::now();
    let mut s = connect_from(source, gateway).await?;
    let head = format!("CONNECT {echo} HTTP/1.1\r\nProxy-Authorization: Basic {}\r\n\r\n", basic(&name, &password));
    s.write_all(head.as_bytes()).await?;
    let status = answer(&mut s).await?;
    let took = started.elapsed();
    anyhow::ensure!(status == 200, "a valid login from {source} got {status}");
    Ok(took)
}

/// What the guessing clients got.
#[derive(Default)]
struct Guesses {
    sent: AtomicU64,
    status_407: AtomicU64,
    status_429: AtomicU64,
    /// Closed by the proxy (after the third failure on a connection).
    closed: AtomicU64,
    other: AtomicU64,
}

impl Guesses {
    fn count(&self, status: u16) {
        self.sent.fetch_add(1, Relaxed);
        let field = match status {
            407 => &self.status_407,
            429 => &self.status_429,
            0 => &self.closed,
            _ => &self.other,
        };
        field.fetch_add(1, Relaxed);
    }

    fn line(&self) -> String {
        format!(
            "{} (407: {}, 429: {}, closed: {}, other: {})",
            self.sent.load(Relaxed),
            self.status_407.load(Relaxed),
            self.status_429.load(Relaxed),
            self.closed.load(Relaxed),
            self.other.load(Relaxed)
        )
    }
}

/// A guessing client: one connection from `source`, wrong passwords for user 0 until
/// `stop`, a new connection each time the proxy closes one. With `once`, a single guess.
async fn guesser(
    gateway: SocketAddr,
    echo: SocketAddr,
    source: Ipv4Addr,
    n: usize,
    guesses: Arc<Guesses>,
    stop: Arc<AtomicBool>,
    once: bool,
) {
    let (name, _) = user(0);
    let mut k = 0u64;
    while !stop.load(Relaxed) {
        let Ok(mut s) = connect_from(source, gateway).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        loop {
            k += 1;
            let head = format!(
                "CONNECT {echo} HTTP/1.1\r\nProxy-Authorization: Basic {}\r\n\r\n",
                basic(&name, &format!("wrong-{n}-{k}"))
            );
            let status = match s.write_all(head.as_bytes()).await {
                Ok(()) => answer(&mut s).await.unwrap_or(0),
                Err(_) => 0,
            };
            guesses.count(status);
            if once || status == 0 || status == 429 || stop.load(Relaxed) {
                break;
            }
        }
        if once {
            return;
        }
    }
}

/// p50 and max in ms.
fn summary(mut times: Vec<Duration>) -> (usize, f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    match times.len() {
        0 => (0, f64::NAN, f64::NAN),
        n => (n, ms(times[(n - 1) / 2]), ms(times[n - 1])),
    }
}

/// One table row.
struct Row {
    phase: String,
    logins: Vec<Duration>,
    guesses: Arc<Guesses>,
    cpu_s: Option<f64>,
    secs: f64,
}

fn print_row(r: &Row) {
    let (n, p50, max) = summary(r.logins.clone());
    println!(
        "| {} | {n} | {p50:.1} | {max:.1} | {} | {} | {:.1} |",
        r.phase,
        r.guesses.line(),
        r.cpu_s.map_or("-".to_string(), |c| format!("{c:.2}")),
        r.secs
    );
}

/// Runs the phases and prints the table.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    println!("# guardnest-bench login-flood");
    println!(
        "machine: {} CPUs, {}; guardnest {} (argon2 default parameters, {USERS} users); valid logins: each a user's \
         first (never cached), each from its own loopback address, timed connect to `200`",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        opts.guardnest.display()
    );
    let (gateway, hashing) = start_gateway(&opts.guardnest)?;
    let (n, p50, max) = summary(hashing);
    println!("argon2 in this process meanwhile ({n} hashes of the users' passwords): p50 {p50:.1} ms, max {max:.1} ms");
    let pid = Some(gateway.child.id());
    let addr = gateway.addr;
    let echo = runtime.block_on(echo())?;
    let mut next_user = 1usize; // user 0 is the one guessed at
    let mut next_source = 0u32;
    // Valid logins come from 127.0.1.x, floods from 127.0.2.x and up: no address shares a budget.
    let mut fresh = || {
        next_source += 1;
        Ipv4Addr::new(127, 0, 1 + (next_source / 250) as u8, (next_source % 250) as u8 + 1)
    };
    let mut rows = Vec::new();

    // Quiet.
    let started = Instant::now();
    let cpu0 = cpu_ns(pid);
    let mut logins = Vec::new();
    for _ in 0..5 {
        logins.push(runtime.block_on(valid_login(addr, echo, fresh(), next_user))?);
        next_user += 1;
    }
    rows.push(Row {
        phase: "quiet".into(),
        logins,
        guesses: Arc::default(),
        cpu_s: cpu_ns(pid).zip(cpu0).map(|(a, b)| (a - b) as f64 / 1e9),
        secs: started.elapsed().as_secs_f64(),
    });

    // Floods: (name, guessing addresses, connections per address, each a single guess?, seconds).
    let floods: [(&str, u8, usize, bool, u64); 3] = [
        ("200 concurrent wrong guesses (one address, one connection each)", 1, 200, true, 0),
        ("20 keep-alive connections guessing (one address)", 1, 20, false, opts.secs),
        ("20 addresses, one keep-alive connection guessing each", 20, 1, false, opts.secs),
    ];
    for (k, (phase, addresses, per_address, once, secs)) in floods.into_iter().enumerate() {
        if next_user + (secs as usize * 1000 / EVERY.as_millis() as usize) + 10 >= USERS {
            anyhow::bail!("not enough users for {secs} s of logins every {EVERY:?}");
        }
        let guesses = Arc::new(Guesses::default());
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let cpu0 = cpu_ns(pid);
        let tasks: Vec<_> = (0..addresses)
            .flat_map(|a| (0..per_address).map(move |c| (a, c)))
            .map(|(a, c)| {
                let source = Ipv4Addr::new(127, 0, 2 + k as u8, a + 1);
                runtime.spawn(guesser(addr, echo, source, c, guesses.clone(), stop.clone(), once))
            })
            .collect();
        // Valid logins meanwhile: every EVERY until the flood's time is up (or, for the
        // single burst, until every guess was answered), at least 3.
        let mut logins = Vec::new();
        let until = started + Duration::from_secs(secs);
        loop {
            let burst_done = once && guesses.sent.load(Relaxed) >= (addresses as u64) * per_address as u64;
            let done = if once { burst_done } else { Instant::now() >= until };
            if done && logins.len() >= 3 {
                break;
            }
            anyhow::ensure!(next_user < USERS, "more logins than users ({USERS})");
            let source = fresh();
            logins.push(runtime.block_on(valid_login(addr, echo, source, next_user))?);
            next_user += 1;
            if !once {
                std::thread::sleep(EVERY);
            }
        }
        stop.store(true, Relaxed);
        for t in tasks {
            let _ = runtime.block_on(async { tokio::time::timeout(STEP, t).await });
        }
        rows.push(Row {
            phase: phase.into(),
            logins,
            guesses,
            cpu_s: cpu_ns(pid).zip(cpu0).map(|(a, b)| (a - b) as f64 / 1e9),
            secs: started.elapsed().as_secs_f64(),
        });
    }

    println!("\n## Valid logins during a wrong-password flood (ms)\n");
    println!("| flood | valid logins | p50 ms | max ms | wrong guesses answered | proxy CPU s | s |");
    println!("|---|---:|---:|---:|---|---:|---:|");
    for r in &rows {
        print_row(r);
    }
    Ok(())
}
