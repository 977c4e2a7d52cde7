//! Who asked: the program behind a client connection, named for every block and counted
//! for the list of programs that use GuardNest (the OS lookup is
//! [`guardnest_sysproxy::peer`]).
//!
//! Never on the tunnel's path. A block is named before its 403 is written, while the
//! client's socket surely still exists (after the answer, a client may close it at once,
//! and its program could no longer be told); the blocks waiting at the same moment are named
//! in one batch, one read of each process's descriptors however many blocks, so a flood of
//! blocks costs little more than one. The answer is kept for the rest of that connection.
//! Every other local connection costs one counter add; the first `SAMPLE` (64) of every
//! [`SWEEP`] are also queued and named in one batch, each standing for its share of the
//! period's connections. A connection that closed by then is counted as such, never guessed. A client that is not on this host (gateway mode) is an address: no OS can
//! name a program on another machine.

use parking_lot::{Mutex, MutexGuard};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use guardnest_sysproxy::peer::{Ends, Owner, Owners};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

/// How often queued connections are named.
pub const SWEEP: Duration = Duration::from_secs(2);
/// Connections named per sweep: the first ones of each period are the sample, and each
/// named one stands for its share of the period's local connections (a flood of short
/// connections costs one bounded batch every [`SWEEP`], however large).
const SAMPLE: usize = 64;
/// Blocks waiting to be named; beyond this, a block is recorded as not named.
const BLOCKS_QUEUED: usize = 4096;
/// The longest a block's answer waits for its name.
const NAME_TIMEOUT: Duration = Duration::from_secs(1);
/// Programs are counted over this window (the "last hour").
const WINDOW_MINUTES: u64 = 60;
/// Distinct programs remembered; the one seen least recently goes first.
const PROGRAMS: usize = 256;

/// Who is on the other end of a client connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Asker {
    /// A program on this host.
    Program {
        /// Its process.
        pid: u32,
        /// Its executable, when the OS tells.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        /// Its short name (the executable's file name).
        name: String,
        /// The user it runs as.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// A program on this host that GuardNest may not inspect (another user's, GuardNest
    /// not being privileged); what the OS does say.
    Restricted {
        /// Its PID, where the OS gives it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        /// Its user, where the OS gives it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// The connection was gone before it could be named.
    Closed,
    /// A client on another machine (gateway mode): its address is all there is.
    Remote {
        /// The client's address.
        address: IpAddr,
    },
    /// The lookup failed; why.
    Unknown {
        /// The OS error, or "not implemented on this OS".
        reason: String,
    },
}

impl fmt::Display for Asker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Asker::Program { pid, path, name, user } => {
                write!(f, "{}", path.as_deref().unwrap_or(name))?;
                match user {
                    Some(u) => write!(f, " (pid {pid}, user {u})"),
                    None => write!(f, " (pid {pid})"),
                }
            }
            Asker::Restricted { pid, user } => {
                f.write_str("a program GuardNest may not inspect")?;
                match (pid, user) {
                    (Some(p), Some(u)) => write!(f, " (pid {p}, user {u})"),
                    (Some(p), None) => write!(f, " (pid {p})"),
                    (None, Some(u)) => write!(f, " (user {u})"),
                    (None, None) => Ok(()),
                }
            }
            Asker::Closed => f.write_str("a program that closed its connection before it was named"),
            Asker::Remote { address } => write!(f, "remote client {address}"),
            Asker::Unknown { reason } => write!(f, "unknown ({reason})"),
        }
    }
}

impl Asker {
    fn from_owner(owner: Owner) -> Asker {
        match owner {
            Owner::Program(p) => Asker::Program {
                pid: p.pid,
                path: p.path.map(|p| p.to_string_lossy().into_owned()),
                name: p.name,
                user: p.user,
            },
            Owner::Restricted { pid, user } => Asker::Restricted { pid, user },
            Owner::NotFound => Asker::Closed,
        }
    }

