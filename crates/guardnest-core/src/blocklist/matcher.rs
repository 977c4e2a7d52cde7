//! The immutable name matcher: built whole off the serving path, then published.
//!
//! Every listed name blocks itself and its subdomains, so a lookup walks the query's
//! suffixes at label boundaries (`a.b.evil.test`, `b.evil.test`, `evil.test`, `test`) and
//! probes one hash table per suffix. Allow entries live in the same table, so each suffix
//! costs one probe, and an allow anywhere on the walk wins over any block.
//!
//! Memory decides whether a million names are affordable on a desktop, so no name is kept
//! as text: a list is a sorted vector of 64-bit fingerprints of its names (8 bytes each),
//! and the table is open addressing over one `u64` per slot: the top 48 bits of the
//! fingerprint and 16 bits of list ids, the table kept at most half full (`LOAD`), beside a
//! presence filter of `FILTER_BITS_PER_NAME` bits a name (what a name costs in practice:
//! BENCHMARKS.md, list scale). A lookup hashes
//! every suffix first and prefetches all their slots, so the few cache misses of a walk
//! overlap instead of adding up. The rule reported for a match is the query's own
//! suffix that hit, so no text is needed to explain a block either. Fingerprints come from
//! one randomly seeded hasher per process; a name not listed matches a slot's 48-bit key
//! with probability 2^-48 per comparison: about one false block in 10^13 lookups.

use std::hash::BuildHasher;
use std::sync::Arc;

use super::format::Sink;

/// Lists a matcher can tell apart; ids are 8 bits with one value meaning "none".
pub const MAX_LISTS: usize = 255;
const NONE: u16 = 0xff;
/// Target table load; linear probing stays short below this.
const LOAD: f64 = 0.5;

/// Hashes normalised names to fingerprints. Cloned, it hashes the same way, so lists
/// parsed at different times combine into one matcher.
#[derive(Clone)]
pub struct NameHasher(foldhash::fast::FixedState);

impl Default for NameHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl NameHasher {
    /// A hasher with a fresh random seed.
    pub fn new() -> Self {
        // std's RandomState is seeded from the OS; one of its outputs seeds ours.
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x6775_6172_646e_6573_u64);
        Self(foldhash::fast::FixedState::with_seed(seed))
    }

    /// The fingerprint of a normalised name; never 0 (0 marks an empty slot).
    pub fn fingerprint(&self, name: &str) -> u64 {
        self.0.hash_one(name.as_bytes()).max(1)
    }
}

/// One list's names as fingerprints: what the proxy keeps of a list.
#[derive(Clone)]
pub struct ListNames {
    /// Fingerprints of names to block, sorted, distinct.
    pub block: Vec<u64>,
    /// Fingerprints of names to allow, sorted, distinct.
    pub allow: Vec<u64>,
    /// Lines that looked like entries but were not valid.
    pub invalid: usize,
    /// Valid rules of a kind GuardNest does not apply.
    pub unsupported: usize,
    hasher: NameHasher,
}

impl ListNames {
    /// An empty list whose names will be hashed with `hasher`.
    pub fn new(hasher: NameHasher) -> Self {
        Self { block: Vec::new(), allow: Vec::new(), invalid: 0, unsupported: 0, hasher }
    }

    /// Sorts, removes duplicates and frees spare capacity; call once parsing is done.
    pub fn finish(&mut self) {
        for v in [&mut self.block, &mut self.allow] {
            v.sort_unstable();
            v.dedup();
            v.shrink_to_fit();
        }
    }

    /// Distinct names of either kind.
    pub fn entries(&self) -> usize {
        self.block.len() + self.allow.len()
    }
}

impl Sink for ListNames {
    fn name(&mut self, name: &str, allow: bool) {
        let fp = self.hasher.fingerprint(name);
        if allow {
            self.allow.push(fp);
        } else {
            self.block.push(fp);
        }
    }
    fn invalid(&mut self) {
        self.invalid += 1;
    }
    fn unsupported(&mut self) {
        self.unsupported += 1;
    }
}

/// The rule a name matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Display name of the list the rule came from.
    pub list: Arc<str>,
    /// The listed name that matched (the query itself or one of its parents).
    pub rule: Box<str>,
}

/// The outcome of a policy check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No rule matched.
    Allowed,
    /// An allow rule matched; it wins over any block rule.
    Exempt(Match),
    /// A block rule matched and no allow rule did.
    Blocked(Match),
}

impl Verdict {
    /// Whether the request must be refused.
    pub fn is_blocked(&self) -> bool {
        matches!(self, Verdict::Blocked(_))
    }
}

