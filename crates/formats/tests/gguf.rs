//! GGUF reader: real files from the shared data, and synthetic (including hostile) files built
//! in memory by a small writer below.

use std::path::{Path, PathBuf};

use formats::gguf::{ggml_type_name, GgufFile, Value};
use formats::{DType, FormatError};

// ---------------------------------------------------------------------------------------------
// A minimal GGUF writer.

const T_ARRAY: u32 = 9;

fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::Str(_) => 8,
        Value::Array(_) => T_ARRAY,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    put_u64(b, s.len() as u64);
    b.extend_from_slice(s.as_bytes());
}

fn put_value(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => b.push(*x),
        Value::I8(x) => b.push(*x as u8),
        Value::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => put_u32(b, *x),
        Value::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => put_u64(b, *x),
        Value::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => b.push(*x as u8),
        Value::Str(s) => put_str(b, s),
        Value::Array(items) => {
            put_u32(b, items.first().map_or(0, type_id));
            put_u64(b, items.len() as u64);
            for it in items {
                put_value(b, it);
            }
        }
    }
}

/// One tensor to write: `ne` innermost first (as GGUF stores it).
struct TSpec {
    name: &'static str,
    ne: Vec<u64>,
    ggml_type: u32,
    data: Vec<u8>,
    /// Written instead of the computed offset when set.
    offset: Option<u64>,
}

fn tensor(name: &'static str, ne: &[u64], ggml_type: u32, data: Vec<u8>) -> TSpec {
    TSpec {
        name,
        ne: ne.to_vec(),
        ggml_type,
        data,
        offset: None,
    }
}

/// Builds a GGUF file: header, metadata, tensor infos, padding to `alignment`, then each
/// tensor's data at an aligned offset (no padding after the last one).
fn build(version: u32, kvs: &[(&str, Value)], tensors: &[TSpec], alignment: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    put_u32(&mut b, version);
    put_u64(&mut b, tensors.len() as u64);
    put_u64(&mut b, kvs.len() as u64);
    for (k, v) in kvs {
        put_str(&mut b, k);
        put_u32(&mut b, type_id(v));
        put_value(&mut b, v);
    }
    let mut offsets = Vec::new();
    let mut off = 0u64;
    for t in tensors {
        offsets.push(off);
        off = (off + t.data.len() as u64).next_multiple_of(alignment);
    }
    for (t, off) in tensors.iter().zip(&offsets) {
        put_str(&mut b, t.name);
        put_u32(&mut b, t.ne.len() as u32);
        for &d in &t.ne {
            put_u64(&mut b, d);
        }
        put_u32(&mut b, t.ggml_type);
        put_u64(&mut b, t.offset.unwrap_or(*off));
    }
    let start = (b.len() as u64).next_multiple_of(alignment) as usize;
    for (t, off) in tensors.iter().zip(&offsets) {
        b.resize(start + *off as usize, 0);
        b.extend_from_slice(&t.data);
    }
    b
}

/// Only the fixed header: magic, version, tensor count, metadata count.
fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    put_u32(&mut b, version);
    put_u64(&mut b, n_tensors);
    put_u64(&mut b, n_kv);
    b
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A small valid file with metadata of several kinds and one tensor of each supported type.
fn sample() -> Vec<u8> {
    let kvs = vec![
        ("general.architecture", Value::Str("llama".into())),
        ("llama.block_count", Value::U32(5)),
        ("llama.embedding_length", Value::U64(64)),
        ("test.i32", Value::I32(-7)),
        ("test.f32", Value::F32(1e-5)),
        ("test.f64", Value::F64(0.25)),
        ("test.bool", Value::Bool(true)),
        (
            "tokenizer.ggml.tokens",
            Value::Array(vec![Value::Str("<unk>".into()), Value::Str("é".into())]),
        ),
        (
            "test.nested",
            Value::Array(vec![Value::Array(vec![Value::I16(-2)])]),
        ),
    ];
    let tensors = vec![
        tensor(
            "a.f32",
            &[3, 2],
            0,
            f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        ),
        tensor("b.f16", &[4], 1, pattern(8, 1)),
        tensor("c.q8_0", &[32, 2], 8, pattern(2 * 34, 2)),
        tensor("d.q4_0", &[64], 2, pattern(2 * 18, 3)),
        tensor("e.bf16", &[2, 1, 3], 30, pattern(12, 4)),
    ];
    build(3, &kvs, &tensors, 32)
}

