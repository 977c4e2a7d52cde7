//! Small file helpers shared by the cache, the system-proxy transaction and the control
//! API's runtime file, and where they live.
//!
//! The data directory is the user's alone: a directory GuardNest creates is private (0700 on
//! Unix, as the XDG Base Directory Specification asks of the directories it makes; a
//! protected owner-only DACL on Windows), and its files are never opened through a link
//! ([`open_no_follow`]), so a link planted by someone who could write there (a data dir
//! shared by mistake, or made by an older GuardNest) never makes GuardNest create, lock or
//! read another file. Files are written by [`write_atomic`]: a new temporary file
//! (created exclusively, so never through a link) renamed over the old name (which replaces
//! a link itself, never its target).

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
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
    if !dir.is_dir() {
        create_private_dir(dir)?;
    }
    let mut tmp = match private {
        true => private_temp(dir)?,
        false => tempfile::NamedTempFile::new_in(dir)?,
    };
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A file GuardNest would not open: not a regular file of its own (a link, a named pipe, a
/// directory, a device) where a file of the data directory goes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} is {what}, not a regular file: GuardNest never opens a file of its data directory through a link \
     (or a pipe or device); remove it if you did not put it there",
    path.display()
)]
pub struct NotAFile {
    /// The file.
    pub path: PathBuf,
    /// What it is instead, in words ("a symbolic link", "a named pipe", …).
    pub what: &'static str,
}

impl NotAFile {
    /// The [`NotAFile`] an error of [`open_no_follow`] carries, if that is why it failed.
    pub fn of(e: &std::io::Error) -> Option<&NotAFile> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<NotAFile>())
    }

    fn error(path: &Path, what: &'static str) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, NotAFile { path: path.to_path_buf(), what })
    }
}

/// Opens `path`, a file of the data directory, as `options` say, but only the file itself:
/// never through a symbolic link (Unix: `O_NOFOLLOW`; Windows: `FILE_FLAG_OPEN_REPARSE_POINT`,
/// and a reparse point opened is refused), and only a regular file (Unix: with `O_NONBLOCK`,
/// so a named pipe planted there fails at once instead of blocking the open). Otherwise the
/// error carries a [`NotAFile`] naming the file and what it is. A missing file is the
/// usual `NotFound`. Only the last component is checked: the data directory itself may be a
/// link the user made.
pub fn open_no_follow(path: &Path, options: &mut OpenOptions) -> std::io::Result<File> {
    let file = match no_follow(options).open(path) {
        Ok(f) => f,
        // O_NOFOLLOW fails with ELOOP on a link (EMLINK on some BSDs), a pipe opened for
        // writing with ENXIO, a directory with EISDIR: say what is there instead.
        Err(e) => {
            return Err(match std::fs::symlink_metadata(path).ok().as_ref().and_then(kind_of) {
                Some(what) => NotAFile::error(path, what),
                None => e,
            })
        }
    };
    match kind_of(&file.metadata()?) {
        None => Ok(file),
        Some(what) => Err(NotAFile::error(path, what)),
    }
}

/// Reads a file of the data directory whole, through [`open_no_follow`].
pub fn read_no_follow(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_no_follow(path, OpenOptions::new().read(true))?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads a text file of the data directory whole, through [`open_no_follow`].
pub fn read_to_string_no_follow(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    open_no_follow(path, OpenOptions::new().read(true))?.read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(unix)]
fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    use std::os::unix::fs::OpenOptionsExt as _;
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
}

#[cfg(windows)]
fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    use std::os::windows::fs::OpenOptionsExt as _;
    options.custom_flags(windows_sys::Win32::Storage::FileSystem::FILE_FLAG_OPEN_REPARSE_POINT)
}

#[cfg(not(any(unix, windows)))]
fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    options
}

/// What an opened file is when it is not a regular file of its own, in words.
fn kind_of(m: &std::fs::Metadata) -> Option<&'static str> {
    #[cfg(windows)]
    {
        use std::os::windows::fs::MetadataExt as _;
        if m.file_attributes() & windows_sys::Win32::Storage::FileSystem::FILE_ATTRIBUTE_REPARSE_POINT != 0 {
            return Some("a link (a reparse point: a symbolic link or a junction)");
        }
    }
    let t = m.file_type();
    if t.is_file() {
        return None;
    }
    if t.is_symlink() {
        return Some("a symbolic link");
    }
    if t.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return Some("a named pipe");
        }
        if t.is_socket() {
            return Some("a socket");
        }
        if t.is_block_device() || t.is_char_device() {
            return Some("a device");
        }
    }
    Some("not a plain file")
}

