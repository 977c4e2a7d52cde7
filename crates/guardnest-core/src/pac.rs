//! PAC scripts (proxy auto-config): the user's `FindProxyForURL`, fetched once, evaluated by
//! QuickJS (the `rquickjs` crate; BENCHMARKS.md has why, against Boa) on a thread of its own,
//! its answers cached per host.
//!
//! The helper functions every PAC script may call (`isPlainHostName`, `dnsDomainIs`,
//! `localHostOrDomainIs`, `isResolvable`, `isInNet`, `dnsResolve`, `myIpAddress`,
//! `dnsDomainLevels`, `shExpMatch`, `weekdayRange`, `dateRange`, `timeRange`) are JavaScript
//! (`pac_utils.js`) over two native ones, `dnsResolve` and `myIpAddress`, each bounded in
//! time. A script that runs too long is interrupted; one that allocates too much is stopped.
//! A script asked about `https://host:port/` gets the URL without its path (as browsers give
//! it), and so does a plain `http://` one: that is what makes the answer per host.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::sysproxy::ProxyServer;

/// The helper functions, in JavaScript.
const PAC_UTILS: &str = include_str!("pac_utils.js");
/// Longest one `FindProxyForURL` call may run.
pub const EVAL_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest a `dnsResolve` inside a script may wait.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(2);
/// Memory the script may use.
const MEMORY_LIMIT: usize = 32 << 20;
/// Largest PAC script accepted.
pub const MAX_SCRIPT_BYTES: u64 = 1 << 20;
/// Longest the script's download may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer is kept for a host.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// Hosts whose answers are kept; past this the cache starts again.
const CACHE_HOSTS: usize = 4096;
/// After a script failed to load (its server down, say), how long until it is fetched again;
/// until then every request goes direct at once.
pub const RELOAD_AFTER: Duration = Duration::from_secs(30);

/// One entry of a `FindProxyForURL` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacHop {
    /// `DIRECT`.
    Direct,
    /// `PROXY host:port` (or `HTTP host:port`).
    Proxy(ProxyServer),
}

/// Why a PAC script gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PacError {
    /// The script could not be downloaded or read.
    #[error("cannot fetch the PAC script {url}: {why}")]
    Fetch {
        /// Where it is.
        url: String,
        /// Why.
        why: String,
    },
    /// The script does not compile, or defines no `FindProxyForURL`.
    #[error("the PAC script does not load: {0}")]
    Load(String),
    /// `FindProxyForURL` threw, ran too long, or returned no string.
    #[error("FindProxyForURL failed: {0}")]
    Eval(String),
}

/// Parses a `FindProxyForURL` answer: entries separated by `;`, tried in order. SOCKS and
/// HTTPS proxies, which GuardNest cannot chain through, are left out; an answer with nothing
/// usable is `DIRECT`.
pub fn parse_answer(answer: &str) -> Vec<PacHop> {
    let mut hops = Vec::new();
    for entry in answer.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let mut words = entry.split_whitespace();
        let kind = words.next().unwrap_or("").to_ascii_uppercase();
        match (kind.as_str(), words.next()) {
            ("DIRECT", _) => hops.push(PacHop::Direct),
            ("PROXY" | "HTTP", Some(addr)) => match ProxyServer::parse(addr, 80) {
                Some(server) => hops.push(PacHop::Proxy(server)),
                None => tracing::debug!(%entry, "PAC answer entry is not host:port; skipped"),
            },
            _ => tracing::debug!(%entry, "PAC answer entry GuardNest cannot use (SOCKS, HTTPS); skipped"),
        }
    }
    if hops.is_empty() {
        hops.push(PacHop::Direct);
    }
    hops
}

/// A job for the script's thread.
struct Job {
    url: String,
    host: String,
    reply: tokio::sync::oneshot::Sender<Result<String, PacError>>,
}

