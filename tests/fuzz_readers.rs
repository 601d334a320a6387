//! Mutation fuzzing of the two file readers, seeded from real files: the IDX reader
//! (`data::idx::parse`) on slices of the shipped MNIST files, and the safetensors weights reader
//! (`nn::io::parse`) on a saved model. Each case edits a seed a few times (bit flips, byte
//! changes, truncations, insertions, deletions, header-field edits) and reads it raw and
//! gzip-compressed (one member, two members, or the compressed bytes edited). No input may
//! panic, and the IDX reader must accept exactly the files a reference reader accepts.
//!
//! `DENSECORE_FUZZ_CASES` sets the number of cases per reader (default 2,000); case `i` is the
//! same in every run, so a failure names the case to rerun. A long run:
//! `DENSECORE_FUZZ_CASES=200000 cargo test --release --test fuzz_readers`.

use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use densecore::Error;
use densecore::data::idx;
use densecore::data::mnist::{self, FILES};
use densecore::nn::{Dense, Sequential, io};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Cases per reader in the default test run (a fraction of a second in release).
const DEFAULT_CASES: usize = 2_000;

fn cases() -> usize {
    match std::env::var("DENSECORE_FUZZ_CASES") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("DENSECORE_FUZZ_CASES={v:?} is not a count")),
        Err(_) => DEFAULT_CASES,
    }
}

/// The random generator of case `i` of the reader `salt`.
fn case_rng(salt: u64, i: usize) -> StdRng {
    StdRng::seed_from_u64(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i as u64)
}

/// Runs `read` on `input`; a panic fails the test naming the case and the input.
fn no_panic<T>(what: &str, i: usize, input: &[u8], read: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(read)).unwrap_or_else(|_| {
        let hex: String = input
            .iter()
            .take(4096)
            .map(|b| format!("{b:02x}"))
            .collect();
        panic!(
            "{what} panicked on case {i}; input ({} bytes): {hex}",
            input.len()
        )
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// One random edit anywhere in `bytes`: a bit flip, a new byte, a truncation, an insertion of
/// up to 16 random bytes, or a deletion of up to 16.
fn edit_bytes(rng: &mut StdRng, bytes: &mut Vec<u8>) {
    let len = bytes.len();
    match rng.random_range(0..5) {
        0 if len > 0 => bytes[rng.random_range(0..len)] ^= 1 << rng.random_range(0..8),
        1 if len > 0 => bytes[rng.random_range(0..len)] = rng.random(),
        2 => bytes.truncate(rng.random_range(0..=len)),
        3 => {
            let at = rng.random_range(0..=len);
            let n = rng.random_range(1..=16);
            let new: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            bytes.splice(at..at, new);
        }
        _ if len > 0 => {
            let at = rng.random_range(0..len);
            let end = (at + rng.random_range(1..=16)).min(len);
            bytes.drain(at..end);
        }
        _ => bytes.push(rng.random()),
    }
}

/// Values that find off-by-one and overflow bugs in size fields.
fn interesting_u32(rng: &mut StdRng, old: u32) -> u32 {
    match rng.random_range(0..6) {
        0 => old.wrapping_add(1),
        1 => old.wrapping_sub(1),
        2 => [0, 1, 2, 255, 256, 0x7fff_ffff, 0x8000_0000, u32::MAX][rng.random_range(0..8)],
        3 => old.wrapping_mul(2),
        4 => old / 2,
        _ => rng.random(),
    }
}

// ---- IDX ----

/// IDX seeds from the shipped files: two test images and 100 test labels, each header's count
/// set to match the slice.
fn idx_seeds() -> Vec<Vec<u8>> {
    let prefix = |name: &str, len: usize| {
        let path = mnist::default_dir().join(format!("{name}.gz"));
        let mut out = Vec::new();
        GzDecoder::new(std::fs::File::open(path).unwrap())
            .take(len as u64)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len(), len);
        out
    };
    let mut images = prefix(FILES[2], 16 + 2 * 28 * 28);
    images[4..8].copy_from_slice(&2u32.to_be_bytes());
    let mut labels = prefix(FILES[3], 8 + 100);
    labels[4..8].copy_from_slice(&100u32.to_be_bytes());
    vec![images, labels]
}

/// An edit of an IDX header field: the element type, the dimension count, or one dimension.
fn edit_idx_header(rng: &mut StdRng, bytes: &mut [u8]) {
    let ndims = bytes.get(3).map_or(0, |&n| usize::from(n));
    match rng.random_range(0..4) {
        0 if bytes.len() > 2 => {
            bytes[2] = [0x08, 0x09, 0x0b, 0x0d, 0x0e, rng.random()][rng.random_range(0..6)]
        }
        1 if bytes.len() > 3 => bytes[3] = interesting_u32(rng, ndims as u32) as u8,
        _ if ndims > 0 => {
            let at = 4 + 4 * rng.random_range(0..ndims);
            if let Some(field) = bytes.get_mut(at..at + 4) {
                let old = u32::from_be_bytes(field.try_into().unwrap());
                field.copy_from_slice(&interesting_u32(rng, old).to_be_bytes());
            }
        }
        _ => {}
    }
}

/// What a correct reader makes of uncompressed IDX bytes: (dims, data), or `None`.
fn idx_reference(raw: &[u8]) -> Option<(Vec<usize>, Vec<u8>)> {
    let head = raw.get(..4)?;
    if head[..3] != [0, 0, 0x08] || head[3] == 0 {
        return None;
    }
    let header = 4 + 4 * usize::from(head[3]);
    let dims: Vec<usize> = raw
        .get(4..header)?
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap()) as usize)
        .collect();
    let len = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    let data = &raw[header..];
    (data.len() == len).then(|| (dims, data.to_vec()))
}

