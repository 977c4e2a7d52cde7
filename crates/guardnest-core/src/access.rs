//! Access stage: who may use the proxy. Runs before any request is routed.
//!
//! A desktop proxy listens on loopback and needs nothing here. A gateway for a small
//! organisation listens on the network and must never be an open proxy, so it needs a client
//! address allowlist (`[access] allow`, CIDRs, checked against the real client address, i.e.
//! after a PROXY protocol header), proxy authentication (`[access] users`, Basic, argon2
//! password hashes), or both. [`Access::check_listen`] refuses to start otherwise.
//!
//! argon2 is slow on purpose, so verification runs on the blocking pool, at most
//! [`MAX_VERIFYING`] at a time, and a credential that verified once is remembered (bounded)
//! so a keep-alive client does not pay it per request. Each *failed* check is paid for by its
//! client address: a few, then one every [`ATTEMPT_EVERY`] (a token bucket keyed by
//! address), so a flood of wrong passwords from one address costs a few checks and cannot
//! starve other clients' logins, while correct logins never cost anything: one address is
//! every client behind a NAT or a load balancer, and ten colleagues logging in one after
//! another must all get in. One check at a time runs per address, so a flood cannot run
//! more checks than its budget allows; the same credentials arriving on several connections
//! at once are checked once. Addresses that failed a check lately share one of the slots, so
//! a crowd of guessing addresses leaves the other slot to everyone else's logins.
//!
//! In gateway mode (anything restricts who may connect) clients may also not reach the
//! gateway's own services: [`Access::destinations`] lists what they may not dial.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordVerifier;
use argon2::{Argon2, PasswordHash};
use base64::Engine;
use ipnet::IpNet;
use tokio::sync::Semaphore;

use crate::conn::dial::Destinations;
use crate::own_addresses::OwnAddresses;

pub use crate::config::check_listen;
use crate::config::{AccessConfig, ConfigError};

/// argon2 checks running at once; more wait, so failed guesses cannot eat every core.
pub const MAX_VERIFYING: usize = 2;
/// Verified credentials remembered; the cache is emptied when full (simple and bounded).
const VERIFIED_CACHE: usize = 1024;
/// The realm announced in `Proxy-Authenticate`.
pub const REALM: &str = "GuardNest";
/// Failed credential checks one client address may have at once before it has to wait.
pub const ATTEMPT_BURST: u32 = 5;
/// After the burst, one more failed check per client address this often.
pub const ATTEMPT_EVERY: Duration = Duration::from_secs(6);
/// Client addresses whose attempts are remembered before the stale ones are forgotten.
const ATTEMPT_KEYS: usize = 4096;
/// How long a failed check marks its address as guessing (sharing one verification slot).
const GUESSING_FOR: Duration = Duration::from_secs(600);

/// Why a request was not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The client address is outside `[access] allow` (403).
    Address(IpAddr),
    /// No or wrong proxy credentials (407).
    Credentials(&'static str),
    /// Too many checks from this client address; try again after `retry_after` (429).
    Throttled {
        /// The client address.
        client: IpAddr,
        /// How long until the next check is allowed.
        retry_after: Duration,
    },
}

/// The access policy of one listener.
#[derive(Debug)]
pub struct Access {
    allow: Vec<IpNet>,
    trusted_proxies: Vec<IpNet>,
    users: HashMap<String, String>,
    /// Checked for unknown users, so a wrong name takes as long as a wrong password.
    decoy: String,
    verified: Mutex<HashMap<Box<[u8]>, Arc<str>>>,
    verifying: Semaphore,
    /// The one verification slot that addresses with a recent failure share.
    guessers: Semaphore,
    /// Addresses (attempt keys) whose last check failed, and when.
    failed: Mutex<HashMap<IpAddr, Instant>>,
    /// Failed checks per client address (IPv6: per /64).
    attempts: FailureBudget,
    /// Credentials being checked now, so that the same ones arriving at once wait for that
    /// check instead of paying their own.
    same_credentials: Turns<Box<[u8]>>,
    /// One check at a time per client address: a flood from one address holds at most one
    /// of the [`MAX_VERIFYING`] checks, and other clients get the others.
    same_client: Turns<IpAddr>,
    destinations: Destinations,
}

impl Default for Access {
    /// No restriction: only valid on a loopback listener.
    fn default() -> Self {
        Self::from_parts(Vec::new(), loopback_nets(), HashMap::new())
    }
}

impl Access {
    /// Builds the policy from validated configuration. In gateway mode with `self` denied,
    /// this host's own addresses are read now and watched ([`OwnAddresses::of_this_host`]).
    pub fn from_config(config: &AccessConfig) -> Result<Self, ConfigError> {
        Self::build(config, OwnAddresses::of_this_host)
    }

