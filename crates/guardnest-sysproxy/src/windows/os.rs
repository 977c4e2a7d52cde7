//! The Windows calls: registry values, WinINet and WinHTTP reads, RAS entries, processes.

use std::ffi::c_void;

use windows_sys::Win32::Foundation::{
    CloseHandle, GlobalFree, ERROR_FILE_NOT_FOUND, ERROR_MORE_DATA, ERROR_SUCCESS, STILL_ACTIVE,
};
use windows_sys::Win32::NetworkManagement::Rras::{RasEnumEntriesW, RASENTRYNAMEW};
use windows_sys::Win32::Networking::WinHttp::{
    WinHttpGetIEProxyConfigForCurrentUser, WINHTTP_CURRENT_USER_IE_PROXY_CONFIG,
};
use windows_sys::Win32::Networking::WinInet::{
    InternetQueryOptionW, InternetSetOptionW, INTERNET_OPTION_PER_CONNECTION_OPTION, INTERNET_OPTION_REFRESH,
    INTERNET_OPTION_SETTINGS_CHANGED, INTERNET_PER_CONN_AUTOCONFIG_URL, INTERNET_PER_CONN_FLAGS,
    INTERNET_PER_CONN_OPTIONW, INTERNET_PER_CONN_OPTION_LISTW, INTERNET_PER_CONN_PROXY_BYPASS,
    INTERNET_PER_CONN_PROXY_SERVER,
};
use windows_sys::Win32::System::Registry::{
    RegCloseKey, RegCreateKeyExW, RegDeleteValueW, RegOpenKeyExW, RegQueryValueExW, RegSetValueExW, HKEY,
    HKEY_CURRENT_USER, KEY_QUERY_VALUE, KEY_SET_VALUE, REG_OPTION_NON_VOLATILE,
};
use windows_sys::Win32::System::Threading::{GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION};

use super::{ConnOptions, RegValue, SysProxyError, CONNECTIONS, INTERNET_SETTINGS};

/// RasEnumEntries' "buffer too small" (raserror.h: RASBASE + 3).
const ERROR_BUFFER_TOO_SMALL: u32 = 603;

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn failed(what: String, code: u32) -> SysProxyError {
    SysProxyError::Command { command: what, detail: std::io::Error::from_raw_os_error(code as i32).to_string() }
}

/// An open registry key, closed when dropped.
struct Key(HKEY);

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: the key was opened by us and is closed once.
        unsafe { RegCloseKey(self.0) };
    }
}

/// Splits `Connections\NAME` into (subkey, value name); a bare name is in Internet Settings.
fn place(key: &str) -> (String, &str) {
    match key.split_once('\\') {
        Some((sub, name)) if sub == CONNECTIONS => (format!(r"{INTERNET_SETTINGS}\{CONNECTIONS}"), name),
        _ => (INTERNET_SETTINGS.to_string(), key),
    }
}

/// Opens (`create`: creates) a subkey of HKCU; `None` when it does not exist.
fn open(path: &str, access: u32, create: bool) -> Result<Option<Key>, SysProxyError> {
    let p = wide(path);
    let mut h: HKEY = std::ptr::null_mut();
    // SAFETY: `p` is NUL-terminated and `h` receives the key.
    let rc = unsafe {
        if create {
            RegCreateKeyExW(
                HKEY_CURRENT_USER,
                p.as_ptr(),
                0,
                std::ptr::null(),
                REG_OPTION_NON_VOLATILE,
                access,
                std::ptr::null(),
                &mut h,
                std::ptr::null_mut(),
            )
        } else {
            RegOpenKeyExW(HKEY_CURRENT_USER, p.as_ptr(), 0, access, &mut h)
        }
    };
    match rc {
        ERROR_SUCCESS => Ok(Some(Key(h))),
        ERROR_FILE_NOT_FOUND if !create => Ok(None),
        e => Err(failed(format!(r"open HKCU\{path}"), e)),
    }
}

