//! Meta's original Llama release layout: `consolidated.NN.pth` shards plus `params.json`.
//!
//! A `.pth` file is the zip archive `torch.save` writes: `<prefix>/data.pkl` (a pickle of the
//! state dict whose tensors point at storages by key), `<prefix>/data/<key>` (the raw storages,
//! stored uncompressed), `<prefix>/version` and, in newer archives, `<prefix>/byteorder`.
//! Contiguous tensors of uncompressed storages are handed out as zero-copy ranges of a memory
//! map; strided views are copied into owned buffers.
//!
//! Joining tensor-parallel shards is left to the model crate.

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zip::{CompressionMethod, ZipArchive};

use crate::pickle::{self, TensorRef};
use crate::{map_file, DType, FormatError, Result, Storage, Tensor};

/// Largest `data.pkl` read (a 70B shard's is a few hundred KB).
const MAX_PICKLE_BYTES: u64 = 256 << 20;
/// Largest `params.json` read.
const MAX_PARAMS_BYTES: u64 = 16 << 20;

/// An uncompressed storage entry located in the map, or a decompressed one.
enum StorageBytes {
    Mapped { start: usize, len: usize },
    Owned(Arc<Vec<u8>>),
}

/// Reads every tensor of a `torch.save` archive's top-level dict, in the order written.
/// Entries that are not tensors are skipped.
pub fn read_pth(path: &Path) -> Result<Vec<Tensor>> {
    let map = map_file(path)?;
    let mut zip = ZipArchive::new(Cursor::new(&map[..])).map_err(|e| {
        FormatError::corrupt(
            path,
            "zip",
            format!("not a readable zip archive ({} bytes): {e}", map.len()),
        )
    })?;
    let pkl_name = find_data_pkl(path, &zip)?;
    let prefix = pkl_name[..pkl_name.len() - "data.pkl".len()].to_string();
    check_byteorder(path, &mut zip, &prefix)?;

    let pkl = read_entry(path, &mut zip, &pkl_name, MAX_PICKLE_BYTES)?;
    let pk =
        pickle::parse(&pkl).map_err(|e| FormatError::corrupt(path, &pkl_name, e.to_string()))?;
    let items = pk.dict_items(pk.root()).ok_or_else(|| {
        FormatError::corrupt(
            path,
            &pkl_name,
            format!(
                "top-level object is a {}, expected a dict",
                pk.describe(pk.root())
            ),
        )
    })?;

    let mut storages: HashMap<String, StorageBytes> = HashMap::new();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for &(k, v) in items {
        let Some(name) = pk.as_str(k) else { continue };
        if !pk.is_tensor(v) {
            continue;
        }
        if !seen.insert(name) {
            return Err(FormatError::bad_tensor(
                path,
                name,
                "appears twice in the state dict",
            ));
        }
        let t = pk
            .tensor(v)
            .map_err(|msg| FormatError::bad_tensor(path, name, msg))?;
        let dtype = t.storage.dtype.ok_or_else(|| {
            FormatError::unsupported(
                path,
                format!(
                    "tensor '{name}': storage type {} is not supported (F32, F16, BF16 only)",
                    t.storage.type_name
                ),
            )
        })?;
        if !storages.contains_key(&t.storage.key) {
            let entry = format!("{prefix}data/{}", t.storage.key);
            let bytes = locate_storage(path, &mut zip, &entry, map.len(), name)?;
            storages.insert(t.storage.key.clone(), bytes);
        }
        let bytes = &storages[&t.storage.key];
        out.push(make_tensor(path, name, dtype, t, bytes, &map)?);
    }
    Ok(out)
}

fn find_data_pkl(path: &Path, zip: &ZipArchive<Cursor<&[u8]>>) -> Result<String> {
    let best = zip
        .file_names()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| (n.matches('/').count(), n.to_string()));
    match best {
        Some(n) => Ok(n.to_string()),
        None => {
            let mut names: Vec<&str> = zip.file_names().take(6).collect();
            names.sort_unstable();
            Err(FormatError::corrupt(
                path,
                "data.pkl",
                format!(
                    "no '<prefix>/data.pkl' entry among the archive's {} entries ({})",
                    zip.len(),
                    names.join(", ")
                ),
            ))
        }
    }
}

fn check_byteorder(path: &Path, zip: &mut ZipArchive<Cursor<&[u8]>>, prefix: &str) -> Result<()> {
    let name = format!("{prefix}byteorder");
    if zip.index_for_name(&name).is_none() {
        return Ok(()); // Archives from before the entry existed are little-endian.
    }
    let bytes = read_entry(path, zip, &name, 64)?;
    match bytes.trim_ascii() {
        b"little" => Ok(()),
        b"big" => Err(FormatError::unsupported(
            path,
            "big-endian torch archive (byteorder 'big')",
        )),
        other => Err(FormatError::corrupt(
            path,
            name,
            format!(
                "expected 'little' or 'big', found {:?}",
                String::from_utf8_lossy(other)
            ),
        )),
    }
}