    /// [`Access::from_config`] with this host's own addresses told by `own` (a test's table,
    /// or one shared between listeners).
    pub fn from_config_with(config: &AccessConfig, own: OwnAddresses) -> Result<Self, ConfigError> {
        Self::build(config, || own)
    }

    fn build(config: &AccessConfig, own: impl FnOnce() -> OwnAddresses) -> Result<Self, ConfigError> {
        let users = config.users()?;
        let allow = config.allow_nets()?;
        let trusted = config.trusted_proxy_nets()?;
        let mut access = Self::from_parts(allow, trusted, users);
        let destinations = config.destinations()?;
        // Only a gateway refuses destinations: a desktop proxy starts no watcher.
        access.destinations = match access.is_restricted() && destinations.denies_own() {
            true => destinations.with_own(own()),
            false => destinations,
        };
        Ok(access)
    }

    fn from_parts(allow: Vec<IpNet>, trusted_proxies: Vec<IpNet>, users: HashMap<String, String>) -> Self {
        let decoy = match users.is_empty() {
            true => String::new(),
            false => hash_password("decoy").unwrap_or_default(),
        };
        Self {
            allow,
            trusted_proxies,
            users,
            decoy,
            verified: Mutex::new(HashMap::new()),
            verifying: Semaphore::new(MAX_VERIFYING),
            guessers: Semaphore::new(1),
            failed: Mutex::new(HashMap::new()),
            attempts: FailureBudget::default(),
            same_credentials: Turns::default(),
            same_client: Turns::default(),
            destinations: Destinations::default(),
        }
    }

    /// Where clients may not go: in gateway mode ([`Access::is_restricted`]) the
    /// `deny_destinations`/`allow_destinations` of `[access]`; `None` on a desktop proxy.
    pub fn destinations(&self) -> Option<Destinations> {
        self.is_restricted().then(|| self.destinations.clone())
    }

    /// Whether anything restricts who may connect.
    pub fn is_restricted(&self) -> bool {
        !self.allow.is_empty() || !self.users.is_empty()
    }

    /// Whether proxy authentication is required.
    pub fn needs_credentials(&self) -> bool {
        !self.users.is_empty()
    }

    /// Refuses a listener that would make an open proxy (see [`check_listen`]).
    pub fn check_listen(&self, listen: SocketAddr, proxy_protocol: bool) -> Result<(), ConfigError> {
        check_listen(listen, proxy_protocol, self.is_restricted())
    }

    /// Whether a TCP peer may send a PROXY protocol header.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        contains(&self.trusted_proxies, peer)
    }

    /// Checks the (real) client address against `[access] allow`.
    pub fn check_address(&self, client: IpAddr) -> Result<(), Denied> {
        if self.allow.is_empty() || contains(&self.allow, client) {
            Ok(())
        } else {
            Err(Denied::Address(client))
        }
    }

    /// Checks a `Proxy-Authorization` header value from `client`; returns the user name.
    pub async fn check_credentials(&self, header: Option<&[u8]>, client: IpAddr) -> Result<Option<Arc<str>>, Denied> {
        if self.users.is_empty() {
            return Ok(None);
        }
        let header = header.ok_or(Denied::Credentials("proxy authentication required"))?;
        if let Some(user) = self.remembered(header) {
            return Ok(Some(user));
        }
        let (user, password) = parse_basic(header).ok_or(Denied::Credentials("malformed Basic credentials"))?;
        // The same credentials on several connections at once: one check, the others wait
        // for it and find its answer remembered.
        let key: Box<[u8]> = header.into();
        self.same_credentials
            .take(key, async {
                match self.remembered(header) {
                    Some(user) => Ok(Some(user)),
                    None => self.verify_paid(header, user, password, client).await,
                }
            })
            .await
    }

    fn remembered(&self, header: &[u8]) -> Option<Arc<str>> {
        self.verified.lock().get(header).cloned()
    }

    /// One argon2 check, paid for by `client`'s attempts.
    async fn verify_paid(
        &self,
        header: &[u8],
        user: String,
        password: String,
        client: IpAddr,
    ) -> Result<Option<Arc<str>>, Denied> {
        let key = attempt_key(client);
        let (known, hash) = match self.users.get(&user) {
            Some(hash) => (true, hash.clone()),
            None => (false, self.decoy.clone()),
        };
        let guessing = self.failed_lately(key);
        let ok = self
            .same_client
            .take(key, async {
                // Inside the address's turn: the checks before this one have been paid for.
                self.attempts.available(key).map_err(|retry_after| Denied::Throttled { client, retry_after })?;
                // A guessing address queues for the guessers' slot first, so that it holds
                // at most one of the MAX_VERIFYING slots with all other guessers together.
                let checked = async {
                    let _guessers = match guessing {
                        true => Some(self.guessers.acquire().await.ok()?),
                        false => None,
                    };
                    let _permit = self.verifying.acquire().await.ok()?;
                    tokio::task::spawn_blocking(move || verify(&password, &hash)).await.ok()
                };
                let ok = checked.await.unwrap_or(false) && known;
                if !ok {
                    self.attempts.spend(key);
                }
                Ok(ok)
            })
            .await?;
        self.remember_outcome(key, ok);
        if !ok {
            return Err(Denied::Credentials("unknown user or wrong password"));
        }
        let user: Arc<str> = user.into();
        let mut cache = self.verified.lock();
        if cache.len() >= VERIFIED_CACHE {
            cache.clear();
        }
        cache.insert(header.into(), user.clone());
        Ok(Some(user))
    }
}

