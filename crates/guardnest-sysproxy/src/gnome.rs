//! GNOME (and every app that reads GNOME's keys, Firefox and Chromium among them):
//! `gsettings` on `org.gnome.system.proxy`. Values are kept as gsettings prints them
//! (GVariant text), so a snapshot is written back verbatim.

use super::cmd;
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
}
