//! macOS: `networksetup` on every enabled network service. The parsing and the commands
//! are pure functions tested everywhere; only `run` touches the OS.

use super::cmd;
use super::host_of;
use super::upstream::{Bypass, BypassStyle, ProxyServer, UserProxy};
use super::{Backend, Settings, SysProxyError, Target, BYPASS, UNSET};

const TOOL: &str = "networksetup";

/// The macOS backend.
#[derive(Debug, Default)]
pub struct Macos {
    services: Vec<String>,
}

impl Macos {
    /// Lists the enabled network services (none when `networksetup` is missing).
    pub fn new() -> Self {
        let services =
            cmd::run("macos", TOOL, &["-listallnetworkservices"]).map(|o| parse_services(&o)).unwrap_or_default();
        Self { services }
    }

    /// A backend for known services (tests).
    pub fn with_services(services: Vec<String>) -> Self {
        Self { services }
    }
}

/// Enabled services from `-listallnetworkservices` (first line is a note; `*` = disabled).
pub fn parse_services(output: &str) -> Vec<String> {
    output.lines().skip(1).map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('*')).map(String::from).collect()
}

/// `Enabled|Server|Port` from `-getwebproxy` / `-getsecurewebproxy` output.
pub fn parse_proxy(output: &str) -> String {
    let field = |name: &str| {
        output.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string())).unwrap_or_default()
    };
    format!("{}|{}|{}", field("Enabled:"), field("Server:"), field("Port:"))
}

/// `Enabled|URL` from `-getautoproxyurl` output.
pub fn parse_auto(output: &str) -> String {
    let field = |name: &str| {
        output.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string())).unwrap_or_default()
    };
    format!("{}|{}", field("Enabled:"), field("URL:"))
}

