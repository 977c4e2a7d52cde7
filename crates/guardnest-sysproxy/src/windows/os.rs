//! The Windows calls: registry values, WinINet and WinHTTP reads, RAS entries, processes.

use std::ffi::c_void;

use windows_sys::Win32::Foundation::{
    CloseHandle, GlobalFree, ERROR_FILE_NOT_FOUND, ERROR_MORE_DATA, ERROR_SUCCESS, STILL_ACTIVE,
};
use windows_sys::Win32::Foundation::{FILETIME, HWND, INVALID_HANDLE_VALUE, LPARAM};
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
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::Registry::{
    RegCloseKey, RegCreateKeyExW, RegDeleteValueW, RegOpenKeyExW, RegQueryValueExW, RegSetValueExW, HKEY,
    HKEY_CURRENT_USER, KEY_QUERY_VALUE, KEY_SET_VALUE, REG_OPTION_NON_VOLATILE,
};
use windows_sys::Win32::System::RemoteDesktop::ProcessIdToSessionId;
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, GetProcessTimes, OpenProcess, QueryFullProcessImageNameW, TerminateProcess, PROCESS_NAME_WIN32,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_TERMINATE,
};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    EnumWindows, GetClassNameW, GetWindowThreadProcessId, PostMessageW, WM_CLOSE,
};

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

/// An open process (or token) handle, closed when dropped.
pub(crate) struct Process(pub(crate) windows_sys::Win32::Foundation::HANDLE);

impl Process {
    pub(crate) fn open(pid: u32, access: u32) -> Option<Process> {
        // SAFETY: the handle is checked here and closed by Drop.
        let h = unsafe { OpenProcess(access, 0, pid) };
        (!h.is_null()).then_some(Process(h))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: our own handle, closed once.
        unsafe { CloseHandle(self.0) };
    }
}

/// The process's creation time (100 ns units since 1601), from `GetProcessTimes`.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let p = Process::open(pid, PROCESS_QUERY_LIMITED_INFORMATION)?;
    let zero = FILETIME { dwLowDateTime: 0, dwHighDateTime: 0 };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: a valid handle and four out parameters.
    let ok = unsafe { GetProcessTimes(p.0, &mut created, &mut exited, &mut kernel, &mut user) };
    (ok != 0).then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
}

/// Whether the process has not exited yet.
pub(crate) fn running(pid: u32) -> bool {
    let Some(p) = Process::open(pid, PROCESS_QUERY_LIMITED_INFORMATION) else { return false };
    let mut code = 0u32;
    // SAFETY: a valid handle and an out parameter.
    let ok = unsafe { GetExitCodeProcess(p.0, &mut code) } != 0;
    ok && code == STILL_ACTIVE as u32
}

/// The processes of this session (Toolhelp), with their image paths.
pub(crate) fn processes() -> Vec<crate::process::Found> {
    let mut out = Vec::new();
    let mut mine = 0u32;
    // SAFETY: an out parameter.
    if unsafe { ProcessIdToSessionId(std::process::id(), &mut mine) } == 0 {
        return out;
    }
    // SAFETY: a snapshot handle, checked and closed below.
    let snapshot = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if snapshot == INVALID_HANDLE_VALUE || snapshot.is_null() {
        return out;
    }
    let snapshot = Process(snapshot);
    // SAFETY: a plain C struct; dwSize is set as the API requires.
    let mut entry: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    entry.dwSize = size_of::<PROCESSENTRY32W>() as u32;
    // SAFETY: a valid snapshot and entry.
    let mut more = unsafe { Process32FirstW(snapshot.0, &mut entry) } != 0;
    while more {
        let pid = entry.th32ProcessID;
        let mut session = 0u32;
        // SAFETY: an out parameter.
        let same_session = unsafe { ProcessIdToSessionId(pid, &mut session) } != 0 && session == mine;
        if same_session {
            if let (Some(id), Some(exe)) = (crate::process::ProcessId::of(pid), image_path(pid)) {
                out.push(crate::process::Found { id, exe, command: Vec::new() });
            }
        }
        // SAFETY: as above.
        more = unsafe { Process32NextW(snapshot.0, &mut entry) } != 0;
    }
    out
}

/// The full path of a process's program (`QueryFullProcessImageNameW`).
pub(crate) fn image_path(pid: u32) -> Option<std::path::PathBuf> {
    use std::os::windows::ffi::OsStringExt as _;
    let p = Process::open(pid, PROCESS_QUERY_LIMITED_INFORMATION)?;
    let mut buf = vec![0u16; 32768];
    let mut len = buf.len() as u32;
    // SAFETY: `buf` holds `len` UTF-16 units.
    let ok = unsafe { QueryFullProcessImageNameW(p.0, PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut len) };
    (ok != 0).then(|| std::ffi::OsString::from_wide(&buf[..len as usize]).into())
}

/// The class of GuardNest's hidden session window (crate::session).
pub(crate) const SESSION_CLASS: &str = "GuardNestSessionEnd";

/// Posts `WM_CLOSE` to `pid`'s hidden session window: that process restores the system
/// proxy and quits as on Ctrl-C. False when it has no such window.
pub(crate) fn ask_to_quit(pid: u32) -> bool {
    struct Search {
        pid: u32,
        class: Vec<u16>,
        found: Vec<HWND>,
    }
    unsafe extern "system" fn each(hwnd: HWND, data: LPARAM) -> i32 {
        // SAFETY: `data` is the `Search` passed to EnumWindows below, alive during the call.
        let search = unsafe { &mut *(data as *mut Search) };
        let mut owner = 0u32;
        // SAFETY: a window handle EnumWindows gave us, and out parameters.
        unsafe { GetWindowThreadProcessId(hwnd, &mut owner) };
        if owner == search.pid {
            let mut class = [0u16; 64];
            // SAFETY: `class` holds 64 units.
            let n = unsafe { GetClassNameW(hwnd, class.as_mut_ptr(), class.len() as i32) };
            if n > 0 && class[..n as usize] == search.class[..search.class.len() - 1] {
                search.found.push(hwnd);
            }
        }
        1
    }
    let mut search = Search { pid, class: wide(SESSION_CLASS), found: Vec::new() };
    // SAFETY: the callback only reads the window it is given and writes `search`.
    unsafe { EnumWindows(Some(each), &mut search as *mut Search as LPARAM) };
    // SAFETY: posting a message to a window of another process takes no pointers.
    search.found.iter().filter(|h| unsafe { PostMessageW(**h, WM_CLOSE, 0, 0) } != 0).count() > 0
}

/// `TerminateProcess`.
pub(crate) fn kill(pid: u32) -> bool {
    let Some(p) = Process::open(pid, PROCESS_TERMINATE) else { return false };
    // SAFETY: a valid handle opened for termination.
    unsafe { TerminateProcess(p.0, 1) != 0 }
}
