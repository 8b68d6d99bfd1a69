//! Hugging Face checkpoint directories: JSON files and safetensors (single file or sharded with
//! `model.safetensors.index.json`).
//!
//! A safetensors file is an 8-byte little-endian header length `n`, `n` bytes of JSON mapping
//! tensor names to `{dtype, shape, data_offsets: [begin, end]}` (plus an optional
//! `__metadata__` object), then the data; offsets are relative to the end of the header.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use crate::{map_file, DType, FormatError, Result, Storage, Tensor};

const INDEX_FILE: &str = "model.safetensors.index.json";
const SINGLE_FILE: &str = "model.safetensors";
const METADATA_KEY: &str = "__metadata__";

/// Reads and parses a JSON file.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        FormatError::corrupt(
            path,
            format!("JSON at line {} column {}", e.line(), e.column()),
            e.to_string(),
        )
    })
}

/// The entries of a JSON object in file order, keeping duplicate keys so they can be reported.
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = m.next_entry::<String, serde_json::Value>()? {
                    v.push(entry);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads the tensors of one safetensors file, zero-copy over a memory map. Only F32, F16 and
/// BF16 tensors are accepted; any other dtype is an Unsupported error.
pub fn read_safetensors(path: &Path) -> Result<Vec<Tensor>> {
    let map = map_file(path)?;
    let bytes: &[u8] = &map;
    let file_len = bytes.len() as u64;
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(FormatError::corrupt(
            path,
            "header length",
            format!("file is {file_len} bytes, too short for the 8-byte header length"),
        ));
    };
    let mut raw = [0u8; 8];
    raw.copy_from_slice(len_bytes);
    let header_len = u64::from_le_bytes(raw);
    if header_len > file_len - 8 {
        return Err(FormatError::corrupt(
            path,
            "header length",
            format!(
                "header claims {header_len} bytes, only {} follow in the {file_len}-byte file",
                file_len - 8
            ),
        ));
    }
    // header_len <= file_len - 8, so these fit in usize.
    let data_start = 8 + header_len as usize;
    let header = &bytes[8..data_start];
    let data_len = (bytes.len() - data_start) as u64;

    let entries: Entries = serde_json::from_slice(header).map_err(|e| {
        FormatError::corrupt(
            path,
            format!("header JSON at line {} column {}", e.line(), e.column()),
            e.to_string(),
        )
    })?;

    let mut seen = HashSet::with_capacity(entries.0.len());
    let mut found = Vec::with_capacity(entries.0.len());
    for (name, info) in entries.0 {
        if !seen.insert(name.clone()) {
            return Err(FormatError::corrupt(
                path,
                "header",
                format!("duplicate tensor name '{name}'"),
            ));
        }
        if name == METADATA_KEY {
            if !info.is_object() {
                return Err(FormatError::corrupt(
                    path,
                    METADATA_KEY,
                    format!("expected an object, found {info}"),
                ));
            }
            continue;
        }
        let (begin, tensor) = tensor_of(path, &map, data_start, data_len, name, &info)?;
        found.push((begin, tensor));
    }
    // File order: by data offset (JSON object order is not meaningful).
    found.sort_by_key(|(begin, _)| *begin);
    Ok(found.into_iter().map(|(_, t)| t).collect())
}

/// Checks one header entry and makes the tensor; returns its data offset too.
fn tensor_of(
    path: &Path,
    map: &Arc<memmap2::Mmap>,
    data_start: usize,
    data_len: u64,
    name: String,
    info: &serde_json::Value,
) -> Result<(u64, Tensor)> {
    let bad = |msg: String| FormatError::bad_tensor(path, &name, msg);
    let obj = info.as_object().ok_or_else(|| {
        bad(format!(
            "expected an object with dtype, shape, data_offsets, found {info}"
        ))
    })?;
    let dtype_str = obj
        .get("dtype")
        .and_then(|d| d.as_str())
        .ok_or_else(|| bad(format!("missing or non-string 'dtype' in {info}")))?;
    let dtype = match dtype_str {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        other => {
            return Err(FormatError::unsupported(
                path,
                format!("tensor '{name}' has dtype {other}; only F32, F16 and BF16 are read"),
            ))
        }
    };
    let shape = obj
        .get("shape")
        .and_then(|s| s.as_array())
        .and_then(|dims| {
            dims.iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<Vec<usize>>>()
        })
        .ok_or_else(|| {
            bad(format!(
                "missing or invalid 'shape' (non-negative integers) in {info}"
            ))
        })?;
    let offsets = obj
        .get("data_offsets")
        .and_then(|o| o.as_array())
        .and_then(|o| match o.as_slice() {
            [b, e] => Some((b.as_u64()?, e.as_u64()?)),
            _ => None,
        })
        .ok_or_else(|| {
            bad(format!(
                "missing or invalid 'data_offsets' ([begin, end]) in {info}"
            ))
        })?;
    let (begin, end) = offsets;
    if begin > end || end > data_len {
        return Err(bad(format!(
            "data_offsets [{begin}, {end}] not within the {data_len} data bytes after the header"
        )));
    }
    // end <= data_len, so both fit in usize and within the map.
    let range = data_start + begin as usize..data_start + end as usize;
    let storage = Storage::mapped(Arc::clone(map), range);
    let tensor = Tensor::new(name.clone(), dtype, shape, storage).map_err(bad)?;
    Ok((begin, tensor))
}

