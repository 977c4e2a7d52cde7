//! GNOME (and every app that reads GNOME's keys, Firefox and Chromium among them):
//! `gsettings` on `org.gnome.system.proxy`. Values are kept as gsettings prints them
//! (GVariant text), so a snapshot is written back verbatim.

use super::cmd;
use super::upstream::{gvariant_string, gvariant_strings, Bypass, BypassStyle, ProxyServer, UserProxy};
use super::{host_of, Backend, Settings, SysProxyError, Target, BYPASS, UNSET};

const BASE: &str = "org.gnome.system.proxy";
const HTTP: &str = "org.gnome.system.proxy.http";
const HTTPS: &str = "org.gnome.system.proxy.https";

/// The GNOME backend.
#[derive(Debug, Default)]
pub struct Gnome {
    program: String,
}

impl Gnome {
    /// Uses `gsettings` from PATH.
    pub fn new() -> Self {
        Self { program: "gsettings".into() }
    }
}

fn key(schema: &str, name: &str) -> String {
    format!("{schema} {name}")
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The settings that point GNOME at GuardNest (pure).
pub(super) fn target(target: &Target) -> Settings {
    let mut s = Settings::new();
    match target {
        Target::Fixed(addr) => {
            let host = quoted(&host_of(*addr));
            for schema in [HTTP, HTTPS] {
                s.insert(key(schema, "host"), host.clone());
                s.insert(key(schema, "port"), addr.port().to_string());
            }
            let ignore: Vec<String> = BYPASS.iter().map(|h| quoted(h)).collect();
            s.insert(key(BASE, "ignore-hosts"), format!("[{}]", ignore.join(", ")));
            s.insert(key(BASE, "mode"), quoted("manual"));
        }
        Target::Pac(url) => {
            s.insert(key(BASE, "autoconfig-url"), quoted(url));
            s.insert(key(BASE, "mode"), quoted("auto"));
        }
    }
    s
}

/// The keys [`user_proxy`] reads.
pub(super) fn upstream_keys() -> Vec<String> {
    let mut keys: Vec<String> = ["mode", "ignore-hosts", "autoconfig-url"].iter().map(|k| key(BASE, k)).collect();
    for schema in [HTTP, HTTPS] {
        keys.push(key(schema, "host"));
        keys.push(key(schema, "port"));
    }
    keys
}

/// The user's own proxy from GNOME's keys (pure), as GLib's resolver reads them: `manual`
/// sends each scheme to its own host (an empty one goes direct), `auto` asks the PAC
/// script at `autoconfig-url` (none: automatic discovery, which GuardNest does not do).
pub fn user_proxy(settings: &Settings) -> UserProxy {
    let text = |schema: &str, name: &str| settings.get(&key(schema, name)).and_then(|v| gvariant_string(v));
    match text(BASE, "mode").as_deref() {
        Some("manual") => {
            let server = |schema: &str| {
                let host = text(schema, "host").filter(|h| !h.is_empty())?;
                let port: u16 = settings.get(&key(schema, "port"))?.trim().parse().ok()?;
                ProxyServer::parse(&host, port).filter(|_| port != 0)
            };
            let ignore = settings.get(&key(BASE, "ignore-hosts")).map(|v| gvariant_strings(v)).unwrap_or_default();
            UserProxy::Manual {
                http: server(HTTP),
                https: server(HTTPS),
                bypass: Bypass::new(BypassStyle::Gnome, ignore),
                only_listed: false,
            }
        }
        Some("auto") => match text(BASE, "autoconfig-url").filter(|u| !u.is_empty()) {
            Some(url) => UserProxy::Pac { url },
            None => UserProxy::Unsupported("GNOME's automatic proxy discovery (WPAD) is not followed".into()),
        },
        _ => UserProxy::Direct,
    }
}

/// Keys in write order: everything else first, `mode` last, so the mode never points at
/// half-written settings.
pub(super) fn write_order(values: &Settings) -> Vec<(&String, &String)> {
    let mut v: Vec<_> = values.iter().collect();
    v.sort_by_key(|(k, _)| k.ends_with(" mode"));
    v
}

impl Backend for Gnome {
    fn name(&self) -> &'static str {
        "gnome"
    }

    fn target_settings(&self, t: &Target) -> Settings {
        target(t)
    }

    fn upstream_keys(&self) -> Vec<String> {
        upstream_keys()
    }

    fn user_proxy(&self, settings: &Settings) -> UserProxy {
        user_proxy(settings)
    }

    fn read(&self, keys: &[String]) -> Result<Settings, SysProxyError> {
        let mut out = Settings::new();
        for k in keys {
            let (schema, name) = k.split_once(' ').unwrap_or((k, ""));
            let value = cmd::run("gnome", &self.program, &["get", schema, name])?;
            out.insert(k.clone(), value.trim().to_string());
        }
        Ok(out)
    }

    fn write(&self, values: &Settings) -> Result<(), SysProxyError> {
        for (k, v) in write_order(values) {
            let (schema, name) = k.split_once(' ').unwrap_or((k, ""));
            if v == UNSET {
                cmd::run("gnome", &self.program, &["reset", schema, name])?;
                continue;
            }
            cmd::run("gnome", &self.program, &["set", schema, name, v])?;
            // Without a session bus gsettings exits 0 and writes nothing: read back.
            let got = cmd::run("gnome", &self.program, &["get", schema, name])?;
            if got.trim() != v {
                return Err(SysProxyError::NotApplied {
                    key: k.clone(),
                    wanted: v.clone(),
                    got: got.trim().into(),
                    hint: "; is a session bus running? (without one, gsettings exits 0 and writes nothing)",
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_pac_targets() {
        let t = target(&Target::Fixed("127.0.0.1:3000".parse().unwrap()));
        assert_eq!(t["org.gnome.system.proxy mode"], "'manual'");
        assert_eq!(t["org.gnome.system.proxy.https host"], "'127.0.0.1'");
        assert_eq!(t["org.gnome.system.proxy.http port"], "3000");
        assert_eq!(t["org.gnome.system.proxy ignore-hosts"], "['localhost', '127.0.0.0/8', '::1']");
        assert_eq!(write_order(&t).last().unwrap().0, "org.gnome.system.proxy mode");
        let t = target(&Target::Fixed("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(t["org.gnome.system.proxy.http host"], "'127.0.0.1'");
        let t = target(&Target::Pac("http://127.0.0.1:3001/proxy.pac".into()));
        assert_eq!(t["org.gnome.system.proxy mode"], "'auto'");
        assert_eq!(t["org.gnome.system.proxy autoconfig-url"], "'http://127.0.0.1:3001/proxy.pac'");
        assert_eq!(quoted("it's"), "'it\\'s'");
    }

    fn settings(pairs: &[(&str, &str, &str)]) -> Settings {
        pairs.iter().map(|(s, k, v)| (key(s, k), v.to_string())).collect()
    }

    /// The desktop: a manual proxy with the company's names bypassed.
    #[test]
    fn manual_proxy_per_scheme_with_ignore_hosts() {
        let s = settings(&[
            (BASE, "mode", "'manual'"),
            (HTTP, "host", "'corp.example'"),
            (HTTP, "port", "8123"),
            (HTTPS, "host", "'corp.example'"),
            (HTTPS, "port", "8123"),
            (BASE, "ignore-hosts", "['localhost', '127.0.0.0/8', '::1', '*.corp.example']"),
        ]);
        let UserProxy::Manual { http, https, bypass, only_listed: false } = user_proxy(&s) else { panic!() };
        assert_eq!(http.unwrap().to_string(), "corp.example:8123");
        assert_eq!(https.unwrap().to_string(), "corp.example:8123");
        assert!(bypass.matches("wiki.corp.example", 443) && !bypass.matches("example.org", 443));
        // No HTTPS host: HTTPS goes direct, as GLib does.
        let mut only_http = s.clone();
        only_http.insert(key(HTTPS, "host"), "''".into());
        let UserProxy::Manual { https: None, http: Some(_), .. } = user_proxy(&only_http) else { panic!() };
    }

    #[test]
    fn auto_none_and_our_own_target() {
        let pac = settings(&[(BASE, "mode", "'auto'"), (BASE, "autoconfig-url", "'http://wpad.corp/proxy.pac'")]);
        assert_eq!(user_proxy(&pac), UserProxy::Pac { url: "http://wpad.corp/proxy.pac".into() });
        let wpad = settings(&[(BASE, "mode", "'auto'"), (BASE, "autoconfig-url", "''")]);
        assert!(matches!(user_proxy(&wpad), UserProxy::Unsupported(_)));
        assert_eq!(user_proxy(&settings(&[(BASE, "mode", "'none'")])), UserProxy::Direct);
        assert_eq!(user_proxy(&Settings::new()), UserProxy::Direct);
        // What GuardNest itself writes parses back to itself (the caller refuses a loop).
        let ours = target(&Target::Fixed("127.0.0.1:3000".parse().unwrap()));
        let UserProxy::Manual { http: Some(h), .. } = user_proxy(&ours) else { panic!() };
        assert_eq!(h.to_string(), "127.0.0.1:3000");
        assert!(upstream_keys().iter().all(|k| ours.contains_key(k) || k.ends_with("autoconfig-url")));
    }
}
