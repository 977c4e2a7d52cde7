//! Windows (the design's WindowsSystemProxy): WinINet per-connection options on the LAN
//! connection and every dial-up/VPN (RAS) entry, set with `InternetSetOptionW`, announced
//! with SETTINGS_CHANGED and REFRESH, then read back. Keys are `CONNECTION\tfield` with the
//! LAN connection as the empty name. The values and their planning are pure; only
//! `os::*` calls Windows.

use super::host_of;
#[cfg(windows)]
use super::Backend;
use super::{Settings, SysProxyError, Target};

/// WinINet PROXY_TYPE_* flags.
const DIRECT: u32 = 1;
const PROXY: u32 = 2;
const AUTO_PROXY_URL: u32 = 4;

/// The Windows backend.
#[derive(Debug)]
pub struct Windows {
    /// "" for the LAN connection, then every RAS entry.
    connections: Vec<String>,
}

impl Windows {
    /// Enumerates the connections; unavailable off Windows.
    pub fn new() -> Result<Self, SysProxyError> {
        #[cfg(windows)]
        {
            Ok(Self { connections: os::connections() })
        }
        #[cfg(not(windows))]
        Err(SysProxyError::Unavailable("windows"))
    }

    /// A backend for known connections (pure logic and tests).
    pub fn with_connections(connections: Vec<String>) -> Self {
        Self { connections }
    }

    /// The values that point every connection at GuardNest (pure).
    pub fn targets(&self, t: &Target) -> Settings {
        let mut s = Settings::new();
        for c in &self.connections {
            match t {
                Target::Fixed(addr) => {
                    let hp = format!("{}:{}", host_of(*addr), addr.port());
                    s.insert(format!("{c}\tflags"), (DIRECT | PROXY).to_string());
                    s.insert(format!("{c}\tserver"), format!("http={hp};https={hp}"));
                    s.insert(format!("{c}\tbypass"), bypass_list());
                }
                Target::Pac(url) => {
                    s.insert(format!("{c}\tflags"), (DIRECT | AUTO_PROXY_URL).to_string());
                    s.insert(format!("{c}\tautoconfig"), url.clone());
                }
            }
        }
        s
    }
}

