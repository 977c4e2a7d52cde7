//! Windows (the design's WindowsSystemProxy): the per-user Internet settings under
//! `HKCU\Software\Microsoft\Windows\CurrentVersion\Internet Settings`, which WinINet (Edge's
//! and Internet Explorer's stack, most Windows programs) and WinHTTP (Chromium, .NET) read.
//!
//! The keys of the transaction are the registry values themselves, kept byte for byte
//! (type and raw data), so a restore writes back exactly what the user had:
//!
//! - the legacy values `ProxyEnable`, `ProxyServer`, `ProxyOverride`, `AutoConfigURL`;
//! - `Connections\DefaultConnectionSettings` (the LAN connection's record: flags, proxy,
//!   bypass and auto-config URL in one binary value; WinHTTP reads only this one) and
//!   `Connections\<entry>` for every dial-up/VPN (RAS) entry.
//!
//! GuardNest writes these values itself and then tells WinINet with
//! `INTERNET_OPTION_SETTINGS_CHANGED` and `INTERNET_OPTION_REFRESH`, which Microsoft documents
//! for exactly this ("the registry settings have been changed"). It does not go through
//! `InternetSetOption(INTERNET_OPTION_PER_CONNECTION_OPTION)`: measured under Wine 8, that call
//! writes only `ProxyEnable` and `ProxyServer` (not the bypass list, not an auto-config URL,
//! not the connection records, and every RAS entry as the LAN), leaves an empty
//! `ProxyServer` where a value was absent, and cannot be undone byte for byte; on Windows
//! it rewrites the records with a new change counter. After a write, every value is read back
//! exactly, then what WinINet (`InternetQueryOption`, per connection) and WinHTTP
//! (`WinHttpGetIEProxyConfigForCurrentUser`) report is checked by meaning — which proxy each
//! scheme goes to — not byte for byte: Wine's WinINet reports `http=H:P;https=H:P` as `H:P`
//! and the flags 3 as 2, which on Windows mean the same.
//!
//! The value formats and every plan are pure functions with tests; only `os::*` calls Windows.

use super::upstream::{Bypass, BypassStyle, ProxyServer, UserProxy};
use super::{host_of, Settings, SysProxyError, Target, UNSET};

/// WinINet PROXY_TYPE_* flags.
const DIRECT: u32 = 1;
const PROXY: u32 = 2;
const AUTO_PROXY_URL: u32 = 4;

/// Where the settings live, under HKEY_CURRENT_USER.
pub const INTERNET_SETTINGS: &str = r"Software\Microsoft\Windows\CurrentVersion\Internet Settings";
/// Legacy value: 1 when the manual proxy is on.
pub const PROXY_ENABLE: &str = "ProxyEnable";
/// Legacy value: the manual proxy (`host:port`, or `http=host:port;https=host:port`).
pub const PROXY_SERVER: &str = "ProxyServer";
/// Legacy value: hosts that go direct, `;`-separated.
pub const PROXY_OVERRIDE: &str = "ProxyOverride";
/// Legacy value: the auto-config (PAC) URL.
pub const AUTO_CONFIG_URL: &str = "AutoConfigURL";
/// The subkey that holds one binary record per connection.
pub const CONNECTIONS: &str = "Connections";
/// The LAN connection's record in [`CONNECTIONS`].
pub const LAN: &str = "DefaultConnectionSettings";

/// The hint for a value that does not read back as written.
#[cfg_attr(not(windows), allow(dead_code))]
const REGISTRY_HINT: &str = "; is the Internet Settings key locked by group policy?";
/// The hint for a value that is in the registry but not seen by WinINet or WinHTTP.
#[cfg_attr(not(windows), allow(dead_code))]
const READER_HINT: &str = "; the registry holds the new value, but Windows' proxy readers do not report it";

/// The Windows backend.
#[derive(Debug)]
#[cfg_attr(not(windows), allow(dead_code))] // its Backend impl is Windows-only
pub struct Windows {
    /// The dial-up/VPN (RAS) entries; the LAN connection is always there.
    ras: Vec<String>,
    /// Whether this process runs as an administrator (firewall rules need it).
    admin: bool,
    /// The firewall tool.
    netsh: String,
}

