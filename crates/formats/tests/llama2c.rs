//! llama2.c checkpoints: the real stories260K files in both layouts, synthetic files with an
//! unshared classifier, and damaged headers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use formats::llama2c::{self, looks_like_llama2c, Llama2cHeader};
use formats::{DType, FormatError};

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("llama2c-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn stories(test: &str) -> Option<(PathBuf, PathBuf)> {
    let dir = testdata::shared_data(test)?.join("stories260K");
    Some((
        dir.join("stories260K.bin"),
        dir.join("stories260K_v1_ak42.bin"),
    ))
}

fn stories_header(version: u32) -> Llama2cHeader {
    Llama2cHeader {
        version,
        dim: 64,
        hidden_dim: 172,
        n_layers: 5,
        n_heads: 8,
        n_kv_heads: 4,
        vocab_size: 512,
        seq_len: 512,
        shared_classifier: true,
    }
}

/// The expected names and shapes, in the reader's order.
fn expected_names(h: &Llama2cHeader) -> Vec<(String, Vec<usize>)> {
    let (d, hid, kv) = (h.dim, h.hidden_dim, h.kv_dim());
    let mut v = vec![("tok_embeddings.weight".to_string(), vec![h.vocab_size, d])];
    for i in 0..h.n_layers {
        let l = |s: &str| format!("layers.{i}.{s}");
        v.push((l("attention_norm.weight"), vec![d]));
        v.push((l("attention.wq.weight"), vec![d, d]));
        v.push((l("attention.wk.weight"), vec![kv, d]));
        v.push((l("attention.wv.weight"), vec![kv, d]));
        v.push((l("attention.wo.weight"), vec![d, d]));
        v.push((l("ffn_norm.weight"), vec![d]));
        v.push((l("feed_forward.w1.weight"), vec![hid, d]));
        v.push((l("feed_forward.w2.weight"), vec![d, hid]));
        v.push((l("feed_forward.w3.weight"), vec![hid, d]));
    }
    v.push(("norm.weight".to_string(), vec![d]));
    if !h.shared_classifier {
        v.push(("output.weight".to_string(), vec![h.vocab_size, d]));
    }
    v
}

fn names_and_shapes(f: &llama2c::Llama2cFile) -> Vec<(String, Vec<usize>)> {
    f.tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect()
}

#[test]
fn stories260k_legacy_header_and_tensors() {
    let Some((legacy, _)) = stories("stories260k_legacy_header_and_tensors") else {
        return;
    };
    let f = llama2c::open(&legacy).unwrap();
    assert_eq!(f.header, stories_header(0));
    assert_eq!(f.header.head_size(), 8);
    assert_eq!(f.header.kv_dim(), 32);
    assert_eq!(f.path, legacy);
    assert_eq!(names_and_shapes(&f), expected_names(&f.header));
    assert_eq!(f.tensors.len(), 1 + 5 * 9 + 1);
    for t in &f.tensors {
        assert_eq!(t.dtype, DType::F32);
        assert!(t.storage().is_mapped(), "{} should be zero-copy", t.name);
    }
    // The first embedding value follows the 28-byte header.
    let bytes = std::fs::read(&legacy).unwrap();
    assert_eq!(&f.tensors[0].bytes()[..4], &bytes[28..32]);
    // The final norm ends right before the two skipped RoPE tables (2 * 512 * 8 / 2 floats).
    let norm = f.tensors.iter().find(|t| t.name == "norm.weight").unwrap();
    let end = bytes.len() - 2 * 512 * 4 * 4;
    assert_eq!(norm.bytes(), &bytes[end - 64 * 4..end]);
}

#[test]
fn stories260k_v1_matches_legacy_bit_for_bit() {
    let Some((legacy, v1)) = stories("stories260k_v1_matches_legacy_bit_for_bit") else {
        return;
    };
    let a = llama2c::open(&legacy).unwrap();
    let b = llama2c::open(&v1).unwrap();
    assert_eq!(b.header, stories_header(1));
    assert_eq!(names_and_shapes(&a), names_and_shapes(&b));
    for (x, y) in a.tensors.iter().zip(&b.tensors) {
        assert!(y.storage().is_mapped());
        assert!(
            x.bytes() == y.bytes(),
            "tensor {} differs between layouts",
            x.name
        );
    }
    // v1: attention norms come first, right after the 256-byte header.
    let bytes = std::fs::read(&v1).unwrap();
    let n0 = b
        .tensors
        .iter()
        .find(|t| t.name == "layers.0.attention_norm.weight")
        .unwrap();
    assert_eq!(n0.bytes(), &bytes[256..256 + 64 * 4]);
}