/// Reads a whole entry (decompressing if needed), refusing entries larger than `limit`.
fn read_entry(
    path: &Path,
    zip: &mut ZipArchive<Cursor<&[u8]>>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    let corrupt = |msg: String| FormatError::corrupt(path, name, msg);
    let mut f = zip
        .by_name(name)
        .map_err(|e| corrupt(format!("cannot open entry: {e}")))?;
    let size = f.size();
    if size > limit {
        return Err(corrupt(format!(
            "entry is {size} bytes, more than the {limit} accepted"
        )));
    }
    let mut buf = Vec::new();
    (&mut f)
        .take(size)
        .read_to_end(&mut buf)
        .map_err(|e| corrupt(format!("cannot read entry: {e}")))?;
    if buf.len() as u64 != size {
        return Err(corrupt(format!(
            "entry declares {size} bytes but holds {}",
            buf.len()
        )));
    }
    Ok(buf)
}

fn locate_storage(
    path: &Path,
    zip: &mut ZipArchive<Cursor<&[u8]>>,
    entry: &str,
    map_len: usize,
    tensor: &str,
) -> Result<StorageBytes> {
    let bad = |msg: String| FormatError::bad_tensor(path, tensor, msg);
    let Some(index) = zip.index_for_name(entry) else {
        return Err(bad(format!(
            "storage entry '{entry}' is missing from the archive"
        )));
    };
    let (stored, start, size) = {
        let f = zip
            .by_index_raw(index)
            .map_err(|e| bad(format!("cannot open storage entry '{entry}': {e}")))?;
        (
            f.compression() == CompressionMethod::Stored && f.compressed_size() == f.size(),
            f.data_start(),
            f.size(),
        )
    };
    if stored {
        let end = start.checked_add(size).filter(|&e| e <= map_len as u64);
        return match end {
            Some(_) => Ok(StorageBytes::Mapped {
                start: start as usize,
                len: size as usize,
            }),
            None => Err(bad(format!(
                "storage entry '{entry}' (bytes {start}..+{size}) runs past the end of the file ({map_len} bytes)"
            ))),
        };
    }
    // Compressed storages are rare (torch.save never writes them); decompress once.
    let limit = map_len as u64 * 1024;
    read_entry(path, zip, entry, limit)
        .map(|v| StorageBytes::Owned(Arc::new(v)))
        .map_err(|e| bad(e.to_string()))
}

fn make_tensor(
    path: &Path,
    name: &str,
    dtype: DType,
    t: &TensorRef,
    bytes: &StorageBytes,
    map: &Arc<memmap2::Mmap>,
) -> Result<Tensor> {
    let bad = |msg: String| FormatError::bad_tensor(path, name, msg);
    let elem = dtype.block_bytes() as u64;
    let entry_len = match bytes {
        StorageBytes::Mapped { len, .. } => *len as u64,
        StorageBytes::Owned(v) => v.len() as u64,
    };
    let declared = t
        .storage
        .nbytes()
        .ok_or_else(|| bad(format!("storage size {} overflows", t.storage.numel)))?;
    if declared > entry_len {
        return Err(bad(format!(
            "storage '{}' declares {declared} bytes but its entry holds {entry_len}",
            t.storage.key
        )));
    }
    let storage_elems = declared / elem;
    let numel = t
        .numel()
        .ok_or_else(|| bad(format!("size {:?} overflows", t.size)))?;
    let end = t.storage_end().ok_or_else(|| {
        bad(format!(
            "view size {:?} stride {:?} overflows",
            t.size, t.stride
        ))
    })?;
    if end > storage_elems {
        return Err(bad(format!(
            "view (offset {}, size {:?}, stride {:?}) reaches element {end} of storage '{}', which \
             holds {storage_elems} {dtype} elements",
            t.storage_offset, t.size, t.stride, t.storage.key
        )));
    }
    if numel > storage_elems {
        return Err(bad(format!(
            "view of {numel} elements overlaps itself in a storage of {storage_elems}"
        )));
    }
    // All byte counts below are bounded by the storage entry, hence by usize.
    let shape: Vec<usize> = t.size.iter().map(|&d| d as usize).collect();
    let nbytes = (numel * elem) as usize;
    let storage = if t.is_contiguous() {
        let off = (t.storage_offset * elem) as usize;
        match bytes {
            StorageBytes::Mapped { start, .. } => {
                Storage::mapped(map.clone(), start + off..start + off + nbytes)
            }
            StorageBytes::Owned(v) => Storage::owned(v[off..off + nbytes].to_vec()),
        }
    } else {
        let src: &[u8] = match bytes {
            StorageBytes::Mapped { start, len } => &map[*start..*start + *len],
            StorageBytes::Owned(v) => v,
        };
        Storage::owned(gather(src, elem as usize, t, numel as usize))
    };
    Tensor::new(name, dtype, shape, storage).map_err(bad)
}