// ---------------------------------------------------------------------------------------------
// Temporary files.

struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("herd-gguf-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `bytes` to a file, opens it, and returns the error (panics if it parsed).
fn open_err(dir: &TempDir, name: &str, bytes: &[u8]) -> (PathBuf, FormatError) {
    let p = dir.write(name, bytes);
    match GgufFile::open(&p) {
        Ok(f) => panic!(
            "{name}: expected an error, parsed {} tensors",
            f.tensors.len()
        ),
        Err(e) => (p, e),
    }
}

fn assert_mentions(e: &FormatError, path: &Path, words: &[&str]) {
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "no path in: {msg}"
    );
    for w in words {
        assert!(msg.contains(w), "'{w}' not in: {msg}");
    }
}

// ---------------------------------------------------------------------------------------------
// Real files.

#[test]
fn stories260k_gguf() {
    let Some(data) = testdata::shared_data("stories260k_gguf") else {
        return;
    };
    let f = GgufFile::open(&data.join("stories260K/stories260K.gguf")).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.metadata.len(), 19);
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(f.get_u64("llama.embedding_length").unwrap(), Some(64));
    assert_eq!(f.get_u64("llama.block_count").unwrap(), Some(5));
    assert_eq!(f.get_u64("llama.feed_forward_length").unwrap(), Some(172));
    assert_eq!(f.get_u64("llama.attention.head_count_kv").unwrap(), Some(4));
    let eps = f
        .get_f32("llama.attention.layer_norm_rms_epsilon")
        .unwrap()
        .unwrap();
    assert!((eps - 1e-5).abs() < 1e-9, "{eps}");
    let tokens = f
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .unwrap();
    assert_eq!(tokens.len(), 512);
    assert_eq!(tokens[1].as_str(), Some("<s>"));
    assert_eq!(
        f.get("tokenizer.ggml.scores")
            .and_then(Value::as_array)
            .unwrap()
            .len(),
        512
    );
    assert_eq!(f.get_u64("no.such.key").unwrap(), None);

    assert_eq!(f.tensors.len(), 48);
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.dtype, DType::F32);
    assert_eq!(emb.shape, vec![512, 64]);
    assert!(emb.storage().is_mapped());
    assert_eq!(emb.bytes().len(), 512 * 64 * 4);
    assert_eq!(f.tensor("blk.0.attn_k.weight").unwrap().shape, vec![32, 64]);
    assert_eq!(
        f.tensor("blk.4.ffn_down.weight").unwrap().shape,
        vec![64, 172]
    );
    assert_eq!(f.tensor("output_norm.weight").unwrap().shape, vec![64]);
    // The RMS norm weights of a trained model are finite and not all zero.
    let norm: Vec<f32> = f
        .tensor("output_norm.weight")
        .unwrap()
        .bytes()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(norm.iter().all(|x| x.is_finite()) && norm.iter().any(|&x| x != 0.0));
    assert!(f.tensor("missing").is_none());

    // Wrong-type getters name the key.
    let e = f.get_u64("general.architecture").unwrap_err();
    assert!(matches!(e, FormatError::Corrupt { .. }));
    assert!(e.to_string().contains("general.architecture"), "{e}");
    assert!(f
        .get_str("llama.block_count")
        .unwrap_err()
        .to_string()
        .contains("llama.block_count"));
    assert!(f.get_f32("llama.block_count").is_err());
}

#[test]
fn llamacpp_vocab_gguf() {
    let Some(data) = testdata::shared_data("llamacpp_vocab_gguf") else {
        return;
    };
    let f = GgufFile::open(&data.join("llamacpp-vocab/ggml-vocab-llama-spm.gguf")).unwrap();
    assert_eq!(f.version, 3);
    assert!(f.tensors.is_empty());
    assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), Some("llama"));
    assert_eq!(f.get_u64("llama.vocab_size").unwrap(), Some(32000));
    let tokens = f
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .unwrap();
    assert_eq!(tokens.len(), 32000);
    assert_eq!(tokens[2].as_str(), Some("</s>"));
    assert_eq!(
        f.get("tokenizer.ggml.add_bos_token")
            .and_then(Value::as_bool),
        Some(true)
    );
    assert_eq!(
        f.get("tokenizer.ggml.add_eos_token")
            .and_then(Value::as_bool),
        Some(false)
    );
}

