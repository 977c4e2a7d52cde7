//! The immutable name matcher: built whole off the serving path, then published.
//!
//! Every listed name blocks itself and its subdomains, so a lookup walks the query's
//! suffixes at label boundaries (`a.b.evil.test`, `b.evil.test`, `evil.test`, `test`) and
//! probes one hash table per suffix. Allow entries live in the same table, so each suffix
//! costs one probe, and an allow anywhere on the walk wins over any block.
//!
//! Memory is what decides whether a million names are affordable on a desktop, so the table
//! holds no strings: each slot is one `u64` pointing into the lists' packed [`Names`] (shared
//! with the list state, not copied), with the name's length, a 7-bit hash tag that skips
//! most false comparisons, and the ids of the lists that block and allow it. That is about
//! 10 bytes of table per name at 80% load, plus the name's own bytes once.

use std::hash::BuildHasher;
use std::sync::Arc;

use super::format::{Names, Parsed};

type Hasher = foldhash::fast::RandomState;

/// Lists a matcher can tell apart; ids are 8 bits with one value meaning "none".
pub const MAX_LISTS: usize = 255;
const NONE: u64 = 0xff;
/// Target table load; linear probing stays short below this.
const LOAD: f64 = 0.8;

// Slot layout (0 = empty; a stored name has len >= 1):
// bits 0..32 offset in its Names | 32..40 len | 40..47 tag | 47 stored in allow names
// | 48..56 blocking list | 56..64 allowing list
const LEN_SHIFT: u32 = 32;
const TAG_SHIFT: u32 = 40;
const ALLOW_STORE_BIT: u64 = 1 << 47;
const BLOCK_SHIFT: u32 = 48;
const ALLOW_SHIFT: u32 = 56;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A block list (its adblock `@@` exceptions still exempt).
    Block,
    /// An allowlist: every name in it is exempt.
    Allow,
}

struct List {
    name: Arc<str>,
    names: Arc<Parsed>,
    role: Role,
}

/// Collects lists; [`MatcherBuilder::build`] indexes them.
#[derive(Default)]
pub struct MatcherBuilder {
    lists: Vec<List>,
}

/// Too many lists for one matcher.
#[derive(Debug, thiserror::Error)]
#[error("too many lists: at most {MAX_LISTS} can be loaded")]
pub struct TooManyLists;

impl MatcherBuilder {
    /// Adds a list's parsed names, shared, not copied.
    pub fn add(&mut self, name: &str, role: Role, names: Arc<Parsed>) -> Result<(), TooManyLists> {
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
        let mut m = Matcher {
            slots: vec![0; capacity].into_boxed_slice(),
            len: 0,
            lists: self.lists,
            hasher: Hasher::default(),
        };
        for id in 0..m.lists.len() {
            let parsed = m.lists[id].names.clone();
            let (block_as, allow_as) = match m.lists[id].role {
                Role::Block => (BLOCK_SHIFT, ALLOW_SHIFT),
                Role::Allow => (ALLOW_SHIFT, ALLOW_SHIFT),
            };
            m.insert_all(id as u64, &parsed.block, false, block_as);
            m.insert_all(id as u64, &parsed.allow, true, allow_as);
        }
        m
    }
}

/// An immutable set of block and allow rules.
pub struct Matcher {
    slots: Box<[u64]>,
    len: usize,
    lists: Vec<List>,
    hasher: Hasher,
}

impl Default for Matcher {
    fn default() -> Self {
        MatcherBuilder::default().build()
    }
}