/// Copies a strided view into row-major order. The caller has checked every index is in bounds.
fn gather(src: &[u8], elem: usize, t: &TensorRef, numel: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(numel * elem);
    if numel == 0 {
        return out;
    }
    let size: Vec<usize> = t.size.iter().map(|&d| d as usize).collect();
    let stride: Vec<usize> = t.stride.iter().map(|&d| d as usize).collect();
    let mut idx = vec![0usize; size.len()];
    let mut at = t.storage_offset as usize;
    for _ in 0..numel {
        out.extend_from_slice(&src[at * elem..(at + 1) * elem]);
        // Advance the multi-index, innermost first.
        for d in (0..size.len()).rev() {
            idx[d] += 1;
            at += stride[d];
            if idx[d] < size[d] {
                break;
            }
            at -= stride[d] * size[d];
            idx[d] = 0;
        }
    }
    out
}

/// Reads `params.json`, checking the fields every Llama release has (`dim`, `n_layers`,
/// `n_heads`: positive integers) and the types of the optional ones (`n_kv_heads`, `vocab_size`
/// which may be -1, `multiple_of`, `ffn_dim_multiplier`, `norm_eps`, `rope_theta`,
/// `use_scaled_rope`).
pub fn read_params(path: &Path) -> Result<serde_json::Value> {
    let f = std::fs::File::open(path).map_err(|e| FormatError::io(path, e))?;
    let mut text = String::new();
    f.take(MAX_PARAMS_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| FormatError::io(path, e))?;
    if text.len() as u64 > MAX_PARAMS_BYTES {
        return Err(FormatError::corrupt(
            path,
            "json",
            format!("larger than {MAX_PARAMS_BYTES} bytes"),
        ));
    }
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| FormatError::corrupt(path, "json", e.to_string()))?;
    let obj = v.as_object().ok_or_else(|| {
        FormatError::corrupt(path, "json", format!("expected an object, found {v}"))
    })?;
    let field_err = |k: &str, want: &str, got: &serde_json::Value| {
        FormatError::corrupt(path, k, format!("expected {want}, found {got}"))
    };
    for k in ["dim", "n_layers", "n_heads"] {
        match obj.get(k) {
            Some(x) if x.as_u64().is_some_and(|n| n > 0) => {}
            Some(x) => return Err(field_err(k, "a positive integer", x)),
            None => return Err(FormatError::corrupt(path, k, "missing")),
        }
    }
    for (k, x) in obj {
        if x.is_null() {
            continue;
        }
        let ok = match k.as_str() {
            "n_kv_heads" | "multiple_of" => x.as_u64().is_some_and(|n| n > 0),
            "vocab_size" => x.as_i64().is_some_and(|n| n > 0 || n == -1),
            "ffn_dim_multiplier" | "norm_eps" | "rope_theta" => {
                x.as_f64().is_some_and(|f| f.is_finite() && f > 0.0)
            }
            "use_scaled_rope" => x.is_boolean(),
            _ => true,
        };
        if !ok {
            let want = match k.as_str() {
                "vocab_size" => "a positive integer or -1",
                "use_scaled_rope" => "a boolean",
                "ffn_dim_multiplier" | "norm_eps" | "rope_theta" => "a positive number",
                _ => "a positive integer",
            };
            return Err(field_err(k, want, x));
        }
    }
    Ok(v)
}

/// The `consolidated.NN.pth` files of `dir`, sorted by shard number, which must run 0, 1, 2...
pub fn consolidated_shards(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| FormatError::io(dir, e))?;
    let mut shards: Vec<(u64, PathBuf)> = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| FormatError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name
            .strip_prefix("consolidated.")
            .and_then(|s| s.strip_suffix(".pth"))
        else {
            continue;
        };
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(n) = num.parse::<u64>() else { continue };
        shards.push((n, entry.path()));
    }
    if shards.is_empty() {
        return Err(FormatError::corrupt(
            dir,
            "consolidated.*.pth",
            "no consolidated.NN.pth shard in this directory",
        ));
    }
    shards.sort();
    for (i, (n, p)) in shards.iter().enumerate() {
        if *n != i as u64 {
            let what = if i > 0 && shards[i - 1].0 == *n {
                format!("shard {n} appears twice ({})", p.display())
            } else {
                format!("shard {i} is missing (found {} next)", p.display())
            };
            return Err(FormatError::corrupt(dir, "consolidated.*.pth", what));
        }
    }
    Ok(shards.into_iter().map(|(_, p)| p).collect())
}