    /// As the programs list names it: a program without its process (a row stands for
    /// every process of that program).
    pub fn program_label(&self) -> String {
        match self {
            Asker::Program { path, name, user, .. } => {
                let program = path.as_deref().unwrap_or(name);
                match user {
                    Some(u) => format!("{program} (user {u})"),
                    None => program.to_string(),
                }
            }
            other => other.to_string(),
        }
    }

    /// The same program whatever its process: a row of the programs list.
    fn key(&self) -> Asker {
        match self {
            Asker::Program { path, name, user, .. } => {
                Asker::Program { pid: 0, path: path.clone(), name: name.clone(), user: user.clone() }
            }
            Asker::Restricted { user, .. } => Asker::Restricted { pid: None, user: user.clone() },
            Asker::Unknown { .. } => Asker::Unknown { reason: String::new() },
            other => other.clone(),
        }
    }
}

/// One program seen through GuardNest in the last hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramSeen {
    /// The program (its latest process).
    pub asker: Asker,
    /// In plain words, as the log says it.
    pub label: String,
    /// Connections it opened through GuardNest in the last hour (named ones).
    pub connections: u64,
    /// Its requests blocked in the last hour.
    pub blocks: u64,
    /// Last seen (seconds since the epoch).
    pub last: u64,
}

/// A block waiting for its program's name.
struct Pending {
    ends: Ends,
    answer: oneshot::Sender<Asker>,
}

/// Names client connections' programs and counts them.
pub struct Who {
    owners: Arc<Owners>,
    blocks: Mutex<Vec<Pending>>,
    blocks_queued: Notify,
    /// This period's sample: a connection's ends, and its program once it was named (as
    /// soon as it was queued, or by a block).
    queue: Mutex<Vec<(Ends, Option<Asker>)>>,
    /// Wakes the namer when a sampled connection is queued: named while it is open (a
    /// short connection, a curl, is gone long before the next sweep).
    connections_queued: Notify,
    book: Mutex<HashMap<Asker, Row>>,
    /// Local connections accepted since the last sweep, sampled or not.
    local_connections: AtomicU64,
    /// Bumped at every count: a view of [`Who::programs`] redraws when it moves (a sweep
    /// counts connections seconds after they were made, when nothing else changes).
    counted: AtomicU64,
}

impl fmt::Debug for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Who")
    }
}

impl Default for Who {
    fn default() -> Self {
        Who {
            owners: Arc::new(Owners::new()),
            blocks: Mutex::new(Vec::new()),
            blocks_queued: Notify::new(),
            queue: Mutex::new(Vec::new()),
            connections_queued: Notify::new(),
            book: Mutex::new(HashMap::new()),
            local_connections: AtomicU64::new(0),
            counted: AtomicU64::new(0),
        }
    }
}

struct Row {
    asker: Asker,
    /// (minute since the epoch, connections, blocks), oldest first, the last hour.
    minutes: VecDeque<(u64, u64, u64)>,
    last: u64,
}

