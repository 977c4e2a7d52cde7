//! The immutable name matcher: built whole off the serving path, then published.
//!
//! Every listed name blocks itself and its subdomains, so a lookup walks the query's
//! suffixes at label boundaries (`a.b.evil.test`, `b.evil.test`, `evil.test`, `test`) and
//! probes one hash table per suffix. Allow entries live in the same table, so each
//! suffix costs one probe, and an allow anywhere on the walk wins over any block.

use std::collections::HashMap;
use std::sync::Arc;

type Hasher = foldhash::fast::RandomState;

const NONE: u16 = u16::MAX;

/// Which sources list a name, to block and to allow.
#[derive(Clone, Copy)]
struct Entry {
    block: u16,
    allow: u16,
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

/// Collects names from every source; [`MatcherBuilder::build`] freezes them.
#[derive(Default)]
pub struct MatcherBuilder {
    map: HashMap<Box<str>, Entry, Hasher>,
    lists: Vec<Arc<str>>,
}

impl MatcherBuilder {
    /// An empty builder sized for about `names` entries.
    pub fn with_capacity(names: usize) -> Self {
        Self { map: HashMap::with_capacity_and_hasher(names, Hasher::default()), lists: Vec::new() }
    }

    /// Registers a list; its id tags the names added for it.
    pub fn add_list(&mut self, name: &str) -> ListId {
        let id = u16::try_from(self.lists.len()).unwrap_or(NONE - 1).min(NONE - 1);
        self.lists.push(Arc::from(name));
        ListId(id)
    }

    /// Adds a name to block; the first list to name it is the one reported.
    pub fn block(&mut self, list: ListId, name: &str) {
        let e = self.entry(name);
        if e.block == NONE {
            e.block = list.0;
        }
    }

    /// Adds a name never to block.
    pub fn allow(&mut self, list: ListId, name: &str) {
        let e = self.entry(name);
        if e.allow == NONE {
            e.allow = list.0;
        }
    }

    fn entry(&mut self, name: &str) -> &mut Entry {
        // Avoid allocating a key for a name that is already present (duplicates are common).
        if !self.map.contains_key(name) {
            self.map.insert(name.into(), Entry { block: NONE, allow: NONE });
        }
        self.map.get_mut(name).expect("inserted above")
    }

    /// Freezes the names into a matcher.
    pub fn build(mut self) -> Matcher {
        self.map.shrink_to_fit();
        Matcher { map: self.map, lists: self.lists }
    }
}

/// Identifies a list inside one builder.
#[derive(Debug, Clone, Copy)]
pub struct ListId(u16);

/// An immutable set of block and allow rules.
#[derive(Default)]
pub struct Matcher {
    map: HashMap<Box<str>, Entry, Hasher>,
    lists: Vec<Arc<str>>,
}

impl Matcher {
    /// Distinct names held (block and allow).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no names are held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Checks a normalised name (lowercase, no trailing dot, punycode).
    pub fn check_name(&self, name: &str) -> Verdict {
        let mut blocked: Option<(u16, &str)> = None;
        let mut suffix = name;
        loop {
            if let Some(e) = self.map.get(suffix) {
                if e.allow != NONE {
                    return Verdict::Exempt(self.found(e.allow, suffix));
                }
                if e.block != NONE && blocked.is_none() {
                    blocked = Some((e.block, suffix));
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
        match self.map.get(name) {
            Some(e) if e.allow != NONE => Verdict::Exempt(self.found(e.allow, name)),
            Some(e) if e.block != NONE => Verdict::Blocked(self.found(e.block, name)),
            _ => Verdict::Allowed,
        }
    }

    fn found(&self, list: u16, rule: &str) -> Match {
        Match { list: self.lists[usize::from(list)].clone(), rule: rule.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher() -> Matcher {
        let mut b = MatcherBuilder::default();
        let bl = b.add_list("bad");
        let al = b.add_list("mine");
        b.block(bl, "evil.test");
        b.block(bl, "ads.example.com");
        b.block(bl, "evil.test");
        b.block(bl, "xn--bcher-kva.example");
        b.allow(al, "ok.evil.test");
        b.block(bl, "10.0.0.1");
        b.build()
    }

    #[test]
    fn suffixes_block_and_lookalikes_do_not() {
        let m = matcher();
        assert_eq!(m.len(), 5);
        let v = m.check_name("a.b.evil.test");
        assert_eq!(v, Verdict::Blocked(Match { list: "bad".into(), rule: "evil.test".into() }));
        assert!(m.check_name("evil.test").is_blocked());
        assert!(!m.check_name("notevil.test").is_blocked());
        assert!(!m.check_name("evil.test.example").is_blocked());
        assert!(!m.check_name("example.com").is_blocked());
        assert!(m.check_name("x.ads.example.com").is_blocked());
        assert!(m.check_name("xn--bcher-kva.example").is_blocked());
    }

    #[test]
    fn allow_wins_for_itself_and_subdomains() {
        let m = matcher();
        assert!(matches!(m.check_name("ok.evil.test"), Verdict::Exempt(_)));
        assert!(matches!(m.check_name("deep.ok.evil.test"), Verdict::Exempt(_)));
        assert!(m.check_name("nok.evil.test").is_blocked());
    }

    #[test]
    fn ip_literals_match_exactly() {
        let m = matcher();
        assert!(m.check_exact("10.0.0.1").is_blocked());
        assert!(!m.check_exact("0.0.1").is_blocked());
    }
}
