//! Small file helpers shared by the cache, the system-proxy transaction and the control
//! API's runtime file, and where they live.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// GuardNest's per-user data directory on this machine: `~/.local/share/guardnest` on Linux,
/// `%LOCALAPPDATA%\guardnest` on Windows — not the roaming `%APPDATA%`, which a domain
/// profile copies to other machines: the system-proxy snapshot, the runtime file and the
/// list cache belong to this one.
pub fn data_dir() -> PathBuf {
    dirs::data_local_dir().map(|d| d.join("guardnest")).unwrap_or_else(|| PathBuf::from(".guardnest"))
}

/// Writes `data` to `path` atomically (temporary file in the same directory, fsync,
/// rename). With `private`, the file is readable by its owner only (tokens): mode 0600 on
/// Unix; on Windows it is created with a protected DACL granting access to the current user
/// alone (so it never exists with its directory's inherited entries; the rename keeps it).
pub fn write_atomic(path: &Path, data: &[u8], private: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = match private {
        true => private_temp(dir)?,
        false => tempfile::NamedTempFile::new_in(dir)?,
    };
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(unix)]
fn private_temp(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(tmp)
}

#[cfg(windows)]
fn private_temp(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new().make_in(dir, win::create_private)
}

#[cfg(not(any(unix, windows)))]
fn private_temp(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::NamedTempFile::new_in(dir)
}

/// Who may open a file, as its DACL says (Windows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dacl {
    /// Parent directories' entries do not flow in.
    pub protected: bool,
    /// (allowed, SID as `S-1-…`, access mask) per entry, in order.
    pub entries: Vec<(bool, String, u32)>,
}

/// Reads a file's DACL (Windows): how the tests check [`write_atomic`]'s private files.
#[cfg(windows)]
pub fn dacl(path: &Path) -> std::io::Result<Dacl> {
    win::dacl(path)
}

/// The current user's SID as `S-1-…` (Windows).
#[cfg(windows)]
pub fn current_user_sid() -> std::io::Result<String> {
    win::with_user_sid(win::sid_string)?
}

/// The DACL [`write_atomic`] creates a private file with (Windows): checkable where the
/// file's own DACL cannot be read back (Wine does not store file security descriptors).
#[cfg(windows)]
pub fn private_file_dacl() -> std::io::Result<Dacl> {
    win::OwnerOnly::new()?.dacl()
}

#[cfg(windows)]
mod win {
    use std::os::windows::io::FromRawHandle as _;
    use std::path::Path;

    use windows_sys::Win32::Foundation::{
        CloseHandle, LocalFree, ERROR_SUCCESS, GENERIC_READ, GENERIC_WRITE, HANDLE, INVALID_HANDLE_VALUE,
    };
    use windows_sys::Win32::Security::Authorization::{ConvertSidToStringSidW, GetNamedSecurityInfoW, SE_FILE_OBJECT};
    use windows_sys::Win32::Security::{
        AddAccessAllowedAce, GetAce, GetLengthSid, GetSecurityDescriptorControl, GetSecurityDescriptorDacl,
        GetTokenInformation, InitializeAcl, InitializeSecurityDescriptor, SetSecurityDescriptorControl,
        SetSecurityDescriptorDacl, TokenUser, ACCESS_ALLOWED_ACE, ACE_HEADER, ACL, ACL_REVISION,
        DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES, SECURITY_DESCRIPTOR, SE_DACL_PROTECTED,
        TOKEN_QUERY, TOKEN_USER,
    };
    use windows_sys::Win32::Storage::FileSystem::{
        CreateFileW, CREATE_NEW, FILE_ALL_ACCESS, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_DELETE, FILE_SHARE_READ,
        FILE_SHARE_WRITE,
    };
    use windows_sys::Win32::System::SystemServices::SECURITY_DESCRIPTOR_REVISION;
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    use super::Dacl;

    fn last() -> std::io::Error {
        std::io::Error::last_os_error()
    }

    fn check(rc: u32) -> std::io::Result<()> {
        match rc {
            ERROR_SUCCESS => Ok(()),
            e => Err(std::io::Error::from_raw_os_error(e as i32)),
        }
    }