#[test]
fn idx_reader_survives_mutations() {
    let seeds = idx_seeds();
    let path = Path::new("fuzz.idx");
    for seed in &seeds {
        assert!(idx::parse(seed, path).is_ok());
        assert!(idx::parse(&gzip(seed), path).is_ok());
    }
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..cases() {
        let mut rng = case_rng(1, i);
        let seed = &seeds[rng.random_range(0..seeds.len())];
        let mut raw = seed.clone();
        for _ in 0..rng.random_range(1..=3) {
            if rng.random_bool(0.4) {
                edit_idx_header(&mut rng, &mut raw);
            } else {
                edit_bytes(&mut rng, &mut raw);
            }
        }
        // The bytes the reader gets; `Some(raw)` where they decode to `raw` exactly.
        let (input, decoded) = match rng.random_range(0..4) {
            0 => (raw.clone(), Some(&raw)),
            1 => (gzip(&raw), Some(&raw)),
            2 => {
                // Two gzip members, as `cat a.gz b.gz` makes.
                let cut = rng.random_range(0..=raw.len());
                let mut two = gzip(&raw[..cut]);
                two.extend(gzip(&raw[cut..]));
                (two, Some(&raw))
            }
            _ => {
                // The compressed bytes edited: the decoder must fail cleanly.
                let mut gz = gzip(seed);
                for _ in 0..rng.random_range(1..=3) {
                    edit_bytes(&mut rng, &mut gz);
                }
                (gz, None)
            }
        };
        let got = no_panic("idx::parse", i, &input, || idx::parse(&input, path));
        match &got {
            Ok(a) => {
                accepted += 1;
                assert_eq!(a.dims.iter().product::<usize>(), a.data.len(), "case {i}");
            }
            Err(Error::InvalidFile { .. } | Error::Allocation(_)) => refused += 1,
            Err(e) => panic!("case {i}: unexpected error kind {e:?}"),
        }
        if let Some(raw) = decoded {
            let want = idx_reference(raw);
            let have = got.ok().map(|a| (a.dims, a.data));
            assert_eq!(have, want, "case {i}: reader and reference disagree");
        }
    }
    // Both outcomes are exercised, or the mutations are not testing much.
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}

// ---- safetensors ----

