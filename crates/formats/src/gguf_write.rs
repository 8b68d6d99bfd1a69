//! GGUF v3 writer: the metadata and tensor infos are laid out up front from the tensors' types
//! and shapes, then the tensor data is streamed one tensor at a time, so a model never has to
//! be in memory whole.
//!
//! The layout is the one [`crate::gguf`] reads: magic, version 3, tensor and metadata counts,
//! the key/values, the tensor infos (dimensions innermost first, offsets relative to the data
//! start), padding to `general.alignment` (32 unless the metadata sets it), then each tensor's
//! bytes followed by padding to the alignment.
//!
//! ```
//! use formats::gguf::Value;
//! use formats::gguf_write::{GgufWriter, TensorSpec};
//! use formats::DType;
//!
//! let tensors = vec![TensorSpec::new("w", DType::F32, vec![2, 3])];
//! let meta = vec![("general.architecture".to_string(), Value::Str("llama".into()))];
//! let mut w = GgufWriter::new(Vec::new(), "mem.gguf", meta, tensors).unwrap();
//! w.write_tensor(&[0u8; 24]).unwrap();
//! let bytes = w.finish().unwrap();
//! assert_eq!(&bytes[..4], b"GGUF");
//! assert_eq!(bytes.len() % 32, 0);
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::gguf::Value;
use crate::{DType, FormatError, Result};

const ALIGNMENT_KEY: &str = "general.alignment";
const DEFAULT_ALIGNMENT: u64 = 32;

// Metadata value type ids (as the reader's).
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

/// ggml's type id of a tensor element type (the numbering of `ggml_type`).
pub fn ggml_type_id(dtype: DType) -> u32 {
    match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::Q4_0 => 2,
        DType::Q8_0 => 8,
        DType::Q2_K => 10,
        DType::Q3_K => 11,
        DType::Q4_K => 12,
        DType::Q5_K => 13,
        DType::Q6_K => 14,
        DType::BF16 => 30,
    }
}

/// What a tensor will be: name, element type and shape (outermost first, as everywhere in
/// herd; the writer reverses it into GGUF's innermost-first `ne[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, dtype: DType, shape: Vec<usize>) -> Self {
        TensorSpec {
            name: name.into(),
            dtype,
            shape,
        }
    }
}

fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => T_U8,
        Value::I8(_) => T_I8,
        Value::U16(_) => T_U16,
        Value::I16(_) => T_I16,
        Value::U32(_) => T_U32,
        Value::I32(_) => T_I32,
        Value::U64(_) => T_U64,
        Value::I64(_) => T_I64,
        Value::F32(_) => T_F32,
        Value::F64(_) => T_F64,
        Value::Bool(_) => T_BOOL,
        Value::Str(_) => T_STRING,
        Value::Array(_) => T_ARRAY,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Appends `v` (without its type id). Arrays must hold elements of one type; an empty array
/// is written with element type u8 (the reader keeps no element type for it).
fn put_value(out: &mut Vec<u8>, v: &Value, key: &str) -> std::result::Result<(), String> {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::Str(s) => put_str(out, s),
        Value::Array(items) => {
            let elem = items.first().map_or(T_U8, type_id);
            if let Some((i, bad)) = items.iter().enumerate().find(|(_, x)| type_id(x) != elem) {
                return Err(format!(
                    "'{key}': array element {i} is {}, element 0 is {}",
                    bad.type_name(),
                    items[0].type_name()
                ));
            }
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for x in items {
                put_value(out, x, key)?;
            }
        }
    }
    Ok(())
}

/// Streams a GGUF v3 file into `W`: the header is written by [`GgufWriter::new`], then each
/// tensor's bytes by [`GgufWriter::write_tensor`] in the order the specs were given.
pub struct GgufWriter<W: Write> {
    out: W,
    path: PathBuf,
    tensors: Vec<TensorSpec>,
    sizes: Vec<u64>,
    alignment: u64,
    next: usize,
}