/// Reads a value: its type and raw bytes, `None` when absent.
pub fn get(key: &str) -> Result<Option<RegValue>, SysProxyError> {
    let (path, name) = place(key);
    let Some(k) = open(&path, KEY_QUERY_VALUE, false)? else { return Ok(None) };
    let n = wide(name);
    let mut data = vec![0u8; 512];
    for _ in 0..4 {
        let (mut kind, mut len) = (0u32, data.len() as u32);
        // SAFETY: `data` holds `len` bytes; the call writes at most that many.
        let rc = unsafe { RegQueryValueExW(k.0, n.as_ptr(), std::ptr::null(), &mut kind, data.as_mut_ptr(), &mut len) };
        match rc {
            ERROR_SUCCESS => {
                data.truncate(len as usize);
                return Ok(Some(RegValue { kind, data }));
            }
            ERROR_FILE_NOT_FOUND => return Ok(None),
            ERROR_MORE_DATA => data.resize(len as usize, 0),
            e => return Err(failed(format!(r"read HKCU\{path}\{name}"), e)),
        }
    }
    Err(failed(format!(r"read HKCU\{path}\{name}"), ERROR_MORE_DATA))
}

/// Writes a value exactly (type and bytes).
pub fn set(key: &str, v: &RegValue) -> Result<(), SysProxyError> {
    let (path, name) = place(key);
    let what = || format!(r"write HKCU\{path}\{name}");
    let k = match open(&path, KEY_SET_VALUE, true) {
        Ok(Some(k)) => k,
        Ok(None) => return Err(failed(what(), ERROR_FILE_NOT_FOUND)),
        Err(SysProxyError::Command { detail, .. }) => {
            return Err(SysProxyError::Command { command: what(), detail: format!("{detail} (opening its key)") })
        }
        Err(e) => return Err(e),
    };
    let n = wide(name);
    // SAFETY: `v.data` outlives the call and its length is passed.
    let rc = unsafe { RegSetValueExW(k.0, n.as_ptr(), 0, v.kind, v.data.as_ptr(), v.data.len() as u32) };
    match rc {
        ERROR_SUCCESS => Ok(()),
        e => Err(failed(format!(r"write HKCU\{path}\{name}"), e)),
    }
}

/// Removes a value; an absent one is fine.
pub fn delete(key: &str) -> Result<(), SysProxyError> {
    let (path, name) = place(key);
    let Some(k) = open(&path, KEY_SET_VALUE, false)? else { return Ok(()) };
    let n = wide(name);
    // SAFETY: `n` is NUL-terminated.
    match unsafe { RegDeleteValueW(k.0, n.as_ptr()) } {
        ERROR_SUCCESS | ERROR_FILE_NOT_FOUND => Ok(()),
        e => Err(failed(format!(r"delete HKCU\{path}\{name}"), e)),
    }
}

/// The Internet Settings key opens for writing.
pub fn check_writable() -> Result<(), SysProxyError> {
    open(INTERNET_SETTINGS, KEY_QUERY_VALUE | KEY_SET_VALUE, true).map(|_| ())
}

/// Every RAS phonebook entry (dial-up, VPN).
pub fn ras_entries() -> Vec<String> {
    let size = size_of::<RASENTRYNAMEW>();
    let mut entries = vec![RASENTRYNAMEW { dwSize: size as u32, ..Default::default() }; 16];
    for _ in 0..3 {
        let mut bytes = (entries.len() * size) as u32;
        let mut count = 0u32;
        // SAFETY: the buffer holds `bytes` bytes of entries with dwSize set.
        let rc = unsafe {
            RasEnumEntriesW(std::ptr::null(), std::ptr::null(), entries.as_mut_ptr(), &mut bytes, &mut count)
        };
        match rc {
            0 => {
                return entries
                    .iter()
                    .take(count as usize)
                    .map(|e| {
                        let len = e.szEntryName.iter().position(|&c| c == 0).unwrap_or(e.szEntryName.len());
                        String::from_utf16_lossy(&e.szEntryName[..len])
                    })
                    .collect()
            }
            ERROR_BUFFER_TOO_SMALL => {
                let n = (bytes as usize).div_ceil(size).max(entries.len() + 1);
                entries = vec![RASENTRYNAMEW { dwSize: size as u32, ..Default::default() }; n];
            }
            _ => return Vec::new(),
        }
    }
    Vec::new()
}

