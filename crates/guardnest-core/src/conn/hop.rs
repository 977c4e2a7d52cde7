//! Hop-by-hop rules of the forward stage (RFC 9110 §7.6): which fields describe one hop only
//! and are dropped on the way through, the `Via` this proxy adds, and the `Host` field built
//! from the URL.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::domain::{Host, Target};

/// Interim (1xx) answers taken before a final one; past this the upstream is refused (502)
/// and its connection closed.
pub(crate) const MAX_INTERIM: usize = 16;

/// The value this proxy adds to `Via`.
pub(crate) const VIA: HeaderValue = HeaderValue::from_static("1.1 guardnest");

/// Headers that describe one hop only (RFC 9110 §7.6.1), besides those `Connection` names.
pub(crate) const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes headers that describe one hop only (RFC 9110 §7.6.1), including those the
/// `Connection` header names.
/// The bytes a head takes on the wire: its start line and fields, and the blank line (for
/// the counters of bytes through the proxy, which count heads as well as bodies).
pub(crate) fn head_size(start_line: usize, headers: &HeaderMap) -> u64 {
    let fields: usize = headers.iter().map(|(n, v)| n.as_str().len() + 2 + v.len() + 2).sum();
    (start_line + 2 + fields + 2) as u64
}

pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names instead of a lookup for each.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|name| !is_framing(name.as_str().as_bytes()))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The `Host` header for `target`: its normal form, the port only when not 80. Built by
/// hand: formatting it (an IP literal above all) cost more than the rest of the handler.
/// The client's own field (`sent`) is kept when it already says exactly that, as nearly
/// every client's does: no copy, no allocation.
pub(crate) fn host_header(target: &Target, sent: Option<&HeaderValue>) -> Option<HeaderValue> {
    let ip_text;
    let (open, host, close): (&[u8], &[u8], &[u8]) = match &target.host {
        Host::Name(name) => (b"", name.as_bytes(), b""),
        Host::Ip(ip) => {
            ip_text = target.host.ip_text()?;
            match ip.is_ipv6() {
                true => (b"[", ip_text.as_str().as_bytes(), b"]"),
                false => (b"", ip_text.as_str().as_bytes(), b""),
            }
        }
    };
    let mut digits = [0u8; 6];
    let mut i = digits.len();
    if target.port != 80 {
        let mut n = target.port;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        i -= 1;
        digits[i] = b':';
    }
    let parts = [open, host, close, &digits[i..]];
    if let Some(sent) = sent {
        let mut rest = sent.as_bytes();
        let same = parts.iter().all(|part| match rest.strip_prefix(*part) {
            Some(after) => {
                rest = after;
                true
            }
            None => false,
        });
        if same && rest.is_empty() {
            return Some(sent.clone());
        }
    }
    // Exactly as long as the text: the Bytes takes the vector over without a copy.
    let mut text = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        text.extend_from_slice(part);
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).ok()
}

/// Whether a field frames the message body. A `Connection` token never removes one: the
/// message would lose its end, and a client reading the next response as this one's body.
pub(crate) fn is_framing(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"transfer-encoding")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_is_the_normal_form_of_the_url_host() {
        let cases = [
            ("example.com", 80, "example.com"),
            ("example.com", 8080, "example.com:8080"),
            ("127.0.0.1", 80, "127.0.0.1"),
            ("10.200.3.45", 1, "10.200.3.45:1"),
            ("[::1]", 65535, "[::1]:65535"),
            ("[2001:db8::7]", 80, "[2001:db8::7]"),
        ];
        for (host, port, want) in cases {
            let target = Target { host: Host::parse(host).unwrap(), port };
            assert_eq!(host_header(&target, None).unwrap(), want);
            // The client's field is kept when it says the same, replaced when it does not.
            let sent = HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(want.as_bytes())).unwrap();
            let kept = host_header(&target, Some(&sent)).unwrap();
            assert_eq!(kept.as_bytes().as_ptr(), sent.as_bytes().as_ptr(), "{want}: copied");
            for other in
                [want.to_uppercase(), format!("{want}.evil"), format!("x{want}"), want[..want.len() - 1].to_string()]
            {
                if other == want {
                    continue;
                }
                let sent = HeaderValue::from_str(&other).unwrap();
                assert_eq!(host_header(&target, Some(&sent)).unwrap(), want, "{other}");
            }
            // The same text as the general formatter gives.
            let general = if port == 80 { target.host.to_string() } else { target.to_string() };
            assert_eq!(general, want);
        }
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::PROXY_AUTHORIZATION, HeaderValue::from_static("Basic eA=="));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));

        // Each one alone is found too (the fast path must not skip any).
        for name in HOP_BY_HOP {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_static("x"));
            h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
            strip_hop_by_hop(&mut h);
            assert!(!h.contains_key(&name), "{name} kept");
            assert_eq!(h.len(), 1);
        }
    }
}