impl Windows {
    /// Enumerates the RAS entries; unavailable off Windows.
    pub fn new() -> Result<Self, SysProxyError> {
        #[cfg(windows)]
        {
            Ok(Self { ras: os::ras_entries(), admin: is_user_admin(), netsh: "netsh".into() })
        }
        #[cfg(not(windows))]
        Err(SysProxyError::Unavailable("windows"))
    }

    /// A backend for known RAS entries, administrator or not, with `netsh` as the
    /// firewall tool (pure logic and tests).
    pub fn with(ras: Vec<String>, admin: bool, netsh: &str) -> Self {
        Self { ras, admin, netsh: netsh.into() }
    }

    /// The RAS entries this backend changes besides the LAN connection.
    pub fn ras_entries(&self) -> &[String] {
        &self.ras
    }

    /// The keys of every connection record (LAN first).
    pub fn record_keys(&self) -> Vec<String> {
        std::iter::once(LAN).chain(self.ras.iter().map(String::as_str)).map(record_key).collect()
    }

    /// The values that point every connection at GuardNest, given the current ones (pure):
    /// each connection record keeps its other fields and gets the next change counter.
    pub fn targets(&self, t: &Target, current: &Settings) -> Settings {
        let mut s = Settings::new();
        match t {
            Target::Fixed(addr) => {
                s.insert(PROXY_ENABLE.into(), RegValue::dword(1).encode());
                s.insert(PROXY_SERVER.into(), RegValue::sz(&server_list(*addr)).encode());
                s.insert(PROXY_OVERRIDE.into(), RegValue::sz(&bypass_list()).encode());
                s.insert(AUTO_CONFIG_URL.into(), UNSET.into());
            }
            Target::Pac(url) => {
                s.insert(PROXY_ENABLE.into(), RegValue::dword(0).encode());
                s.insert(AUTO_CONFIG_URL.into(), RegValue::sz(url).encode());
            }
        }
        for key in self.record_keys() {
            let mut record = current
                .get(&key)
                .and_then(|v| RegValue::decode(v))
                .filter(|v| v.kind == REG_BINARY)
                .and_then(|v| Record::parse(&v.data))
                .unwrap_or_else(Record::empty);
            record.counter = record.counter.wrapping_add(1);
            match t {
                Target::Fixed(addr) => {
                    record.flags = DIRECT | PROXY;
                    record.proxy = server_list(*addr).into_bytes();
                    record.bypass = bypass_list().into_bytes();
                }
                Target::Pac(url) => {
                    record.flags = DIRECT | AUTO_PROXY_URL;
                    record.autoconfig = url.clone().into_bytes();
                }
            }
            s.insert(key, RegValue::binary(record.to_bytes()).encode());
        }
        s
    }

    /// Whether `current` routes as `wanted` does (pure): the legacy values equal but the
    /// bypass list, and each connection record with the same mode and the same proxy or
    /// auto-config URL (its change counter, bypass list and other fields aside).
    pub fn routes_as(wanted: &Settings, current: &Settings) -> bool {
        wanted.iter().filter(|(k, _)| k.as_str() != PROXY_OVERRIDE).all(|(k, v)| {
            let now = current.get(k).map_or(UNSET, String::as_str);
            if !k.starts_with(&format!("{CONNECTIONS}\\")) {
                return now == v;
            }
            let record = |s: &str| RegValue::decode(s).and_then(|v| Record::parse(&v.data));
            match (record(v), record(now)) {
                (Some(w), Some(n)) => {
                    let mode = PROXY | AUTO_PROXY_URL;
                    w.flags & mode == n.flags & mode
                        && (w.flags & PROXY == 0 || w.proxy == n.proxy)
                        && (w.flags & AUTO_PROXY_URL == 0 || w.autoconfig == n.autoconfig)
                }
                _ => false,
            }
        })
    }
}

/// The values [`user_proxy`] reads: the legacy ones and the LAN connection's record.
pub fn upstream_keys() -> Vec<String> {
    [PROXY_ENABLE, PROXY_SERVER, PROXY_OVERRIDE, AUTO_CONFIG_URL]
        .iter()
        .map(ToString::to_string)
        .chain([record_key(LAN)])
        .collect()
}

