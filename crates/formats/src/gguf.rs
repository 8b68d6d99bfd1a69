//! GGUF v2/v3 reader: metadata key/values and zero-copy tensor descriptors.
//!
//! Layout (little-endian): magic `GGUF`, `u32` version, `u64` tensor count, `u64` metadata count,
//! the metadata key/values, the tensor infos (name, `u32` n_dims, `u64` ne[n_dims] innermost
//! first, `u32` ggml type, `u64` offset), then the tensor data, which starts at the first
//! multiple of `general.alignment` (default 32) after the infos. Tensor offsets are relative to
//! that start and must themselves be aligned.
//!
//! Every count and length is checked against the bytes left in the file before anything is
//! allocated, so a hostile header yields an error rather than an allocation failure or a panic.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{map_file, DType, FormatError, Result, Storage, Tensor};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
const ALIGNMENT_KEY: &str = "general.alignment";
/// Largest `n_dims` accepted (ggml itself uses at most 4).
const MAX_DIMS: u32 = 8;
/// Deepest nesting of arrays inside arrays accepted in metadata.
const MAX_ARRAY_DEPTH: usize = 8;
/// Smallest possible metadata entry: key length, value type, a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest possible tensor info: name length, n_dims, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

// Metadata value type ids.
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

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value of any integer kind as `u64`, `None` when negative or not an integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    /// An `F32` value, or an `F64` one narrowed to `f32`.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }
    /// The text of a `Str` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The elements of an `Array` value.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    /// The value of a `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    /// The GGUF name of this value's type (`u32`, `string`, `array`...), for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::Bool(_) => "bool",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
        }
    }
}

/// The name of a ggml tensor type id (`"Q4_K"` for 12), or `"unknown"`.
pub fn ggml_type_name(id: u32) -> &'static str {
    match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        4 => "Q4_2",
        5 => "Q4_3",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        31 => "Q4_0_4_4",
        32 => "Q4_0_4_8",
        33 => "Q4_0_8_8",
        34 => "TQ1_0",
        35 => "TQ2_0",
        36 => "IQ4_NL_4_4",
        37 => "IQ4_NL_4_8",
        38 => "IQ4_NL_8_8",
        39 => "MXFP4",
        _ => "unknown",
    }
}

fn dtype_of_ggml(id: u32) -> Option<DType> {
    match id {
        0 => Some(DType::F32),
        1 => Some(DType::F16),
        2 => Some(DType::Q4_0),
        8 => Some(DType::Q8_0),
        10 => Some(DType::Q2_K),
        11 => Some(DType::Q3_K),
        12 => Some(DType::Q4_K),
        13 => Some(DType::Q5_K),
        14 => Some(DType::Q6_K),
        30 => Some(DType::BF16),
        _ => None,
    }
}

/// A parsed GGUF file: its metadata in file order and its tensors as ranges of the shared map.
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<Tensor>,
}

impl GgufFile {
    /// Memory-maps and parses `path`. Tensor bytes are not copied.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let map = map_file(path)?;
        parse(path, map)
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// An integer value under `key`; a Corrupt error when present but not a non-negative integer.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, "a non-negative integer", Value::as_u64)
    }

    /// A float value under `key`; a Corrupt error when present but not `f32`/`f64`.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        self.typed(key, "f32", Value::as_f32)
    }

    /// A string value under `key`; a Corrupt error when present but not a string.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "string", Value::as_str)
    }

    /// An array value under `key`; a Corrupt error when present but not an array.
    pub fn get_array(&self, key: &str) -> Result<Option<&[Value]>> {
        self.typed(key, "array", Value::as_array)
    }

    /// A bool value under `key`; a Corrupt error when present but not a bool.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "bool", Value::as_bool)
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        want: &str,
        conv: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match conv(v) {
                Some(x) => Ok(Some(x)),
                None => Err(FormatError::corrupt(
                    &self.path,
                    format!("metadata '{key}'"),
                    format!("expected {want}, found {} {}", v.type_name(), describe(v)),
                )),
            },
        }
    }
}

