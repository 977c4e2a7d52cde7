//! KDE Plasma: `kioslaverc` through kreadconfig/kwriteconfig (6, else 5), then the D-Bus
//! signal that makes running KIO apps re-read it. GNOME's keys are written too when
//! `gsettings` exists, because Firefox and Chromium read those even on KDE.

use super::cmd;
use super::gnome;
use super::host_of;
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
}