/// The user's own proxy from the Internet Settings values (pure), as WinINet reads them:
/// the LAN connection's record when there is one (an auto-config URL first, as Windows tries
/// the script before the manual proxy), else the legacy values; the manual proxy per scheme
/// (`http=h:p;https=h:p`, or one `h:p` for all); `ProxyOverride` with `<local>`.
pub fn user_proxy(settings: &Settings) -> UserProxy {
    let value = |k: &str| settings.get(k).and_then(|v| RegValue::decode(v));
    let text = |k: &str| value(k).filter(|v| v.kind == REG_SZ).map(|v| v.text());
    let record = value(&record_key(LAN)).filter(|v| v.kind == REG_BINARY).and_then(|v| Record::parse(&v.data));
    let (flags, proxy, bypass, autoconfig) = match record {
        Some(r) => {
            let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (r.flags, s(&r.proxy), s(&r.bypass), s(&r.autoconfig))
        }
        None => {
            let enabled = value(PROXY_ENABLE).is_some_and(|v| v.data.iter().any(|b| *b != 0));
            let autoconfig = text(AUTO_CONFIG_URL).unwrap_or_default();
            let flags =
                DIRECT | if enabled { PROXY } else { 0 } | if autoconfig.is_empty() { 0 } else { AUTO_PROXY_URL };
            (flags, text(PROXY_SERVER).unwrap_or_default(), text(PROXY_OVERRIDE).unwrap_or_default(), autoconfig)
        }
    };
    if flags & AUTO_PROXY_URL != 0 && !autoconfig.trim().is_empty() {
        return UserProxy::Pac { url: autoconfig.trim().to_string() };
    }
    if flags & PROXY == 0 || proxy.trim().is_empty() {
        return UserProxy::Direct;
    }
    let server = |scheme: &str| proxy_for(&proxy, scheme).and_then(|a| ProxyServer::parse(a, 80));
    let (http, https) = (server("http"), server("https"));
    if http.is_none() && https.is_none() {
        return UserProxy::Unsupported(format!("the Windows proxy {proxy:?} names no HTTP or HTTPS proxy"));
    }
    UserProxy::Manual {
        http,
        https,
        bypass: Bypass::new(BypassStyle::Windows, bypass.split(';').map(String::from)),
        only_listed: false,
    }
}

/// `Connections\NAME`.
fn record_key(name: &str) -> String {
    format!("{CONNECTIONS}\\{name}")
}

/// `http=H:P;https=H:P`: both schemes to GuardNest, nothing else (FTP and SOCKS go direct).
pub fn server_list(addr: std::net::SocketAddr) -> String {
    let hp = format!("{}:{}", host_of(addr), addr.port());
    format!("http={hp};https={hp}")
}

/// `<local>` plus loopback, joined with `;` as WinINet wants.
pub fn bypass_list() -> String {
    ["<local>", "localhost", "127.*", "[::1]"].join(";")
}

/// The proxy a Windows proxy list names for `scheme` (pure): `scheme=host:port` entries,
/// or one bare `host:port` for every scheme, separated by `;` or spaces; an optional
/// `http://` in front of the address is not part of it.
pub fn proxy_for<'a>(list: &'a str, scheme: &str) -> Option<&'a str> {
    let entries = list.split([';', ' ']).map(str::trim).filter(|e| !e.is_empty());
    let strip = |a: &'a str| a.strip_prefix("http://").unwrap_or(a).trim_end_matches('/');
    let mut bare = None;
    for entry in entries {
        match entry.split_once('=') {
            Some((s, addr)) if s.eq_ignore_ascii_case(scheme) => return Some(strip(addr)),
            Some(_) => {}
            None => bare = bare.or(Some(strip(entry))),
        }
    }
    bare
}

/// Whether what a reader reports (`flags`, proxy list, auto-config URL) sends traffic where
/// `target` says (pure). A PAC target accepts a reader that reports no auto-config URL at
/// all as long as it reports no manual proxy either: Wine 8's WinINet never reports one.
pub fn reports(target: &Target, flags: u32, proxy: &str, autoconfig: &str) -> bool {
    match target {
        Target::Fixed(addr) => {
            let hp = format!("{}:{}", host_of(*addr), addr.port());
            flags & PROXY != 0 && ["http", "https"].iter().all(|s| proxy_for(proxy, s) == Some(hp.as_str()))
        }
        Target::Pac(url) => match flags & AUTO_PROXY_URL {
            0 => flags & PROXY == 0 && autoconfig.is_empty(),
            _ => autoconfig == url,
        },
    }
}