/// Reads every tensor of a Hugging Face model directory: the shards listed by
/// `model.safetensors.index.json` if present, else `model.safetensors`, else every
/// `*.safetensors` file in name order. A tensor name found twice is an error.
pub fn read_safetensors_dir(dir: &Path) -> Result<Vec<Tensor>> {
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        return read_indexed(dir, &index);
    }
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return read_safetensors(&single);
    }
    let rd = std::fs::read_dir(dir).map_err(|e| FormatError::io(dir, e))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| FormatError::io(dir, e))?;
        let p = entry.path();
        if p.extension().is_some_and(|x| x == "safetensors") && p.is_file() {
            files.push(p);
        }
    }
    if files.is_empty() {
        return Err(FormatError::corrupt(
            dir,
            "safetensors files",
            format!("no {INDEX_FILE}, {SINGLE_FILE} or *.safetensors in the directory"),
        ));
    }
    files.sort();
    join_shards(files.iter().map(|f| (f.clone(), read_safetensors(f))))
}

/// Reads the shards named by an index file's `weight_map` and checks each listed tensor is in its
/// shard.
fn read_indexed(dir: &Path, index: &Path) -> Result<Vec<Tensor>> {
    let json = read_json(index)?;
    let weight_map = json
        .get("weight_map")
        .and_then(|w| w.as_object())
        .ok_or_else(|| FormatError::corrupt(index, "weight_map", "missing or not an object"))?;
    // shard file -> tensor names the index puts there; BTreeMap gives a stable shard order.
    let mut shards: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, shard) in weight_map {
        let shard = shard.as_str().ok_or_else(|| {
            FormatError::corrupt(
                index,
                format!("weight_map['{name}']"),
                format!("expected a shard file name, found {shard}"),
            )
        })?;
        let plain = Path::new(shard).file_name().is_some_and(|f| f == shard) && shard != "..";
        if !plain {
            return Err(FormatError::corrupt(
                index,
                format!("weight_map['{name}']"),
                format!("shard '{shard}' is not a plain file name in the model directory"),
            ));
        }
        shards.entry(shard).or_default().push(name);
    }
    if shards.is_empty() {
        return Err(FormatError::corrupt(
            index,
            "weight_map",
            "lists no tensors",
        ));
    }
    let mut read = Vec::with_capacity(shards.len());
    for (shard, names) in &shards {
        let shard_path = dir.join(shard);
        let tensors = read_safetensors(&shard_path)?;
        let present: HashSet<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
        if let Some(missing) = names.iter().find(|n| !present.contains(**n)) {
            return Err(FormatError::bad_tensor(
                &shard_path,
                *missing,
                format!(
                    "listed in {} for shard '{shard}' but absent from it",
                    index.display()
                ),
            ));
        }
        read.push((shard_path, Ok(tensors)));
    }
    join_shards(read)
}

/// Concatenates shards' tensors, rejecting a name that appears in two shards.
fn join_shards(
    shards: impl IntoIterator<Item = (PathBuf, Result<Vec<Tensor>>)>,
) -> Result<Vec<Tensor>> {
    let mut owner: HashMap<String, PathBuf> = HashMap::new();
    let mut all = Vec::new();
    for (path, tensors) in shards {
        for t in tensors? {
            if let Some(first) = owner.get(&t.name) {
                return Err(FormatError::bad_tensor(
                    &path,
                    &t.name,
                    format!("also present in {}", first.display()),
                ));
            }
            owner.insert(t.name.clone(), path.clone());
            all.push(t);
        }
    }
    Ok(all)
}