/// The bytes of a real saved model: 2 Dense layers, kernels and biases.
fn safetensors_seed() -> Vec<u8> {
    let mut m = Sequential::new(&[6]).seed(7);
    m.add(Dense::new(4).activation("relu")).unwrap();
    m.add(Dense::new(3).activation("softmax")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    m.save_weights(&path).unwrap();
    std::fs::read(path).unwrap()
}

/// An edit of the safetensors header: its length field, a number in the JSON (shapes and
/// offsets) replaced with an extreme one, a dtype renamed, or a JSON byte replaced with JSON
/// punctuation. The length field is kept consistent with the JSON where the JSON changes
/// length, so the edit reaches the parser behind it.
fn edit_safetensors_header(rng: &mut StdRng, bytes: &mut Vec<u8>) {
    let Some(len_field) = bytes.get(..8) else {
        return;
    };
    let hlen = u64::from_le_bytes(len_field.try_into().unwrap());
    let json_end = usize::try_from(hlen)
        .ok()
        .and_then(|h| h.checked_add(8))
        .map_or(bytes.len(), |end| end.min(bytes.len()));
    let mut json = bytes[8..json_end].to_vec();
    match rng.random_range(0..4) {
        0 => {
            let new = match rng.random_range(0..4) {
                0 => hlen.wrapping_add(rng.random_range(1..=8)),
                1 => hlen.wrapping_sub(rng.random_range(1..=8)),
                2 => [0, 1, 1 << 32, u64::MAX, i64::MAX as u64][rng.random_range(0..5)],
                _ => rng.random(),
            };
            bytes[..8].copy_from_slice(&new.to_le_bytes());
            return;
        }
        1 => {
            // A run of digits (a shape entry or an offset) replaced.
            let digits: Vec<usize> = (0..json.len())
                .filter(|&k| json[k].is_ascii_digit() && (k == 0 || !json[k - 1].is_ascii_digit()))
                .collect();
            if digits.is_empty() {
                return;
            }
            let start = digits[rng.random_range(0..digits.len())];
            let end = (start..json.len())
                .find(|&k| !json[k].is_ascii_digit())
                .unwrap_or(json.len());
            let old: u64 = std::str::from_utf8(&json[start..end])
                .unwrap()
                .parse()
                .unwrap_or(0);
            let new = match rng.random_range(0..4) {
                0 => old.wrapping_add(1),
                1 => old.saturating_sub(1),
                2 => [0, 1 << 31, 1 << 32, 1 << 62, u64::MAX][rng.random_range(0..5)],
                _ => rng.random_range(0..=1 << 20),
            };
            json.splice(start..end, new.to_string().into_bytes());
        }
        2 => {
            let dtypes = ["F16", "BF16", "F64", "I32", "U8", "BOOL", "F8_E4M3", "X"];
            let text = String::from_utf8_lossy(&json).into_owned();
            json = text
                .replacen("F32", dtypes[rng.random_range(0..dtypes.len())], 1)
                .into_bytes();
        }
        _ => {
            if json.is_empty() {
                return;
            }
            let at = rng.random_range(0..json.len());
            json[at] = b"{}[]\",:0-e. "[rng.random_range(0..12)];
        }
    }
    let tail = bytes.split_off(json_end);
    bytes.truncate(8);
    bytes[..8].copy_from_slice(&(json.len() as u64).to_le_bytes());
    bytes.extend(json);
    bytes.extend(tail);
}

#[test]
fn safetensors_reader_survives_mutations() {
    let seed = safetensors_seed();
    let path = Path::new("fuzz.safetensors");
    let original = io::parse(&seed, path).unwrap();
    assert_eq!(original.len(), 4);
    // Every truncation of a real file is refused.
    for cut in 0..seed.len() {
        assert!(io::parse(&seed[..cut], path).is_err(), "cut at {cut}");
    }
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..cases() {
        let mut rng = case_rng(2, i);
        let mut bytes = seed.clone();
        for _ in 0..rng.random_range(1..=3) {
            if rng.random_bool(0.5) {
                edit_safetensors_header(&mut rng, &mut bytes);
            } else {
                edit_bytes(&mut rng, &mut bytes);
            }
        }
        let got = no_panic("io::parse", i, &bytes, || io::parse(&bytes, path));
        match got {
            Ok(tensors) => {
                accepted += 1;
                for (name, t) in &tensors {
                    assert_eq!(
                        t.shape().iter().product::<usize>(),
                        t.len(),
                        "case {i}: {name}"
                    );
                }
            }
            Err(Error::InvalidFile { .. } | Error::Allocation(_)) => refused += 1,
            Err(e) => panic!("case {i}: unexpected error kind {e:?}"),
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}
