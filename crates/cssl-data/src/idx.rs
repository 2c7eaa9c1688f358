//! The idx file format of (Fashion-)MNIST: `00 00 <type> <ndims>`, then
//! `ndims` big-endian `u32` sizes, then the values. Only type `0x08`
//! (unsigned byte) is used by these datasets and accepted here.
//!
//! Files may be gzip-compressed (detected by the `1f 8b` magic). Every check
//! failure is a [`CsslError::Format`] naming the file and the byte offset in the
//! decompressed stream.

use cssl_core::{CsslError, Result};
use std::io::Read;
use std::path::Path;

/// An n-dimensional array of bytes read from an idx file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Sizes, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// `dims.iter().product()` values, row-major.
    pub data: Vec<u8>,
}

/// Reads and validates an idx file (gzip or raw).
///
/// # Errors
/// [`CsslError::Io`] if the file cannot be read or decompressed,
/// [`CsslError::Format`] on a wrong magic number, an unsupported value type,
/// a dimension count outside 1..=4, or a data length that differs from the
/// product of the header's sizes (truncated or with trailing bytes).
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|e| CsslError::io(path, e))?;
    decode_idx(&raw, path)
}

/// [`read_idx`] of a file's bytes already in memory (gzip or raw); `path`
/// is only used in errors.
///
/// # Errors
/// As [`read_idx`], for everything after reading the file.
pub fn decode_idx(raw: &[u8], path: &Path) -> Result<IdxArray> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(raw)
            .read_to_end(&mut out)
            .map_err(|e| CsslError::io(path, e))?;
        parse_idx(&out, path)
    } else {
        parse_idx(raw, path)
    }
}

/// Parses idx bytes already in memory; `path` is only used in errors.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(CsslError::format(
            path,
            bytes.len() as u64,
            format!("truncated header: {} bytes, need at least 4", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(CsslError::format(
            path,
            0,
            format!(
                "wrong magic number {:02x} {:02x} {:02x} {:02x}: an idx file starts with 00 00",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(CsslError::format(
            path,
            2,
            format!(
                "value type 0x{:02x} is not supported (only 0x08, unsigned byte)",
                bytes[2]
            ),
        ));
    }
    let ndims = bytes[3] as usize;
    if !(1..=4).contains(&ndims) {
        return Err(CsslError::format(
            path,
            3,
            format!("{ndims} dimensions; expected 1 to 4"),
        ));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(CsslError::format(
            path,
            bytes.len() as u64,
            format!(
                "truncated header: {} bytes, {ndims} dimensions need {header}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| CsslError::format(path, 4, format!("sizes {dims:?} overflow")))?;
    let got = bytes.len() - header;
    if got != expected {
        let what = if got < expected {
            "truncated"
        } else {
            "wrong length"
        };
        return Err(CsslError::format(
            path,
            (header + got.min(expected)) as u64,
            format!("{what}: header sizes {dims:?} need {expected} data bytes, file has {got}"),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Encodes bytes as an uncompressed idx file (used by tests and tools).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn expect_format(err: CsslError, file: &Path, needle: &str) {
        let msg = err.to_string();
        match err {
            CsslError::Format { path, reason, .. } => {
                assert_eq!(path, file);
                assert!(
                    reason.contains(needle),
                    "reason {reason:?} lacks {needle:?}"
                );
            }
            other => panic!("expected a Format error, got {other:?}"),
        }
        assert!(msg.contains(&file.display().to_string()), "{msg}");
    }

    #[test]
    fn reads_raw_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..24).collect();
        let bytes = encode_idx(&[2, 3, 4], &data);
        let raw = write(dir.path(), "a.idx", &bytes);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        let gzp = write(dir.path(), "a.idx.gz", &gz.finish().unwrap());
        for p in [raw, gzp] {
            let a = read_idx(&p).unwrap();
            assert_eq!(a.dims, vec![2, 3, 4]);
            assert_eq!(a.data, data);
        }
    }

    #[test]
    fn rejects_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode_idx(&[10, 28, 28], &vec![1; 10 * 28 * 28]);
        bytes.truncate(bytes.len() - 100);
        let p = write(dir.path(), "short.idx", &bytes);
        expect_format(read_idx(&p).unwrap_err(), &p, "truncated");
        // A header cut inside the sizes.
        let p = write(dir.path(), "header.idx", &[0, 0, 8, 3, 0, 0]);
        expect_format(read_idx(&p).unwrap_err(), &p, "truncated header");
    }

    #[test]
    fn rejects_wrong_magic() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode_idx(&[4], &[1, 2, 3, 4]);
        bytes[0] = 0x42;
        let p = write(dir.path(), "magic.idx", &bytes);
        expect_format(read_idx(&p).unwrap_err(), &p, "magic");
        let mut bytes = encode_idx(&[4], &[1, 2, 3, 4]);
        bytes[2] = 0x0d; // float values
        let p = write(dir.path(), "float.idx", &bytes);
        expect_format(read_idx(&p).unwrap_err(), &p, "not supported");
    }

    #[test]
    fn rejects_wrong_length() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode_idx(&[4], &[1, 2, 3, 4]);
        bytes.push(5);
        let p = write(dir.path(), "long.idx", &bytes);
        expect_format(read_idx(&p).unwrap_err(), &p, "wrong length");
    }

    #[test]
    fn missing_file_is_io_error_naming_it() {
        let p = Path::new("/nonexistent/cssl/train.idx");
        let err = read_idx(p).unwrap_err();
        assert!(matches!(&err, CsslError::Io { path, .. } if path == p));
        assert!(err.to_string().contains("train.idx"));
    }

    #[test]
    fn corrupt_gzip_is_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "bad.gz", &[0x1f, 0x8b, 8, 0, 1, 2, 3]);
        let err = read_idx(&p).unwrap_err();
        assert!(err.to_string().contains("bad.gz"), "{err}");
    }
}
