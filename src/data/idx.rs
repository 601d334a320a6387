//! The IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed (one or more gzip
//! members, as `cat a.gz b.gz` makes).
//!
//! Layout: two zero bytes, an element-type byte (0x08 = unsigned byte), a dimension count,
//! one big-endian u32 per dimension, then the values in row-major order.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{Error, Result};

/// The IDX element type of unsigned bytes, the only one MNIST-style files use.
pub const UNSIGNED_BYTE: u8 = 0x08;

/// The first two bytes of a gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

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

/// Parses the bytes of an IDX file (raw or gzip); `path` only names the file in errors.
///
/// The header is read first, then exactly the data it declares: a file with less is truncated,
/// one with more (trailing bytes or another gzip member) is too long, and a compressed file is
/// never inflated further than one byte past what its header declares.
pub fn parse(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    if bytes.starts_with(&GZIP_MAGIC) {
        parse_stream(MultiGzDecoder::new(bytes), path)
    } else {
        parse_stream(bytes, path)
    }
}

/// [`parse`] on a stream of the uncompressed bytes.
fn parse_stream(mut r: impl Read, path: &Path) -> Result<IdxArray> {
    let bad = |m: String| Error::invalid_file(path, m);
    // Only the gzip decoder fails to read; a byte slice never does.
    let corrupt = |e: io::Error| bad(format!("corrupt gzip data: {e}"));
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut r, &mut magic).map_err(corrupt)?;
    if got < magic.len() {
        return Err(bad(format!(
            "truncated IDX header: {got} bytes, expected at least 4"
        )));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(bad(format!(
            "not an IDX file (magic bytes {:02x} {:02x}, expected 00 00)",
            magic[0], magic[1]
        )));
    }
    if magic[2] != UNSIGNED_BYTE {
        return Err(bad(format!(
            "unsupported IDX element type 0x{:02x} (only unsigned bytes, 0x08)",
            magic[2]
        )));
    }
    let ndims = usize::from(magic[3]);
    if ndims == 0 {
        return Err(bad("IDX file with zero dimensions".into()));
    }
    // At most 255 · 4 bytes.
    let mut raw_dims = vec![0u8; 4 * ndims];
    let got = read_up_to(&mut r, &mut raw_dims).map_err(corrupt)?;
    if got < raw_dims.len() {
        return Err(bad(format!(
            "truncated IDX header: {ndims} dimensions need {} bytes, the file has {}",
            4 + raw_dims.len(),
            4 + got
        )));
    }
    let dims: Vec<usize> = raw_dims
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let len = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    let mut data = Vec::new();
    data.try_reserve_exact(len).map_err(|_| {
        Error::Allocation(format!(
            "{}: IDX data of dimensions {dims:?} ({len} bytes)",
            path.display()
        ))
    })?;
    // `take` stops the decoder at the declared size; the capacity is exact, so nothing grows.
    (&mut r)
        .take(len as u64)
        .read_to_end(&mut data)
        .map_err(corrupt)?;
    if data.len() < len {
        return Err(bad(format!(
            "truncated: dimensions {dims:?} need {len} bytes of data, the file has {}",
            data.len()
        )));
    }
    // One more byte tells trailing data from the end (and makes the decoder check the last
    // member's CRC).
    if read_up_to(&mut r, &mut [0u8; 1]).map_err(corrupt)? > 0 {
        return Err(bad(format!(
            "too long: dimensions {dims:?} need {len} bytes of data, the file has more"
        )));
    }
    Ok(IdxArray { dims, data })
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
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
        let gz = gzip(&raw);
        let p = Path::new("mem");
        for bytes in [&raw, &gz] {
            let a = parse(bytes, p).unwrap();
            assert_eq!(a.dims, vec![2, 3]);
            assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn multi_member_gzip_is_the_concatenation() {
        // `cat a.gz b.gz`, split inside the header and inside the data.
        let raw = idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        for cut in [2, 9, 12, raw.len() - 1] {
            let mut bytes = gzip(&raw[..cut]);
            bytes.extend(gzip(&raw[cut..]));
            let a = parse(&bytes, Path::new("cat.gz")).unwrap();
            assert_eq!((a.dims, a.data), (vec![2, 3], vec![1, 2, 3, 4, 5, 6]));
        }
        // An empty member in between changes nothing.
        let mut bytes = gzip(&raw[..5]);
        bytes.extend(gzip(&[]));
        bytes.extend(gzip(&raw[5..]));
        assert_eq!(parse(&bytes, Path::new("m")).unwrap().data.len(), 6);
    }

    /// Counts the bytes read through it.
    struct Counted<R> {
        inner: R,
        count: usize,
    }

    impl<R: Read> Read for Counted<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.count += n;
            Ok(n)
        }
    }

    #[test]
    fn gzip_bomb_is_refused_without_inflating_it() {
        // The header declares one byte; 64 MiB of zeros follow, compressed to ~64 KB.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&idx(&[1], &[0])).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        let e = parse(&bomb, Path::new("bomb.gz")).unwrap_err().to_string();
        assert!(
            e.contains("too long: dimensions [1] need 1 bytes of data"),
            "{e}"
        );
        // The parser takes one byte past the declared data, not the 64 MiB (the decoder
        // inflates into the parser's buffers, so this counts what was inflated).
        let mut counted = Counted {
            inner: MultiGzDecoder::new(&bomb[..]),
            count: 0,
        };
        assert!(parse_stream(&mut counted, Path::new("bomb.gz")).is_err());
        assert!(
            counted.count <= 4 + 4 + 1 + 1,
            "{} bytes read",
            counted.count
        );
        // A header declaring more than memory can hold is a typed error, not an abort.
        let huge = idx(&[u32::MAX, u32::MAX], &[]);
        assert!(matches!(
            parse(&huge, Path::new("huge")),
            Err(Error::Allocation(_))
        ));
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
        // Trailing bytes after a gzip member are an error, not ignored.
        let mut gz = gzip(&idx(&[2], &[7, 8]));
        for garbage in [&b"x"[..], b"garbage after the member", &[0x1f, 0x8b, 8]] {
            let mut bytes = gz.clone();
            bytes.extend_from_slice(garbage);
            let e = msg(&bytes);
            assert!(e.contains("corrupt gzip"), "{garbage:?}: {e}");
        }
        // So is a second member holding more data.
        gz.extend(gzip(&[9]));
        assert!(msg(&gz).contains("too long: dimensions [2] need 2"));
        assert!(
            read(Path::new("/nonexistent/idx"))
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/idx")
        );
    }
}
