//! This host's own addresses, for the dial stage's `self` in gateway mode: a snapshot of
//! what the host delivers to itself (its interface addresses and local routes, read by
//! the OS layer, [`crate::sysproxy::local`]), rebuilt by a thread of its own each time the
//! OS says the table changed. A dial loads the current snapshot (arc-swap) and searches
//! it: no lock, no syscall per dial. Nothing is probed with `bind()`, so
//! `ip_nonlocal_bind` plays no part.
//!
//! Fails closed: while the table cannot be read, or changes may have been missed (the
//! subscription failed), every address counts as possibly this host's
//! ([`Own::Unknown`]: the gateway refuses it, saying why), the error is logged once, and
//! the thread tries again, each time waiting longer, up to [`RETRY_MAX`]. Once a read
//! succeeds the snapshot is trusted again (logged once too).

use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::sysproxy::local::{self, Changes, LocalError, LocalNets};

/// How often the watching thread wakes without a change, to end once its owner is gone.
pub const WAKE_EVERY: Duration = Duration::from_secs(2);
/// The first wait before reading again after a failure; it doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two tries after failures.
pub const RETRY_MAX: Duration = Duration::from_secs(5);

/// Where the table comes from: the OS ([`OwnAddresses::of_this_host`]), or a test's source.
pub trait Source: Send + 'static {
    /// Reads the whole table (subscribing to changes first, if not subscribed).
    fn read(&mut self) -> Result<LocalNets, LocalError>;
    /// Blocks until the table may have changed (`Ok(true)`) or `timeout` passed
    /// (`Ok(false)`). An error means changes may have been missed.
    fn wait(&mut self, timeout: Duration) -> Result<bool, LocalError>;
}

/// The OS's table, subscribed to before each first read.
#[derive(Debug, Default)]
struct OsTable {
    changes: Option<Changes>,
}

impl Source for OsTable {
    fn read(&mut self) -> Result<LocalNets, LocalError> {
        if self.changes.is_none() {
            self.changes = Some(Changes::subscribe()?);
        }
        local::read()
    }

    fn wait(&mut self, timeout: Duration) -> Result<bool, LocalError> {
        let Some(changes) = self.changes.as_mut() else {
            return Err(LocalError::Malformed("not subscribed to changes".into()));
        };
        let waited = changes.wait(timeout);
        if waited.is_err() {
            // Changes may have been lost: the next read subscribes again first.
            self.changes = None;
        }
        waited
    }
}

/// What is known of this host's addresses.
#[derive(Debug)]
enum Table {
    Known(LocalNets),
    /// They could not be read: why.
    Unknown(Arc<str>),
}

/// Whether an address is this host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Own {
    /// It is: the host delivers it to itself.
    Yes,
    /// It is not.
    No,
    /// Nobody can tell: this host's addresses could not be read (why). Fails closed.
    Unknown(Arc<str>),
}

/// This host's own addresses, kept current (cheap to clone: one shared snapshot).
#[derive(Clone)]
pub struct OwnAddresses {
    table: Arc<ArcSwap<Table>>,
}

impl std::fmt::Debug for OwnAddresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &**self.table.load() {
            Table::Known(nets) => write!(f, "OwnAddresses({} networks)", nets.len()),
            Table::Unknown(why) => write!(f, "OwnAddresses(unknown: {why})"),
        }
    }
}

impl OwnAddresses {
    /// This host's table, read now and watched by a thread until the last clone is dropped.
    pub fn of_this_host() -> Self {
        Self::from_source(OsTable::default())
    }

    /// The table of `source`, read now (so the first dial already knows it) and watched.
    pub fn from_source(mut source: impl Source) -> Self {
        let mut log = Log::default();
        let first = log.read(&mut source, None);
        let table = Arc::new(ArcSwap::from_pointee(first));
        let watched = Arc::downgrade(&table);
        let spawned =
            std::thread::Builder::new().name("own-addresses".into()).spawn(move || watch(source, &watched, log));
        if let Err(e) = spawned {
            let why: Arc<str> = format!("cannot start the thread that keeps them current: {e}").into();
            tracing::error!("this host's own addresses (gateway \"self\"): {why}; every destination is refused");
            table.store(Arc::new(Table::Unknown(why)));
        }
        Self { table }
    }

    /// Whether `ip` is this host's (an IPv4-mapped address is looked up as IPv4).
    pub fn check(&self, ip: IpAddr) -> Own {
        match &**self.table.load() {
            Table::Known(nets) if nets.contains(ip) => Own::Yes,
            Table::Known(_) => Own::No,
            Table::Unknown(why) => Own::Unknown(why.clone()),
        }
    }
}

