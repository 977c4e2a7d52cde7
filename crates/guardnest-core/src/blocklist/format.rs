//! List file formats: detection and line parsing.
//!
//! Parsing never fails as a whole: a line that is not understood is counted and skipped,
//! so one bad line never takes blocking down. Names come out in normal form
//! ([`crate::domain::normalize_name`]).

use std::net::IpAddr;

use serde::Deserialize;

pub use crate::config::ListFormat as Format;
use crate::domain::normalize_into;

/// Receives what a parser finds, line by line; lets the same parser fill a text list
/// (tools, tests) or a compact set of fingerprints (the proxy).
pub trait Sink {
    /// A normalised name to block, or to allow when `allow`.
    fn name(&mut self, name: &str, allow: bool);
    /// A line that looked like an entry but was not valid.
    fn invalid(&mut self);
    /// A valid rule GuardNest does not apply, or a hosts entry that is not a block.
    fn unsupported(&mut self);
}

/// Normalised names in text form.
#[derive(Debug, Default, Clone)]
pub struct Names(Vec<Box<str>>);

impl Names {
    /// Appends a name.
    pub fn push(&mut self, name: &str) {
        self.0.push(name.into());
    }

    /// Names held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no names are held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, in list order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.iter().map(|n| &**n)
    }
}

/// What one list yielded, as text (for tools and tests; the proxy keeps fingerprints).
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

impl Sink for Parsed {
    fn name(&mut self, name: &str, allow: bool) {
        if allow {
            self.allow.push(name)
        } else {
            self.block.push(name)
        }
    }
    fn invalid(&mut self) {
        self.invalid += 1;
    }
    fn unsupported(&mut self) {
        self.unsupported += 1;
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

/// Parses a whole list held in memory into text names.
pub fn parse(text: &str, format: Format) -> Parsed {
    let mut out = Parsed::default();
    parse_text(text, format, &mut out);
    out
}

/// Parses a list held in memory. `format` matters for JSON; text lists are read line by
/// line, each line in whichever of the text syntaxes it is written in, because real lists
/// mix them (a hosts file with bare names, an adblock list with plain domains) and a line
/// clearly meant as a rule should never be lost for being in the "wrong" file.
pub fn parse_text<S: Sink>(text: &str, format: Format, sink: &mut S) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if format == Format::Json {
        return parse_json(text, sink);
    }
    let mut lines = LineParser::default();
    for line in text.lines() {
        lines.line(line, sink);
    }
}

/// Parses a list from a reader without holding it whole in memory (a million-name list
/// costs its parsed form, not its text). Detects the format from the first lines unless
/// one is forced; returns the format used.
pub fn parse_reader<R: std::io::BufRead, S: Sink>(
    mut reader: R,
    forced: Option<Format>,
    sink: &mut S,
) -> std::io::Result<Format> {
    // Look at the head first: the format decides how to read the rest.
    let mut head = Vec::new();
    let mut line = Vec::new();
    let mut entry_lines = 0;
    while entry_lines < DETECT_LINES {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        if !is_comment(text.trim()) {
            entry_lines += 1;
        }
        head.extend_from_slice(&line);
    }
    let head_text = String::from_utf8_lossy(&head).into_owned();
    let format = forced.unwrap_or_else(|| detect(&head_text));
    if format == Format::Json {
        // JSON has no lines; read it whole (bounded by the caller's size limit).
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest)?;
        head.extend_from_slice(&rest);
        parse_json(String::from_utf8_lossy(&head).trim_start_matches('\u{feff}'), sink);
        return Ok(format);
    }
    let mut lines = LineParser::default();
    for l in head_text.trim_start_matches('\u{feff}').lines() {
        lines.line(l, sink);
    }
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        lines.line(&String::from_utf8_lossy(&line), sink);
    }
    Ok(format)
}

/// Lines looked at to detect a format.
const DETECT_LINES: usize = 200;

/// Per-parse state: a reused buffer for normalised names.
#[derive(Default)]
struct LineParser {
    buf: String,
}

impl LineParser {
    fn line<S: Sink>(&mut self, raw: &str, sink: &mut S) {
        let line = raw.trim();
        if is_comment(line) {
            return;
        }
        if line.starts_with("||") || line.starts_with("@@") || is_cosmetic(line) {
            self.adblock_line(line, sink);
        } else if line.starts_with("*.") {
            self.wildcard_line(line, sink);
        } else {
            self.plain_line(line, sink);
        }
    }