#[test]
fn sniffing() {
    let Some((legacy, v1)) = stories("sniffing") else {
        return;
    };
    for p in [&legacy, &v1] {
        let bytes = std::fs::read(p).unwrap();
        assert!(looks_like_llama2c(&bytes[..256]), "{}", p.display());
    }
    let gguf = std::fs::read(legacy.with_file_name("stories260K.gguf")).unwrap();
    assert!(!looks_like_llama2c(&gguf[..256]));
    let tok = std::fs::read(legacy.with_file_name("tok512.model")).unwrap();
    assert!(!looks_like_llama2c(&tok[..256]));
    // Too short for a legacy header.
    let bytes = std::fs::read(&legacy).unwrap();
    assert!(!looks_like_llama2c(&bytes[..20]));
    assert!(looks_like_llama2c(&0x616b_3432u32.to_le_bytes()));
    assert!(!looks_like_llama2c(b""));
    assert!(!looks_like_llama2c(&[0u8; 64]));
    // A safetensors file starts with a u64 header length: its high half reads as hidden_dim 0.
    let mut st = 1000u64.to_le_bytes().to_vec();
    st.extend_from_slice(b"{\"a\":{\"dtype\":\"F32\"}}");
    assert!(!looks_like_llama2c(&st));
}

// ---- synthetic files -------------------------------------------------------------------------

/// A small model with an unshared classifier; every tensor gets distinct values.
fn synth_header() -> Llama2cHeader {
    Llama2cHeader {
        version: 0,
        dim: 16,
        hidden_dim: 24,
        n_layers: 3,
        n_heads: 4,
        n_kv_heads: 2,
        vocab_size: 10,
        seq_len: 6,
        shared_classifier: false,
    }
}

fn values(name: &str, n: usize) -> Vec<f32> {
    let seed = name
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    (0..n)
        .map(|i| (seed % 1000) as f32 + i as f32 / 1024.0)
        .collect()
}

fn push(out: &mut Vec<u8>, v: &[f32]) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn weights(h: &Llama2cHeader) -> HashMap<String, Vec<f32>> {
    expected_names(h)
        .into_iter()
        .map(|(n, s)| {
            let v = values(&n, s.iter().product());
            (n, v)
        })
        .collect()
}

fn stacked(out: &mut Vec<u8>, w: &HashMap<String, Vec<f32>>, h: &Llama2cHeader, suffix: &str) {
    for i in 0..h.n_layers {
        push(out, &w[&format!("layers.{i}.{suffix}")]);
    }
}

fn ints(h: &Llama2cHeader, vocab: i32) -> Vec<u8> {
    [
        h.dim as i32,
        h.hidden_dim as i32,
        h.n_layers as i32,
        h.n_heads as i32,
        h.n_kv_heads as i32,
        vocab,
        h.seq_len as i32,
    ]
    .iter()
    .flat_map(|x| x.to_le_bytes())
    .collect()
}

fn write_legacy(h: &Llama2cHeader, w: &HashMap<String, Vec<f32>>) -> Vec<u8> {
    let vocab = if h.shared_classifier {
        h.vocab_size as i32
    } else {
        -(h.vocab_size as i32)
    };
    let mut out = ints(h, vocab);
    push(&mut out, &w["tok_embeddings.weight"]);
    for s in [
        "attention_norm.weight",
        "attention.wq.weight",
        "attention.wk.weight",
        "attention.wv.weight",
        "attention.wo.weight",
        "ffn_norm.weight",
        "feed_forward.w1.weight",
        "feed_forward.w2.weight",
        "feed_forward.w3.weight",
    ] {
        stacked(&mut out, w, h, s);
    }
    push(&mut out, &w["norm.weight"]);
    push(&mut out, &vec![-1.0; h.seq_len * h.head_size()]);
    if !h.shared_classifier {
        push(&mut out, &w["output.weight"]);
    }
    out
}