/// Logs the table's story once per turn: the first read, each change (debug, with what came
/// and went), the first failure of a run of failures (error), the recovery (info).
#[derive(Debug, Default)]
struct Log {
    failing: bool,
}

impl Log {
    /// Reads `source` into a table, logging what changed since `before`.
    fn read(&mut self, source: &mut impl Source, before: Option<&Table>) -> Table {
        match source.read() {
            Ok(nets) => {
                let previous = match before {
                    Some(Table::Known(old)) => Some(old),
                    _ => None,
                };
                match (previous, std::mem::take(&mut self.failing)) {
                    (_, true) => tracing::info!(
                        "own addresses: read again, {} networks; destinations are told apart again",
                        nets.len()
                    ),
                    (None, false) => tracing::info!(
                        "own addresses: {} networks this host delivers to itself (gateway \"self\"), re-read when they change",
                        nets.len()
                    ),
                    (Some(_), false) => {}
                }
                match previous {
                    Some(old) => {
                        let (came, went) = difference(old, &nets);
                        if !came.is_empty() || !went.is_empty() {
                            tracing::debug!("own addresses: {} networks {}", nets.len(), changes(&came, &went));
                        }
                    }
                    None => tracing::debug!("own addresses: {nets}"),
                }
                Table::Known(nets)
            }
            Err(e) => self.failed(&e),
        }
    }

    fn failed(&mut self, e: &LocalError) -> Table {
        let why: Arc<str> = format!("this host's own addresses cannot be read: {e}").into();
        if !std::mem::replace(&mut self.failing, true) {
            tracing::error!("{why}; every destination is refused until they are read (retrying)");
        } else {
            tracing::debug!("{why} (still)");
        }
        Table::Unknown(why)
    }
}

/// The watching thread: waits for changes, reads the table again, publishes it; after a
/// failure, waits (longer each time) and tries again. Ends once `table` has no owner left.
fn watch(mut source: impl Source, table: &Weak<ArcSwap<Table>>, mut log: Log) {
    let mut retry = RETRY_FIRST;
    loop {
        let due = match log.failing {
            true => {
                std::thread::sleep(retry);
                retry = (retry * 2).min(RETRY_MAX);
                true
            }
            false => match source.wait(WAKE_EVERY) {
                Ok(changed) => changed,
                Err(e) => {
                    let Some(table) = table.upgrade() else { return };
                    table.store(Arc::new(log.failed(&e)));
                    continue;
                }
            },
        };
        let Some(table) = table.upgrade() else { return };
        if due {
            let next = log.read(&mut source, Some(&table.load()));
            if !log.failing {
                retry = RETRY_FIRST;
            }
            table.store(Arc::new(next));
        }
    }
}

/// The networks in `new` and not in `old`, and those in `old` and not in `new`.
fn difference(old: &LocalNets, new: &LocalNets) -> (Vec<IpNet>, Vec<IpNet>) {
    let came = new.nets().iter().filter(|n| old.nets().binary_search(n).is_err()).copied().collect();
    let went = old.nets().iter().filter(|n| new.nets().binary_search(n).is_err()).copied().collect();
    (came, went)
}