/// Our end of `client`'s connection if the client is on this host: loopback, or the host's
/// own address (a connection to the listener's own address comes from that address).
/// `server` is `None` for a client named by a PROXY protocol header.
fn local_end(client: SocketAddr, server: Option<SocketAddr>) -> Option<SocketAddr> {
    let server = server?;
    let ip = unmapped(client.ip());
    (ip.is_loopback() || ip == unmapped(server.ip())).then_some(server)
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Who {
    /// A connection accepted from `client` on our `server` address: queued to be named by
    /// the next sweep (a remote client is counted at once, by its address).
    pub(crate) fn note_connection(&self, client: SocketAddr, server: Option<SocketAddr>) {
        let Some(server) = local_end(client, server) else {
            self.count(&Asker::Remote { address: unmapped(client.ip()) }, 1, 0);
            return;
        };
        if self.local_connections.fetch_add(1, Relaxed) as usize >= SAMPLE {
            return;
        }
        let mut queue = self.queue.lock();
        if queue.len() < SAMPLE {
            queue.push((Ends::new(client, server), None));
            drop(queue);
            self.connections_queued.notify_one();
        }
    }

    /// Who asked for a blocked request on a connection from `client` to our `server` (`None`:
    /// the client was named by a PROXY header): a remote client's address, the connection's
    /// earlier answer, or a name looked up now in a batch with the blocks around it (at most
    /// [`NAME_TIMEOUT`]).
    pub(crate) async fn name(
        &self,
        client: SocketAddr,
        server: Option<SocketAddr>,
        known: &OnceLock<Box<Asker>>,
    ) -> Asker {
        let Some(server) = local_end(client, server) else {
            return Asker::Remote { address: unmapped(client.ip()) };
        };
        if let Some(asker) = known.get() {
            return Asker::clone(asker);
        }
        let (answer, named) = oneshot::channel();
        {
            let mut queue = self.blocks.lock();
            if queue.len() >= BLOCKS_QUEUED {
                return Asker::Unknown { reason: "too many blocks at once to name them".into() };
            }
            queue.push(Pending { ends: Ends::new(client, server), answer });
        }
        self.blocks_queued.notify_one();
        let asker = match tokio::time::timeout(NAME_TIMEOUT, named).await {
            Ok(Ok(asker)) => asker,
            Ok(Err(_)) => Asker::Unknown { reason: "GuardNest is stopping".into() },
            Err(_) => {
                Asker::Unknown { reason: format!("no answer within {}", humantime::format_duration(NAME_TIMEOUT)) }
            }
        };
        if matches!(asker, Asker::Program { .. } | Asker::Restricted { .. }) {
            let _ = known.set(Box::new(asker.clone()));
            // In the sample, the connection counts for this program (a sweep would likely
            // find it closed after its 403).
            let ends = Ends::new(client, server);
            let mut queue = self.queue.lock();
            if let Some(slot) = queue.iter_mut().find(|(e, _)| *e == ends) {
                slot.1 = Some(asker.clone());
            }
        }
        asker
    }

    /// A block by `asker`, counted for its program.
    pub(crate) fn note_block(&self, asker: &Asker) {
        self.count(asker, 0, 1);
    }

    /// Names the queued blocks in one batch, on a blocking thread.
    async fn name_blocks(&self) {
        let batch = std::mem::take(&mut *self.blocks.lock());
        if batch.is_empty() {
            return;
        }
        let owners = self.owners.clone();
        let ends: Vec<Ends> = batch.iter().map(|p| p.ends).collect();
        let named = match tokio::task::spawn_blocking(move || owners.owners(&ends)).await {
            Ok(Ok(all)) => all.into_iter().map(Asker::from_owner).collect(),
            Ok(Err(e)) => vec![Asker::Unknown { reason: e.to_string() }; batch.len()],
            Err(e) => vec![Asker::Unknown { reason: format!("lookup failed: {e}") }; batch.len()],
        };
        for (pending, asker) in batch.into_iter().zip(named) {
            let _ = pending.answer.send(asker);
        }
    }

    /// Names the sampled connections not named yet, now, while they are open (one batch
    /// lookup on a blocking thread, however many were queued since the last one). At most
    /// [`SAMPLE`] connections are named per [`SWEEP`]: a flood costs one bounded batch.
    async fn name_connections(&self) {
        let ask: Vec<Ends> = self.queue.lock().iter().filter(|(_, known)| known.is_none()).map(|(e, _)| *e).collect();
        if ask.is_empty() {
            return;
        }
        let owners = self.owners.clone();
        let asked = ask.clone();
        let named: Vec<Asker> = match tokio::task::spawn_blocking(move || owners.owners(&asked)).await {
            Ok(Ok(all)) => all.into_iter().map(Asker::from_owner).collect(),
            // The sweep asks again (and says why if it fails too).
            _ => return,
        };
        let mut queue = self.queue.lock();
        for (ends, asker) in ask.iter().zip(named) {
            if let Some(slot) = queue.iter_mut().find(|(e, known)| e == ends && known.is_none()) {
                slot.1 = Some(asker);
            }
        }
    }

    /// Names the sampled connections (one batch lookup, on a blocking thread; those named
    /// already are not asked again) and counts the period's local connections by them.
    pub async fn sweep(&self) {
        let batch = std::mem::take(&mut *self.queue.lock());
        let all = self.local_connections.swap(0, Relaxed);
        if batch.is_empty() {
            return;
        }
        // Each named connection stands for an equal share of the period's (the first ones
        // take the remainder), so the counts add up to the connections accepted.
        let sampled = batch.len() as u64;
        let share = |i: usize| all / sampled + u64::from((i as u64) < all % sampled);
        let ask: Vec<Ends> = batch.iter().filter(|(_, known)| known.is_none()).map(|(e, _)| *e).collect();
        let owners = self.owners.clone();
        let named = match tokio::task::spawn_blocking(move || owners.owners(&ask)).await {
            Ok(Ok(owners)) => owners.into_iter().map(Asker::from_owner).collect(),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot name the programs of connections");
                vec![Asker::Unknown { reason: e.to_string() }; batch.iter().filter(|(_, k)| k.is_none()).count()]
            }
            Err(e) => {
                tracing::warn!(error = %e, "naming the programs of connections failed");
                return;
            }
        };
        let mut named = named.into_iter();
        for (i, (_, known)) in batch.into_iter().enumerate() {
            if let Some(asker) = known.or_else(|| named.next()) {
                self.count(&asker, share(i), 0);
            }
        }
    }

    /// The programs seen in the last hour, most connections first.
    pub fn programs(&self) -> Vec<ProgramSeen> {
        let since = now_secs() / 60 + 1 - WINDOW_MINUTES;
        let book = self.book();
        let mut rows: Vec<ProgramSeen> = book
            .values()
            .filter_map(|row| {
                let (connections, blocks) = row
                    .minutes
                    .iter()
                    .filter(|(m, _, _)| *m >= since)
                    .fold((0, 0), |(c, b), (_, mc, mb)| (c + mc, b + mb));
                (connections + blocks > 0).then(|| ProgramSeen {
                    asker: row.asker.clone(),
                    label: row.asker.program_label(),
                    connections,
                    blocks,
                    last: row.last,
                })
            })
            .collect();
        rows.sort_by(|a, b| {
            b.connections.cmp(&a.connections).then(b.blocks.cmp(&a.blocks)).then(a.label.cmp(&b.label))
        });
        rows
    }

    /// Moves whenever a count changes [`Who::programs`] (compare, never subtract).
    pub fn counted(&self) -> u64 {
        self.counted.load(Relaxed)
    }

    fn count(&self, asker: &Asker, connections: u64, blocks: u64) {
        self.counted.fetch_add(1, Relaxed);
        let now = now_secs();
        let minute = now / 60;
        let mut book = self.book();
        let key = asker.key();
        if book.len() >= PROGRAMS && !book.contains_key(&key) {
            if let Some(oldest) = book.iter().min_by_key(|(_, r)| r.last).map(|(k, _)| k.clone()) {
                book.remove(&oldest);
            }
        }
        let row = book.entry(key).or_insert_with(|| Row { asker: asker.clone(), minutes: VecDeque::new(), last: now });
        row.asker = asker.clone();
        row.last = now;
        match row.minutes.back_mut() {
            Some((m, c, b)) if *m == minute => {
                *c += connections;
                *b += blocks;
            }
            _ => row.minutes.push_back((minute, connections, blocks)),
        }
        while row.minutes.front().is_some_and(|(m, _, _)| *m + WINDOW_MINUTES <= minute) {
            row.minutes.pop_front();
        }
    }

    fn book(&self) -> MutexGuard<'_, HashMap<Asker, Row>> {
        // Statistics: usable after a panic elsewhere.
        self.book.lock()
    }
}