/// The netsh arguments adding the firewall rule for `port`.
pub fn firewall_add_args(port: u16) -> Vec<String> {
    ["advfirewall", "firewall", "add", "rule", "name=GuardNest Proxy", "dir=in", "action=allow", "protocol=TCP"]
        .iter()
        .map(ToString::to_string)
        .chain([format!("localport={port}")])
        .collect()
}

/// The netsh arguments deleting it.
pub fn firewall_delete_args() -> Vec<String> {
    ["advfirewall", "firewall", "delete", "rule", "name=GuardNest Proxy"].iter().map(ToString::to_string).collect()
}

/// Whether a listener needs the inbound firewall rule (pure): beyond loopback, and only an
/// administrator may add one (the design's choice: otherwise nothing is tried).
pub fn needs_rule(listen: std::net::SocketAddr, admin: bool) -> bool {
    !listen.ip().is_loopback() && admin
}

/// Whether this process runs with administrator rights (false off Windows).
pub fn is_user_admin() -> bool {
    #[cfg(windows)]
    {
        // SAFETY: no arguments; returns a BOOL.
        unsafe { windows_sys::Win32::UI::Shell::IsUserAnAdmin() != 0 }
    }
    #[cfg(not(windows))]
    false
}

/// The design's system_check: can this user's proxy settings be changed here? (On Windows:
/// the Internet Settings key opens for writing.)
pub fn system_check() -> Result<(), SysProxyError> {
    #[cfg(windows)]
    {
        os::check_writable()
    }
    #[cfg(not(windows))]
    Err(SysProxyError::Unavailable("windows"))
}

mod values;
pub use values::{describe, Record, RegValue, REG_BINARY, REG_DWORD, REG_SZ};

#[cfg(windows)]
impl super::Backend for Windows {
    fn name(&self) -> &'static str {
        "windows"
    }

    fn target_settings(&self, t: &Target) -> Settings {
        self.targets(t, &Settings::new())
    }

    fn settings_for(&self, t: &Target, current: &Settings) -> Settings {
        self.targets(t, current)
    }

    fn points_at(&self, wanted: &Settings, current: &Settings) -> bool {
        Self::routes_as(wanted, current)
    }

    fn upstream_keys(&self) -> Vec<String> {
        upstream_keys()
    }

    fn user_proxy(&self, settings: &Settings) -> UserProxy {
        user_proxy(settings)
    }

    fn read(&self, keys: &[String]) -> Result<Settings, SysProxyError> {
        let mut out = Settings::new();
        for key in keys {
            if let Some(v) = os::get(key)? {
                out.insert(key.clone(), v.encode());
            }
        }
        Ok(out)
    }

    fn write(&self, values: &Settings) -> Result<(), SysProxyError> {
        // The legacy strings, then the connection records, and the switch last, so that it
        // never turns on half-written settings.
        let mut order: Vec<(&String, &String)> = values.iter().collect();
        order.sort_by_key(|(k, _)| (k.as_str() == PROXY_ENABLE, k.starts_with(&format!("{CONNECTIONS}\\"))));
        for (key, value) in &order {
            if value.as_str() == UNSET {
                os::delete(key)?;
            } else {
                let v = RegValue::decode(value).ok_or_else(|| SysProxyError::Command {
                    command: format!("write {key}"),
                    detail: format!("not a registry value: {value:?}"),
                })?;
                os::set(key, &v)?;
            }
        }
        for (key, value) in order {
            let got = os::get(key)?.map(|v| v.encode());
            if got.as_deref().unwrap_or(UNSET) != value {
                return Err(SysProxyError::NotApplied {
                    key: format!(r"HKCU\{INTERNET_SETTINGS}\{key}"),
                    wanted: describe(value),
                    got: got.as_deref().map_or_else(|| "absent".into(), describe),
                    hint: REGISTRY_HINT,
                });
            }
        }
        os::announce();
        Ok(())
    }

    fn verify(&self, target: &Target) -> Result<(), SysProxyError> {
        let wanted = match target {
            Target::Fixed(addr) => server_list(*addr),
            Target::Pac(url) => format!("auto-config {url}"),
        };
        let connections = std::iter::once(None).chain(self.ras.iter().map(|r| Some(r.as_str())));
        for conn in connections {
            let o = os::query(conn)?;
            if !reports(target, o.flags, &o.server, &o.autoconfig) {
                return Err(SysProxyError::NotApplied {
                    key: format!("WinINet {}", conn.map_or_else(|| "LAN".to_string(), |c| format!("connection {c:?}"))),
                    wanted,
                    got: format!("{o:?}"),
                    hint: READER_HINT,
                });
            }
        }
        let ie = os::winhttp_ie_config()?;
        let flags = (if ie.autoconfig.is_empty() { 0 } else { AUTO_PROXY_URL })
            | (if ie.server.is_empty() { 0 } else { PROXY });
        if !reports(target, flags, &ie.server, &ie.autoconfig) {
            return Err(SysProxyError::NotApplied {
                key: "WinHTTP's view of the user's settings".into(),
                wanted,
                got: format!("{ie:?}"),
                hint: READER_HINT,
            });
        }
        Ok(())
    }

    fn listening(&self, addr: std::net::SocketAddr) -> Result<Option<String>, SysProxyError> {
        if addr.ip().is_loopback() {
            return Ok(None);
        }
        if !needs_rule(addr, self.admin) {
            return Ok(Some(format!(
                "not an administrator: no Windows Firewall rule added for TCP port {}; other machines may be blocked",
                addr.port()
            )));
        }
        let args = firewall_add_args(addr.port());
        super::cmd::run("windows", &self.netsh, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(Some(format!("Windows Firewall: allowed inbound TCP port {} (rule \"GuardNest Proxy\")", addr.port())))
    }

    fn stopped(&self, addr: std::net::SocketAddr) -> Result<Option<String>, SysProxyError> {
        if !needs_rule(addr, self.admin) {
            return Ok(None);
        }
        let args = firewall_delete_args();
        super::cmd::run("windows", &self.netsh, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(Some("Windows Firewall: removed the rule \"GuardNest Proxy\"".into()))
    }
}

/// One connection's options as a reader reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnOptions {
    /// PROXY_TYPE_* flags.
    pub flags: u32,
    /// `http=h:p;https=h:p` or `h:p`.
    pub server: String,
    /// Bypass list.
    pub bypass: String,
    /// PAC URL.
    pub autoconfig: String,
}