/// `(+NET, -NET, …)`.
fn changes(came: &[IpNet], went: &[IpNet]) -> String {
    let items: Vec<String> = came.iter().map(|n| format!("+{n}")).chain(went.iter().map(|n| format!("-{n}"))).collect();
    format!("({})", items.join(", "))
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Instant;

    use super::*;

    /// A table driven by the test: each read takes the next answer sent.
    struct Scripted {
        reads: mpsc::Receiver<Result<Vec<&'static str>, String>>,
        changed: mpsc::Receiver<()>,
        read_count: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Source for Scripted {
        fn read(&mut self) -> Result<LocalNets, LocalError> {
            self.read_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match self.reads.recv_timeout(Duration::from_secs(5)) {
                Ok(Ok(nets)) => Ok(LocalNets::new(nets.iter().map(|n| n.parse::<IpNet>().unwrap()))),
                Ok(Err(why)) => Err(LocalError::Malformed(why)),
                Err(_) => Err(LocalError::Malformed("the test sent no answer".into())),
            }
        }

        fn wait(&mut self, timeout: Duration) -> Result<bool, LocalError> {
            Ok(self.changed.recv_timeout(timeout).is_ok())
        }
    }

    fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A table that cannot be read refuses everything, saying why; it is read again until it
    /// can be, and from then on addresses are told apart; a change is picked up.
    #[test]
    fn an_unreadable_table_fails_closed_then_recovers() {
        let (answer, reads) = mpsc::channel();
        let (change, changed) = mpsc::channel();
        let read_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        answer.send(Err("netlink: out of descriptors".to_string())).unwrap();
        let own = OwnAddresses::from_source(Scripted { reads, changed, read_count: read_count.clone() });
        let Own::Unknown(why) = own.check(ip("192.0.2.1")) else { panic!("not fail-closed: {own:?}") };
        assert!(why.contains("cannot be read") && why.contains("out of descriptors"), "{why}");
        assert!(matches!(own.check(ip("2001:db8::1")), Own::Unknown(_)));

        // Still failing, then readable: the thread keeps trying.
        answer.send(Err("still out of descriptors".to_string())).unwrap();
        answer.send(Ok(vec!["127.0.0.0/8", "2001:db8:77::/64"])).unwrap();
        until("never read again", || own.check(ip("192.0.2.1")) == Own::No);
        assert_eq!(own.check(ip("2001:db8:77::5")), Own::Yes);
        assert_eq!(own.check(ip("::ffff:127.0.0.1")), Own::Yes, "IPv4-mapped");
        assert_eq!(read_count.load(std::sync::atomic::Ordering::SeqCst), 3);

        // A change: read again, and the new route counts.
        answer.send(Ok(vec!["127.0.0.0/8", "2001:db8:77::/64", "203.0.113.0/24"])).unwrap();
        change.send(()).unwrap();
        until("the change was not read", || own.check(ip("203.0.113.7")) == Own::Yes);

        // A failure after good reads fails closed too (a change may have been missed).
        answer.send(Err("gone".to_string())).unwrap();
        change.send(()).unwrap();
        until("a failed re-read kept the old table", || matches!(own.check(ip("192.0.2.1")), Own::Unknown(_)));
        answer.send(Ok(vec!["127.0.0.0/8"])).unwrap();
        until("no recovery", || own.check(ip("192.0.2.1")) == Own::No);
    }

    /// A run of failures is logged once (error), the recovery once (info).
    #[test]
    fn failures_are_logged_once() {
        struct Failing(usize);
        impl Source for Failing {
            fn read(&mut self) -> Result<LocalNets, LocalError> {
                self.0 += 1;
                match self.0 {
                    1..=3 => Err(LocalError::Malformed(format!("failure {}", self.0))),
                    _ => Ok(LocalNets::new(["127.0.0.0/8".parse::<IpNet>().unwrap()])),
                }
            }
            fn wait(&mut self, _: Duration) -> Result<bool, LocalError> {
                Ok(false)
            }
        }
        let lines = Arc::new(parking_lot::Mutex::new(Vec::<u8>::new()));
        let writer = {
            let lines = lines.clone();
            move || Capture(lines.clone())
        };
        let subscriber = tracing_subscriber::fmt().with_writer(writer).with_ansi(false).finish();
        let mut log = Log::default();
        let mut source = Failing(0);
        tracing::subscriber::with_default(subscriber, || {
            let mut table = log.read(&mut source, None);
            for _ in 0..3 {
                table = log.read(&mut source, Some(&table));
            }
            assert!(matches!(table, Table::Known(_)));
        });
        let text = String::from_utf8(lines.lock().clone()).unwrap();
        assert_eq!(text.matches("ERROR").count(), 1, "{text}");
        assert!(text.contains("failure 1") && !text.contains("failure 2"), "{text}");
        assert_eq!(text.matches("read again").count(), 1, "{text}");
    }

    struct Capture(Arc<parking_lot::Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn changes_name_what_came_and_went() {
        let old = LocalNets::new(["127.0.0.0/8", "192.0.2.1/32"].map(|n| n.parse::<IpNet>().unwrap()));
        let new = LocalNets::new(["127.0.0.0/8", "2001:db8:99::/64"].map(|n| n.parse::<IpNet>().unwrap()));
        let (came, went) = difference(&old, &new);
        assert_eq!(changes(&came, &went), "(+2001:db8:99::/64, -192.0.2.1/32)");
    }

    /// The watcher ends once the last owner is gone (it wakes every WAKE_EVERY to look):
    /// its source, and so the test's channel to it, is dropped.
    #[test]
    fn the_watching_thread_ends_with_its_owner() {
        let (answer, reads) = mpsc::channel();
        let (_change, changed) = mpsc::channel();
        answer.send(Ok(vec!["127.0.0.0/8"])).unwrap();
        let own = OwnAddresses::from_source(Scripted { reads, changed, read_count: Arc::default() });
        let clone = own.clone();
        drop(own);
        assert_eq!(clone.check("127.0.0.1".parse().unwrap()), Own::Yes, "a clone shares the table");
        drop(clone);
        let deadline = Instant::now() + WAKE_EVERY + Duration::from_secs(3);
        while answer.send(Ok(vec![])).is_ok() {
            assert!(Instant::now() < deadline, "the watching thread outlived its owner");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
