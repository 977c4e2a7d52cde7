//! KDE Plasma: `kioslaverc` through kreadconfig/kwriteconfig (6, else 5), then the D-Bus
//! signal that makes running KIO apps re-read it. GNOME's keys are written too when
//! `gsettings` exists, because Firefox and Chromium read those even on KDE.

use super::cmd;
use super::gnome;
use super::host_of;
use super::upstream::{Bypass, BypassStyle, ProxyServer, UserProxy};
use super::{Backend, Settings, SysProxyError, Target, BYPASS, UNSET};

const GROUP: &str = "Proxy Settings";
const GNOME_PREFIX: &str = "gnome:";

/// The KDE backend.
#[derive(Debug)]
pub struct Kde {
    read_tool: String,
    write_tool: String,
    gnome: Option<gnome::Gnome>,
}

impl Default for Kde {
    fn default() -> Self {
        Self::new()
    }
}

impl Kde {
    /// Finds the tools on PATH.
    pub fn new() -> Self {
        let six = cmd::exists("kwriteconfig6");
        Self {
            read_tool: if six { "kreadconfig6" } else { "kreadconfig5" }.into(),
            write_tool: if six { "kwriteconfig6" } else { "kwriteconfig5" }.into(),
            gnome: cmd::exists("gsettings").then(gnome::Gnome::new),
        }
    }
}

/// KDE's own keys for a target (pure).
pub(super) fn target(t: &Target) -> Settings {
    let mut s = Settings::new();
    match t {
        Target::Fixed(addr) => {
            // kioslaverc writes "scheme://host port".
            let proxy = format!("http://{} {}", host_of(*addr), addr.port());
            s.insert("httpProxy".into(), proxy.clone());
            s.insert("httpsProxy".into(), proxy);
            s.insert("NoProxyFor".into(), BYPASS.join(","));
            s.insert("ProxyType".into(), "1".into());
        }
        Target::Pac(url) => {
            s.insert("Proxy Config Script".into(), url.clone());
            s.insert("ProxyType".into(), "2".into());
        }
    }
    s
}

