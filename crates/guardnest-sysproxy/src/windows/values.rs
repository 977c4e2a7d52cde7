//! The registry values GuardNest touches, as stored: [`RegValue`] (type and raw bytes, kept
//! byte for byte in the transaction) and the connection [`Record`] inside the binary ones.

use super::DIRECT;
use crate::UNSET;

/// The version WinINet has written since Internet Explorer 7 (still Windows 11's).
pub(super) const RECORD_VERSION: u32 = 0x46;
/// What follows the three strings in a record Windows writes (auto-detection state); zero
/// in a record made from nothing.
pub(super) const RECORD_TAIL: usize = 32;

/// REG_SZ.
pub const REG_SZ: u32 = 1;
/// REG_BINARY.
pub const REG_BINARY: u32 = 3;
/// REG_DWORD.
pub const REG_DWORD: u32 = 4;

/// A registry value as stored: its type and raw bytes (lossless, whatever they hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegValue {
    /// REG_* type.
    pub kind: u32,
    /// The raw data.
    pub data: Vec<u8>,
}

impl RegValue {
    /// A REG_DWORD.
    pub fn dword(v: u32) -> Self {
        Self { kind: REG_DWORD, data: v.to_le_bytes().to_vec() }
    }

    /// A REG_SZ: UTF-16LE with its terminating NUL, as Windows stores it.
    pub fn sz(s: &str) -> Self {
        Self { kind: REG_SZ, data: s.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect() }
    }

    /// A REG_BINARY.
    pub fn binary(data: Vec<u8>) -> Self {
        Self { kind: REG_BINARY, data }
    }

    /// `TYPE:HEX`, the form kept in the transaction file.
    pub fn encode(&self) -> String {
        let hex: String = self.data.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:{hex}", self.kind)
    }

    /// The inverse of [`RegValue::encode`].
    pub fn decode(s: &str) -> Option<Self> {
        let (kind, hex) = s.split_once(':')?;
        if hex.len() % 2 != 0 {
            return None;
        }
        let data: Option<Vec<u8>> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect();
        Some(Self { kind: kind.parse().ok()?, data: data? })
    }

    /// For people: `REG_DWORD 0x1`, `REG_SZ "text"`, `REG_BINARY 46000000…` (what
    /// `reg query` prints).
    pub fn describe(&self) -> String {
        match self.kind {
            REG_DWORD if self.data.len() == 4 => {
                format!("REG_DWORD {:#x}", u32::from_le_bytes([self.data[0], self.data[1], self.data[2], self.data[3]]))
            }
            REG_SZ => format!("REG_SZ {:?}", self.text()),
            REG_BINARY => format!("REG_BINARY {}", self.data.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            k => format!("type {k} {:02x?}", self.data),
        }
    }

    /// The text of a string value (up to its NUL).
    pub fn text(&self) -> String {
        let units: Vec<u16> = self.data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
        String::from_utf16_lossy(&units[..end])
    }
}

/// Describes an encoded transaction value for people (`absent` for [`UNSET`]).
pub fn describe(encoded: &str) -> String {
    if encoded == UNSET {
        return "absent".into();
    }
    RegValue::decode(encoded).map_or_else(|| encoded.to_string(), |v| v.describe())
}

/// A connection record (`DefaultConnectionSettings`, or one per RAS entry): version, change
/// counter, PROXY_TYPE_* flags, then proxy list, bypass list and auto-config URL as
/// length-prefixed 8-bit strings, then fields kept as they are (little-endian throughout;
/// the layout WinINet has written since Internet Explorer 7, and Wine's WinHTTP reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 0x46 since IE 7.
    pub version: u32,
    /// Incremented by each change.
    pub counter: u32,
    /// PROXY_TYPE_* flags.
    pub flags: u32,
    /// The manual proxy list.
    pub proxy: Vec<u8>,
    /// The bypass list.
    pub bypass: Vec<u8>,
    /// The auto-config (PAC) URL.
    pub autoconfig: Vec<u8>,
    /// Everything after the URL, kept byte for byte.
    pub tail: Vec<u8>,
}

impl Record {
    /// A record for a connection that has none yet: direct, no strings.
    pub fn empty() -> Self {
        Self {
            version: RECORD_VERSION,
            counter: 0,
            flags: DIRECT,
            proxy: Vec::new(),
            bypass: Vec::new(),
            autoconfig: Vec::new(),
            tail: vec![0; RECORD_TAIL],
        }
    }

    /// Parses a record; `None` when it is too short for its own lengths.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let mut at = 0usize;
        let mut word = || -> Option<u32> {
            let w = b.get(at..at + 4)?;
            at += 4;
            Some(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        };
        let (version, counter, flags) = (word()?, word()?, word()?);
        let mut strings = [Vec::new(), Vec::new(), Vec::new()];
        for s in &mut strings {
            let len = usize::try_from(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?)).ok()?;
            at += 4;
            *s = b.get(at..at.checked_add(len)?)?.to_vec();
            at += len;
        }
        let [proxy, bypass, autoconfig] = strings;
        Some(Self { version, counter, flags, proxy, bypass, autoconfig, tail: b[at..].to_vec() })
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for w in [self.version, self.counter, self.flags] {
            out.extend(w.to_le_bytes());
        }
        for s in [&self.proxy, &self.bypass, &self.autoconfig] {
            out.extend((s.len() as u32).to_le_bytes());
            out.extend(s);
        }
        out.extend(&self.tail);
        out
    }
}