/// A short rendering of a value for error messages (arrays by length only).
fn describe(v: &Value) -> String {
    match v {
        Value::Str(s) if s.chars().count() > 40 => {
            format!("{:?}...", s.chars().take(40).collect::<String>())
        }
        Value::Str(s) => format!("{s:?}"),
        Value::Array(a) => format!("of {} elements", a.len()),
        Value::U8(x) => x.to_string(),
        Value::I8(x) => x.to_string(),
        Value::U16(x) => x.to_string(),
        Value::I16(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bool(x) => x.to_string(),
    }
}

/// A bounds-checked little-endian reader over the file bytes. Every read names the field it
/// reads so truncation errors say what was being read.
struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn truncated(&self, field: &dyn Fn() -> String, need: u64) -> FormatError {
        FormatError::corrupt(
            self.path,
            field(),
            format!(
                "truncated: needs {need} bytes at offset {}, only {} left in the {}-byte file",
                self.pos,
                self.remaining(),
                self.bytes.len()
            ),
        )
    }

    fn take(&mut self, n: u64, field: &dyn Fn() -> String) -> Result<&'a [u8]> {
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => {
                let s = &self.bytes[self.pos..self.pos + n];
                self.pos += n;
                Ok(s)
            }
            _ => Err(self.truncated(field, n)),
        }
    }

    fn array<const N: usize>(&mut self, field: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N as u64, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, field: &dyn Fn() -> String) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u16(&mut self, field: &dyn Fn() -> String) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// Checks that `count` items of at least `min_size` bytes each can still fit in the file.
    fn check_count(
        &self,
        count: u64,
        min_size: u64,
        field: &dyn Fn() -> String,
        what: &str,
    ) -> Result<()> {
        let need = count.checked_mul(min_size);
        match need {
            Some(need) if need <= self.remaining() as u64 => Ok(()),
            _ => Err(FormatError::corrupt(
                self.path,
                field(),
                format!(
                    "{what} {count} cannot fit: needs at least {} bytes at offset {}, only {} left in the {}-byte file",
                    need.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string()),
                    self.pos,
                    self.remaining(),
                    self.bytes.len()
                ),
            )),
        }
    }

    /// A `u64` length followed by that many bytes of UTF-8.
    fn string(&mut self, field: &dyn Fn() -> String) -> Result<String> {
        let len = self.u64(&|| format!("{} length", field()))?;
        if len > self.remaining() as u64 {
            return Err(FormatError::corrupt(
                self.path,
                field(),
                format!(
                    "string length {len} exceeds the {} bytes left at offset {} of the {}-byte file",
                    self.remaining(),
                    self.pos,
                    self.bytes.len()
                ),
            ));
        }
        let start = self.pos;
        let raw = self.take(len, field)?;
        String::from_utf8(raw.to_vec()).map_err(|e| {
            FormatError::corrupt(
                self.path,
                field(),
                format!("string at offset {start} is not UTF-8: {e}"),
            )
        })
    }

    /// One metadata value of type `ty`.
    fn value(&mut self, ty: u32, field: &dyn Fn() -> String, depth: usize) -> Result<Value> {
        Ok(match ty {
            T_U8 => Value::U8(self.u8(field)?),
            T_I8 => Value::I8(self.u8(field)? as i8),
            T_U16 => Value::U16(self.u16(field)?),
            T_I16 => Value::I16(self.u16(field)? as i16),
            T_U32 => Value::U32(self.u32(field)?),
            T_I32 => Value::I32(self.u32(field)? as i32),
            T_F32 => Value::F32(f32::from_bits(self.u32(field)?)),
            T_U64 => Value::U64(self.u64(field)?),
            T_I64 => Value::I64(self.u64(field)? as i64),
            T_F64 => Value::F64(f64::from_bits(self.u64(field)?)),
            T_BOOL => {
                let at = self.pos;
                match self.u8(field)? {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(FormatError::corrupt(
                            self.path,
                            field(),
                            format!("bool at offset {at} is {b}, expected 0 or 1"),
                        ))
                    }
                }
            }
            T_STRING => Value::Str(self.string(field)?),
            T_ARRAY => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(FormatError::corrupt(
                        self.path,
                        field(),
                        format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"),
                    ));
                }
                let elem_ty = self.u32(&|| format!("{} array element type", field()))?;
                let min = min_value_size(elem_ty).ok_or_else(|| {
                    FormatError::corrupt(
                        self.path,
                        field(),
                        format!("unknown array element type {elem_ty}"),
                    )
                })?;
                let n = self.u64(&|| format!("{} array length", field()))?;
                self.check_count(n, min, field, "array length")?;
                // `n * min` bytes fit in the file, so `n` fits in usize.
                let mut items = Vec::with_capacity(n as usize);
                for i in 0..n {
                    let elem_field = || format!("{}[{i}]", field());
                    items.push(self.value(elem_ty, &elem_field, depth + 1)?);
                }
                Value::Array(items)
            }
            other => {
                return Err(FormatError::corrupt(
                    self.path,
                    field(),
                    format!("unknown value type {other}"),
                ))
            }
        })
    }
}