/// A loaded script on its thread. Dropping it ends the thread.
struct Engine {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Engine {
    /// Starts the thread and loads `script` there; fails if it does not load.
    fn start(script: String) -> Result<Engine, PacError> {
        let (jobs, receive) = mpsc::channel::<Job>();
        let (loaded, load_result) = mpsc::channel::<Result<(), PacError>>();
        std::thread::Builder::new()
            .name("guardnest-pac".into())
            .spawn(move || run_engine(&script, &loaded, &receive))
            .map_err(|e| PacError::Load(format!("cannot start the PAC thread: {e}")))?;
        match load_result.recv_timeout(EVAL_TIMEOUT * 4) {
            Ok(Ok(())) => Ok(Engine { jobs: Mutex::new(jobs) }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(PacError::Load("the script did not load in time".into())),
        }
    }

    async fn find(&self, url: String, host: String) -> Result<String, PacError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = self.jobs.lock().send(Job { url, host, reply });
        sent.map_err(|_| PacError::Eval("the PAC thread is gone".into()))?;
        // The script is interrupted at EVAL_TIMEOUT, its lookups at DNS_TIMEOUT each: this
        // bound only guards against a bug.
        match tokio::time::timeout(EVAL_TIMEOUT + DNS_TIMEOUT * 4, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PacError::Eval("the PAC thread is gone".into())),
            Err(_) => Err(PacError::Eval("no answer in time".into())),
        }
    }
}

/// The script's thread: loads it, then answers jobs until every sender is gone.
fn run_engine(script: &str, loaded: &mpsc::Sender<Result<(), PacError>>, jobs: &mpsc::Receiver<Job>) {
    use rquickjs::{Context, Function, Runtime};
    let setup = || -> Result<(Runtime, Context, Arc<AtomicU64>), PacError> {
        let load = |e: rquickjs::Error| PacError::Load(e.to_string());
        let runtime = Runtime::new().map_err(load)?;
        runtime.set_memory_limit(MEMORY_LIMIT);
        // Nanoseconds since `epoch` when the running call must stop (0: none running).
        let deadline = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let watched = deadline.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || {
            let at = watched.load(Relaxed);
            at != 0 && epoch.elapsed().as_nanos() as u64 > at
        })));
        let context = Context::full(&runtime).map_err(load)?;
        context.with(|ctx| -> Result<(), PacError> {
            let globals = ctx.globals();
            let natives = || -> rquickjs::Result<()> {
                globals.set("dnsResolve", Function::new(ctx.clone(), |host: String| dns_resolve(&host))?)?;
                globals.set("myIpAddress", Function::new(ctx.clone(), my_ip_address)?)?;
                Ok(())
            };
            natives().map_err(load)?;
            let start = epoch.elapsed() + EVAL_TIMEOUT * 2;
            deadline.store(start.as_nanos() as u64, Relaxed);
            let evaluated = ctx.eval::<(), _>(PAC_UTILS).and_then(|()| ctx.eval::<(), _>(script));
            deadline.store(0, Relaxed);
            evaluated.map_err(|e| PacError::Load(exception(&ctx, &e)))?;
            match globals.get::<_, Function>("FindProxyForURL") {
                Ok(_) => Ok(()),
                Err(_) => Err(PacError::Load("it defines no function FindProxyForURL".into())),
            }
        })?;
        // The deadline clock starts from `epoch`: keep the pair together.
        let _ = epoch;
        Ok((runtime, context, deadline))
    };
    let started = Instant::now();
    let (runtime, context, deadline) = match setup() {
        Ok(parts) => parts,
        Err(e) => {
            let _ = loaded.send(Err(e));
            return;
        }
    };
    let _ = loaded.send(Ok(()));
    while let Ok(job) = jobs.recv() {
        let result = context.with(|ctx| {
            let find: Function = ctx.globals().get("FindProxyForURL").map_err(|e| PacError::Eval(e.to_string()))?;
            let stop = started.elapsed() + EVAL_TIMEOUT;
            deadline.store(stop.as_nanos() as u64, Relaxed);
            let answer = find.call::<_, rquickjs::Value>((job.url.as_str(), job.host.as_str()));
            deadline.store(0, Relaxed);
            let answer = answer.map_err(|e| PacError::Eval(exception(&ctx, &e)))?;
            answer
                .as_string()
                .and_then(|s| s.to_string().ok())
                .ok_or_else(|| PacError::Eval("FindProxyForURL returned no string".into()))
        });
        let _ = job.reply.send(result);
        runtime.run_gc();
    }
}

