//! Reading a list file (a local list, a cached download, a fresh download) in one
//! streaming pass: checksum of the raw bytes, gzip detection, parsing to fingerprints.
//! Nothing holds the whole text, so a big list costs its fingerprints, not its bytes.

use std::io::{self, BufRead, BufReader, Read};

use super::format::{parse_reader, Format};
use super::matcher::{ListNames, NameHasher};

/// A list read from disk.
pub(crate) struct Loaded {
    pub(crate) format: Format,
    pub(crate) names: ListNames,
    /// Length of the raw (possibly compressed) bytes.
    pub(crate) raw_bytes: u64,
    /// CRC-32 of the raw bytes.
    pub(crate) crc32: u32,
}

/// Reads and parses `reader`; `limit` bounds the decompressed size of a gzipped list.
pub(crate) fn read_list<R: Read>(
    reader: R,
    forced: Option<Format>,
    hasher: &NameHasher,
    limit: u64,
) -> io::Result<Loaded> {
    let mut raw = BufReader::with_capacity(64 * 1024, Checked::new(reader));
    let gzipped = raw.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let mut names = ListNames::new(hasher.clone());
    let format = if gzipped {
        let mut inflated = Counted { inner: flate2::bufread::MultiGzDecoder::new(&mut raw), count: 0, limit };
        parse_reader(BufReader::with_capacity(64 * 1024, &mut inflated), forced, &mut names)?
    } else {
        parse_reader(&mut raw, forced, &mut names)?
    };
    // Drain what the parser did not need (nothing, normally) so the checksum covers it all.
    io::copy(&mut raw, &mut io::sink())?;
    names.finish();
    let checked = raw.into_inner();
    Ok(Loaded { format, names, raw_bytes: checked.len, crc32: checked.crc.finalize() })
}

/// Counts and checksums the bytes read through it.
struct Checked<R> {
    inner: R,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<R> Checked<R> {
    fn new(inner: R) -> Self {
        Self { inner, crc: crc32fast::Hasher::new(), len: 0 }
    }
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Fails once more than `limit` bytes came through (a gzip bomb).
struct Counted<R> {
    inner: R,
    count: u64,
    limit: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::other(format!("list larger than {} bytes once decompressed", self.limit)));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn plain_and_gzipped_read_the_same() {
        let text = b"# list\n0.0.0.0 a.test\n0.0.0.0 b.test\n0.0.0.0 a.test\n";
        let h = NameHasher::new();
        let plain = read_list(&text[..], None, &h, 1 << 20).unwrap();
        assert_eq!(plain.format, Format::Hosts);
        assert_eq!(plain.names.block.len(), 2);
        assert_eq!(plain.raw_bytes, text.len() as u64);
        assert_eq!(plain.crc32, crc32fast::hash(text));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text).unwrap();
        let gz = gz.finish().unwrap();
        let zipped = read_list(&gz[..], None, &h, 1 << 20).unwrap();
        assert_eq!(zipped.names.block, plain.names.block);
        assert_eq!(zipped.crc32, crc32fast::hash(&gz));
        // A bomb: more than the limit once inflated.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&b"a.test\n".repeat(100_000)).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(read_list(&bomb[..], None, &h, 10_000).is_err());
    }
}