/// Creates `dir` private to the current user, with any missing parents (Unix: mode 0700,
/// which the XDG Base Directory Specification asks for the directories an application
/// creates, set again after creation so the umask cannot loosen it; Windows: a protected
/// DACL granting the current user alone full access, inherited by what is created inside).
/// Returns whether it was created; an existing directory is left as it is (see
/// [`exposure`] and [`make_private`]).
pub fn create_private_dir(dir: &Path) -> std::io::Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
        create_private_dir(parent)?;
    }
    match create_private_dir_here(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        other => other.map(|()| true),
    }
}

#[cfg(unix)]
fn create_private_dir_here(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    make_private(dir)
}

#[cfg(windows)]
fn create_private_dir_here(dir: &Path) -> std::io::Result<()> {
    win::create_private_dir(dir)
}

#[cfg(not(any(unix, windows)))]
fn create_private_dir_here(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir(dir)
}

/// Who besides its owner may use a directory, as [`exposure`] finds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct Exposure {
    /// It belongs to another user (so this one cannot make it private).
    pub foreign: bool,
    /// In words, with the mode.
    pub what: String,
}

/// Who besides its owner may use an existing directory (`None`: it is private). Unix: an
/// owner other than this user, or permission bits for its group or others. Elsewhere
/// `None`: Windows' per-user profile folders are private already, and GuardNest leaves an
/// existing folder's DACL as it is.
pub fn exposure(dir: &Path) -> std::io::Result<Option<Exposure>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(dir)?;
        let mode = m.mode() & 0o7777;
        // SAFETY: geteuid has no preconditions and cannot fail.
        if m.uid() != unsafe { libc::geteuid() } {
            let what = format!("it belongs to another user (uid {}, mode {mode:o})", m.uid());
            return Ok(Some(Exposure { foreign: true, what }));
        }
        Ok((mode & 0o077 != 0).then(|| {
            let who = if mode & 0o022 != 0 { "other users can write to it" } else { "other users can read it" };
            Exposure { foreign: false, what: format!("{who} (mode {mode:o})") }
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(None)
    }
}

/// Makes a directory of this user private (Unix: mode 0700, set on the directory opened
/// without following a link). Elsewhere nothing is changed.
pub fn make_private(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let handle = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY).open(dir)?;
        handle.set_permissions(std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
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
    /// Each entry's ACE flags (inheritance: 1 objects, 2 containers), in the same order.
    pub flags: Vec<u8>,
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

/// The DACL [`create_private_dir`] creates a directory with (Windows), as
/// [`private_file_dacl`] is for files.
#[cfg(windows)]
pub fn private_dir_dacl() -> std::io::Result<Dacl> {
    win::OwnerOnly::inherited()?.dacl()
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
        AddAccessAllowedAceEx, GetAce, GetLengthSid, GetSecurityDescriptorControl, GetSecurityDescriptorDacl,
        GetTokenInformation, InitializeAcl, InitializeSecurityDescriptor, SetSecurityDescriptorControl,
        SetSecurityDescriptorDacl, TokenUser, ACCESS_ALLOWED_ACE, ACE_FLAGS, ACE_HEADER, ACL, ACL_REVISION,
        CONTAINER_INHERIT_ACE, DACL_SECURITY_INFORMATION, OBJECT_INHERIT_ACE, PSECURITY_DESCRIPTOR,
        SECURITY_ATTRIBUTES, SECURITY_DESCRIPTOR, SE_DACL_PROTECTED, TOKEN_QUERY, TOKEN_USER,
    };
    use windows_sys::Win32::Storage::FileSystem::{
        CreateDirectoryW, CreateFileW, CREATE_NEW, FILE_ALL_ACCESS, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_DELETE,
        FILE_SHARE_READ, FILE_SHARE_WRITE,
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
        /// For a file.
        pub(super) fn new() -> std::io::Result<Self> {
            Self::with_flags(0)
        }

        /// For a directory: the entry is inherited by the files and directories created in it.
        pub(super) fn inherited() -> std::io::Result<Self> {
            Self::with_flags(OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE)
        }

        fn with_flags(flags: ACE_FLAGS) -> std::io::Result<Self> {
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
                        || AddAccessAllowedAceEx(acl_ptr, ACL_REVISION, flags, FILE_ALL_ACCESS, sid) == 0
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

    /// Creates the directory `path` (its parent exists) with the [`OwnerOnly::inherited`]
    /// descriptor.
    pub(super) fn create_private_dir(path: &Path) -> std::io::Result<()> {
        let wide = path.as_os_str().encode_wide_nul();
        let owner_only = OwnerOnly::inherited()?;
        let sa = SECURITY_ATTRIBUTES {
            nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: owner_only.descriptor(),
            bInheritHandle: 0,
        };
        // SAFETY: `wide` is NUL-terminated, `sa` and its descriptor outlive the call.
        if unsafe { CreateDirectoryW(wide.as_ptr(), &sa) } == 0 {
            return Err(last());
        }
        Ok(())
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
        let (mut entries, mut flags) = (Vec::new(), Vec::new());
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
                let (kind, ace_flags, mask, sid) = unsafe {
                    let header = &*(ace as *const ACE_HEADER);
                    let a = &*(ace as *const ACCESS_ALLOWED_ACE);
                    (header.AceType, header.AceFlags, a.Mask, std::ptr::addr_of!(a.SidStart) as *mut core::ffi::c_void)
                };
                entries.push((kind == 0, sid_string(sid)?, mask));
                flags.push(ace_flags);
            }
        }
        Ok(Dacl { protected: control & SE_DACL_PROTECTED != 0, entries, flags })
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

    /// The directory descriptor: the same single owner entry, inherited by files and
    /// directories created inside.
    #[cfg(windows)]
    #[test]
    fn the_private_dir_dacl_is_the_owner_alone_and_inherited() {
        use windows_sys::Win32::Security::{CONTAINER_INHERIT_ACE, OBJECT_INHERIT_ACE};
        let d = private_dir_dacl().unwrap();
        let me = current_user_sid().unwrap();
        eprintln!("private directory DACL: {d:?}; current user {me}");
        assert!(d.protected);
        assert_eq!(d.entries, [(true, me, windows_sys::Win32::Storage::FileSystem::FILE_ALL_ACCESS)]);
        assert_eq!(d.flags, [(OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE) as u8]);
    }

    /// A directory GuardNest creates, and every missing parent, is private; an existing one
    /// is left as it is and said to be open.
    #[cfg(unix)]
    #[test]
    fn a_new_data_dir_is_private_to_its_user() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let dir = root.path().join("share/guardnest");
        assert!(create_private_dir(&dir).unwrap());
        assert_eq!((mode(&dir), mode(&root.path().join("share"))), (0o700, 0o700));
        assert_eq!(exposure(&dir).unwrap(), None);
        assert!(!create_private_dir(&dir).unwrap(), "it exists");
        // A file written into a missing directory makes it private too.
        write_atomic(&root.path().join("other/x.json"), b"{}", false).unwrap();
        assert_eq!(mode(&root.path().join("other")), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o757)).unwrap();
        assert!(!create_private_dir(&dir).unwrap());
        assert_eq!(mode(&dir), 0o757, "an existing directory is not changed by creating it");
        let open = exposure(&dir).unwrap().unwrap();
        assert_eq!((open.foreign, open.to_string().as_str()), (false, "other users can write to it (mode 757)"));
        make_private(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    /// Links, pipes and directories where a file of the data dir goes are refused, naming
    /// the file and what it is; the link's target is neither created nor read.
    #[cfg(unix)]
    #[test]
    fn files_of_the_data_dir_are_never_opened_through_a_link() {
        let root = tempfile::tempdir().unwrap();
        let (target, link) = (root.path().join("target"), root.path().join("state.json"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open_no_follow(&link, OpenOptions::new().write(true).create(true)).unwrap_err();
        assert!(!target.exists(), "the link's target was created");
        assert_eq!(NotAFile::of(&e), Some(&NotAFile { path: link.clone(), what: "a symbolic link" }));
        assert!(e.to_string().contains("state.json is a symbolic link, not a regular file"), "{e}");
        std::fs::write(&target, "secret").unwrap();
        assert_eq!(
            NotAFile::of(&read_to_string_no_follow(&link).unwrap_err()).map(|n| n.what),
            Some("a symbolic link")
        );

        let fifo = root.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_no_follow(&fifo).unwrap_err();
        assert_eq!(NotAFile::of(&e).map(|n| n.what), Some("a named pipe"));
        let e = open_no_follow(&fifo, OpenOptions::new().write(true)).unwrap_err();
        assert_eq!(NotAFile::of(&e).map(|n| n.what), Some("a named pipe"), "{e}");
        let e = read_no_follow(root.path()).unwrap_err();
        assert_eq!(NotAFile::of(&e).map(|n| n.what), Some("a directory"));

        assert_eq!(read_no_follow(&root.path().join("missing")).unwrap_err().kind(), std::io::ErrorKind::NotFound);
        assert_eq!(read_to_string_no_follow(&target).unwrap(), "secret");
        // Writing replaces a link itself, never its target.
        write_atomic(&link, b"new", false).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret");
        assert_eq!(read_to_string_no_follow(&link).unwrap(), "new");
    }
}