#[cfg(windows)]
pub mod os;

#[cfg(test)]
mod tests {
    use super::values::{RECORD_TAIL, RECORD_VERSION};
    use super::*;
    use crate::{plan_enable, plan_restore};

    fn addr() -> std::net::SocketAddr {
        "127.0.0.1:3000".parse().unwrap()
    }

    /// A user's record: manual proxy with a bypass list, counter 7, Windows' tail.
    fn users_record() -> Vec<u8> {
        Record {
            version: RECORD_VERSION,
            counter: 7,
            flags: DIRECT | PROXY,
            proxy: b"corp-proxy.example:8123".to_vec(),
            bypass: b"corp.example;<local>".to_vec(),
            autoconfig: Vec::new(),
            tail: vec![1, 0, 0, 0, 9, 9],
        }
        .to_bytes()
    }

    #[test]
    fn values_round_trip_byte_for_byte() {
        for v in [RegValue::dword(1), RegValue::sz("corp;<local>"), RegValue::binary(users_record())] {
            assert_eq!(RegValue::decode(&v.encode()), Some(v.clone()));
        }
        // A string stored without its NUL, or with junk after it, comes back as stored.
        let odd = RegValue { kind: REG_SZ, data: vec![0x61, 0, 0x62] };
        assert_eq!(RegValue::decode(&odd.encode()), Some(odd));
        assert_eq!(RegValue::sz("ab").describe(), "REG_SZ \"ab\"");
        assert_eq!(RegValue::dword(1).describe(), "REG_DWORD 0x1");
        assert_eq!(RegValue::decode("4:0"), None);
        let r = Record::parse(&users_record()).unwrap();
        assert_eq!(
            (r.counter, r.flags, &r.proxy[..], &r.tail[..]),
            (7, 3, &b"corp-proxy.example:8123"[..], &[1, 0, 0, 0, 9, 9][..])
        );
        assert_eq!(r.to_bytes(), users_record());
        assert_eq!(Record::parse(&users_record()[..20]), None, "a length past the end");
    }

