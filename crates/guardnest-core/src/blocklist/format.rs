//! List file formats: detection and line parsing.
//!
//! Parsing never fails as a whole: a line that is not understood is counted and skipped,
//! so one bad line never takes blocking down. Names come out in normal form
//! ([`crate::domain::normalize_name`]).

use std::net::IpAddr;

use serde::Deserialize;

use crate::domain::normalize_name;

/// The formats GuardNest reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `0.0.0.0 name [name…]` (hosts file).
    Hosts,
    /// One name per line.
    Plain,
    /// Adblock network rules of domain form: `||name^`, exceptions `@@||name^`.
    Adblock,
    /// `*.name`.
    Wildcard,
    /// A JSON array of names, or `{"domains": [...], "allow": [...]}`.
    Json,
}

impl Format {
    /// Lowercase name, as written in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Hosts => "hosts",
            Format::Plain => "plain",
            Format::Adblock => "adblock",
            Format::Wildcard => "wildcard",
            Format::Json => "json",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Normalised names packed into one string, newline-separated: about 1 byte of overhead
/// per name instead of a heap allocation each. The matcher points into it.
#[derive(Debug, Default, Clone)]
pub struct Names {
    text: String,
    count: usize,
}

impl Names {
    /// Appends a normalised name (no newline in it).
    pub fn push(&mut self, name: &str) {
        self.text.push_str(name);
        self.text.push('\n');
        self.count += 1;
    }

    /// Names held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no names are held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Each name with its byte offset in [`Names::as_str`].
    pub fn iter(&self) -> impl Iterator<Item = (usize, &str)> + '_ {
        let base = self.text.as_ptr() as usize;
        self.text.split_terminator('\n').map(move |n| (n.as_ptr() as usize - base, n))
    }

    /// The packed text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Moves every name of `other` to the end of this list.
    pub fn append(&mut self, other: Names) {
        self.text.push_str(&other.text);
        self.count += other.count;
    }

    fn shrink(&mut self) {
        self.text.shrink_to_fit();
    }
}

/// What one list yielded.
#[derive(Debug, Default, Clone)]
pub struct Parsed {
    /// Names to block (each also blocks its subdomains).
    pub block: Names,
    /// Names never to block (adblock `@@` exceptions, JSON `allow`).
    pub allow: Names,
    /// Lines that looked like entries but were not valid.
    pub invalid: usize,
    /// Valid rules of a kind GuardNest does not apply (adblock options, paths, cosmetic
    /// rules) and hosts entries that are not blocks (localhost and friends).
    pub unsupported: usize,
}

impl Parsed {
    /// Entries of either kind.
    pub fn entries(&self) -> usize {
        self.block.len() + self.allow.len()
    }
}

/// Guesses the format from the first entry-looking lines.
pub fn detect(text: &str) -> Format {
    let text = text.trim_start_matches('\u{feff}').trim_start();
    if text.starts_with('[') && !text.starts_with("[Adblock") || text.starts_with('{') {
        return Format::Json;
    }
    let mut votes = [0usize; 4]; // hosts, plain, adblock, wildcard
    for line in text.lines().map(str::trim).filter(|l| !is_comment(l)).take(200) {
        if line.starts_with("||") || line.starts_with("@@") {
            votes[2] += 1;
        } else if line.starts_with("*.") {
            votes[3] += 1;
        } else {
            let mut tokens = line.split_whitespace();
            match (tokens.next(), tokens.next()) {
                (Some(first), Some(_)) if parse_ip(first).is_some() => votes[0] += 1,
                _ => votes[1] += 1,
            }
        }
    }
    let formats = [Format::Hosts, Format::Plain, Format::Adblock, Format::Wildcard];
    let best = (0..4).max_by_key(|&i| (votes[i], usize::from(i == 1))).unwrap_or(1);
    formats[best]
}

/// Parses a whole list. `format` matters for JSON; text lists are read line by line, each
/// line in whichever of the text syntaxes it is written in, because real lists mix them
/// (a hosts file with bare names, an adblock list with plain domains) and a line that is
/// clearly meant as a rule should never be lost for being in the "wrong" file.
pub fn parse(text: &str, format: Format) -> Parsed {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if format == Format::Json {
        return parse_json(text);
    }
    let mut out = Parsed::default();
    for line in text.lines().map(str::trim).filter(|l| !is_comment(l)) {
        text_line(line, &mut out);
    }
    out.block.shrink();
    out.allow.shrink();
    out
}

