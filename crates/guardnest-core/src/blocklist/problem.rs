//! Why a list could not be updated: a kind a front end can act on, one short sentence for
//! the user, and the whole error chain for whoever asks for details.

use serde::{Deserialize, Serialize};

/// What went wrong, as a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The list server could not be reached (no network, DNS, refused, TLS).
    Offline,
    /// The server or the download was too slow.
    Timeout,
    /// The server answered with an error status.
    Refused,
    /// The download is larger than `max_download_bytes`.
    TooLarge,
    /// The download is not a list (an error or captive-portal page).
    NotAList,
    /// A list file could not be read.
    Unreadable,
    /// A file offered as a list holds no names, or more lines that are not names than names
    /// (a web page saved by mistake, say).
    NoNames,
    /// The download could not be stored.
    Disk,
    /// Recorded by an earlier run; only its text is known.
    Earlier,
}

/// A failed update of one list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// What went wrong.
    pub kind: ProblemKind,
    /// One short sentence.
    pub summary: String,
    /// The whole error, for "details".
    pub detail: String,
}

impl Problem {
    /// A problem of `kind`; the summary is made from the kind and `subject` (a host or path).
    pub fn new(kind: ProblemKind, subject: &str, detail: impl Into<String>) -> Problem {
        let detail = detail.into();
        let summary = match kind {
            ProblemKind::Offline => format!("cannot reach {subject} (no internet connection?)"),
            ProblemKind::Timeout => format!("{subject} did not answer in time"),
            ProblemKind::Refused => format!("{subject} {}", detail.trim_start_matches("server ")),
            ProblemKind::TooLarge => "the download is larger than the size limit".to_string(),
            ProblemKind::NotAList => "the download is not a list (an error page?)".to_string(),
            ProblemKind::Unreadable => format!("cannot read {subject}"),
            ProblemKind::NoNames => format!("{subject} is not a list: {detail}"),
            ProblemKind::Disk => "cannot store the download".to_string(),
            ProblemKind::Earlier => "the last update failed".to_string(),
        };
        Problem { kind, summary, detail }
    }

    /// Whether it is the network's fault, not the list's (the user is offline).
    pub fn is_offline(&self) -> bool {
        matches!(self.kind, ProblemKind::Offline | ProblemKind::Timeout)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// The host of a URL, for summaries ("cannot reach urlhaus.abuse.ch").
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| h).trim_start_matches('[');
    }
    host.split(':').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_one_short_sentence() {
        let p = Problem::new(
            ProblemKind::Offline,
            host_of("https://urlhaus.abuse.ch/downloads/hostfile/"),
            "error sending request for url (https://urlhaus.abuse.ch/downloads/hostfile/): client error (Connect): dns error: failed to lookup address information: Name or service not known",
        );
        assert_eq!(p.summary, "cannot reach urlhaus.abuse.ch (no internet connection?)");
        assert!(p.is_offline());
        let p = Problem::new(ProblemKind::Refused, "example.org", "server answered 404 Not Found");
        assert_eq!(p.summary, "example.org answered 404 Not Found");
        assert_eq!(host_of("http://user@[::1]:8080/x"), "::1");
        assert_eq!(host_of("http://127.0.0.1:9/l.txt"), "127.0.0.1");
        assert_eq!(host_of("/etc/lists/a.txt"), "");
    }
}