    /// Runs `f` with the SID of the user this process runs as.
    pub(super) fn with_user_sid<T>(f: impl FnOnce(*mut core::ffi::c_void) -> T) -> std::io::Result<T> {
        let mut token: HANDLE = std::ptr::null_mut();
        // SAFETY: `token` receives a handle closed below.
        if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
            return Err(last());
        }
        let mut buf = vec![0u64; 64]; // 512 bytes, 8-aligned: a TOKEN_USER and its SID
        let mut len = 0u32;
        // SAFETY: `buf` holds the size passed; the token is valid.
        let ok =
            unsafe { GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), (buf.len() * 8) as u32, &mut len) };
        let err = last();
        // SAFETY: the handle is ours.
        unsafe { CloseHandle(token) };
        if ok == 0 {
            return Err(err);
        }
        // SAFETY: GetTokenInformation filled a TOKEN_USER at the start of `buf`.
        let sid = unsafe { (*(buf.as_ptr() as *const TOKEN_USER)).User.Sid };
        Ok(f(sid))
    }

    /// A self-relative-free security descriptor whose protected DACL has one entry: full
    /// access for the current user. The descriptor points into `acl`, which is kept here.
    pub(super) struct OwnerOnly {
        sd: Box<SECURITY_DESCRIPTOR>,
        _acl: Vec<u64>,
    }

    impl OwnerOnly {
        pub(super) fn new() -> std::io::Result<Self> {
            with_user_sid(|sid| {
                // SAFETY: `sid` is valid in this closure; `acl` is 8-aligned, sized for one
                // ACE, and lives (on the heap) as long as the descriptor that points at it.
                unsafe {
                    let size = size_of::<ACL>() + size_of::<ACCESS_ALLOWED_ACE>() + GetLengthSid(sid) as usize;
                    let mut acl = vec![0u64; size.div_ceil(8)];
                    let acl_ptr = acl.as_mut_ptr() as *mut ACL;
                    let mut sd = Box::new(SECURITY_DESCRIPTOR::default());
                    let sd_ptr = &mut *sd as *mut SECURITY_DESCRIPTOR as PSECURITY_DESCRIPTOR;
                    if InitializeAcl(acl_ptr, (acl.len() * 8) as u32, ACL_REVISION) == 0
                        || AddAccessAllowedAce(acl_ptr, ACL_REVISION, FILE_ALL_ACCESS, sid) == 0
                        || InitializeSecurityDescriptor(sd_ptr, SECURITY_DESCRIPTOR_REVISION) == 0
                        || SetSecurityDescriptorDacl(sd_ptr, 1, acl_ptr, 0) == 0
                        || SetSecurityDescriptorControl(sd_ptr, SE_DACL_PROTECTED, SE_DACL_PROTECTED) == 0
                    {
                        return Err(last());
                    }
                    Ok(OwnerOnly { sd, _acl: acl })
                }
            })?
        }

        fn descriptor(&self) -> PSECURITY_DESCRIPTOR {
            &*self.sd as *const SECURITY_DESCRIPTOR as PSECURITY_DESCRIPTOR
        }

        /// The DACL as Windows reads it from this descriptor.
        pub(super) fn dacl(&self) -> std::io::Result<Dacl> {
            let (mut present, mut defaulted) = (0, 0);
            let mut acl: *mut ACL = std::ptr::null_mut();
            // SAFETY: the descriptor is valid; out pointers.
            unsafe {
                if GetSecurityDescriptorDacl(self.descriptor(), &mut present, &mut acl, &mut defaulted) == 0 {
                    return Err(last());
                }
                read_dacl(self.descriptor(), acl)
            }
        }
    }

    /// Creates `path` (it must not exist) with the [`OwnerOnly`] descriptor.
    pub(super) fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
        let wide = path.as_os_str().encode_wide_nul();
        let owner_only = OwnerOnly::new()?;
        let sa = SECURITY_ATTRIBUTES {
            nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: owner_only.descriptor(),
            bInheritHandle: 0,
        };
        // SAFETY: `wide` is NUL-terminated, `sa` and its descriptor outlive the call; the
        // handle is checked and becomes the File's.
        unsafe {
            let h = CreateFileW(
                wide.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                &sa,
                CREATE_NEW,
                FILE_ATTRIBUTE_NORMAL,
                std::ptr::null_mut(),
            );
            if h == INVALID_HANDLE_VALUE {
                return Err(last());
            }
            Ok(std::fs::File::from_raw_handle(h as _))
        }
    }

    /// `S-1-…`.
    pub(super) fn sid_string(sid: *mut core::ffi::c_void) -> std::io::Result<String> {
        let mut s: *mut u16 = std::ptr::null_mut();
        // SAFETY: `sid` is valid; `s` is LocalAlloc'ed by the call and freed here.
        unsafe {
            if ConvertSidToStringSidW(sid, &mut s) == 0 {
                return Err(last());
            }
            let mut len = 0;
            while *s.add(len) != 0 {
                len += 1;
            }
            let out = String::from_utf16_lossy(std::slice::from_raw_parts(s, len));
            LocalFree(s as _);
            Ok(out)
        }
    }

    pub(super) fn dacl(path: &Path) -> std::io::Result<Dacl> {
        let wide: Vec<u16> = path.as_os_str().encode_wide_nul();
        let mut acl: *mut ACL = std::ptr::null_mut();
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: out pointers; `sd` is LocalAlloc'ed and freed below, `acl` points into it.
        unsafe {
            check(GetNamedSecurityInfoW(
                wide.as_ptr(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut acl,
                std::ptr::null_mut(),
                &mut sd,
            ))?;
            let out = read_dacl(sd, acl);
            LocalFree(sd as _);
            out
        }
    }

    /// The entries of `acl` and whether `sd` protects it.
    ///
    /// # Safety
    /// `sd` is a valid descriptor and `acl` null or its valid DACL.
    unsafe fn read_dacl(sd: PSECURITY_DESCRIPTOR, acl: *mut ACL) -> std::io::Result<Dacl> {
        let mut control = 0u16;
        let mut revision = 0u32;
        // SAFETY: the caller's descriptor; out parameters.
        if unsafe { GetSecurityDescriptorControl(sd, &mut control, &mut revision) } == 0 {
            return Err(last());
        }
        let mut entries = Vec::new();
        if !acl.is_null() {
            // SAFETY: the caller's valid DACL.
            let count = unsafe { (*acl).AceCount };
            for i in 0..u32::from(count) {
                let mut ace: *mut core::ffi::c_void = std::ptr::null_mut();
                // SAFETY: `i` is below the DACL's ACE count; `ace` receives a pointer into it.
                if unsafe { GetAce(acl, i, &mut ace) } == 0 {
                    return Err(last());
                }
                // SAFETY: GetAce returned an ACE of this DACL; ACCESS_ALLOWED_ACE and
                // ACCESS_DENIED_ACE share this layout (header, mask, SID).
                let (kind, mask, sid) = unsafe {
                    let header = &*(ace as *const ACE_HEADER);
                    let a = &*(ace as *const ACCESS_ALLOWED_ACE);
                    (header.AceType, a.Mask, std::ptr::addr_of!(a.SidStart) as *mut core::ffi::c_void)
                };
                entries.push((kind == 0, sid_string(sid)?, mask));
            }
        }
        Ok(Dacl { protected: control & SE_DACL_PROTECTED != 0, entries })
    }

    trait EncodeWideNul {
        fn encode_wide_nul(&self) -> Vec<u16>;
    }

    impl EncodeWideNul for std::ffi::OsStr {
        fn encode_wide_nul(&self) -> Vec<u16> {
            use std::os::windows::ffi::OsStrExt as _;
            self.encode_wide().chain([0]).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private file is replaced atomically and stays private; on Unix its mode is 0600.
    /// (The Windows DACL, on the file itself, is checked by tests/private_files.rs.)
    #[test]
    fn private_files_are_replaced_and_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.json");
        write_atomic(&path, b"{\"token\":\"secret\"}", true).unwrap();
        write_atomic(&path, b"{\"token\":\"other\"}", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"token\":\"other\"}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a temporary file was left");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    /// The descriptor a private file is created with: protected (nothing inherited from the
    /// directory), one entry, full access, for the current user and no one else.
    #[cfg(windows)]
    #[test]
    fn the_private_dacl_is_the_owner_alone() {
        let d = private_file_dacl().unwrap();
        let me = current_user_sid().unwrap();
        eprintln!("private file DACL: {d:?}; current user {me}");
        assert!(d.protected);
        assert_eq!(d.entries, [(true, me, windows_sys::Win32::Storage::FileSystem::FILE_ALL_ACCESS)]);
    }
}