// ---------------------------------------------------------------------------------------------
// Synthetic files.

#[test]
fn roundtrip_values_and_shapes() {
    let dir = TempDir::new("roundtrip");
    let p = dir.write("sample.gguf", &sample());
    let f = GgufFile::open(&p).unwrap();
    assert_eq!(f.path, p);
    assert_eq!(f.version, 3);
    let keys: Vec<&str> = f.metadata.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys[0], "general.architecture");
    assert_eq!(keys.len(), 9);
    assert_eq!(f.get("llama.block_count"), Some(&Value::U32(5)));
    assert_eq!(f.get_u64("llama.embedding_length").unwrap(), Some(64));
    assert_eq!(f.get("test.i32"), Some(&Value::I32(-7)));
    assert_eq!(f.get("test.i32").unwrap().as_u64(), None);
    assert!(f.get_u64("test.i32").is_err(), "negative is not a u64");
    assert_eq!(f.get_f32("test.f32").unwrap(), Some(1e-5));
    assert_eq!(f.get_f32("test.f64").unwrap(), Some(0.25));
    assert_eq!(f.get_bool("test.bool").unwrap(), Some(true));
    assert_eq!(
        f.get("tokenizer.ggml.tokens"),
        Some(&Value::Array(vec![
            Value::Str("<unk>".into()),
            Value::Str("é".into())
        ]))
    );
    assert_eq!(
        f.get("test.nested"),
        Some(&Value::Array(vec![Value::Array(vec![Value::I16(-2)])]))
    );

    let got: Vec<(&str, DType, Vec<usize>)> = f
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.dtype, t.shape.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a.f32", DType::F32, vec![2, 3]),
            ("b.f16", DType::F16, vec![4]),
            ("c.q8_0", DType::Q8_0, vec![2, 32]),
            ("d.q4_0", DType::Q4_0, vec![64]),
            ("e.bf16", DType::BF16, vec![3, 1, 2]),
        ]
    );
    assert_eq!(
        f.tensor("a.f32").unwrap().bytes(),
        &f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])[..]
    );
    assert_eq!(f.tensor("b.f16").unwrap().bytes(), &pattern(8, 1)[..]);
    assert_eq!(f.tensor("c.q8_0").unwrap().bytes(), &pattern(68, 2)[..]);
    assert_eq!(f.tensor("d.q4_0").unwrap().bytes(), &pattern(36, 3)[..]);
    assert_eq!(f.tensor("e.bf16").unwrap().bytes(), &pattern(12, 4)[..]);
    assert!(f.tensors.iter().all(|t| t.storage().is_mapped()));
}