/// `<local>` plus loopback, joined with `;` as WinINet wants.
pub fn bypass_list() -> String {
    ["<local>", "localhost", "127.*", "[::1]"].join(";")
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

/// Whether a listener needs the inbound firewall rule: beyond loopback, and only an
/// administrator may add one (the design's choice: otherwise nothing is tried).
#[cfg(windows)]
fn needs_rule(listen: std::net::SocketAddr) -> bool {
    !listen.ip().is_loopback() && is_user_admin()
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

/// The design's system_check: can this machine's proxy settings be changed?
pub fn system_check() -> Result<(), SysProxyError> {
    Windows::new().map(|_| ())
}

/// Whether a process exists (Windows).
#[cfg(windows)]
pub fn process_alive(pid: u32) -> bool {
    os::process_alive(pid)
}

#[cfg(windows)]
impl Backend for Windows {
    fn name(&self) -> &'static str {
        "windows"
    }

    fn target_settings(&self, t: &Target) -> Settings {
        self.targets(t)
    }

    fn read(&self, keys: &[String]) -> Result<Settings, SysProxyError> {
        let mut out = Settings::new();
        let mut conns: Vec<&str> = keys.iter().filter_map(|k| k.split_once('\t').map(|(c, _)| c)).collect();
        conns.dedup();
        for c in conns {
            let v = os::query(c)?;
            for (field, value) in [
                ("flags", v.flags.to_string()),
                ("server", v.server),
                ("bypass", v.bypass),
                ("autoconfig", v.autoconfig),
            ] {
                let key = format!("{c}\t{field}");
                if keys.contains(&key) && !value.is_empty() {
                    out.insert(key, value);
                }
            }
        }
        Ok(out)
    }

    fn listening(&self, addr: std::net::SocketAddr) -> Result<(), SysProxyError> {
        if !needs_rule(addr) {
            return Ok(());
        }
        let args = firewall_add_args(addr.port());
        super::cmd::run("windows", "netsh", &args.iter().map(String::as_str).collect::<Vec<_>>()).map(|_| ())
    }

    fn stopped(&self, addr: std::net::SocketAddr) -> Result<(), SysProxyError> {
        if !needs_rule(addr) {
            return Ok(());
        }
        let args = firewall_delete_args();
        super::cmd::run("windows", "netsh", &args.iter().map(String::as_str).collect::<Vec<_>>()).map(|_| ())
    }

    fn write(&self, values: &Settings) -> Result<(), SysProxyError> {
        let mut conns: Vec<&str> = values.keys().filter_map(|k| k.split_once('\t').map(|(c, _)| c)).collect();
        conns.dedup();
        for c in conns {
            let mut v = os::query(c)?;
            for (k, value) in values.iter().filter(|(k, _)| k.starts_with(&format!("{c}\t"))) {
                let value = if value == super::UNSET { String::new() } else { value.clone() };
                match k.split_once('\t').map(|(_, f)| f) {
                    Some("flags") => v.flags = value.parse().unwrap_or(DIRECT),
                    Some("server") => v.server = value,
                    Some("bypass") => v.bypass = value,
                    Some("autoconfig") => v.autoconfig = value,
                    _ => {}
                }
            }
            os::set(c, &v)?;
            let back = os::query(c)?;
            if back != v {
                return Err(SysProxyError::NotApplied {
                    key: format!("{c}\t*"),
                    wanted: format!("{v:?}"),
                    got: format!("{back:?}"),
                });
            }
        }
        os::announce();
        Ok(())
    }
}

/// One connection's proxy options.
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
mod os {
    use std::ffi::c_void;

    use windows_sys::Win32::Foundation::{CloseHandle, GlobalFree, STILL_ACTIVE};
    use windows_sys::Win32::NetworkManagement::Rras::{RasEnumEntriesW, RASENTRYNAMEW};
    use windows_sys::Win32::Networking::WinInet::{
        InternetQueryOptionW, InternetSetOptionW, INTERNET_OPTION_PER_CONNECTION_OPTION, INTERNET_OPTION_REFRESH,
        INTERNET_OPTION_SETTINGS_CHANGED, INTERNET_PER_CONN_AUTOCONFIG_URL, INTERNET_PER_CONN_FLAGS,
        INTERNET_PER_CONN_OPTIONW, INTERNET_PER_CONN_OPTION_LISTW, INTERNET_PER_CONN_PROXY_BYPASS,
        INTERNET_PER_CONN_PROXY_SERVER,
    };
    use windows_sys::Win32::System::Threading::{GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION};

    use super::{ConnOptions, SysProxyError};

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(std::iter::once(0)).collect()
    }

    fn failed(what: &str) -> SysProxyError {
        SysProxyError::Command { command: what.into(), detail: std::io::Error::last_os_error().to_string() }
    }

    /// "" (LAN) and every RAS phonebook entry.
    pub(super) fn connections() -> Vec<String> {
        let mut out = vec![String::new()];
        let mut entries =
            vec![RASENTRYNAMEW { dwSize: std::mem::size_of::<RASENTRYNAMEW>() as u32, ..Default::default() }; 64];
        let mut bytes = (entries.len() * std::mem::size_of::<RASENTRYNAMEW>()) as u32;
        let mut count = 0u32;
        // SAFETY: the buffer holds `bytes` bytes of initialised entries with dwSize set.
        let rc = unsafe {
            RasEnumEntriesW(std::ptr::null(), std::ptr::null(), entries.as_mut_ptr(), &mut bytes, &mut count)
        };
        if rc == 0 {
            for e in entries.iter().take(count as usize) {
                let len = e.szEntryName.iter().position(|&c| c == 0).unwrap_or(e.szEntryName.len());
                out.push(String::from_utf16_lossy(&e.szEntryName[..len]));
            }
        }
        out
    }

    /// Reads one connection's options.
    pub(super) fn query(conn: &str) -> Result<ConnOptions, SysProxyError> {
        let mut name = wide(conn);
        let mut opts = [
            INTERNET_PER_CONN_FLAGS,
            INTERNET_PER_CONN_PROXY_SERVER,
            INTERNET_PER_CONN_PROXY_BYPASS,
            INTERNET_PER_CONN_AUTOCONFIG_URL,
        ]
        .map(|o| INTERNET_PER_CONN_OPTIONW { dwOption: o, ..Default::default() });
        let mut list = INTERNET_PER_CONN_OPTION_LISTW {
            dwSize: std::mem::size_of::<INTERNET_PER_CONN_OPTION_LISTW>() as u32,
            pszConnection: if conn.is_empty() { std::ptr::null_mut() } else { name.as_mut_ptr() },
            dwOptionCount: opts.len() as u32,
            dwOptionError: 0,
            pOptions: opts.as_mut_ptr(),
        };
        let mut size = list.dwSize;
        // SAFETY: list and opts live across the call; WinINet fills the option values.
        let ok = unsafe {
            InternetQueryOptionW(
                std::ptr::null(),
                INTERNET_OPTION_PER_CONNECTION_OPTION,
                &mut list as *mut _ as *mut c_void,
                &mut size,
            )
        };
        if ok == 0 {
            return Err(failed("InternetQueryOptionW"));
        }
        // SAFETY: WinINet returned these; strings are GlobalAlloc'ed and ours to free.
        unsafe {
            let take = |p: *mut u16| -> String {
                if p.is_null() {
                    return String::new();
                }
                let mut len = 0;
                while *p.add(len) != 0 {
                    len += 1;
                }
                let s = String::from_utf16_lossy(std::slice::from_raw_parts(p, len));
                GlobalFree(p as _);
                s
            };
            Ok(ConnOptions {
                flags: opts[0].Value.dwValue,
                server: take(opts[1].Value.pszValue),
                bypass: take(opts[2].Value.pszValue),
                autoconfig: take(opts[3].Value.pszValue),
            })
        }
    }

    /// Sets one connection's options.
    pub(super) fn set(conn: &str, v: &ConnOptions) -> Result<(), SysProxyError> {
        let mut name = wide(conn);
        let (mut server, mut bypass, mut auto) = (wide(&v.server), wide(&v.bypass), wide(&v.autoconfig));
        let mut opts = [
            INTERNET_PER_CONN_OPTIONW { dwOption: INTERNET_PER_CONN_FLAGS, ..Default::default() },
            INTERNET_PER_CONN_OPTIONW { dwOption: INTERNET_PER_CONN_PROXY_SERVER, ..Default::default() },
            INTERNET_PER_CONN_OPTIONW { dwOption: INTERNET_PER_CONN_PROXY_BYPASS, ..Default::default() },
            INTERNET_PER_CONN_OPTIONW { dwOption: INTERNET_PER_CONN_AUTOCONFIG_URL, ..Default::default() },
        ];
        opts[0].Value.dwValue = v.flags;
        opts[1].Value.pszValue = server.as_mut_ptr();
        opts[2].Value.pszValue = bypass.as_mut_ptr();
        opts[3].Value.pszValue = auto.as_mut_ptr();
        let list = INTERNET_PER_CONN_OPTION_LISTW {
            dwSize: std::mem::size_of::<INTERNET_PER_CONN_OPTION_LISTW>() as u32,
            pszConnection: if conn.is_empty() { std::ptr::null_mut() } else { name.as_mut_ptr() },
            dwOptionCount: opts.len() as u32,
            dwOptionError: 0,
            pOptions: opts.as_mut_ptr(),
        };
        // SAFETY: every pointer in `list` outlives the call.
        let ok = unsafe {
            InternetSetOptionW(
                std::ptr::null(),
                INTERNET_OPTION_PER_CONNECTION_OPTION,
                &list as *const _ as *const c_void,
                list.dwSize,
            )
        };
        if ok == 0 {
            return Err(failed("InternetSetOptionW"));
        }
        Ok(())
    }

    /// Tells WinINet users the settings changed.
    pub(super) fn announce() {
        // SAFETY: no buffers.
        unsafe {
            InternetSetOptionW(std::ptr::null(), INTERNET_OPTION_SETTINGS_CHANGED, std::ptr::null(), 0);
            InternetSetOptionW(std::ptr::null(), INTERNET_OPTION_REFRESH, std::ptr::null(), 0);
        }
    }

    pub(super) fn process_alive(pid: u32) -> bool {
        // SAFETY: the handle is checked and closed.
        unsafe {
            let h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
            if h.is_null() {
                return false;
            }
            let mut code = 0u32;
            let ok = GetExitCodeProcess(h, &mut code) != 0;
            CloseHandle(h);
            ok && code == STILL_ACTIVE as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_and_ras_targets_and_restore() {
        let w = Windows::with_connections(vec![String::new(), "Corp VPN".into()]);
        let t = w.targets(&Target::Fixed("127.0.0.1:3000".parse().unwrap()));
        assert_eq!(t["\tflags"], "3");
        assert_eq!(t["Corp VPN\tserver"], "http=127.0.0.1:3000;https=127.0.0.1:3000");
        assert_eq!(t["\tbypass"], "<local>;localhost;127.*;[::1]");
        let pac = w.targets(&Target::Pac("http://127.0.0.1:3001/proxy.pac".into()));
        assert_eq!(pac["Corp VPN\tflags"], "5");
        // A company PAC on the VPN entry comes back exactly.
        let current: Settings = [
            ("Corp VPN\tflags".to_string(), "5".to_string()),
            ("Corp VPN\tautoconfig".to_string(), "http://corp/p.pac".to_string()),
        ]
        .into_iter()
        .collect();
        let saved = super::super::plan_enable(&current, &t);
        let plan = super::super::plan_restore(&saved, &t, &t);
        assert_eq!(plan.writes["Corp VPN\tflags"], "5");
        assert_eq!(plan.writes["Corp VPN\tserver"], super::super::UNSET);
        assert_eq!(firewall_add_args(3000).last().unwrap(), "localport=3000");
        assert!(firewall_add_args(3000).contains(&"name=GuardNest Proxy".to_string()));
    }
}
