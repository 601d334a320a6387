//! MNIST (and any folder of the same four IDX files, such as Fashion-MNIST): images scaled to
//! [0, 1] as f32, labels as the u8 class indices the files hold. A `SHA256SUMS` file in the folder is checked.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::idx;
use crate::error::{Error, Result};
use crate::nn::Tensor;

/// The four file names (each may also be stored with a `.gz` suffix).
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Where the four files can be downloaded (gzipped), a mirror of the original site.
pub const DOWNLOAD_URL: &str = "https://storage.googleapis.com/cvdf-datasets/mnist/";

/// The MNIST folder shipped in this repository.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

/// The training and test splits.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// (60000, 28, 28) in [0, 1].
    pub train_images: Tensor,
    /// 60000 class indices, as the file stores them (`fit` takes them as they are).
    pub train_labels: Vec<u8>,
    /// (10000, 28, 28) in [0, 1].
    pub test_images: Tensor,
    /// 10000 class indices.
    pub test_labels: Vec<u8>,
}

impl Mnist {
    /// Loads the four files from `dir`, verifying them against `dir/SHA256SUMS` if it exists.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        check_present(dir)?;
        let sums = read_sums(dir)?;
        let load = |name: &str| -> Result<(PathBuf, idx::IdxArray)> {
            let (path, bytes) = read_file(dir, name)?;
            verify(&sums, &path, &bytes)?;
            let a = idx::parse(&bytes, &path)?;
            Ok((path, a))
        };
        let (train_images, train_labels) = pair(load(FILES[0])?, load(FILES[1])?)?;
        let (test_images, test_labels) = pair(load(FILES[2])?, load(FILES[3])?)?;
        Ok(Self {
            train_images,
            train_labels,
            test_images,
            test_labels,
        })
    }
}

/// Fails, saying where to get them, when any of the four files is missing from `dir` (the
/// published crate does not include them).
fn check_present(dir: &Path) -> Result<()> {
    let missing: Vec<_> = FILES
        .into_iter()
        .filter(|n| !dir.join(format!("{n}.gz")).exists() && !dir.join(n).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Io {
        path: dir.display().to_string(),
        message: format!(
            "not found: {}. Put the four MNIST files here ({}, each gzipped as NAME.gz or not): \
             the densecore repository has them in data/mnist, or download them from {DOWNLOAD_URL}",
            missing.join(", "),
            FILES.join(", "),
        ),
    })
}

/// `dir/name.gz`, else `dir/name`, with its bytes.
fn read_file(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>)> {
    let gz = dir.join(format!("{name}.gz"));
    let raw = dir.join(name);
    for path in [&gz, &raw] {
        if path.exists() {
            let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
            return Ok((path.clone(), bytes));
        }
    }
    Err(Error::Io {
        path: gz.display().to_string(),
        message: format!("not found (nor {})", raw.display()),
    })
}

/// `file name → hex digest` from `dir/SHA256SUMS` (`sha256sum` output), empty if absent.
fn read_sums(dir: &Path) -> Result<HashMap<String, String>> {
    let path = dir.join("SHA256SUMS");
    if !path.exists() {
        return Ok(HashMap::new());
    }
    let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some(hash), Some(name)) => Ok((
                    name.trim_start_matches('*').to_string(),
                    hash.to_ascii_lowercase(),
                )),
                _ => Err(Error::invalid_file(&path, format!("bad line {l:?}"))),
            }
        })
        .collect()
}

/// Checks `bytes` against the digest listed for the file, if one is.
fn verify(sums: &HashMap<String, String>, path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let Some(expected) = name.and_then(|n| sums.get(&n)) else {
        return Ok(());
    };
    let actual: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if &actual == expected {
        Ok(())
    } else {
        Err(Error::invalid_file(
            path,
            format!("SHA-256 {actual} does not match SHA256SUMS ({expected})"),
        ))
    }
}

/// Images (n, rows, cols) scaled to [0, 1] and labels (n,), checked against each other.
fn pair(
    (ipath, images): (PathBuf, idx::IdxArray),
    (lpath, labels): (PathBuf, idx::IdxArray),
) -> Result<(Tensor, Vec<u8>)> {
    if images.dims.len() != 3 {
        return Err(Error::invalid_file(
            &ipath,
            format!("expected 3 dimensions (images), got {:?}", images.dims),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(Error::invalid_file(
            &lpath,
            format!("expected 1 dimension (labels), got {:?}", labels.dims),
        ));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(Error::invalid_file(
            &lpath,
            format!(
                "{} labels for {} images in {}",
                labels.dims[0],
                images.dims[0],
                ipath.display()
            ),
        ));
    }
    let pixels = images.data.iter().map(|&p| f32::from(p) / 255.0).collect();
    Ok((Tensor::new(&images.dims, pixels)?, labels.data))
}
