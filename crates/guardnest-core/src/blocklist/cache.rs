//! The on-disk cache of downloaded lists, so a restart without network blocks at once.
//!
//! Each URL source has a body file and a metadata file (validators, length, CRC-32, times)
//! in `DATA_DIR/lists/`. Both are written to a temporary file and renamed into place, and a
//! body whose length or checksum disagrees with its metadata is treated as absent: a crash
//! mid-save, a truncated or a corrupted file costs a download, never a wrong list.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::sysproxy::fsutil::{open_no_follow, read_to_string_no_follow};

/// What is remembered about one cached download.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheMeta {
    /// The URL it came from.
    pub url: String,
    /// `ETag` of the cached body.
    pub etag: Option<String>,
    /// `Last-Modified` of the cached body.
    pub last_modified: Option<String>,
    /// Body length in bytes.
    pub bytes: u64,
    /// CRC-32 of the body.
    pub crc32: u32,
    /// When the body was downloaded (seconds since the epoch).
    pub fetched_at: u64,
    /// When the source was last checked successfully, changed or not.
    pub checked_at: u64,
    /// When the last attempt failed, and why; cleared by a success.
    pub last_error: Option<(u64, String)>,
    /// The same failure as a kind and one sentence (absent in older caches).
    #[serde(default)]
    pub last_problem: Option<super::problem::Problem>,
}

/// Cache files of one source.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    body: PathBuf,
    meta: PathBuf,
}

/// Why a cached body was not used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// No cache for this source yet.
    #[error("not cached yet")]
    Missing,
    /// The files exist but cannot be read.
    #[error("cannot read the cache: {0}")]
    Io(#[from] std::io::Error),
    /// Metadata unreadable, or the body disagrees with it.
    #[error("cache is corrupt: {0}")]
    Corrupt(String),
}

impl CacheEntry {
    /// The cache files for `url` under `data_dir`.
    pub fn new(data_dir: &Path, url: &str) -> Self {
        let dir = data_dir.join("lists");
        let slug: String = url
            .split_once("://")
            .map_or(url, |(_, r)| r)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
            .take(60)
            .collect();
        let key = format!("{slug}-{:08x}", crc32fast::hash(url.as_bytes()));
        Self { body: dir.join(format!("{key}.list")), meta: dir.join(format!("{key}.meta.json")) }
    }

    /// Reads the metadata alone (for status), if present and readable.
    pub fn meta(&self) -> Option<CacheMeta> {
        let text = read_to_string_no_follow(&self.meta).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Opens the cached body with its metadata. The caller reads it in one pass and then
    /// checks [`CacheMeta::verify`] before trusting what it read.
    pub fn open(&self) -> Result<(CacheMeta, std::fs::File), CacheError> {
        let text = match read_to_string_no_follow(&self.meta) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CacheError::Missing),
            Err(e) => return Err(e.into()),
        };
        let meta: CacheMeta = serde_json::from_str(&text).map_err(|e| CacheError::Corrupt(format!("metadata: {e}")))?;
        match open_no_follow(&self.body, std::fs::OpenOptions::new().read(true)) {
            Ok(f) => Ok((meta, f)),
            // Metadata that only remembers failed checks: nothing was ever downloaded.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && meta.fetched_at == 0 => Err(CacheError::Missing),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CacheError::Corrupt("body file missing".into())),
            Err(e) => Err(e.into()),
        }
    }

    /// A temporary file beside the cache, to download into and then [`CacheEntry::store`].
    pub fn temp_file(&self) -> std::io::Result<tempfile::NamedTempFile> {
        let dir = self.body.parent().unwrap_or(Path::new("."));
        crate::sysproxy::fsutil::create_private_dir(dir)?;
        tempfile::NamedTempFile::new_in(dir)
    }

    /// Moves a downloaded body into place and writes its metadata, each atomically.
    pub fn store(&self, meta: &CacheMeta, body: tempfile::NamedTempFile) -> std::io::Result<()> {
        body.as_file().sync_all()?;
        body.persist(&self.body).map_err(|e| e.error)?;
        self.store_meta(meta)
    }

    /// Rewrites the metadata alone (a 304, or a failure to remember).
    pub fn store_meta(&self, meta: &CacheMeta) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
        crate::sysproxy::fsutil::write_atomic(&self.meta, &json, false)
    }
}

impl CacheMeta {
    /// Whether a body read in full matches what was saved.
    pub fn verify(&self, bytes: u64, crc32: u32) -> Result<(), CacheError> {
        if bytes != self.bytes {
            return Err(CacheError::Corrupt(format!("{bytes} bytes on disk, {} expected", self.bytes)));
        }
        if crc32 != self.crc32 {
            return Err(CacheError::Corrupt("checksum mismatch".into()));
        }
        Ok(())
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

/// A time stored as seconds since the epoch.
pub fn from_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(entry: &CacheEntry, body: &[u8]) {
        let mut tmp = entry.temp_file().unwrap();
        std::io::Write::write_all(&mut tmp, body).unwrap();
        let meta = CacheMeta {
            url: "u".into(),
            etag: Some("\"v1\"".into()),
            bytes: body.len() as u64,
            crc32: crc32fast::hash(body),
            fetched_at: 1,
            ..CacheMeta::default()
        };
        entry.store(&meta, tmp).unwrap();
    }

    fn check(entry: &CacheEntry) -> Result<Vec<u8>, CacheError> {
        let (meta, mut f) = entry.open()?;
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut body)?;
        meta.verify(body.len() as u64, crc32fast::hash(&body))?;
        Ok(body)
    }

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let entry = CacheEntry::new(dir.path(), "https://lists.example/a/hosts?x=1");
        assert!(matches!(entry.open(), Err(CacheError::Missing)));
        // Only failed checks remembered (no download yet): missing, not corrupt.
        let failed = CacheMeta { url: "u".into(), last_error: Some((1, "offline".into())), ..CacheMeta::default() };
        entry.store_meta(&failed).unwrap();
        assert!(matches!(entry.open(), Err(CacheError::Missing)));
        saved(&entry, b"0.0.0.0 a.test\n");
        assert_eq!(check(&entry).unwrap(), b"0.0.0.0 a.test\n");
        assert_eq!(entry.meta().unwrap().etag.as_deref(), Some("\"v1\""));
        // Truncated body.
        std::fs::write(&entry.body, b"0.0.0.0 a").unwrap();
        assert!(matches!(check(&entry), Err(CacheError::Corrupt(_))));
        // Same length, different bytes.
        std::fs::write(&entry.body, b"0.0.0.0 b.test\n").unwrap();
        assert!(matches!(check(&entry), Err(CacheError::Corrupt(_))));
        // Body gone.
        std::fs::remove_file(&entry.body).unwrap();
        assert!(matches!(check(&entry), Err(CacheError::Corrupt(_))));
        // Garbage metadata.
        std::fs::write(&entry.meta, b"{not json").unwrap();
        assert!(matches!(check(&entry), Err(CacheError::Corrupt(_))));
    }
}