fn text_line(line: &str, out: &mut Parsed) {
    if line.starts_with("||") || line.starts_with("@@") || is_cosmetic(line) {
        adblock_line(line, out);
    } else if line.starts_with("*.") {
        wildcard_line(line, out);
    } else {
        plain_line(line, out);
    }
}

fn is_comment(line: &str) -> bool {
    line.is_empty() || line.starts_with('#') || line.starts_with('!') || line.starts_with("[Adblock")
}

/// Cuts an inline `# comment`.
fn strip_inline_comment(line: &str) -> &str {
    line.split_once('#').map_or(line, |(l, _)| l).trim_end()
}

fn push_name(raw: &str, into: &mut Names, invalid: &mut usize) {
    match normalize_name(raw) {
        Some(n) => into.push(&n),
        None => *invalid += 1,
    }
}

fn parse_ip(token: &str) -> Option<IpAddr> {
    // `fe80::1%lo0` carries a zone.
    token.split('%').next()?.parse().ok()
}

/// Addresses a hosts file uses to sink a name; other addresses are real host records.
fn is_sink(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4 == std::net::Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_loopback(),
    }
}

/// Header entries every hosts file carries; they are not blocked names.
fn is_hosts_boilerplate(name: &str) -> bool {
    matches!(name, "localhost" | "localhost.localdomain" | "local" | "broadcasthost" | "0.0.0.0")
        || name.starts_with("ip6-")
}

fn hosts_line(line: &str, out: &mut Parsed) {
    let line = strip_inline_comment(line);
    let mut tokens = line.split_whitespace();
    let Some(first) = tokens.next() else { return };
    let Some(ip) = parse_ip(first) else {
        out.invalid += 1;
        return;
    };
    let mut any = false;
    for name in tokens {
        any = true;
        if !is_sink(ip) || is_hosts_boilerplate(&name.to_ascii_lowercase()) {
            out.unsupported += 1;
        } else {
            push_name(name, &mut out.block, &mut out.invalid);
        }
    }
    if !any {
        out.invalid += 1;
    }
}

fn plain_line(line: &str, out: &mut Parsed) {
    let line = strip_inline_comment(line);
    let mut tokens = line.split_whitespace();
    match (tokens.next(), tokens.next()) {
        (Some(name), None) => push_name(name, &mut out.block, &mut out.invalid),
        // A hosts line inside a plain list: take it rather than lose it.
        (Some(first), Some(_)) if parse_ip(first).is_some() => hosts_line(line, out),
        _ => out.invalid += 1,
    }
}

fn wildcard_line(line: &str, out: &mut Parsed) {
    let line = strip_inline_comment(line);
    let name = line.strip_prefix("*.").unwrap_or(line);
    if name.contains('*') {
        out.unsupported += 1;
    } else if name.split_whitespace().count() != 1 {
        out.invalid += 1;
    } else {
        push_name(name, &mut out.block, &mut out.invalid);
    }
}

/// `example.org##.banner` and friends: element hiding, nothing to do with DNS. An inline
/// comment (`0.0.0.0 x  ## phishing`) has whitespace before its `#`, a cosmetic rule not.
fn is_cosmetic(line: &str) -> bool {
    ["##", "#@#", "#?#", "#$#"]
        .iter()
        .any(|marker| line.match_indices(marker).any(|(p, _)| p > 0 && !line[..p].ends_with(char::is_whitespace)))
}