impl<W: Write> GgufWriter<W> {
    /// Lays out the file and writes everything up to the first tensor's data. `path` names
    /// the destination in errors. Metadata keys must be unique; `general.alignment`, when
    /// given, must be a power of two (u32, as GGUF stores it); every tensor's innermost
    /// dimension must be a whole number of its type's blocks.
    pub fn new(
        out: W,
        path: impl AsRef<Path>,
        metadata: Vec<(String, Value)>,
        tensors: Vec<TensorSpec>,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bad = |field: String, msg: String| FormatError::corrupt(&path, field, msg);
        let mut alignment = DEFAULT_ALIGNMENT;
        let mut header = Vec::new();
        header.extend_from_slice(b"GGUF");
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        let mut seen = std::collections::HashSet::new();
        for (key, value) in &metadata {
            if !seen.insert(key.as_str()) {
                return Err(bad(format!("metadata '{key}'"), "duplicate key".into()));
            }
            if key == ALIGNMENT_KEY {
                alignment = match value {
                    Value::U32(a) if a.is_power_of_two() => u64::from(*a),
                    other => {
                        return Err(bad(
                            format!("metadata '{key}'"),
                            format!("expected a power of two as u32, found {other:?}"),
                        ))
                    }
                };
            }
            put_str(&mut header, key);
            header.extend_from_slice(&type_id(value).to_le_bytes());
            put_value(&mut header, value, key).map_err(|m| bad(format!("metadata '{key}'"), m))?;
        }
        let mut names = std::collections::HashSet::new();
        let mut sizes = Vec::with_capacity(tensors.len());
        let mut offset = 0u64;
        for t in &tensors {
            let field = || format!("tensor '{}'", t.name);
            if !names.insert(t.name.as_str()) {
                return Err(bad(field(), "duplicate tensor name".into()));
            }
            let row = t.shape.last().copied().unwrap_or(1);
            if row % t.dtype.block_elems() != 0 {
                return Err(bad(
                    field(),
                    format!(
                        "innermost dimension {row} of shape {:?} is not a multiple of the {} block size {}",
                        t.shape,
                        t.dtype,
                        t.dtype.block_elems()
                    ),
                ));
            }
            let n = t
                .shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .and_then(|n| t.dtype.bytes_for(n))
                .ok_or_else(|| bad(field(), format!("shape {:?} overflows", t.shape)))?;
            put_str(&mut header, &t.name);
            header.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for &d in t.shape.iter().rev() {
                header.extend_from_slice(&(d as u64).to_le_bytes());
            }
            header.extend_from_slice(&ggml_type_id(t.dtype).to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            sizes.push(n as u64);
            offset = (offset + n as u64).next_multiple_of(alignment);
        }
        let padded = (header.len() as u64).next_multiple_of(alignment) as usize;
        header.resize(padded, 0);
        let mut w = GgufWriter {
            out,
            path,
            tensors,
            sizes,
            alignment,
            next: 0,
        };
        w.put(&header)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| FormatError::io(&self.path, e))
    }

    /// The spec of the tensor [`GgufWriter::write_tensor`] expects next, `None` when all are
    /// written.
    pub fn next_tensor(&self) -> Option<&TensorSpec> {
        self.tensors.get(self.next)
    }

    /// Writes the next tensor's data (exactly its size in bytes) and the padding after it.
    pub fn write_tensor(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(t) = self.tensors.get(self.next) else {
            return Err(FormatError::corrupt(
                &self.path,
                "tensor data",
                format!("all {} tensors are already written", self.tensors.len()),
            ));
        };
        let want = self.sizes[self.next];
        if bytes.len() as u64 != want {
            return Err(FormatError::bad_tensor(
                &self.path,
                &t.name,
                format!(
                    "{} bytes given, {:?} of {} needs {want}",
                    bytes.len(),
                    t.shape,
                    t.dtype
                ),
            ));
        }
        self.put(bytes)?;
        let pad = want.next_multiple_of(self.alignment) - want;
        self.put(&vec![0u8; pad as usize])?;
        self.next += 1;
        Ok(())
    }