impl Matcher {
    /// Distinct names held (block and allow).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no names are held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the index itself (the names' text is owned by the lists).
    pub fn index_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<u64>()
    }

    /// Checks a normalised name (lowercase, no trailing dot, punycode).
    pub fn check_name(&self, name: &str) -> Verdict {
        let mut blocked: Option<(u64, &str)> = None;
        let mut suffix = name;
        loop {
            if let Some(slot) = self.find(suffix) {
                let allow = slot >> ALLOW_SHIFT;
                if allow != NONE {
                    return Verdict::Exempt(self.found(allow, suffix));
                }
                let block = (slot >> BLOCK_SHIFT) & 0xff;
                if block != NONE && blocked.is_none() {
                    blocked = Some((block, suffix));
                }
            }
            match suffix.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => suffix = parent,
                _ => break,
            }
        }
        match blocked {
            Some((list, rule)) => Verdict::Blocked(self.found(list, rule)),
            None => Verdict::Allowed,
        }
    }

    /// Checks an IP literal: only an exact listing matches (no "parent" of an address).
    pub fn check_exact(&self, name: &str) -> Verdict {
        let Some(slot) = self.find(name) else { return Verdict::Allowed };
        let (allow, block) = (slot >> ALLOW_SHIFT, (slot >> BLOCK_SHIFT) & 0xff);
        if allow != NONE {
            Verdict::Exempt(self.found(allow, name))
        } else if block != NONE {
            Verdict::Blocked(self.found(block, name))
        } else {
            Verdict::Allowed
        }
    }

    fn found(&self, list: u64, rule: &str) -> Match {
        Match { list: self.lists[list as usize].name.clone(), rule: rule.into() }
    }

    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name.as_bytes())
    }

    /// Maps a hash onto the table without a power-of-two size (multiply-shift).
    fn home(&self, hash: u64) -> usize {
        ((hash as u128 * self.slots.len() as u128) >> 64) as usize
    }

    fn tag(hash: u64) -> u64 {
        (hash >> 57) << TAG_SHIFT
    }

    /// The text a slot points at.
    fn text_of(&self, slot: u64) -> &str {
        let block = (slot >> BLOCK_SHIFT) & 0xff;
        let allow = slot >> ALLOW_SHIFT;
        // The storing list is the first one that named it: the lower id.
        let list = &self.lists[block.min(allow) as usize].names;
        let names = if slot & ALLOW_STORE_BIT != 0 { &list.allow } else { &list.block };
        let offset = (slot & 0xffff_ffff) as usize;
        let len = ((slot >> LEN_SHIFT) & 0xff) as usize;
        names.as_str().get(offset..offset + len).unwrap_or("")
    }

    fn find(&self, name: &str) -> Option<u64> {
        if name.is_empty() || name.len() > 255 || self.len == 0 {
            return None;
        }
        let hash = self.hash(name);
        let want = Self::tag(hash) | ((name.len() as u64) << LEN_SHIFT);
        let mask = (0x7f << TAG_SHIFT) | (0xff << LEN_SHIFT);
        let mut i = self.home(hash);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            if slot & mask == want && self.text_of(slot) == name {
                return Some(slot);
            }
            i += 1;
            if i == self.slots.len() {
                i = 0;
            }
        }
    }

    fn insert_all(&mut self, list: u64, names: &Names, in_allow: bool, role_shift: u32) {
        for (offset, name) in names.iter() {
            if name.len() > 255 || offset > u32::MAX as usize {
                continue; // cannot be a DNS name; normalisation already refuses these
            }
            self.insert(list, offset as u64, name, in_allow, role_shift);
        }
    }

    fn insert(&mut self, list: u64, offset: u64, name: &str, in_allow: bool, role_shift: u32) {
        let hash = self.hash(name);
        let want = Self::tag(hash) | ((name.len() as u64) << LEN_SHIFT);
        let mask = (0x7f << TAG_SHIFT) | (0xff << LEN_SHIFT);
        let mut i = self.home(hash);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                let store = if in_allow { ALLOW_STORE_BIT } else { 0 };
                let ids = (NONE << BLOCK_SHIFT) | (NONE << ALLOW_SHIFT);
                let ids = (ids & !(0xff << role_shift)) | (list << role_shift);
                self.slots[i] = offset | want | store | ids;
                self.len += 1;
                return;
            }
            if slot & mask == want && self.text_of(slot) == name {
                if (slot >> role_shift) & 0xff == NONE {
                    self.slots[i] = (slot & !(0xff << role_shift)) | (list << role_shift);
                }
                return; // the first list to name it is the one reported
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

    fn names(block: &[&str], allow: &[&str]) -> Arc<Parsed> {
        let mut p = Parsed::default();
        block.iter().for_each(|n| p.block.push(n));
        allow.iter().for_each(|n| p.allow.push(n));
        Arc::new(p)
    }

    fn matcher() -> Matcher {
        let mut b = MatcherBuilder::default();
        let bad = names(
            &["evil.test", "ads.example.com", "evil.test", "xn--bcher-kva.example", "10.0.0.1"],
            &["ex.ads.example.com"],
        );
        b.add("bad", Role::Block, bad).unwrap();
        b.add("mine", Role::Allow, names(&["ok.evil.test"], &[])).unwrap();
        b.add("more", Role::Block, names(&["evil.test", "ok.evil.test", "more.test"], &[])).unwrap();
        b.build()
    }

    #[test]
    fn suffixes_block_and_lookalikes_do_not() {
        let m = matcher();
        assert_eq!(m.len(), 7);
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
        let mut b = MatcherBuilder::default();
        b.add("big", Role::Block, names(&refs, &[])).unwrap();
        let m = b.build();
        assert_eq!(m.len(), 50_000);
        for n in &list {
            assert!(m.check_name(&format!("www.{n}")).is_blocked(), "{n}");
        }
        assert!(!m.check_name("host50000.example0.test").is_blocked());
        assert!(m.index_bytes() <= 50_000 * 8 * 13 / 10);
    }
}