/// Whether a list's names block or exempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A block list (its adblock `@@` exceptions still exempt).
    Block,
    /// An allowlist: every name in it is exempt.
    Allow,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Block => "block",
            Role::Allow => "allow",
        })
    }
}

struct List {
    name: Arc<str>,
    names: Arc<ListNames>,
    role: Role,
}

/// Collects lists; [`MatcherBuilder::build`] indexes them.
pub struct MatcherBuilder {
    lists: Vec<List>,
    hasher: NameHasher,
}

/// Too many lists for one matcher.
#[derive(Debug, thiserror::Error)]
#[error("too many lists: at most {MAX_LISTS} can be loaded")]
pub struct TooManyLists;

impl MatcherBuilder {
    /// A builder for lists hashed with `hasher`.
    pub fn new(hasher: NameHasher) -> Self {
        Self { lists: Vec::new(), hasher }
    }

    /// Adds a list's names, shared, not copied.
    pub fn add(&mut self, name: &str, role: Role, names: Arc<ListNames>) -> Result<(), TooManyLists> {
        if self.lists.len() >= MAX_LISTS {
            return Err(TooManyLists);
        }
        self.lists.push(List { name: Arc::from(name), names, role });
        Ok(())
    }

    /// Indexes every name of every list.
    pub fn build(self) -> Matcher {
        let total: usize = self.lists.iter().map(|l| l.names.entries()).sum();
        let capacity = ((total as f64 / LOAD) as usize).max(8);
        let filter_bits = (total.max(1) * FILTER_BITS_PER_NAME).next_power_of_two().max(64);
        let mut m = Matcher {
            slots: zeroed_table(capacity),
            filter: zeroed_table(filter_bits / 64),
            filter_mask: filter_bits as u64 - 1,
            len: 0,
            blocking: 0,
            lists: self.lists.iter().map(|l| l.name.clone()).collect(),
            hasher: self.hasher,
        };
        for (id, list) in self.lists.iter().enumerate() {
            let id = id as u16;
            let (block_shift, allow_shift) = match list.role {
                Role::Block => (BLOCK_SHIFT, ALLOW_SHIFT),
                Role::Allow => (ALLOW_SHIFT, ALLOW_SHIFT),
            };
            list.names.block.iter().for_each(|&fp| m.insert(fp, id, block_shift));
            list.names.allow.iter().for_each(|&fp| m.insert(fp, id, allow_shift));
        }
        m.blocking = m
            .slots
            .iter()
            .filter(|&&slot| {
                let ids = slot as u16;
                slot != 0 && (ids >> BLOCK_SHIFT) & 0xff != NONE && (ids >> ALLOW_SHIFT) & 0xff == NONE
            })
            .count();
        m
    }
}

const BLOCK_SHIFT: u16 = 0;
const ALLOW_SHIFT: u16 = 8;
const EMPTY_IDS: u16 = (NONE << BLOCK_SHIFT) | (NONE << ALLOW_SHIFT);
/// Suffixes hashed and prefetched together.
const WALK_CHUNK: usize = 8;

/// A zeroed table.
#[cfg(not(target_os = "linux"))]
fn zeroed_table(slots: usize) -> Box<[u64]> {
    vec![0; slots].into_boxed_slice()
}