fn write_v1(h: &Llama2cHeader, w: &HashMap<String, Vec<f32>>) -> Vec<u8> {
    let mut out = 0x616b_3432u32.to_le_bytes().to_vec();
    out.extend_from_slice(&1i32.to_le_bytes());
    out.extend_from_slice(&ints(h, h.vocab_size as i32));
    out.push(h.shared_classifier as u8);
    out.resize(256, 0);
    stacked(&mut out, w, h, "attention_norm.weight");
    stacked(&mut out, w, h, "ffn_norm.weight");
    push(&mut out, &w["norm.weight"]);
    push(&mut out, &w["tok_embeddings.weight"]);
    for s in [
        "attention.wq.weight",
        "attention.wk.weight",
        "attention.wv.weight",
        "attention.wo.weight",
        "feed_forward.w1.weight",
        "feed_forward.w2.weight",
        "feed_forward.w3.weight",
    ] {
        stacked(&mut out, w, h, s);
    }
    if !h.shared_classifier {
        push(&mut out, &w["output.weight"]);
    }
    out
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let p = tmp(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn check_values(path: &Path, h: &Llama2cHeader, w: &HashMap<String, Vec<f32>>) {
    let f = llama2c::open(path).unwrap();
    assert_eq!(&f.header, h);
    assert_eq!(names_and_shapes(&f), expected_names(h));
    for t in &f.tensors {
        let got: Vec<f32> = t
            .bytes()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, w[&t.name], "tensor {}", t.name);
    }
}

#[test]
fn synthetic_unshared_classifier_both_layouts() {
    let h = synth_header();
    let w = weights(&h);
    let legacy = write("unshared_legacy.bin", &write_legacy(&h, &w));
    check_values(&legacy, &h, &w);
    let h1 = Llama2cHeader {
        version: 1,
        ..h.clone()
    };
    let v1 = write("unshared_v1.bin", &write_v1(&h1, &w));
    check_values(&v1, &h1, &w);
}

#[test]
fn synthetic_shared_classifier_both_layouts() {
    let h = Llama2cHeader {
        shared_classifier: true,
        ..synth_header()
    };
    let w = weights(&h);
    check_values(&write("shared_legacy.bin", &write_legacy(&h, &w)), &h, &w);
    let h1 = Llama2cHeader {
        version: 1,
        ..h.clone()
    };
    check_values(&write("shared_v1.bin", &write_v1(&h1, &w)), &h1, &w);
}

#[test]
fn legacy_trailing_bytes_are_accepted() {
    let h = synth_header();
    let w = weights(&h);
    let mut bytes = write_legacy(&h, &w);
    bytes.extend_from_slice(&[0xAB; 100]);
    check_values(&write("trailing_legacy.bin", &bytes), &h, &w);
}

#[test]
fn v1_trailing_bytes_are_rejected() {
    let h = Llama2cHeader {
        version: 1,
        shared_classifier: true,
        ..synth_header()
    };
    let w = weights(&h);
    let mut bytes = write_v1(&h, &w);
    bytes.extend_from_slice(&[0; 40]);
    let p = write("trailing_v1.bin", &bytes);
    let e = llama2c::open(&p).unwrap_err();
    assert!(matches!(e, FormatError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("40 trailing bytes"), "{e}");
}

fn corrupt_msg(p: &Path) -> String {
    match llama2c::open(p) {
        Err(e @ FormatError::Corrupt { .. }) => {
            let s = e.to_string();
            assert!(
                s.contains(&p.display().to_string()),
                "error names the file: {s}"
            );
            s
        }
        other => panic!("expected Corrupt for {}, got {other:?}", p.display()),
    }
}

#[test]
fn truncated_files_name_sizes_and_first_missing_tensor() {
    let h = synth_header();
    let w = weights(&h);
    let full = write_legacy(&h, &w);
    // Cut inside layer 1 of wk: 28 + embedding + rms_att + wq, then 1.5 layers of wk.
    let (d, kv) = (h.dim, h.kv_dim());
    let at = 28 + 4 * (h.vocab_size * d + 3 * d + 3 * d * d) + 4 * kv * d * 3 / 2;
    let p = write("truncated_legacy.bin", &full[..at]);
    let msg = corrupt_msg(&p);
    assert!(msg.contains(&format!("file is {at} bytes")), "{msg}");
    assert!(
        msg.contains(&format!("needs {} bytes", full.len())),
        "{msg}"
    );
    assert!(msg.contains("'layers.1.attention.wk.weight'"), "{msg}");

    // Missing only the unshared classifier.
    let p = write("no_output_legacy.bin", &full[..full.len() - 4]);
    assert!(corrupt_msg(&p).contains("'output.weight'"));

    let h1 = Llama2cHeader {
        version: 1,
        ..h.clone()
    };
    let v1 = write_v1(&h1, &w);
    let p = write("truncated_v1.bin", &v1[..300]);
    let msg = corrupt_msg(&p);
    assert!(msg.contains("file is 300 bytes"), "{msg}");
    assert!(msg.contains("'layers.0.attention_norm.weight'"), "{msg}");
    // Header cut short.
    let p = write("short_header_v1.bin", &v1[..100]);
    assert!(corrupt_msg(&p).contains("256-byte"));
    let p = write("short_header_legacy.bin", &full[..20]);
    corrupt_msg(&p);
    let p = write("empty.bin", b"");
    corrupt_msg(&p);
}

fn header_with(fields: [i32; 7]) -> Vec<u8> {
    let mut v: Vec<u8> = fields.iter().flat_map(|x| x.to_le_bytes()).collect();
    v.extend_from_slice(&[0; 64]);
    v
}

#[test]
fn absurd_or_inconsistent_headers_are_errors() {
    let cases: [([i32; 7], &str); 9] = [
        ([1 << 30, 172, 5, 8, 4, 512, 512], "overflows"),
        ([1 << 20, 172, 5, 8, 4, 512, 512], "needs"),
        ([64, i32::MAX, i32::MAX, 8, 4, 512, 512], "overflows"),
        ([1 << 30, 1 << 30, 1 << 30, 1, 1, i32::MAX, i32::MAX], ""),
        ([0, 172, 5, 8, 4, 512, 512], "dim is 0"),
        ([64, 172, -5, 8, 4, 512, 512], "n_layers is -5"),
        ([64, 172, 5, 7, 7, 512, 512], "not a multiple of n_heads"),
        ([64, 172, 5, 8, 3, 512, 512], "not a multiple of n_kv_heads"),
        ([64, 172, 5, 8, 4, 0, 512], "vocab_size is 0"),
    ];
    for (i, (fields, needle)) in cases.iter().enumerate() {
        let p = write(&format!("absurd_{i}.bin"), &header_with(*fields));
        let msg = corrupt_msg(&p);
        assert!(msg.contains(needle), "case {i}: {msg}");
    }
    let p = write(
        "absurd_min.bin",
        &header_with([64, 172, 5, 8, 4, i32::MIN, 512]),
    );
    corrupt_msg(&p);
}

#[test]
fn v1_bad_version_or_flag() {
    let h = Llama2cHeader {
        version: 1,
        ..synth_header()
    };
    let w = weights(&h);
    let good = write_v1(&h, &w);
    let mut v2 = good.clone();
    v2[4] = 2;
    let p = write("v2.bin", &v2);
    match llama2c::open(&p) {
        Err(e @ FormatError::Unsupported { .. }) => assert!(e.to_string().contains("version 2")),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    let mut v7 = good.clone();
    v7[4] = 7;
    let p = write("v7.bin", &v7);
    assert!(matches!(
        llama2c::open(&p),
        Err(FormatError::Unsupported { .. })
    ));
    let mut flag = good;
    flag[36] = 5;
    let p = write("badflag.bin", &flag);
    assert!(corrupt_msg(&p).contains("shared_classifier"));
}

#[test]
fn missing_file_is_io_error() {
    let p = tmp("does-not-exist.bin");
    assert!(matches!(llama2c::open(&p), Err(FormatError::Io { .. })));
}
