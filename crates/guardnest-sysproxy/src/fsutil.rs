//! Small file helpers shared by the cache, the system-proxy transaction and the control
//! API's runtime file.

use std::io::Write as _;
use std::path::Path;

/// Writes `data` to `path` atomically (temporary file in the same directory, fsync,
/// rename). With `private`, the file is readable by its owner only (tokens).
pub fn write_atomic(path: &Path, data: &[u8], private: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = private; // NTFS ACLs of the user's profile directory already keep it private
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