fn adblock_line(line: &str, out: &mut Parsed) {
    if is_cosmetic(line) {
        out.unsupported += 1; // cosmetic rule
        return;
    }
    let (rule, exception) = match line.strip_prefix("@@") {
        Some(rest) => (rest, true),
        None => (line, false),
    };
    let Some(body) = rule.strip_prefix("||") else {
        // A bare name is what DNS-style adblock lists use for plain domains.
        if !exception && !rule.contains(['/', '^', '$', '*', '|']) && rule.split_whitespace().count() == 1 {
            push_name(rule, &mut out.block, &mut out.invalid);
        } else {
            out.unsupported += 1;
        }
        return;
    };
    if body.contains('$') {
        out.unsupported += 1; // rule with options: applies to some requests only
        return;
    }
    let name = body.strip_suffix('^').or_else(|| body.strip_suffix("^|")).unwrap_or(body);
    if name.contains(['/', '*', '^', '|', ':']) {
        out.unsupported += 1; // path or pattern rule
        return;
    }
    let into = if exception { &mut out.allow } else { &mut out.block };
    push_name(name, into, &mut out.invalid);
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonList {
    Names(Vec<serde_json::Value>),
    Object {
        #[serde(default)]
        domains: Vec<serde_json::Value>,
        #[serde(default)]
        allow: Vec<serde_json::Value>,
    },
}

fn parse_json(text: &str) -> Parsed {
    let mut out = Parsed::default();
    let (block, allow) = match serde_json::from_str::<JsonList>(text) {
        Ok(JsonList::Names(b)) => (b, Vec::new()),
        Ok(JsonList::Object { domains, allow }) => (domains, allow),
        Err(_) => {
            out.invalid += 1;
            return out;
        }
    };
    for (values, into) in [(block, &mut out.block), (allow, &mut out.allow)] {
        for v in values {
            match v.as_str() {
                Some(s) => push_name(s.trim(), into, &mut out.invalid),
                None => out.invalid += 1,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &Names) -> Vec<&str> {
        p.iter().map(|(_, n)| n).collect()
    }

    #[test]
    fn hosts_quirks() {
        let text = "\u{feff}# header\r\n127.0.0.1 localhost\r\n::1 ip6-localhost ip6-loopback\n\
                    fe80::1%lo0 localhost\n0.0.0.0 0.0.0.0\n127.0.1.1 hercules\n\
                    0.0.0.0 Evil.TEST.  # inline\n\t\t# indented comment\n\
                    127.0.0.1  two.test three.test\n0.0.0.0 130.211.230.53\n#0.0.0.0 commented.test\n\
                    0.0.0.0 bad%name.test\n";
        let p = parse(text, Format::Hosts);
        assert_eq!(names(&p.block), ["evil.test", "two.test", "three.test", "130.211.230.53"]);
        assert_eq!(p.invalid, 1);
        assert_eq!(p.unsupported, 6);
    }

    #[test]
    fn plain_and_wildcard_and_adblock() {
        let p = parse("# c\n0.0.0.0.beeglivesex.com\nA.test # x\nbad name here\n", Format::Plain);
        assert_eq!(names(&p.block), ["0.0.0.0.beeglivesex.com", "a.test"]);
        assert_eq!(p.invalid, 1);

        let p = parse("# c\n*.w.test\n*.aax-*.amazon.*\n", Format::Wildcard);
        assert_eq!(names(&p.block), ["w.test"]);
        assert_eq!(p.unsupported, 1);

        let p = parse(
            "[Adblock Plus 2.0]\n! c\n||ads.test^\n@@||ok.ads.test^\n||x.test^$third-party\n\
             example.org##.banner\n||y.test/path\n@@||aax-*.amazon.*^\n",
            Format::Adblock,
        );
        assert_eq!(names(&p.block), ["ads.test"]);
        assert_eq!(names(&p.allow), ["ok.ads.test"]);
        assert_eq!(p.unsupported, 4);
    }

    #[test]
    fn json_forms() {
        let p = parse(r#"["a.test", "B.test.", 3]"#, Format::Json);
        assert_eq!(names(&p.block), ["a.test", "b.test"]);
        assert_eq!(p.invalid, 1);
        let p = parse(r#"{"domains": ["a.test"], "allow": ["ok.a.test"]}"#, Format::Json);
        assert_eq!(names(&p.allow), ["ok.a.test"]);
        assert_eq!(parse("<html>", Format::Json).invalid, 1);
    }

    #[test]
    fn detection() {
        assert_eq!(detect("# x\n0.0.0.0 a.test\n"), Format::Hosts);
        assert_eq!(detect("# x\na.test\nb.test\n"), Format::Plain);
        assert_eq!(detect("! x\n||a.test^\n"), Format::Adblock);
        assert_eq!(detect("[Adblock Plus 2.0]\n||a.test^\n"), Format::Adblock);
        assert_eq!(detect("# x\n*.a.test\n"), Format::Wildcard);
        assert_eq!(detect(" [\"a.test\"]"), Format::Json);
        assert_eq!(detect(""), Format::Plain);
    }
}
