//! The IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! Layout: two zero bytes, an element-type byte (0x08 = unsigned byte), a dimension count,
//! one big-endian u32 per dimension, then the values in row-major order.

use std::fs;
use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use crate::error::{Error, Result};

/// The IDX element type of unsigned bytes, the only one MNIST-style files use.
pub const UNSIGNED_BYTE: u8 = 0x08;

/// An n-d array of bytes read from an IDX file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The size of each dimension, outermost first.
    pub dims: Vec<usize>,
    /// The bytes in row-major order.
    pub data: Vec<u8>,
}

/// Reads an IDX file, gunzipping it first when it starts with the gzip magic bytes.
pub fn read(path: &Path) -> Result<IdxArray> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, path)
}

/// Decompresses `bytes` when they are gzip, else borrows them.
pub fn decompress<'a>(bytes: &'a [u8], path: &Path) -> Result<std::borrow::Cow<'a, [u8]>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| Error::invalid_file(path, format!("corrupt gzip data: {e}")))?;
        Ok(out.into())
    } else {
        Ok(bytes.into())
    }
}

/// Parses the bytes of an IDX file (raw or gzip); `path` only names the file in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    let bytes = decompress(bytes, path)?;
    let bad = |m: String| Error::invalid_file(path, m);
    if bytes.len() < 4 {
        return Err(bad(format!(
            "truncated IDX header: {} bytes, expected at least 4",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "not an IDX file (magic bytes {:02x} {:02x}, expected 00 00)",
            bytes[0], bytes[1]
        )));
    }
    if bytes[2] != UNSIGNED_BYTE {
        return Err(bad(format!(
            "unsupported IDX element type 0x{:02x} (only unsigned bytes, 0x08)",
            bytes[2]
        )));
    }
    let ndims = usize::from(bytes[3]);
    if ndims == 0 {
        return Err(bad("IDX file with zero dimensions".into()));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(bad(format!(
            "truncated IDX header: {ndims} dimensions need {header} bytes, the file has {}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let len = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    let have = bytes.len() - header;
    if have != len {
        let what = if have < len { "truncated" } else { "too long" };
        return Err(bad(format!(
            "{what}: dimensions {dims:?} need {len} bytes of data, the file has {have}"
        )));
    }
    let data = match bytes {
        std::borrow::Cow::Owned(mut v) => {
            v.drain(..header);
            v
        }
        std::borrow::Cow::Borrowed(b) => b[header..].to_vec(),
    };
    Ok(IdxArray { dims, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, UNSIGNED_BYTE, dims.len() as u8];
        dims.iter().for_each(|d| v.extend(d.to_be_bytes()));
        v.extend(data);
        v
    }

    #[test]
    fn reads_raw_and_gzip() {
        let raw = idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let gz = gz.finish().unwrap();
        let p = Path::new("mem");
        for bytes in [&raw, &gz] {
            let a = parse(bytes, p).unwrap();
            assert_eq!(a.dims, vec![2, 3]);
            assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
        }
    }

    #[test]
    fn rejects_bad_files_with_reasons() {
        let p = Path::new("f.idx");
        let msg = |b: &[u8]| parse(b, p).unwrap_err().to_string();
        assert!(msg(&[0, 0]).contains("truncated IDX header"));
        assert!(msg(&[1, 2, 8, 1, 0, 0, 0, 0]).contains("not an IDX file"));
        assert!(msg(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]).contains("element type 0x0d"));
        assert!(msg(&[0, 0, 8, 2, 0, 0, 0]).contains("truncated IDX header"));
        assert!(msg(&idx(&[2, 3], &[1, 2, 3])).contains("truncated: dimensions [2, 3] need 6"));
        assert!(msg(&idx(&[1], &[1, 2])).contains("too long"));
        assert!(msg(&[0x1f, 0x8b, 8, 0, 1, 2, 3]).contains("corrupt gzip"));
        assert!(
            read(Path::new("/nonexistent/idx"))
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/idx")
        );
    }
}