/// The text of a script's exception (or of the engine's error).
fn exception(ctx: &rquickjs::Ctx<'_>, e: &rquickjs::Error) -> String {
    if !e.is_exception() {
        return e.to_string();
    }
    let thrown = ctx.catch();
    if let Some(ex) = thrown.as_exception() {
        return ex.message().unwrap_or_else(|| "an exception".into());
    }
    match thrown.as_string().and_then(|s| s.to_string().ok()) {
        Some(text) => text,
        None if ctx.globals().get::<_, rquickjs::Value>("FindProxyForURL").is_ok() => {
            "interrupted (ran too long) or an exception without a message".into()
        }
        None => "an exception without a message".into(),
    }
}

/// `dnsResolve`: the host's first IPv4 address (any address if it has none), or `null`,
/// within [`DNS_TIMEOUT`].
fn dns_resolve(host: &str) -> Option<String> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let (tx, rx) = mpsc::channel();
    let name = host.to_string();
    // The resolver cannot be cancelled; a stuck lookup ends its own thread later.
    std::thread::Builder::new()
        .name("guardnest-pac-dns".into())
        .spawn(move || {
            let addrs: Vec<IpAddr> =
                (name.as_str(), 0).to_socket_addrs().map(|a| a.map(|s| s.ip()).collect()).unwrap_or_default();
            let _ = tx.send(addrs);
        })
        .ok()?;
    let addrs = rx.recv_timeout(DNS_TIMEOUT).ok()?;
    addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).map(ToString::to_string)
}

/// `myIpAddress`: the address this host would send from to a public address (a UDP socket
/// connected, which sends nothing), or `127.0.0.1`.
fn my_ip_address() -> String {
    let outward = || -> std::io::Result<IpAddr> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        socket.connect("198.51.100.1:9")?; // TEST-NET-2: nothing is sent by a connect
        Ok(socket.local_addr()?.ip())
    };
    outward().ok().filter(|ip| !ip.is_unspecified()).map_or_else(|| "127.0.0.1".into(), |ip| ip.to_string())
}

/// A script loaded, or the last failure to load it and when.
type Loaded = Result<Arc<Engine>, (PacError, Instant)>;

/// What the cache holds for a host.
struct Cached {
    hops: Arc<[PacHop]>,
    at: Instant,
}

/// A PAC script: fetched on first use, then asked for each host not in the cache.
pub struct Pac {
    url: String,
    /// The loaded script, or the last failure to load it and when.
    engine: tokio::sync::Mutex<Option<Loaded>>,
    cache: Mutex<HashMap<(bool, String, u16), Cached>>,
    /// Script given directly (tests, benchmarks): not fetched.
    script: Option<String>,
}

impl std::fmt::Debug for Pac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pac").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Pac {
    /// The script at `url` (`http://`, `https://` or `file://`), fetched on first use, never
    /// through any proxy.
    pub fn new(url: &str) -> Pac {
        Pac { url: url.to_string(), engine: tokio::sync::Mutex::new(None), cache: Mutex::default(), script: None }
    }

    /// A script given as text (named `origin` in messages).
    pub fn from_script(origin: &str, script: &str) -> Pac {
        Pac { script: Some(script.to_string()), ..Pac::new(origin) }
    }

    /// Where the script comes from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The hops, in order, for a request to `host:port` (`https`: a CONNECT). Cached per
    /// host for [`CACHE_TTL`]; an error is not cached.
    pub async fn find(&self, https: bool, host: &str, port: u16) -> Result<Arc<[PacHop]>, PacError> {
        let key = (https, host.to_string(), port);
        let hit = self.cache.lock().get(&key).filter(|c| c.at.elapsed() < CACHE_TTL).map(|c| c.hops.clone());
        if let Some(hops) = hit {
            return Ok(hops);
        }
        let hops: Arc<[PacHop]> = parse_answer(&self.ask(https, host, port).await?).into();
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_HOSTS {
            cache.clear();
        }
        cache.insert(key, Cached { hops: hops.clone(), at: Instant::now() });
        drop(cache);
        Ok(hops)
    }

    /// Asks the script without the cache (the benchmark's cold path).
    pub async fn ask(&self, https: bool, host: &str, port: u16) -> Result<String, PacError> {
        let engine = self.engine().await?;
        let scheme = if https { "https" } else { "http" };
        let default = if https { 443 } else { 80 };
        let authority = match (host.contains(':'), port == default) {
            (true, true) => format!("[{host}]"),
            (true, false) => format!("[{host}]:{port}"),
            (false, true) => host.to_string(),
            (false, false) => format!("{host}:{port}"),
        };
        engine.find(format!("{scheme}://{authority}/"), host.to_string()).await
    }

    /// The loaded script: loaded now if it never was, or if it failed more than
    /// [`RELOAD_AFTER`] ago (requests meanwhile wait for the one load under way).
    async fn engine(&self) -> Result<Arc<Engine>, PacError> {
        let mut state = self.engine.lock().await;
        match &*state {
            Some(Ok(engine)) => return Ok(engine.clone()),
            Some(Err((e, at))) if at.elapsed() < RELOAD_AFTER => return Err(e.clone()),
            _ => {}
        }
        let loaded = self.load().await.map(Arc::new);
        if let Err(e) = &loaded {
            tracing::warn!(url = %self.url, error = %e, "PAC script not loaded; going direct, trying again in {}s", RELOAD_AFTER.as_secs());
        }
        *state = Some(loaded.clone().map_err(|e| (e, Instant::now())));
        loaded
    }

    async fn load(&self) -> Result<Engine, PacError> {
        let script = match &self.script {
            Some(s) => s.clone(),
            None => fetch(&self.url).await?,
        };
        let engine = tokio::task::spawn_blocking(move || Engine::start(script))
            .await
            .map_err(|e| PacError::Load(e.to_string()))??;
        tracing::info!(url = %self.url, "PAC script loaded");
        Ok(engine)
    }
}