/// The keys [`user_proxy`] reads (kioslaverc's `Proxy Settings` group).
pub(super) fn upstream_keys() -> Vec<String> {
    ["ProxyType", "httpProxy", "httpsProxy", "NoProxyFor", "Proxy Config Script", "ReversedException"]
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// A kioslaverc proxy: `http://host port` (KDE's own spelling) or `http://host:port`.
fn kde_server(value: &str) -> Option<ProxyServer> {
    let mut parts = value.split_whitespace();
    let (url, port) = (parts.next()?, parts.next());
    match port.and_then(|p| p.parse::<u16>().ok()) {
        Some(port) => ProxyServer::parse(url.trim_end_matches('/'), port),
        None => ProxyServer::parse(url, 8080),
    }
}

/// The user's own proxy from kioslaverc (pure), as KIO reads it: `ProxyType` 1 is manual
/// (per scheme, `NoProxyFor` as KIO matches it, reversed by `ReversedException`), 2 a PAC
/// script; 3 (automatic discovery) and 4 (environment variables) are not followed.
pub fn user_proxy(settings: &Settings) -> UserProxy {
    let get = |k: &str| settings.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    match get("ProxyType") {
        Some("1") => UserProxy::Manual {
            http: get("httpProxy").and_then(kde_server),
            https: get("httpsProxy").and_then(kde_server),
            bypass: Bypass::new(
                BypassStyle::Kde,
                get("NoProxyFor").map(|v| v.split(',').map(String::from).collect::<Vec<_>>()).unwrap_or_default(),
            ),
            only_listed: get("ReversedException").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        },
        Some("2") => match get("Proxy Config Script") {
            Some(url) => UserProxy::Pac { url: url.to_string() },
            None => UserProxy::Unsupported("KDE's proxy script setting has no URL".into()),
        },
        Some("3") => UserProxy::Unsupported("KDE's automatic proxy discovery (WPAD) is not followed".into()),
        Some("4") => UserProxy::Unsupported("KDE's proxy from environment variables is not followed".into()),
        _ => UserProxy::Direct,
    }
}

impl Backend for Kde {
    fn name(&self) -> &'static str {
        "kde"
    }

    fn target_settings(&self, t: &Target) -> Settings {
        let mut s = target(t);
        if self.gnome.is_some() {
            s.extend(gnome::target(t).into_iter().map(|(k, v)| (format!("{GNOME_PREFIX}{k}"), v)));
        }
        s
    }

    fn upstream_keys(&self) -> Vec<String> {
        upstream_keys()
    }

    fn user_proxy(&self, settings: &Settings) -> UserProxy {
        user_proxy(settings)
    }

    fn read(&self, keys: &[String]) -> Result<Settings, SysProxyError> {
        let mut out = Settings::new();
        let mut gnome_keys = Vec::new();
        for k in keys {
            if let Some(g) = k.strip_prefix(GNOME_PREFIX) {
                gnome_keys.push(g.to_string());
                continue;
            }
            let v = cmd::run("kde", &self.read_tool, &["--file", "kioslaverc", "--group", GROUP, "--key", k])?;
            let v = v.trim_end_matches('\n');
            // kreadconfig prints nothing for an absent key: treat it as unset.
            if !v.is_empty() {
                out.insert(k.clone(), v.to_string());
            }
        }
        if let (Some(g), false) = (&self.gnome, gnome_keys.is_empty()) {
            out.extend(g.read(&gnome_keys)?.into_iter().map(|(k, v)| (format!("{GNOME_PREFIX}{k}"), v)));
        }
        Ok(out)
    }

    fn write(&self, values: &Settings) -> Result<(), SysProxyError> {
        let mut gnome_values = Settings::new();
        let mut ordered: Vec<_> = values.iter().collect();
        ordered.sort_by_key(|(k, _)| *k == "ProxyType"); // the switch last
        for (k, v) in ordered {
            if let Some(g) = k.strip_prefix(GNOME_PREFIX) {
                gnome_values.insert(g.to_string(), v.clone());
                continue;
            }
            let mut args = vec!["--file", "kioslaverc", "--group", GROUP, "--key", k.as_str()];
            if v == UNSET {
                args.push("--delete");
            } else {
                args.push(v.as_str());
            }
            cmd::run("kde", &self.write_tool, &args)?;
            let got = cmd::run("kde", &self.read_tool, &["--file", "kioslaverc", "--group", GROUP, "--key", k])?;
            let got = got.trim_end_matches('\n');
            let wanted = if v == UNSET { "" } else { v.as_str() };
            if got != wanted {
                return Err(SysProxyError::NotApplied {
                    key: k.clone(),
                    wanted: wanted.into(),
                    got: got.into(),
                    hint: "; is kioslaverc writable?",
                });
            }
        }
        if let (Some(g), false) = (&self.gnome, gnome_values.is_empty()) {
            g.write(&gnome_values)?;
        }
        // Tell running KIO applications; without a session bus there are none to tell.
        if !values.is_empty() && cmd::exists("dbus-send") {
            let _ = cmd::run(
                "kde",
                "dbus-send",
                &["--type=signal", "/KIO/Scheduler", "org.kde.KIO.Scheduler.reparseSlaveConfiguration", "string:"],
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kde_targets() {
        let t = target(&Target::Fixed("127.0.0.1:3000".parse().unwrap()));
        assert_eq!(t["ProxyType"], "1");
        assert_eq!(t["httpsProxy"], "http://127.0.0.1 3000");
        assert_eq!(t["NoProxyFor"], "localhost,127.0.0.0/8,::1");
        let t = target(&Target::Pac("http://127.0.0.1:3001/proxy.pac".into()));
        assert_eq!(t["ProxyType"], "2");
        assert_eq!(t["Proxy Config Script"], "http://127.0.0.1:3001/proxy.pac");
    }

    fn s(pairs: &[(&str, &str)]) -> Settings {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn kioslaverc_to_upstream() {
        let manual = s(&[
            ("ProxyType", "1"),
            ("httpProxy", "http://corp.example 8123"),
            ("httpsProxy", "http://corp.example:8124"),
            ("NoProxyFor", ".corp.example,192.168.0.0/16,<local>"),
        ]);
        let UserProxy::Manual { http, https, bypass, only_listed } = user_proxy(&manual) else { panic!() };
        assert_eq!(http.unwrap().to_string(), "corp.example:8123");
        assert_eq!(https.unwrap().to_string(), "corp.example:8124");
        assert!(!only_listed);
        assert!(
            bypass.matches("www.corp.example", 443) && bypass.matches("192.168.1.1", 80) && bypass.matches("nas", 80)
        );
        assert!(!bypass.matches("example.org", 443));
        let mut reversed = manual.clone();
        reversed.insert("ReversedException".into(), "true".into());
        assert!(matches!(user_proxy(&reversed), UserProxy::Manual { only_listed: true, .. }));
        let pac = s(&[("ProxyType", "2"), ("Proxy Config Script", "http://wpad.corp/p.pac")]);
        assert_eq!(user_proxy(&pac), UserProxy::Pac { url: "http://wpad.corp/p.pac".into() });
        assert!(matches!(user_proxy(&s(&[("ProxyType", "3")])), UserProxy::Unsupported(_)));
        assert_eq!(user_proxy(&s(&[("ProxyType", "0")])), UserProxy::Direct);
        assert_eq!(user_proxy(&Settings::new()), UserProxy::Direct);
        // GuardNest's own settings read back as itself.
        let ours = target(&Target::Fixed("127.0.0.1:3000".parse().unwrap()));
        let UserProxy::Manual { https: Some(h), .. } = user_proxy(&ours) else { panic!() };
        assert_eq!(h.to_string(), "127.0.0.1:3000");
    }
}