    fn push<S: Sink>(&mut self, raw: &str, allow: bool, sink: &mut S) {
        if normalize_into(raw, &mut self.buf) {
            sink.name(&self.buf, allow);
        } else {
            sink.invalid();
        }
    }

    fn hosts_line<S: Sink>(&mut self, line: &str, sink: &mut S) {
        let line = strip_inline_comment(line);
        let mut tokens = line.split_whitespace();
        let Some(first) = tokens.next() else { return };
        let Some(ip) = parse_ip(first) else {
            sink.invalid();
            return;
        };
        let mut any = false;
        for name in tokens {
            any = true;
            if !is_sink(ip) || is_hosts_boilerplate(name) {
                sink.unsupported();
            } else {
                self.push(name, false, sink);
            }
        }
        if !any {
            sink.invalid();
        }
    }

    fn plain_line<S: Sink>(&mut self, line: &str, sink: &mut S) {
        let line = strip_inline_comment(line);
        let mut tokens = line.split_whitespace();
        match (tokens.next(), tokens.next()) {
            (Some(name), None) => self.push(name, false, sink),
            (Some(first), Some(_)) if parse_ip(first).is_some() => self.hosts_line(line, sink),
            _ => sink.invalid(),
        }
    }

    fn wildcard_line<S: Sink>(&mut self, line: &str, sink: &mut S) {
        let line = strip_inline_comment(line);
        let name = line.strip_prefix("*.").unwrap_or(line);
        if name.contains('*') {
            sink.unsupported();
        } else if name.split_whitespace().count() != 1 {
            sink.invalid();
        } else {
            self.push(name, false, sink);
        }
    }

    fn adblock_line<S: Sink>(&mut self, line: &str, sink: &mut S) {
        if is_cosmetic(line) {
            sink.unsupported();
            return;
        }
        let (rule, exception) = match line.strip_prefix("@@") {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        let Some(body) = rule.strip_prefix("||") else {
            sink.unsupported(); // an `@@` rule of URL form
            return;
        };
        if body.contains('$') {
            sink.unsupported(); // rule with options: applies to some requests only
            return;
        }
        let name = body.strip_suffix('^').or_else(|| body.strip_suffix("^|")).unwrap_or(body);
        if name.contains(['/', '*', '^', '|', ':']) {
            sink.unsupported(); // path or pattern rule
            return;
        }
        self.push(name, exception, sink);
    }
}

fn is_comment(line: &str) -> bool {
    line.is_empty() || line.starts_with('#') || line.starts_with('!') || line.starts_with("[Adblock")
}

/// Cuts an inline `# comment`.
fn strip_inline_comment(line: &str) -> &str {
    line.split_once('#').map_or(line, |(l, _)| l).trim_end()
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
    ["localhost", "localhost.localdomain", "local", "broadcasthost", "0.0.0.0"]
        .iter()
        .any(|b| name.eq_ignore_ascii_case(b))
        || name.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("ip6-"))
}

/// `example.org##.banner` and friends: element hiding, nothing to do with DNS. An inline
/// comment (`0.0.0.0 x  ## phishing`) has whitespace before its `#`, a cosmetic rule not.
fn is_cosmetic(line: &str) -> bool {
    ["##", "#@#", "#?#", "#$#"]
        .iter()
        .any(|marker| line.match_indices(marker).any(|(p, _)| p > 0 && !line[..p].ends_with(char::is_whitespace)))
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

fn parse_json<S: Sink>(text: &str, sink: &mut S) {
    let (block, allow) = match serde_json::from_str::<JsonList>(text) {
        Ok(JsonList::Names(b)) => (b, Vec::new()),
        Ok(JsonList::Object { domains, allow }) => (domains, allow),
        Err(_) => return sink.invalid(),
    };
    let mut buf = String::new();
    for (values, is_allow) in [(block, false), (allow, true)] {
        for v in values {
            match v.as_str() {
                Some(s) if normalize_into(s.trim(), &mut buf) => sink.name(&buf, is_allow),
                _ => sink.invalid(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &Names) -> Vec<&str> {
        p.iter().collect()
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