/// A zeroed table, on huge pages where the OS allows: a million-name table spans 16 MiB,
/// and with 4 KiB pages nearly every lookup would also miss the TLB.
#[cfg(target_os = "linux")]
#[allow(clippy::slow_vector_initialization)] // the advice must come before the first touch
fn zeroed_table(slots: usize) -> Box<[u64]> {
    let mut table: Vec<u64> = Vec::with_capacity(slots);
    {
        const HUGE: usize = 2 << 20;
        let start = table.as_ptr() as usize;
        let end = start + slots * size_of::<u64>();
        let aligned = start.next_multiple_of(HUGE);
        if end > aligned + HUGE {
            let len = (end - aligned) / HUGE * HUGE;
            // SAFETY: advice on memory this Vec owns and has not touched yet; madvise never
            // changes its contents, and a refusal only means ordinary pages.
            unsafe { libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
        }
    }
    table.resize(slots, 0);
    table.into_boxed_slice()
}

/// `b.c` for `a.b.c`; `None` for a single label. A byte scan: labels are short, and this
/// runs once per label of every lookup.
#[inline]
fn parent(name: &str) -> Option<&str> {
    let dot = name.bytes().position(|b| b == b'.')?;
    name.get(dot + 1..).filter(|p| !p.is_empty())
}

/// The part of a fingerprint stored in a slot: its top 48 bits, never 0.
fn key(fp: u64) -> u64 {
    (fp >> 16).max(1)
}

/// Asks the CPU to start loading a slot; later probes of it then hit the cache.
#[inline]
fn prefetch(slot: &u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint; it never faults, and the pointer is a valid reference.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(slot as *const u64 as *const i8);
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = slot;
}

/// Bits of the presence filter per name: a miss is told by one bit most of the time.
const FILTER_BITS_PER_NAME: usize = 16;

/// An immutable set of block and allow rules.
pub struct Matcher {
    /// `key << 16 | ids`; 0 is an empty slot.
    slots: Box<[u64]>,
    /// One bit per name (by the fingerprint's low bits): small enough to stay in cache, so
    /// most suffixes that are listed nowhere cost no table probe at all.
    filter: Box<[u64]>,
    filter_mask: u64,
    len: usize,
    /// Names with a block rule and no allow rule of their own.
    blocking: usize,
    lists: Vec<Arc<str>>,
    hasher: NameHasher,
}

impl Default for Matcher {
    fn default() -> Self {
        MatcherBuilder::new(NameHasher::new()).build()
    }
}

impl Matcher {
    /// Distinct names held (block and allow).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Distinct names a block rule holds that no allow rule names itself: what "N names
    /// blocked" counts (an allowed name is not one, nor are the allowlists' names).
    pub fn blocking(&self) -> usize {
        self.blocking
    }

    /// Whether no names are held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the index (the lists' own fingerprints are counted with the lists).
    pub fn index_bytes(&self) -> usize {
        (self.slots.len() + self.filter.len()) * size_of::<u64>()
    }

    /// Checks a normalised name (lowercase, no trailing dot, punycode): the name and each
    /// parent, most specific first.
    pub fn check_name(&self, name: &str) -> Verdict {
        if self.len == 0 {
            return Verdict::Allowed;
        }
        let mut blocked: Option<(u16, &str)> = None;
        let mut rest = Some(name);
        while rest.is_some() {
            // Hash a chunk of suffixes and prefetch their slots, then probe them in order.
            let mut chunk: [(&str, u64); WALK_CHUNK] = [("", 0); WALK_CHUNK];
            let mut n = 0;
            while let (Some(suffix), true) = (rest, n < WALK_CHUNK) {
                let fp = self.hasher.fingerprint(suffix);
                prefetch(&self.filter[self.filter_word(fp)]);
                chunk[n] = (suffix, fp);
                n += 1;
                rest = parent(suffix);
            }
            // Start the table loads of every suffix the filter lets through, then probe.
            let mut maybe = [false; WALK_CHUNK];
            for (k, &(_, fp)) in chunk[..n].iter().enumerate() {
                maybe[k] = self.may_contain(fp);
                if maybe[k] {
                    prefetch(&self.slots[self.home(fp)]);
                }
            }
            for (k, &(suffix, fp)) in chunk[..n].iter().enumerate() {
                if !maybe[k] {
                    continue;
                }
                let Some(ids) = self.find(fp) else { continue };
                let allow = ids >> ALLOW_SHIFT;
                if allow != NONE {
                    return Verdict::Exempt(self.found(allow, suffix));
                }
                let block = ids & 0xff;
                if block != NONE && blocked.is_none() {
                    blocked = Some((block, suffix));
                }
            }
        }
        match blocked {
            Some((list, rule)) => Verdict::Blocked(self.found(list, rule)),
            None => Verdict::Allowed,
        }
    }

    /// Checks an IP literal: only an exact listing matches (no "parent" of an address).
    pub fn check_exact(&self, name: &str) -> Verdict {
        let fp = self.hasher.fingerprint(name);
        let Some(ids) = self.may_contain(fp).then(|| self.find(fp)).flatten() else { return Verdict::Allowed };
        let (allow, block) = (ids >> ALLOW_SHIFT, ids & 0xff);
        if allow != NONE {
            Verdict::Exempt(self.found(allow, name))
        } else if block != NONE {
            Verdict::Blocked(self.found(block, name))
        } else {
            Verdict::Allowed
        }
    }

    fn found(&self, list: u16, rule: &str) -> Match {
        Match { list: self.lists[usize::from(list)].clone(), rule: rule.into() }
    }

    fn filter_word(&self, fp: u64) -> usize {
        ((fp & self.filter_mask) >> 6) as usize
    }

    fn may_contain(&self, fp: u64) -> bool {
        self.filter[self.filter_word(fp)] & (1 << (fp & 63)) != 0
    }

    /// Maps a fingerprint onto the table without a power-of-two size (multiply-shift).
    fn home(&self, fp: u64) -> usize {
        ((fp as u128 * self.slots.len() as u128) >> 64) as usize
    }

    fn find(&self, fp: u64) -> Option<u16> {
        let want = key(fp);
        let mut i = self.home(fp);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            if slot >> 16 == want {
                return Some(slot as u16);
            }
            i += 1;
            if i == self.slots.len() {
                i = 0;
            }
        }
    }

    fn insert(&mut self, fp: u64, list: u16, shift: u16) {
        let word = self.filter_word(fp);
        self.filter[word] |= 1 << (fp & 63);
        let want = key(fp);
        let mut i = self.home(fp);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                let ids = (EMPTY_IDS & !(0xff << shift)) | (list << shift);
                self.slots[i] = (want << 16) | u64::from(ids);
                self.len += 1;
                return;
            }
            if slot >> 16 == want {
                // The first list to name it is the one reported.
                let ids = slot as u16;
                if (ids >> shift) & 0xff == NONE {
                    let ids = (ids & !(0xff << shift)) | (list << shift);
                    self.slots[i] = (slot & !0xffff) | u64::from(ids);
                }
                return;
            }
            i += 1;
            if i == self.slots.len() {
                i = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(hasher: &NameHasher, block: &[&str], allow: &[&str]) -> Arc<ListNames> {
        let mut p = ListNames::new(hasher.clone());
        block.iter().for_each(|n| p.name(n, false));
        allow.iter().for_each(|n| p.name(n, true));
        p.finish();
        Arc::new(p)
    }

    fn matcher() -> Matcher {
        let h = NameHasher::new();
        let mut b = MatcherBuilder::new(h.clone());
        let bad = names(
            &h,
            &["evil.test", "ads.example.com", "evil.test", "xn--bcher-kva.example", "10.0.0.1"],
            &["ex.ads.example.com"],
        );
        b.add("bad", Role::Block, bad).unwrap();
        b.add("mine", Role::Allow, names(&h, &["ok.evil.test"], &[])).unwrap();
        b.add("more", Role::Block, names(&h, &["evil.test", "ok.evil.test", "more.test"], &[])).unwrap();
        b.build()
    }

    #[test]
    fn suffixes_block_and_lookalikes_do_not() {
        let m = matcher();
        assert_eq!(m.len(), 7);
        // Blocked: all but ok.evil.test (an allowlist names it) and ex.ads.example.com (an
        // exception rule), each counted once however many lists have it.
        assert_eq!(m.blocking(), 5);
        let v = m.check_name("a.b.evil.test");
        assert_eq!(v, Verdict::Blocked(Match { list: "bad".into(), rule: "evil.test".into() }));
        assert!(m.check_name("evil.test").is_blocked());
        assert!(!m.check_name("notevil.test").is_blocked());
        assert!(!m.check_name("evil.test.example").is_blocked());
        assert!(!m.check_name("example.com").is_blocked());
        assert!(m.check_name("x.ads.example.com").is_blocked());
        assert!(m.check_name("xn--bcher-kva.example").is_blocked());
        assert_eq!(
            m.check_name("more.test"),
            Verdict::Blocked(Match { list: "more".into(), rule: "more.test".into() })
        );
    }

    #[test]
    fn allow_wins_for_itself_and_subdomains() {
        let m = matcher();
        assert!(matches!(m.check_name("ok.evil.test"), Verdict::Exempt(ref x) if &*x.list == "mine"));
        assert!(matches!(m.check_name("deep.ok.evil.test"), Verdict::Exempt(_)));
        assert!(m.check_name("nok.evil.test").is_blocked());
        // An adblock exception inside a block list.
        assert!(matches!(m.check_name("ex.ads.example.com"), Verdict::Exempt(ref x) if &*x.list == "bad"));
    }

    #[test]
    fn ip_literals_match_exactly() {
        let m = matcher();
        assert!(m.check_exact("10.0.0.1").is_blocked());
        assert!(!m.check_exact("0.0.1").is_blocked());
    }

    #[test]
    fn empty_matcher_allows_everything() {
        let m = Matcher::default();
        assert_eq!(m.check_name("evil.test"), Verdict::Allowed);
        assert!(m.is_empty());
    }

    #[test]
    fn many_names_all_found() {
        let list: Vec<String> = (0..50_000).map(|i| format!("host{i}.example{}.test", i % 97)).collect();
        let refs: Vec<&str> = list.iter().map(String::as_str).collect();
        let h = NameHasher::new();
        let mut b = MatcherBuilder::new(h.clone());
        b.add("big", Role::Block, names(&h, &refs, &[])).unwrap();
        let m = b.build();
        assert_eq!(m.len(), 50_000);
        for n in &list {
            assert!(m.check_name(&format!("www.{n}")).is_blocked(), "{n}");
        }
        assert!(!m.check_name("host50000.example0.test").is_blocked());
        assert!(m.index_bytes() <= 50_000 * 20);
    }
}