    /// Checks that every tensor was written, flushes and returns the sink.
    pub fn finish(mut self) -> Result<W> {
        if let Some(t) = self.tensors.get(self.next) {
            return Err(FormatError::bad_tensor(
                &self.path,
                &t.name,
                format!(
                    "data never written ({} of {} tensors written)",
                    self.next,
                    self.tensors.len()
                ),
            ));
        }
        self.out
            .flush()
            .map_err(|e| FormatError::io(&self.path, e))?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    fn all_values() -> Vec<(String, Value)> {
        vec![
            ("u8".into(), Value::U8(200)),
            ("i8".into(), Value::I8(-5)),
            ("u16".into(), Value::U16(60000)),
            ("i16".into(), Value::I16(-30000)),
            ("u32".into(), Value::U32(4_000_000_000)),
            ("i32".into(), Value::I32(-2_000_000_000)),
            ("u64".into(), Value::U64(u64::MAX - 1)),
            ("i64".into(), Value::I64(i64::MIN + 1)),
            ("f32".into(), Value::F32(1.5e-5)),
            ("f64".into(), Value::F64(-2.25e100)),
            ("bool".into(), Value::Bool(true)),
            ("str".into(), Value::Str("héllo ▁ <s>".into())),
            (
                "strs".into(),
                Value::Array(vec![Value::Str("a b".into()), Value::Str(String::new())]),
            ),
            (
                "f32s".into(),
                Value::Array(vec![Value::F32(-1.0), Value::F32(0.25)]),
            ),
            (
                "i32s".into(),
                Value::Array(vec![Value::I32(1), Value::I32(-3)]),
            ),
            (
                "nested".into(),
                Value::Array(vec![
                    Value::Array(vec![Value::U8(1)]),
                    Value::Array(vec![Value::U8(2), Value::U8(3)]),
                ]),
            ),
        ]
    }

    fn write_file(
        dir: &Path,
        meta: Vec<(String, Value)>,
        specs: Vec<TensorSpec>,
        data: &[Vec<u8>],
    ) -> PathBuf {
        let path = dir.join("t.gguf");
        let f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut w = GgufWriter::new(f, &path, meta, specs).unwrap();
        for d in data {
            w.write_tensor(d).unwrap();
        }
        w.finish().unwrap();
        path
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("herd-gguf-write-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trips_metadata_and_tensors_through_the_reader() {
        let dir = tmpdir("rt");
        let specs = vec![
            TensorSpec::new("a", DType::F32, vec![3]),
            TensorSpec::new("b.q8", DType::Q8_0, vec![2, 64]),
            TensorSpec::new("c.q4k", DType::Q4_K, vec![1, 256]),
            TensorSpec::new("d.f16", DType::F16, vec![2, 3, 5]),
        ];
        let data: Vec<Vec<u8>> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let n = s.dtype.bytes_for(s.shape.iter().product()).unwrap();
                (0..n).map(|j| (j * 7 + i * 13) as u8).collect()
            })
            .collect();
        let meta = all_values();
        let path = write_file(&dir, meta.clone(), specs.clone(), &data);
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.metadata, meta);
        assert_eq!(f.tensors.len(), specs.len());
        for ((t, s), d) in f.tensors.iter().zip(&specs).zip(&data) {
            assert_eq!(t.name, s.name);
            assert_eq!(t.dtype, s.dtype);
            assert_eq!(t.shape, s.shape);
            assert_eq!(t.bytes(), &d[..]);
        }
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(len % 32, 0);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn honours_a_custom_alignment() {
        let dir = tmpdir("align");
        let specs = vec![
            TensorSpec::new("x", DType::F32, vec![3]),
            TensorSpec::new("y", DType::F32, vec![5]),
        ];
        let meta = vec![(ALIGNMENT_KEY.to_string(), Value::U32(64))];
        let data = vec![vec![1u8; 12], vec![2u8; 20]];
        let path = write_file(&dir, meta, specs, &data);
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.tensor("y").unwrap().bytes(), &[2u8; 20][..]);
        let bytes = std::fs::read(&path).unwrap();
        // y starts 64 bytes after x.
        let x_at = bytes.windows(12).position(|w| w == [1u8; 12]).unwrap();
        let y_at = bytes.windows(20).position(|w| w == [2u8; 20]).unwrap();
        assert_eq!(x_at % 64, 0);
        assert_eq!(y_at - x_at, 64);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn rejects_misuse_with_clear_errors() {
        let spec = || vec![TensorSpec::new("w", DType::Q8_0, vec![2, 32])];
        let e = GgufWriter::new(
            Vec::new(),
            "o.gguf",
            vec![],
            vec![TensorSpec::new("w", DType::Q4_K, vec![1, 100])],
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("not a multiple"), "{e}");
        let dup = vec![
            ("k".to_string(), Value::U8(1)),
            ("k".to_string(), Value::U8(2)),
        ];
        let e = GgufWriter::new(Vec::new(), "o.gguf", dup, spec())
            .err()
            .unwrap();
        assert!(e.to_string().contains("duplicate"), "{e}");
        let mixed = vec![(
            "m".to_string(),
            Value::Array(vec![Value::U8(1), Value::Str("x".into())]),
        )];
        let e = GgufWriter::new(Vec::new(), "o.gguf", mixed, spec())
            .err()
            .unwrap();
        assert!(e.to_string().contains("array element 1"), "{e}");
        let mut w = GgufWriter::new(Vec::new(), "o.gguf", vec![], spec()).unwrap();
        let e = w.write_tensor(&[0u8; 10]).unwrap_err();
        assert!(e.to_string().contains("needs 68"), "{e}");
        let e = w.finish().unwrap_err();
        assert!(e.to_string().contains("never written"), "{e}");
    }
}