/// Fewest bytes a value of metadata type `ty` can take, `None` for an unknown type.
fn min_value_size(ty: u32) -> Option<u64> {
    Some(match ty {
        T_U8 | T_I8 | T_BOOL => 1,
        T_U16 | T_I16 => 2,
        T_U32 | T_I32 | T_F32 => 4,
        T_U64 | T_I64 | T_F64 => 8,
        T_STRING => 8,
        T_ARRAY => 4 + 8,
        _ => return None,
    })
}

/// One tensor info as read from the header, before its bytes are located.
struct TensorInfo {
    name: String,
    /// Outermost first.
    shape: Vec<usize>,
    ggml_type: u32,
    offset: u64,
}

fn parse(path: &Path, map: Arc<memmap2::Mmap>) -> Result<GgufFile> {
    let bytes: &[u8] = &map;
    let mut c = Cursor {
        path,
        bytes,
        pos: 0,
    };

    let magic = c.array::<4>(&|| "magic".to_string())?;
    if &magic != MAGIC {
        return Err(FormatError::corrupt(
            path,
            "magic",
            format!("expected \"GGUF\" (47 47 55 46), found {magic:02x?}"),
        ));
    }
    let version = c.u32(&|| "version".to_string())?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(FormatError::unsupported(
                path,
                "GGUF version 1 (32-bit counts); convert the file to GGUF v2 or v3",
            ))
        }
        v => {
            return Err(FormatError::unsupported(
                path,
                format!("GGUF version {v}; only 2 and 3 are read"),
            ))
        }
    }
    let n_tensors = c.u64(&|| "tensor count".to_string())?;
    let n_kv = c.u64(&|| "metadata count".to_string())?;
    c.check_count(
        n_kv,
        MIN_KV_BYTES,
        &|| "metadata count".to_string(),
        "metadata count",
    )?;
    c.check_count(
        n_tensors,
        MIN_TENSOR_INFO_BYTES,
        &|| "tensor count".to_string(),
        "tensor count",
    )?;
    let kv_and_infos = (n_kv * MIN_KV_BYTES).checked_add(n_tensors * MIN_TENSOR_INFO_BYTES);
    if !matches!(kv_and_infos, Some(n) if n <= c.remaining() as u64) {
        return Err(FormatError::corrupt(
            path,
            "tensor count",
            format!(
                "{n_kv} metadata entries and {n_tensors} tensor infos cannot fit in the {} bytes left",
                c.remaining()
            ),
        ));
    }

    // Metadata.
    let mut metadata: Vec<(String, Value)> = Vec::with_capacity(n_kv as usize);
    let mut keys: HashSet<String> = HashSet::with_capacity(n_kv as usize);
    for i in 0..n_kv {
        let key = c.string(&|| format!("metadata[{i}] key"))?;
        let ty = c.u32(&|| format!("metadata[{i}] '{key}' type"))?;
        let value = c.value(ty, &|| format!("metadata[{i}] '{key}' value"), 0)?;
        if !keys.insert(key.clone()) {
            return Err(FormatError::corrupt(
                path,
                format!("metadata[{i}] key"),
                format!("duplicate key '{key}'"),
            ));
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_u64() {
            Some(a) if a.is_power_of_two() => a,
            _ => {
                return Err(FormatError::corrupt(
                    path,
                    format!("metadata '{ALIGNMENT_KEY}'"),
                    format!(
                        "expected a power of two, found {} {}",
                        v.type_name(),
                        describe(v)
                    ),
                ))
            }
        },
    };

    // Tensor infos.
    let mut infos: Vec<TensorInfo> = Vec::with_capacity(n_tensors as usize);
    let mut names: HashSet<String> = HashSet::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let name = c.string(&|| format!("tensor_info[{i}] name"))?;
        let n_dims = c.u32(&|| format!("tensor_info[{i}] '{name}' n_dims"))?;
        if n_dims > MAX_DIMS {
            return Err(FormatError::corrupt(
                path,
                format!("tensor_info[{i}] '{name}' n_dims"),
                format!("{n_dims} dimensions, at most {MAX_DIMS} accepted"),
            ));
        }
        let mut shape = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            let ne = c.u64(&|| format!("tensor_info[{i}] '{name}' ne[{d}]"))?;
            let ne = usize::try_from(ne).map_err(|_| {
                FormatError::bad_tensor(
                    path,
                    &name,
                    format!("ne[{d}] = {ne} does not fit in memory"),
                )
            })?;
            shape.push(ne);
        }
        shape.reverse();
        let ggml_type = c.u32(&|| format!("tensor_info[{i}] '{name}' type"))?;
        let offset = c.u64(&|| format!("tensor_info[{i}] '{name}' offset"))?;
        if !names.insert(name.clone()) {
            return Err(FormatError::corrupt(
                path,
                format!("tensor_info[{i}] name"),
                format!("duplicate tensor name '{name}'"),
            ));
        }
        infos.push(TensorInfo {
            name,
            shape,
            ggml_type,
            offset,
        });
    }

    // Tensor data starts at the next multiple of `alignment`; for a file without tensors it may
    // lie past the end, which is harmless.
    let header_end = c.pos as u64;
    let data_start = header_end
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| {
            FormatError::corrupt(path, "tensor data start", "aligned offset overflows")
        })?;

    let file_len = bytes.len() as u64;
    let mut tensors = Vec::with_capacity(infos.len());
    for info in infos {
        tensors.push(locate(path, &map, file_len, data_start, alignment, info)?);
    }

    Ok(GgufFile {
        path: path.to_path_buf(),
        version,
        metadata,
        tensors,
    })
}