    #[test]
    fn fixed_target_keeps_the_records_other_fields_and_counts_the_change() {
        let w = Windows::with(vec!["Corp VPN".into()], false, "netsh");
        let current: Settings = [(record_key(LAN), RegValue::binary(users_record()).encode())].into_iter().collect();
        let t = w.targets(&Target::Fixed(addr()), &current);
        assert_eq!(describe(&t[PROXY_SERVER]), "REG_SZ \"http=127.0.0.1:3000;https=127.0.0.1:3000\"");
        assert_eq!(describe(&t[PROXY_ENABLE]), "REG_DWORD 0x1");
        assert_eq!(t[AUTO_CONFIG_URL], UNSET);
        let lan = Record::parse(&RegValue::decode(&t[&record_key(LAN)]).unwrap().data).unwrap();
        assert_eq!((lan.counter, lan.flags), (8, DIRECT | PROXY));
        assert_eq!(lan.bypass, bypass_list().into_bytes());
        assert_eq!(lan.tail, [1, 0, 0, 0, 9, 9]);
        // The VPN entry had no record: one is made.
        let vpn = Record::parse(&RegValue::decode(&t[&record_key("Corp VPN")]).unwrap().data).unwrap();
        assert_eq!((vpn.version, vpn.counter, vpn.tail.len()), (RECORD_VERSION, 1, RECORD_TAIL));
        // The snapshot has every key; a restore of untouched settings writes back all that
        // changed (AutoConfigURL was absent and stayed so).
        let saved = plan_enable(&current, &t);
        assert_eq!(saved[&record_key(LAN)], current[&record_key(LAN)]);
        assert_eq!(saved[PROXY_SERVER], UNSET);
        let mut changed = saved.clone();
        changed.remove(AUTO_CONFIG_URL);
        assert_eq!(plan_restore(&saved, &t, &t).writes, changed);
    }

    #[test]
    fn pac_target_keeps_the_manual_proxy_text() {
        let w = Windows::with(Vec::new(), false, "netsh");
        let current: Settings = [(record_key(LAN), RegValue::binary(users_record()).encode())].into_iter().collect();
        let url = "http://127.0.0.1:3001/proxy.pac";
        let t = w.targets(&Target::Pac(url.into()), &current);
        assert!(!t.contains_key(PROXY_SERVER) && !t.contains_key(PROXY_OVERRIDE));
        assert_eq!(describe(&t[PROXY_ENABLE]), "REG_DWORD 0x0");
        let lan = Record::parse(&RegValue::decode(&t[&record_key(LAN)]).unwrap().data).unwrap();
        assert_eq!((lan.flags, &lan.autoconfig[..]), (DIRECT | AUTO_PROXY_URL, url.as_bytes()));
        assert_eq!(lan.proxy, b"corp-proxy.example:8123");
    }

    #[test]
    fn routes_as_ignores_counter_bypass_and_tail() {
        let w = Windows::with(Vec::new(), false, "netsh");
        let wanted = w.targets(&Target::Fixed(addr()), &Settings::new());
        let mut now = w.targets(
            &Target::Fixed(addr()),
            &[(record_key(LAN), RegValue::binary(users_record()).encode())].into_iter().collect(),
        );
        now.insert(PROXY_OVERRIDE.into(), RegValue::sz("edited").encode());
        assert!(Windows::routes_as(&wanted, &now));
        let other = w.targets(&Target::Fixed("127.0.0.1:3128".parse().unwrap()), &Settings::new());
        assert!(!Windows::routes_as(&wanted, &other));
        let mut absent = now.clone();
        absent.remove(&record_key(LAN));
        assert!(!Windows::routes_as(&wanted, &absent));
    }