/// Names queued blocks and sampled connections as they come, and counts the connections
/// every [`SWEEP`], until cancelled.
pub(crate) async fn run(who: Arc<Who>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(SWEEP);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = who.blocks_queued.notified() => who.name_blocks().await,
            _ = ticker.tick() => who.sweep().await,
            _ = who.connections_queued.notified() => who.name_connections().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_clients_are_addresses_and_local_ones_are_asked() {
        let server: Option<SocketAddr> = Some("192.0.2.1:3128".parse().unwrap());
        let is_local = |c: &str, s| local_end(c.parse().unwrap(), s).is_some();
        assert!(is_local("127.0.0.5:4000", server));
        assert!(is_local("[::1]:4000", server));
        assert!(is_local("192.0.2.1:4000", server), "the host's own address");
        assert!(is_local("[::ffff:192.0.2.1]:4000", server));
        assert!(!is_local("192.0.2.7:4000", server));
        assert!(!is_local("127.0.0.1:4000", None), "named by a PROXY header: another machine");
        let who = Who::default();
        who.note_connection("192.0.2.7:4000".parse().unwrap(), server);
        let rows = who.programs();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].label, "remote client 192.0.2.7");
        assert_eq!(rows[0].connections, 1);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_sample_is_named_and_the_counts_add_up_to_every_connection() {
        let who = Who::default();
        let server: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for port in 0..200u16 {
            who.note_connection(SocketAddr::new(server.ip(), 20000 + port), Some(server));
        }
        assert_eq!(who.queue.lock().len(), SAMPLE, "only the sample is queued");
        // A block named one of them: it counts for its program, not as closed.
        let foo = Asker::Program { pid: 7, path: Some("/usr/bin/foo".into()), name: "foo".into(), user: None };
        who.queue.lock()[0].1 = Some(foo.clone());
        who.sweep().await;
        // No other such connections exist: named "closed", never guessed; all counted.
        let rows = who.programs();
        assert_eq!(rows.len(), 2, "{rows:?}");
        let closed = rows.iter().find(|r| r.asker == Asker::Closed).unwrap().connections;
        let named = rows.iter().find(|r| r.asker == foo).unwrap().connections;
        assert_eq!((closed + named, named), (200, 200 / SAMPLE as u64 + 1), "{rows:?}");
        assert!(who.queue.lock().is_empty());
    }

    /// A connection is named while it is open, as soon as it is sampled: one that closes
    /// long before the sweep (curl's) counts for its program, not as "closed".
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_short_connection_is_named_before_it_closes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server_side, client_addr) = listener.accept().await.unwrap();
        let who = Who::default();
        who.note_connection(client_addr, Some(server_side.local_addr().unwrap()));
        who.name_connections().await;
        drop(client);
        drop(server_side);
        who.sweep().await;
        let rows = who.programs();
        let me = std::process::id();
        assert!(
            rows.iter().any(|r| matches!(&r.asker, Asker::Program { pid, .. } if *pid == me) && r.connections == 1),
            "{rows:?}"
        );
        assert!(!rows.iter().any(|r| r.asker == Asker::Closed), "{rows:?}");
    }

    #[test]
    fn one_row_per_program_whatever_its_process() {
        let who = Who::default();
        let p = |pid| Asker::Program {
            pid,
            path: Some("/usr/bin/foo".into()),
            name: "foo".into(),
            user: Some("ann".into()),
        };
        who.count(&p(10), 1, 0);
        who.count(&p(11), 2, 1);
        who.count(&Asker::Closed, 1, 0);
        let rows = who.programs();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].connections, rows[0].blocks), (3, 1));
        assert_eq!(rows[0].label, "/usr/bin/foo (user ann)", "a row is the program, whatever its process");
        assert_eq!(p(3).to_string(), "/usr/bin/foo (pid 3, user ann)");
        assert_eq!(
            Asker::Restricted { pid: None, user: Some("root".into()) }.to_string(),
            "a program GuardNest may not inspect (user root)"
        );
    }
}