impl Access {
    /// Whether `key` failed a check within [`GUESSING_FOR`].
    fn failed_lately(&self, key: IpAddr) -> bool {
        let failed = self.failed.lock();
        failed.get(&key).is_some_and(|at| at.elapsed() < GUESSING_FOR)
    }

    /// A failure marks the address as guessing; a success clears it. Bounded like the
    /// attempt counts: past [`ATTEMPT_KEYS`] addresses the old marks are dropped.
    fn remember_outcome(&self, key: IpAddr, ok: bool) {
        let mut failed = self.failed.lock();
        if ok {
            failed.remove(&key);
            return;
        }
        if failed.len() >= ATTEMPT_KEYS {
            failed.retain(|_, at| at.elapsed() < GUESSING_FOR);
            if failed.len() >= ATTEMPT_KEYS {
                failed.clear();
            }
        }
        failed.insert(key, Instant::now());
    }
}

/// Work done one at a time per key: a waiter holds its key's lock, which is forgotten once
/// nobody holds or waits for it (the map holds only keys in use).
struct Turns<K>(Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>);

impl<K> Default for Turns<K> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq + Clone> Turns<K> {
    /// Runs `work` when no other work for `key` runs.
    async fn take<T>(&self, key: K, work: impl std::future::Future<Output = T>) -> T {
        let turn = self.0.lock().entry(key.clone()).or_default().clone();
        let out = {
            let _held = turn.lock().await;
            work.await
        };
        let mut map = self.0.lock();
        // Ours and the map's: nobody else waits.
        if Arc::strong_count(&turn) <= 2 {
            map.remove(&key);
        }
        out
    }
}

impl<K> std::fmt::Debug for Turns<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Turns")
    }
}

/// Failed checks per address: a bucket of [`ATTEMPT_BURST`] that refills one every
/// [`ATTEMPT_EVERY`]. Only failures take from it; a full bucket is forgotten (the map holds
/// only addresses that failed lately, at most [`ATTEMPT_KEYS`]).
#[derive(Default)]
struct FailureBudget(Mutex<HashMap<IpAddr, (f64, Instant)>>);

impl FailureBudget {
    fn tokens(entry: (f64, Instant), now: Instant) -> f64 {
        let refilled = now.saturating_duration_since(entry.1).as_secs_f64() / ATTEMPT_EVERY.as_secs_f64();
        (entry.0 + refilled).min(f64::from(ATTEMPT_BURST))
    }

    /// Whether `key` may have one more check; else how long until it may.
    fn available(&self, key: IpAddr) -> Result<(), Duration> {
        let map = self.0.lock();
        let Some(entry) = map.get(&key) else { return Ok(()) };
        let tokens = Self::tokens(*entry, Instant::now());
        match tokens >= 1.0 {
            true => Ok(()),
            false => Err(ATTEMPT_EVERY.mul_f64(1.0 - tokens)),
        }
    }

    /// A check from `key` failed: it costs one.
    fn spend(&self, key: IpAddr) {
        let now = Instant::now();
        let mut map = self.0.lock();
        if map.len() >= ATTEMPT_KEYS && !map.contains_key(&key) {
            let full = f64::from(ATTEMPT_BURST);
            map.retain(|_, e| Self::tokens(*e, now) < full);
            if map.len() >= ATTEMPT_KEYS {
                map.clear();
            }
        }
        let tokens = map.get(&key).map_or(f64::from(ATTEMPT_BURST), |e| Self::tokens(*e, now));
        map.insert(key, ((tokens - 1.0).max(0.0), now));
    }
}

impl std::fmt::Debug for FailureBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailureBudget")
    }
}

/// Whose attempts a client spends: its IPv4 address, or its IPv6 /64 (one host's share).
fn attempt_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    nets.iter().any(|n| n.contains(&ip))
}