/// Takes a string WinINet or WinHTTP allocated with GlobalAlloc, and frees it.
///
/// # Safety
/// `p` is null or a NUL-terminated UTF-16 string from GlobalAlloc, not used after.
unsafe fn take(p: *mut u16) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the caller's NUL-terminated string, read up to its NUL, then freed once.
    unsafe {
        let mut len = 0;
        while *p.add(len) != 0 {
            len += 1;
        }
        let s = String::from_utf16_lossy(std::slice::from_raw_parts(p, len));
        GlobalFree(p as _);
        s
    }
}

/// What WinINet reports for a connection (`None`: the LAN).
pub fn query(conn: Option<&str>) -> Result<ConnOptions, SysProxyError> {
    let mut name = wide(conn.unwrap_or(""));
    let mut opts = [
        INTERNET_PER_CONN_FLAGS,
        INTERNET_PER_CONN_PROXY_SERVER,
        INTERNET_PER_CONN_PROXY_BYPASS,
        INTERNET_PER_CONN_AUTOCONFIG_URL,
    ]
    .map(|o| INTERNET_PER_CONN_OPTIONW { dwOption: o, ..Default::default() });
    let mut list = INTERNET_PER_CONN_OPTION_LISTW {
        dwSize: size_of::<INTERNET_PER_CONN_OPTION_LISTW>() as u32,
        pszConnection: if conn.is_none() { std::ptr::null_mut() } else { name.as_mut_ptr() },
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
        return Err(SysProxyError::Command {
            command: "InternetQueryOptionW".into(),
            detail: std::io::Error::last_os_error().to_string(),
        });
    }
    // SAFETY: WinINet returned these strings, GlobalAlloc'ed and ours to free.
    unsafe {
        Ok(ConnOptions {
            flags: opts[0].Value.dwValue,
            server: take(opts[1].Value.pszValue),
            bypass: take(opts[2].Value.pszValue),
            autoconfig: take(opts[3].Value.pszValue),
        })
    }
}

/// What WinHTTP reports as the user's settings (it reads the LAN connection's record).
pub fn winhttp_ie_config() -> Result<ConnOptions, SysProxyError> {
    let mut c = WINHTTP_CURRENT_USER_IE_PROXY_CONFIG::default();
    // SAFETY: `c` is an out parameter; its strings are ours to free.
    let ok = unsafe { WinHttpGetIEProxyConfigForCurrentUser(&mut c) };
    if ok == 0 {
        return Err(SysProxyError::Command {
            command: "WinHttpGetIEProxyConfigForCurrentUser".into(),
            detail: std::io::Error::last_os_error().to_string(),
        });
    }
    // SAFETY: as above.
    unsafe {
        Ok(ConnOptions {
            flags: 0,
            server: take(c.lpszProxy),
            bypass: take(c.lpszProxyBypass),
            autoconfig: take(c.lpszAutoConfigUrl),
        })
    }
}

/// Tells WinINet the registry settings changed, and to read them again.
pub fn announce() {
    // SAFETY: no buffers. REFRESH fails under Wine 8 (a stub); the change is in the
    // registry either way.
    unsafe {
        InternetSetOptionW(std::ptr::null(), INTERNET_OPTION_SETTINGS_CHANGED, std::ptr::null(), 0);
        InternetSetOptionW(std::ptr::null(), INTERNET_OPTION_REFRESH, std::ptr::null(), 0);
    }
}

pub(crate) fn process_alive(pid: u32) -> bool {
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