/// Checks one tensor's type, shape and byte range and makes it a zero-copy [`Tensor`].
fn locate(
    path: &Path,
    map: &Arc<memmap2::Mmap>,
    file_len: u64,
    data_start: u64,
    alignment: u64,
    info: TensorInfo,
) -> Result<Tensor> {
    let TensorInfo {
        name,
        shape,
        ggml_type,
        offset,
    } = info;
    let dtype = dtype_of_ggml(ggml_type).ok_or_else(|| {
        FormatError::unsupported(
            path,
            format!(
                "tensor '{name}' has ggml type {ggml_type} ({}); only F32, F16, BF16, Q8_0, Q4_0, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K are read",
                ggml_type_name(ggml_type)
            ),
        )
    })?;
    let n_elems = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            FormatError::bad_tensor(path, &name, format!("shape {shape:?} overflows"))
        })?;
    let row = shape.last().copied().unwrap_or(1);
    if row % dtype.block_elems() != 0 {
        return Err(FormatError::bad_tensor(
            path,
            &name,
            format!(
                "innermost dimension {row} of shape {shape:?} is not a multiple of the {dtype} block size {}",
                dtype.block_elems()
            ),
        ));
    }
    let n_bytes = dtype.bytes_for(n_elems).ok_or_else(|| {
        FormatError::bad_tensor(
            path,
            &name,
            format!("byte size of shape {shape:?} of {dtype} overflows"),
        )
    })?;
    if offset % alignment != 0 {
        return Err(FormatError::bad_tensor(
            path,
            &name,
            format!("data offset {offset} is not a multiple of the alignment {alignment}"),
        ));
    }
    let start = data_start.checked_add(offset);
    let end = start.and_then(|s| s.checked_add(n_bytes as u64));
    let (start, end) = match (start, end) {
        (Some(s), Some(e)) if e <= file_len => (s as usize, e as usize),
        _ => {
            return Err(FormatError::bad_tensor(
                path,
                &name,
                format!(
                    "{n_bytes} bytes (shape {shape:?} of {dtype}) at data start {data_start} + offset {offset} run past the end of the {file_len}-byte file"
                ),
            ))
        }
    };
    let storage = Storage::mapped(Arc::clone(map), start..end);
    Tensor::new(name.clone(), dtype, shape, storage)
        .map_err(|msg| FormatError::bad_tensor(path, name, msg))
}