/// The default trusted PROXY protocol senders: a load balancer on the same host.
pub fn loopback_nets() -> Vec<IpNet> {
    vec![
        IpNet::new_assert(IpAddr::from([127, 0, 0, 0]), 8),
        IpNet::new_assert(std::net::Ipv6Addr::LOCALHOST.into(), 128),
    ]
}

/// `Basic base64(user:password)` → (user, password).
pub fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Verifies a password against an argon2 PHC string.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(password.as_bytes(), &hash).is_ok(),
        Err(_) => false,
    }
}

/// Hashes a password into an argon2id PHC string for `[access] users`.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher;
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header() {
        // "alice:s3cret:with:colons"
        let h = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:s3cret:with:colons"));
        assert_eq!(parse_basic(h.as_bytes()), Some(("alice".into(), "s3cret:with:colons".into())));
        assert_eq!(parse_basic(b"Bearer abc"), None);
        assert_eq!(parse_basic(b"Basic !!!"), None);
        assert_eq!(parse_basic(b"Basic"), None);
    }

    #[test]
    fn hashes_verify() {
        let phc = hash_password("pw").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify("pw", &phc));
        assert!(!verify("pW", &phc));
        assert!(!verify("pw", "not a hash"));
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    }

    /// An address that failed waits for the guessers' slot; a clean address does not: with
    /// that slot held, the clean login completes and the guesser's check waits until the
    /// slot is given back.
    #[tokio::test]
    async fn guessing_addresses_share_one_slot() {
        let users = HashMap::from([
            ("alice".to_string(), hash_password("right").unwrap()),
            ("bob".to_string(), hash_password("bobs").unwrap()),
        ]);
        let access = Arc::new(Access::from_parts(Vec::new(), loopback_nets(), users));
        let guesser: IpAddr = "127.0.2.1".parse().unwrap();
        let clean: IpAddr = "127.0.1.1".parse().unwrap();
        let wrong = basic("alice", "wrong");
        assert!(!access.failed_lately(guesser));
        let first = access.check_credentials(Some(wrong.as_bytes()), guesser).await;
        assert!(matches!(first, Err(Denied::Credentials(_))), "{first:?}");
        assert!(access.failed_lately(guesser), "a failure marks the address");

        let held = access.guessers.acquire().await.unwrap();
        let guess = tokio::spawn({
            let (access, wrong) = (access.clone(), wrong.clone());
            async move { access.check_credentials(Some(wrong.as_bytes()), guesser).await }
        });
        let right = basic("alice", "right");
        let login = access.check_credentials(Some(right.as_bytes()), clean).await;
        assert_eq!(login.unwrap().as_deref(), Some("alice"), "the clean login is not queued behind guessers");
        tokio::task::yield_now().await;
        assert!(!guess.is_finished(), "the guesser waits for the guessers' slot");
        drop(held);
        let second = guess.await.unwrap();
        assert!(matches!(second, Err(Denied::Credentials(_))), "{second:?}");

        // A success clears the mark (a right password, not yet remembered, from the guesser).
        let ok = access.check_credentials(Some(basic("bob", "bobs").as_bytes()), guesser).await;
        assert!(ok.is_ok(), "{ok:?}");
        assert!(!access.failed_lately(guesser), "a success clears the mark");
    }

    #[test]
    fn guessing_marks_are_bounded() {
        let access = Access::from_parts(Vec::new(), loopback_nets(), HashMap::new());
        for i in 0..(ATTEMPT_KEYS as u32 + 10) {
            access.remember_outcome(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)), false);
        }
        assert!(access.failed.lock().len() <= ATTEMPT_KEYS);
    }

    #[test]
    fn addresses_and_listen() {
        let a = Access::from_parts(vec!["10.0.0.0/8".parse().unwrap()], loopback_nets(), HashMap::new());
        assert!(a.check_address("10.1.2.3".parse().unwrap()).is_ok());
        assert!(a.check_address("::ffff:10.1.2.3".parse().unwrap()).is_ok());
        assert!(a.check_address("11.0.0.1".parse().unwrap()).is_err());
        assert!(a.check_address("127.0.0.1".parse().unwrap()).is_err(), "loopback is not implied");
        assert!(a.check_listen("0.0.0.0:3128".parse().unwrap(), true).is_ok());
        let open = Access::default();
        assert!(open.check_listen("127.0.0.1:3128".parse().unwrap(), false).is_ok());
        assert!(open.check_listen("0.0.0.0:3128".parse().unwrap(), false).is_err());
        assert!(open.check_listen("[::]:3128".parse().unwrap(), false).is_err());
        assert!(open.check_listen("127.0.0.1:3128".parse().unwrap(), true).is_err());
        assert!(open.is_trusted_proxy("127.0.0.9".parse().unwrap()));
        assert!(!open.is_trusted_proxy("192.168.0.1".parse().unwrap()));
    }
}