    #[test]
    fn readers_are_judged_by_where_traffic_goes() {
        let t = Target::Fixed(addr());
        // What Windows reports, and what Wine 8's WinINet reports for the same settings.
        assert!(reports(&t, 3, "http=127.0.0.1:3000;https=127.0.0.1:3000", ""));
        assert!(reports(&t, 2, "127.0.0.1:3000", ""));
        assert!(!reports(&t, 2, "http=127.0.0.1:3000;https=corp:8123", ""));
        assert!(!reports(&t, 1, "127.0.0.1:3000", ""));
        let pac = Target::Pac("http://127.0.0.1:3001/proxy.pac".into());
        assert!(reports(&pac, 5, "", "http://127.0.0.1:3001/proxy.pac"));
        assert!(reports(&pac, 1, "", ""), "a reader that does not report PAC URLs (Wine 8's WinINet)");
        assert!(!reports(&pac, 5, "", "http://corp/p.pac"));
        assert!(!reports(&pac, 2, "corp:8123", ""));
        assert_eq!(proxy_for("ftp=f:1 http=http://h:2/", "http"), Some("h:2"));
        assert_eq!(proxy_for("h:2", "https"), Some("h:2"));
        assert_eq!(proxy_for("http=h:2", "https"), None);
    }

    /// The snapshot of the issue's kind of user, as the transaction keeps it, becomes the
    /// upstream: the record first, the legacy values without one.
    #[test]
    fn internet_settings_to_upstream() {
        let record: Settings = [(record_key(LAN), RegValue::binary(users_record()).encode())].into_iter().collect();
        let UserProxy::Manual { http, https, bypass, .. } = user_proxy(&record) else { panic!() };
        assert_eq!(http.unwrap().to_string(), "corp-proxy.example:8123");
        assert_eq!(https.unwrap().to_string(), "corp-proxy.example:8123");
        assert!(bypass.matches("corp.example", 443) && bypass.matches("printer", 80));
        assert!(!bypass.matches("www.corp.example", 443), "WinINet matches the whole host");
        let legacy: Settings = [
            (PROXY_ENABLE.to_string(), RegValue::dword(1).encode()),
            (PROXY_SERVER.to_string(), RegValue::sz("http=web.corp:8080;https=tls.corp:8443;socks=s:1080").encode()),
            (PROXY_OVERRIDE.to_string(), RegValue::sz("*.corp.example;<local>").encode()),
        ]
        .into_iter()
        .collect();
        let UserProxy::Manual { http, https, bypass, .. } = user_proxy(&legacy) else { panic!() };
        assert_eq!(
            (http.unwrap().to_string(), https.unwrap().to_string()),
            ("web.corp:8080".into(), "tls.corp:8443".into())
        );
        assert!(bypass.matches("a.corp.example", 443));
        let mut off = legacy.clone();
        off.insert(PROXY_ENABLE.into(), RegValue::dword(0).encode());
        assert_eq!(user_proxy(&off), UserProxy::Direct);
        let pac: Settings =
            [(AUTO_CONFIG_URL.to_string(), RegValue::sz("http://wpad.corp/p.pac").encode())].into_iter().collect();
        assert_eq!(user_proxy(&pac), UserProxy::Pac { url: "http://wpad.corp/p.pac".into() });
        let socks: Settings = [
            (PROXY_ENABLE.to_string(), RegValue::dword(1).encode()),
            (PROXY_SERVER.to_string(), RegValue::sz("socks=s:1080").encode()),
        ]
        .into_iter()
        .collect();
        assert!(matches!(user_proxy(&socks), UserProxy::Unsupported(_)));
        // What GuardNest writes reads back as itself (the caller refuses the loop).
        let w = Windows::with(Vec::new(), false, "netsh");
        let UserProxy::Manual { http: Some(h), .. } = user_proxy(&w.targets(&Target::Fixed(addr()), &record)) else {
            panic!()
        };
        assert_eq!(h.to_string(), "127.0.0.1:3000");
        let pac_ours = w.targets(&Target::Pac("http://127.0.0.1:3001/proxy.pac".into()), &record);
        assert_eq!(user_proxy(&pac_ours), UserProxy::Pac { url: "http://127.0.0.1:3001/proxy.pac".into() });
    }

    #[test]
    fn firewall_rule_only_beyond_loopback_as_administrator() {
        let any: std::net::SocketAddr = "0.0.0.0:3000".parse().unwrap();
        assert!(needs_rule(any, true));
        assert!(!needs_rule(any, false));
        assert!(!needs_rule(addr(), true));
        assert_eq!(firewall_add_args(3000).last().unwrap(), "localport=3000");
        assert!(firewall_add_args(3000).contains(&"name=GuardNest Proxy".to_string()));
        assert_eq!(firewall_delete_args()[2..], ["delete", "rule", "name=GuardNest Proxy"]);
    }
}