#[test]
fn version_2_and_custom_alignment() {
    let dir = TempDir::new("align");
    let kvs = [("general.alignment", Value::U32(64))];
    let tensors = [
        tensor("x", &[3], 0, f32_bytes(&[1.0, 2.0, 3.0])),
        tensor("y", &[2], 0, f32_bytes(&[4.0, 5.0])),
    ];
    let p = dir.write("v2.gguf", &build(2, &kvs, &tensors, 64));
    let f = GgufFile::open(&p).unwrap();
    assert_eq!(f.version, 2);
    assert_eq!(f.tensor("y").unwrap().bytes(), &f32_bytes(&[4.0, 5.0])[..]);
    match f.tensor("y").unwrap().storage() {
        formats::Storage::Mapped { range, .. } => assert_eq!(range.start % 64, 0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn truncated_at_every_length() {
    let dir = TempDir::new("truncated");
    let full = sample();
    for cut in 0..full.len() {
        let p = dir.write("cut.gguf", &full[..cut]);
        let r = GgufFile::open(&p);
        assert!(r.is_err(), "prefix of {cut} of {} bytes parsed", full.len());
    }
    // A cut inside a metadata value names the entry and key.
    let mut b = header(3, 0, 1);
    put_str(&mut b, "llama.block_count");
    put_u32(&mut b, 4);
    b.extend_from_slice(&[5, 0]);
    let (p, e) = open_err(&dir, "cut_value.gguf", &b);
    assert!(matches!(e, FormatError::Corrupt { .. }), "{e}");
    assert_mentions(
        &e,
        &p,
        &["metadata[0] 'llama.block_count' value", "truncated"],
    );

    // A cut inside a tensor name.
    let mut b = header(3, 1, 0);
    put_u64(&mut b, 40);
    b.extend_from_slice(&[b'n'; 30]);
    let (p, e) = open_err(&dir, "cut_name.gguf", &b);
    assert!(matches!(e, FormatError::Corrupt { .. }), "{e}");
    assert_mentions(&e, &p, &["tensor_info[0] name"]);

    // Cut one byte short of the last tensor's data.
    let (p, e) = open_err(&dir, "cut_data.gguf", &full[..full.len() - 1]);
    assert!(matches!(e, FormatError::BadTensor { .. }), "{e}");
    assert_mentions(&e, &p, &["e.bf16"]);
}

#[test]
fn tensor_info_field_names_in_errors() {
    let dir = TempDir::new("info_fields");
    let name = "blk.0.attn_q.weight";
    let full = build(3, &[], &[tensor(name, &[4], 0, vec![0; 16])], 32);
    // header (24) + name length (8) + name + n_dims (4) + ne[0] (8) + type (4) + offset (8).
    let at_ne = 24 + 8 + name.len() + 4;
    let (p, e) = open_err(&dir, "a.gguf", &full[..at_ne + 8 + 2]);
    assert_mentions(&e, &p, &[&format!("tensor_info[0] '{name}' type")]);
    let (p, e) = open_err(&dir, "b.gguf", &full[..at_ne + 3]);
    assert_mentions(&e, &p, &[&format!("tensor_info[0] '{name}' ne[0]")]);
    let (p, e) = open_err(&dir, "c.gguf", &full[..at_ne + 8 + 4 + 5]);
    assert_mentions(&e, &p, &[&format!("tensor_info[0] '{name}' offset")]);
}

#[test]
fn corrupt_magic() {
    let dir = TempDir::new("magic");
    let mut b = sample();
    b[..4].copy_from_slice(b"GGML");
    let (p, e) = open_err(&dir, "magic.gguf", &b);
    assert!(matches!(e, FormatError::Corrupt { .. }), "{e}");
    assert_mentions(&e, &p, &["magic"]);
}

#[test]
fn version_1_is_unsupported() {
    let dir = TempDir::new("v1");
    let mut b = sample();
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    let (p, e) = open_err(&dir, "v1.gguf", &b);
    assert!(matches!(e, FormatError::Unsupported { .. }), "{e}");
    assert_mentions(&e, &p, &["version 1"]);
    b[4..8].copy_from_slice(&7u32.to_le_bytes());
    let (p, e) = open_err(&dir, "v7.gguf", &b);
    assert_mentions(&e, &p, &["version 7"]);
}

#[test]
fn huge_string_length() {
    let dir = TempDir::new("huge_string");
    // As a key.
    let mut b = header(3, 0, 1);
    put_u64(&mut b, 1 << 60);
    b.extend_from_slice(&[b'x'; 64]);
    let (p, e) = open_err(&dir, "key.gguf", &b);
    assert!(matches!(e, FormatError::Corrupt { .. }), "{e}");
    assert_mentions(&e, &p, &["metadata[0] key", &(1u64 << 60).to_string()]);
    // As a value.
    let mut b = header(3, 0, 1);
    put_str(&mut b, "general.name");
    put_u32(&mut b, 8);
    put_u64(&mut b, 1 << 60);
    b.extend_from_slice(&[b'x'; 64]);
    let (p, e) = open_err(&dir, "value.gguf", &b);
    assert_mentions(&e, &p, &["metadata[0] 'general.name' value"]);
    // As a tensor name.
    let mut b = header(3, 1, 0);
    put_u64(&mut b, 1 << 60);
    b.extend_from_slice(&[0; 64]);
    let (p, e) = open_err(&dir, "tname.gguf", &b);
    assert_mentions(&e, &p, &["tensor_info[0] name"]);
}

#[test]
fn huge_counts() {
    let dir = TempDir::new("huge_counts");
    let mut b = header(3, 1 << 40, 0);
    b.extend_from_slice(&[0; 256]);
    let (p, e) = open_err(&dir, "tensors.gguf", &b);
    assert!(matches!(e, FormatError::Corrupt { .. }), "{e}");
    assert_mentions(&e, &p, &["tensor count", &(1u64 << 40).to_string()]);

    let mut b = header(3, 0, u64::MAX);
    b.extend_from_slice(&[0; 256]);
    let (p, e) = open_err(&dir, "kvs.gguf", &b);
    assert_mentions(&e, &p, &["metadata count"]);

    let mut b = header(3, 0, 1);
    put_str(&mut b, "tokenizer.ggml.tokens");
    put_u32(&mut b, T_ARRAY);
    put_u32(&mut b, 0); // u8 elements
    put_u64(&mut b, 1 << 50);
    b.extend_from_slice(&[0; 256]);
    let (p, e) = open_err(&dir, "array.gguf", &b);
    assert!(matches!(e, FormatError::Corrupt { .. }), "{e}");
    assert_mentions(
        &e,
        &p,
        &[
            "metadata[0] 'tokenizer.ggml.tokens' value",
            &(1u64 << 50).to_string(),
        ],
    );

    // Array of strings: each needs at least 8 bytes, so 40 of them cannot fit in 256 bytes.
    let mut b = header(3, 0, 1);
    put_str(&mut b, "k");
    put_u32(&mut b, T_ARRAY);
    put_u32(&mut b, 8);
    put_u64(&mut b, 40);
    b.extend_from_slice(&[0; 256]);
    let (p, e) = open_err(&dir, "strings.gguf", &b);
    assert_mentions(&e, &p, &["array length 40"]);
}

#[test]
fn deeply_nested_arrays() {
    let dir = TempDir::new("nested");
    let mut b = header(3, 0, 1);
    put_str(&mut b, "k");
    put_u32(&mut b, T_ARRAY);
    for _ in 0..10_000 {
        put_u32(&mut b, T_ARRAY);
        put_u64(&mut b, 1);
    }
    let (p, e) = open_err(&dir, "nested.gguf", &b);
    assert_mentions(&e, &p, &["metadata[0] 'k' value", "nested"]);
}

#[test]
fn dims_overflow() {
    let dir = TempDir::new("dims_overflow");
    let big = 1u64 << 32;
    let b = build(
        3,
        &[],
        &[tensor("w.big", &[big, big, big], 0, vec![0; 4])],
        32,
    );
    let (p, e) = open_err(&dir, "overflow.gguf", &b);
    assert!(matches!(e, FormatError::BadTensor { .. }), "{e}");
    assert_mentions(&e, &p, &["w.big", "overflows"]);
    // A product that fits in elements but not in bytes.
    let b = build(3, &[], &[tensor("w.bytes", &[1 << 62], 0, vec![0; 4])], 32);
    let (p, e) = open_err(&dir, "bytes.gguf", &b);
    assert_mentions(&e, &p, &["w.bytes"]);
    // Too many dims.
    let b = build(3, &[], &[tensor("w.dims", &[1; 9], 0, vec![0; 4])], 32);
    let (p, e) = open_err(&dir, "ndims.gguf", &b);
    assert_mentions(&e, &p, &["w.dims", "n_dims"]);
}

#[test]
fn tensor_past_end_and_misaligned() {
    let dir = TempDir::new("past_end");
    let mut t = tensor("w.far", &[4], 0, vec![0; 16]);
    t.offset = Some(1 << 20);
    let (p, e) = open_err(&dir, "far.gguf", &build(3, &[], &[t], 32));
    assert!(matches!(e, FormatError::BadTensor { .. }), "{e}");
    assert_mentions(&e, &p, &["w.far", "past the end"]);

    let mut t = tensor("w.wrap", &[4], 0, vec![0; 16]);
    t.offset = Some(u64::MAX - 31);
    let (p, e) = open_err(&dir, "wrap.gguf", &build(3, &[], &[t], 32));
    assert_mentions(&e, &p, &["w.wrap"]);

    let mut t = tensor("w.odd", &[4], 0, vec![0; 64]);
    t.offset = Some(4);
    let (p, e) = open_err(&dir, "odd.gguf", &build(3, &[], &[t], 32));
    assert_mentions(&e, &p, &["w.odd", "alignment"]);
}

#[test]
fn unknown_and_unsupported_types() {
    let dir = TempDir::new("types");
    let b = build(
        3,
        &[],
        &[tensor("blk.0.attn_q.weight", &[32], 6, vec![0; 22])],
        32,
    );
    let (p, e) = open_err(&dir, "q5_0.gguf", &b);
    assert!(matches!(e, FormatError::Unsupported { .. }), "{e}");
    assert_mentions(&e, &p, &["blk.0.attn_q.weight", "6", "Q5_0"]);
    let b = build(
        3,
        &[],
        &[tensor("blk.0.ffn_up.weight", &[256], 23, vec![0; 136])],
        32,
    );
    let (p, e) = open_err(&dir, "iq4_xs.gguf", &b);
    assert!(matches!(e, FormatError::Unsupported { .. }), "{e}");
    assert_mentions(&e, &p, &["blk.0.ffn_up.weight", "23", "IQ4_XS"]);
    assert_eq!(ggml_type_name(14), "Q6_K");
    assert_eq!(ggml_type_name(30), "BF16");
    assert_eq!(ggml_type_name(9999), "unknown");

    // Unknown metadata value type.
    let mut b = header(3, 0, 1);
    put_str(&mut b, "weird");
    put_u32(&mut b, 77);
    b.extend_from_slice(&[0; 16]);
    let (p, e) = open_err(&dir, "vtype.gguf", &b);
    assert_mentions(&e, &p, &["weird", "77"]);

    // Quantized row not a whole number of blocks.
    let b = build(3, &[], &[tensor("q.row", &[16, 4], 8, vec![0; 68])], 32);
    let (p, e) = open_err(&dir, "row.gguf", &b);
    assert!(matches!(e, FormatError::BadTensor { .. }), "{e}");
    assert_mentions(&e, &p, &["q.row"]);

    // K-quant rows must be whole super-blocks of 256 values.
    let b = build(3, &[], &[tensor("k.row", &[128, 2], 12, vec![0; 144])], 32);
    let (p, e) = open_err(&dir, "krow.gguf", &b);
    assert!(matches!(e, FormatError::BadTensor { .. }), "{e}");
    assert_mentions(&e, &p, &["k.row", "128", "256"]);
}

#[test]
fn duplicates_and_bad_alignment() {
    let dir = TempDir::new("dups");
    let b = build(
        3,
        &[],
        &[
            tensor("w", &[4], 0, vec![0; 16]),
            tensor("w", &[4], 0, vec![0; 16]),
        ],
        32,
    );
    let (p, e) = open_err(&dir, "dup_tensor.gguf", &b);
    assert!(matches!(e, FormatError::Corrupt { .. }), "{e}");
    assert_mentions(&e, &p, &["duplicate", "'w'"]);

    let b = build(3, &[("k", Value::U8(1)), ("k", Value::U8(2))], &[], 32);
    let (p, e) = open_err(&dir, "dup_key.gguf", &b);
    assert_mentions(&e, &p, &["duplicate", "'k'"]);

    let b = build(3, &[("general.alignment", Value::U32(48))], &[], 32);
    let (p, e) = open_err(&dir, "align48.gguf", &b);
    assert!(matches!(e, FormatError::Corrupt { .. }), "{e}");
    assert_mentions(&e, &p, &["general.alignment", "power of two"]);
    let b = build(3, &[("general.alignment", Value::U32(0))], &[], 32);
    let (p, e) = open_err(&dir, "align0.gguf", &b);
    assert_mentions(&e, &p, &["general.alignment"]);
    let b = build(
        3,
        &[("general.alignment", Value::Str("32".into()))],
        &[],
        32,
    );
    let (p, e) = open_err(&dir, "align_str.gguf", &b);
    assert_mentions(&e, &p, &["general.alignment"]);
}

#[test]
fn invalid_bool_and_utf8() {
    let dir = TempDir::new("bool_utf8");
    let mut b = header(3, 0, 1);
    put_str(&mut b, "flag");
    put_u32(&mut b, 7);
    b.push(2);
    let (p, e) = open_err(&dir, "bool.gguf", &b);
    assert_mentions(&e, &p, &["flag", "bool"]);

    let mut b = header(3, 0, 1);
    put_u64(&mut b, 2);
    b.extend_from_slice(&[0xff, 0xfe]);
    put_u32(&mut b, 0);
    b.push(0);
    let (p, e) = open_err(&dir, "utf8.gguf", &b);
    assert_mentions(&e, &p, &["metadata[0] key", "UTF-8"]);
}

#[test]
fn random_corruption_never_panics() {
    // Flip bytes of the sample header deterministically; any outcome but a panic is fine.
    let dir = TempDir::new("fuzz");
    let full = sample();
    let header_len = full.len().min(600);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in 0..400 {
        let mut b = full.clone();
        for _ in 0..1 + i % 4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % header_len as u64) as usize;
            b[at] = (state >> 32) as u8;
        }
        let p = dir.write("fuzz.gguf", &b);
        let _ = GgufFile::open(&p);
    }
}
