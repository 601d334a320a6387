//! Weights on disk in the safetensors format, written atomically (temp file + rename).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use half::{bf16, f16};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::tensor::Tensor;
use crate::error::{Error, Result};

/// Writes `bytes` to `path` so that readers see the old file or the new one, never a partial
/// one, even while other threads or processes save to the same path: a new temporary file in
/// the same directory (uniquely named and created exclusively, so no two saves share it and
/// no symlink planted at its name is followed), flushed to disk, renamed over `path`, and the
/// directory flushed so the rename survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::invalid_file(path, "not a file path"))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |e| Error::io(path, e);
    // Named after the target so a leftover (after a crash) says where it came from.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", file_name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    // On failure the temporary file is dropped, which deletes it.
    tmp.persist(path).map_err(|e| io(e.error))?;
    sync_dir(dir).map_err(io)
}

/// Flushes a directory's entries (the rename) to disk.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Elsewhere (Windows) a directory cannot be opened as a file to flush it.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Saves named f32 tensors as a safetensors file (atomically).
pub fn save(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    save_with_metadata(path, tensors, HashMap::new())
}

/// [`save`] with string metadata in the file's header (besides `format: densecore`).
pub fn save_with_metadata(
    path: &Path,
    tensors: &[(String, Tensor)],
    mut metadata: HashMap<String, String>,
) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, t)| t.data().iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), b)| {
            TensorView::new(Dtype::F32, t.shape().to_vec(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::invalid_file(path, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    metadata.insert("format".to_string(), "densecore".to_string());
    let data = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::invalid_file(path, e.to_string()))?;
    write_atomic(path, &data)
}

/// Loads every tensor of a safetensors file as f32 (see [`parse`]).
pub fn load(path: &Path) -> Result<HashMap<String, Tensor>> {
    load_with_metadata(path).map(|(tensors, _)| tensors)
}

/// [`load`], with the header's string metadata.
pub fn load_with_metadata(
    path: &Path,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::invalid_file(path, format!("not a safetensors file: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    Ok((parse(&bytes, path)?, metadata))
}

/// Every tensor of the bytes of a safetensors file (as [`load`] reads them), as f32: F32
/// tensors as they are, F16 and BF16 ones (checkpoints ship so) widened exactly. Other types
/// are an [`Error::InvalidFile`]. `path` only names the file in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<HashMap<String, Tensor>> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::invalid_file(path, format!("not a safetensors file: {e}")))?;
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::F16 => raw
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => raw
                    .chunks_exact(2)
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(Error::invalid_file(
                        path,
                        format!("tensor {name:?} is {other:?}, expected F32, F16 or BF16"),
                    ));
                }
            };
            Ok((name, Tensor::new(view.shape(), data)?))
        })
        .collect()
}