/// Bypass domains from `-getproxybypassdomains`, space-separated ("" when none).
pub fn parse_bypass(output: &str) -> String {
    if output.contains("There aren't any") {
        return String::new();
    }
    output.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The `networksetup` invocations that set `key` (`SERVICE\tkind`) to `value`.
pub fn commands(key: &str, value: &str) -> Vec<Vec<String>> {
    let (service, kind) = key.split_once('\t').unwrap_or((key, ""));
    let value = if value == UNSET { "" } else { value };
    let s = service.to_string();
    let v = |x: &str| x.to_string();
    match kind {
        "web" | "secureweb" => {
            let mut parts = value.split('|');
            let (enabled, server, port) =
                (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let mut cmds = Vec::new();
            if !server.is_empty() {
                cmds.push(vec![
                    format!("-set{kind}proxy"),
                    s.clone(),
                    v(server),
                    v(if port.is_empty() { "0" } else { port }),
                ]);
            }
            let on = if enabled.eq_ignore_ascii_case("yes") { "on" } else { "off" };
            cmds.push(vec![format!("-set{kind}proxystate"), s, v(on)]);
            cmds
        }
        "auto" => {
            let (enabled, url) = value.split_once('|').unwrap_or(("", ""));
            let mut cmds = Vec::new();
            if !url.is_empty() {
                cmds.push(vec![v("-setautoproxyurl"), s.clone(), v(url)]);
            }
            let on = if enabled.eq_ignore_ascii_case("yes") { "on" } else { "off" };
            cmds.push(vec![v("-setautoproxystate"), s, v(on)]);
            cmds
        }
        "bypass" => {
            let mut cmd = vec![v("-setproxybypassdomains"), s];
            match value.is_empty() {
                true => cmd.push(v("Empty")),
                false => cmd.extend(value.split(' ').map(v)),
            }
            vec![cmd]
        }
        _ => Vec::new(),
    }
}

/// The user's own proxy from `networksetup`'s values (pure): the first service (in the
/// order given) with a web, secure web or auto-config proxy on; an auto-config URL wins, as
/// in macOS; the exceptions list with macOS's own matching.
pub fn user_proxy(services: &[String], settings: &Settings) -> UserProxy {
    let get = |service: &str, kind: &str| settings.get(&format!("{service}\t{kind}")).map(String::as_str);
    let on = |v: &str| v.split('|').next().is_some_and(|e| e.eq_ignore_ascii_case("yes"));
    for service in services {
        if let Some(url) = get(service, "auto").filter(|v| on(v)).and_then(|v| v.split_once('|')).map(|(_, u)| u) {
            if !url.is_empty() {
                return UserProxy::Pac { url: url.to_string() };
            }
        }
        let server = |kind: &str| {
            let v = get(service, kind).filter(|v| on(v))?;
            let mut parts = v.split('|').skip(1);
            let (host, port) = (parts.next()?, parts.next()?.parse::<u16>().ok()?);
            ProxyServer::parse(host, port).filter(|_| port != 0)
        };
        let (http, https) = (server("web"), server("secureweb"));
        if http.is_some() || https.is_some() {
            let bypass = get(service, "bypass").map(|v| v.split(' ').map(String::from).collect::<Vec<_>>());
            return UserProxy::Manual {
                http,
                https,
                bypass: Bypass::new(BypassStyle::Macos, bypass.unwrap_or_default()),
                only_listed: false,
            };
        }
    }
    UserProxy::Direct
}

impl Macos {
    fn targets(&self, t: &Target) -> Settings {
        let mut s = Settings::new();
        for service in &self.services {
            match t {
                Target::Fixed(addr) => {
                    let value = format!("Yes|{}|{}", host_of(*addr), addr.port());
                    s.insert(format!("{service}\tweb"), value.clone());
                    s.insert(format!("{service}\tsecureweb"), value);
                    s.insert(format!("{service}\tbypass"), BYPASS.join(" "));
                }
                Target::Pac(url) => {
                    s.insert(format!("{service}\tauto"), format!("Yes|{url}"));
                }
            }
        }
        s
    }
}

impl Backend for Macos {
    fn name(&self) -> &'static str {
        "macos"
    }

    fn target_settings(&self, t: &Target) -> Settings {
        self.targets(t)
    }

    fn upstream_keys(&self) -> Vec<String> {
        let kinds = ["web", "secureweb", "bypass", "auto"];
        self.services.iter().flat_map(|s| kinds.iter().map(move |k| format!("{s}\t{k}"))).collect()
    }

    fn user_proxy(&self, settings: &Settings) -> UserProxy {
        user_proxy(&self.services, settings)
    }

    fn read(&self, keys: &[String]) -> Result<Settings, SysProxyError> {
        if !cfg!(target_os = "macos") {
            return Err(SysProxyError::Unavailable("macos"));
        }
        let mut out = Settings::new();
        for k in keys {
            let (service, kind) = k.split_once('\t').unwrap_or((k, ""));
            let value = match kind {
                "web" => parse_proxy(&cmd::run("macos", TOOL, &["-getwebproxy", service])?),
                "secureweb" => parse_proxy(&cmd::run("macos", TOOL, &["-getsecurewebproxy", service])?),
                "auto" => parse_auto(&cmd::run("macos", TOOL, &["-getautoproxyurl", service])?),
                "bypass" => parse_bypass(&cmd::run("macos", TOOL, &["-getproxybypassdomains", service])?),
                _ => continue,
            };
            out.insert(k.clone(), value);
        }
        Ok(out)
    }

    fn write(&self, values: &Settings) -> Result<(), SysProxyError> {
        if !cfg!(target_os = "macos") {
            return Err(SysProxyError::Unavailable("macos"));
        }
        for (k, v) in values {
            for args in commands(k, v) {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                cmd::run("macos", TOOL, &args)?;
            }
        }
        let keys: Vec<String> = values.keys().cloned().collect();
        let got = self.read(&keys)?;
        for (k, v) in values {
            let wanted = if v == UNSET { "" } else { v.as_str() };
            let now = got.get(k).map_or("", String::as_str);
            if now != wanted {
                return Err(SysProxyError::NotApplied {
                    key: k.clone(),
                    wanted: wanted.into(),
                    got: now.into(),
                    hint: "",
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
    fn parses_networksetup_output() {
        let list =
            "An asterisk (*) denotes that a network service is disabled.\nWi-Fi\n*Bluetooth PAN\nThunderbolt Bridge\n";
        assert_eq!(parse_services(list), ["Wi-Fi", "Thunderbolt Bridge"]);
        let web = "Enabled: Yes\nServer: proxy.corp\nPort: 8080\nAuthenticated Proxy Enabled: 0\n";
        assert_eq!(parse_proxy(web), "Yes|proxy.corp|8080");
        assert_eq!(parse_auto("URL: http://corp/p.pac\nEnabled: Yes\n"), "Yes|http://corp/p.pac");
        assert_eq!(parse_bypass("There aren't any bypass domains set on Wi-Fi.\n"), "");
        assert_eq!(parse_bypass("*.local\n169.254/16\n"), "*.local 169.254/16");
    }

    #[test]
    fn commands_restore_and_apply() {
        assert_eq!(
            commands("Wi-Fi\tweb", "Yes|127.0.0.1|3000"),
            [vec!["-setwebproxy", "Wi-Fi", "127.0.0.1", "3000"], vec!["-setwebproxystate", "Wi-Fi", "on"]]
        );
        assert_eq!(commands("Wi-Fi\tsecureweb", "No||0"), [vec!["-setsecurewebproxystate", "Wi-Fi", "off"]]);
        assert_eq!(commands("Wi-Fi\tbypass", ""), [vec!["-setproxybypassdomains", "Wi-Fi", "Empty"]]);
        assert_eq!(
            commands("Wi-Fi\tauto", "Yes|http://127.0.0.1:3001/proxy.pac"),
            [
                vec!["-setautoproxyurl", "Wi-Fi", "http://127.0.0.1:3001/proxy.pac"],
                vec!["-setautoproxystate", "Wi-Fi", "on"]
            ]
        );
        let m = Macos::with_services(vec!["Wi-Fi".into(), "Ethernet".into()]);
        let t = m.target_settings(&Target::Fixed("127.0.0.1:3000".parse().unwrap()));
        assert_eq!(t.len(), 6);
        assert_eq!(t["Ethernet\tbypass"], "localhost 127.0.0.0/8 ::1");
        // A snapshot of a corporate proxy is put back exactly.
        let saved = super::super::plan_enable(
            &[("Wi-Fi\tweb".to_string(), "Yes|proxy.corp|8080".to_string())].into_iter().collect(),
            &t,
        );
        let plan = super::super::plan_restore(&saved, &t, &t);
        assert_eq!(plan.writes["Wi-Fi\tweb"], "Yes|proxy.corp|8080");
        assert_eq!(
            commands("Wi-Fi\tweb", &plan.writes["Wi-Fi\tweb"])[0],
            ["-setwebproxy", "Wi-Fi", "proxy.corp", "8080"]
        );
    }

    #[test]
    fn networksetup_values_to_upstream() {
        let services = vec!["Wi-Fi".to_string(), "Ethernet".to_string()];
        let v = |pairs: &[(&str, &str)]| -> Settings {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let manual = v(&[
            ("Wi-Fi\tweb", "No||0"),
            ("Ethernet\tweb", "Yes|proxy.corp|8080"),
            ("Ethernet\tsecureweb", "Yes|proxy.corp|8443"),
            ("Ethernet\tbypass", "*.local 169.254/16 corp.example"),
        ]);
        let UserProxy::Manual { http, https, bypass, .. } = user_proxy(&services, &manual) else { panic!() };
        assert_eq!(
            (http.unwrap().to_string(), https.unwrap().to_string()),
            ("proxy.corp:8080".into(), "proxy.corp:8443".into())
        );
        assert!(
            bypass.matches("nas.local", 80) && bypass.matches("169.254.1.1", 80) && bypass.matches("corp.example", 443)
        );
        assert!(!bypass.matches("www.corp.example", 443));
        let pac = v(&[("Wi-Fi\tauto", "Yes|http://wpad.corp/p.pac"), ("Wi-Fi\tweb", "Yes|proxy.corp|8080")]);
        assert_eq!(user_proxy(&services, &pac), UserProxy::Pac { url: "http://wpad.corp/p.pac".into() });
        assert_eq!(user_proxy(&services, &v(&[("Wi-Fi\tauto", "No|http://x/p.pac")])), UserProxy::Direct);
        assert_eq!(
            Macos::with_services(services.clone()).upstream_keys().len(),
            8,
            "web, secureweb, bypass and auto of each service"
        );
    }
}