/// Downloads (or reads) the script, bounded in size and time, through no proxy.
async fn fetch(url: &str) -> Result<String, PacError> {
    let err = |why: String| PacError::Fetch { url: url.to_string(), why };
    if let Some(path) = url.strip_prefix("file://") {
        let read = tokio::time::timeout(FETCH_TIMEOUT, tokio::fs::read(path)).await;
        let bytes = read.map_err(|_| err("timed out".into()))?.map_err(|e| err(e.to_string()))?;
        if bytes.len() as u64 > MAX_SCRIPT_BYTES {
            return Err(err(format!("larger than {MAX_SCRIPT_BYTES} bytes")));
        }
        return String::from_utf8(bytes).map_err(|_| err("not UTF-8".into()));
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| err(crate::error_chain(&e)))?;
    let download = async {
        let mut response = client.get(url).send().await.map_err(|e| err(crate::error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(err(format!("server answered {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| err(crate::error_chain(&e)))? {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > MAX_SCRIPT_BYTES {
                return Err(err(format!("larger than {MAX_SCRIPT_BYTES} bytes")));
            }
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(FETCH_TIMEOUT, download).await.map_err(|_| err("timed out".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hops(answer: &str) -> Vec<String> {
        parse_answer(answer)
            .into_iter()
            .map(|h| match h {
                PacHop::Direct => "DIRECT".into(),
                PacHop::Proxy(p) => p.to_string(),
            })
            .collect()
    }

    #[test]
    fn answers_with_several_entries() {
        assert_eq!(hops("PROXY a:1; PROXY b:2; DIRECT"), ["a:1", "b:2", "DIRECT"]);
        assert_eq!(hops("  proxy A.example:3128 ;direct"), ["a.example:3128", "DIRECT"]);
        assert_eq!(hops("SOCKS5 s:1080; HTTPS h:443; PROXY p:3128"), ["p:3128"]);
        assert_eq!(hops(""), ["DIRECT"]);
        assert_eq!(hops("SOCKS s:1080"), ["DIRECT"]);
        assert_eq!(hops("HTTP h:8080"), ["h:8080"]);
    }

    /// Every helper exists and answers as Netscape's specification says.
    #[tokio::test]
    async fn the_helper_functions() {
        let script = r#"
            function FindProxyForURL(url, host) {
              var checks = [
                isPlainHostName("intranet") && !isPlainHostName("a.example"),
                dnsDomainIs("www.corp.example", ".corp.example") && !dnsDomainIs("www.other.example", ".corp.example"),
                localHostOrDomainIs("www", "www.corp.example") && localHostOrDomainIs("www.corp.example", "www.corp.example")
                  && !localHostOrDomainIs("www.other.example", "www.corp.example"),
                isResolvable("192.0.2.1"),
                isInNet("10.1.2.3", "10.0.0.0", "255.0.0.0") && !isInNet("11.1.2.3", "10.0.0.0", "255.0.0.0")
                  && isInNet("192.168.200.9", "192.168.128.0", "255.255.128.0"),
                dnsResolve("198.51.100.7") === "198.51.100.7",
                typeof myIpAddress() === "string" && myIpAddress().length > 0,
                dnsDomainLevels("www.corp.example") === 2 && dnsDomainLevels("www") === 0,
                shExpMatch("http://a.corp.example/x", "*.corp.example/*") && shExpMatch("abc", "a?c") && !shExpMatch("abc", "a.c"),
                weekdayRange("SUN", "SAT") && typeof weekdayRange("MON") === "boolean" && weekdayRange("SUN", "SAT", "GMT"),
                dateRange(1, 31) && dateRange("JAN", "DEC") && dateRange(1995, 2200) && !dateRange(1990, 1991),
                timeRange(0, 24) && timeRange(0, 0, 23, 59) && typeof timeRange(12) === "boolean" && timeRange(0, 0, 0, 23, 59, 59, "GMT")
              ];
              for (var i = 0; i < checks.length; i++) if (!checks[i]) return "FAILED " + i;
              return "DIRECT";
            }"#;
        let pac = Pac::from_script("test", script);
        assert_eq!(pac.ask(true, "a.example", 443).await.unwrap(), "DIRECT");
    }

    #[tokio::test]
    async fn cached_per_host_and_bounded() {
        let script = r#"
            var calls = 0;
            function FindProxyForURL(url, host) {
              calls++;
              if (host == "loop.test") { while (true) {} }
              if (host == "throw.test") throw new Error("no such rule");
              if (dnsDomainIs(host, ".corp.test")) return "DIRECT";
              return "PROXY parent.test:3128; DIRECT; calls=" + calls + " url=" + url;
            }"#;
        let pac = Pac::from_script("test", script);
        let first = pac.find(true, "www.example", 443).await.unwrap();
        let again = pac.find(true, "www.example", 443).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the second lookup is the cache's");
        assert_eq!(first[0], PacHop::Proxy(ProxyServer { host: "parent.test".into(), port: 3128 }));
        assert_eq!(&pac.find(false, "a.corp.test", 80).await.unwrap()[..], [PacHop::Direct]);
        let answer = pac.ask(false, "x.example", 8080).await.unwrap();
        assert!(answer.ends_with("url=http://x.example:8080/"), "{answer}");
        let started = Instant::now();
        let Err(PacError::Eval(why)) = pac.find(true, "loop.test", 443).await else { panic!("a loop answered") };
        assert!(started.elapsed() < EVAL_TIMEOUT * 4, "{why}");
        let Err(PacError::Eval(why)) = pac.find(true, "throw.test", 443).await else { panic!() };
        assert!(why.contains("no such rule"), "{why}");
        // The engine still answers after both.
        assert!(pac.ask(true, "b.example", 443).await.unwrap().starts_with("PROXY"));
        let Err(PacError::Load(why)) = Pac::from_script("t", "function x( {").ask(true, "a", 1).await else { panic!() };
        assert!(!why.is_empty());
        let Err(PacError::Load(why)) = Pac::from_script("t", "var a = 1;").ask(true, "a", 1).await else { panic!() };
        assert!(why.contains("FindProxyForURL"), "{why}");
    }

    /// A script that cannot be fetched is an error (the caller goes direct), remembered for
    /// [`RELOAD_AFTER`] so requests meanwhile do not wait on the dead server again.
    #[tokio::test]
    async fn a_script_that_cannot_be_fetched_is_tried_again_later() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let pac = Pac::new(&format!("http://{dead}/proxy.pac"));
        let Err(PacError::Fetch { url, .. }) = pac.find(true, "a.example", 443).await else { panic!("fetched") };
        assert!(url.contains(&dead.to_string()));
        let started = Instant::now();
        assert!(matches!(pac.find(true, "b.example", 443).await, Err(PacError::Fetch { .. })));
        assert!(started.elapsed() < Duration::from_millis(50), "the dead server was asked again at once");
    }
}
