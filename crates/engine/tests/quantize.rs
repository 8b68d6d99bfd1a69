//! herd's quantizers against the reference library's bytes: every tensor of
//! tests/fixtures/quant/quant.gguf was written from source/<base>.npy by gguf-py (whose Q8_0
//! and Q4_0 follow ggml's `quantize_row_*_ref`); quantizing the same floats must give the
//! same bytes.

use formats::gguf::GgufFile;
use formats::DType;
use kernels::{quantize_into, quantize_q4_0, quantize_q8_0, WeightType};

#[test]
fn quantized_bytes_identical_to_reference_library() {
    let dir = testdata::fixtures().join("quant");
    let file = GgufFile::open(&dir.join("quant.gguf")).unwrap();
    let mut checked = std::collections::BTreeSet::new();
    for t in &file.tensors {
        let (base, _) = t.name.split_once('.').unwrap();
        let (shape, src) =
            formats::npy::read_f32(&dir.join("source").join(format!("{base}.npy"))).unwrap();
        assert_eq!(shape, t.shape, "{}", t.name);
        let got = match t.dtype {
            DType::Q8_0 => quantize_q8_0(&src),
            DType::Q4_0 => quantize_q4_0(&src),
            other => {
                let ty = match other {
                    DType::F32 => WeightType::F32,
                    DType::F16 => WeightType::F16,
                    DType::BF16 => WeightType::BF16,
                    _ => unreachable!(),
                };
                let mut out = vec![0u8; ty.row_bytes(src.len())];
                quantize_into(ty, &src, &mut out);
                out
            }
        };
        let want = t.bytes();
        assert_eq!(got.len(), want.len(), "{}: byte count", t.name);
        if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
            let block = i / t.dtype.block_bytes();
            panic!(
                "{}: byte {i} (block {block}) is {:#04x}, the reference has {:#04x}",
                t.name, got[i], want[i]
            );
        }
        checked.insert(t.name.clone());
    }
    for name in ["normal.q8_0", "outliers.q4_0", "wide.q4_0", "cube.q8_0"] {
        assert!(checked.contains(name), "{name} not in the fixture");
    }
    assert!(checked.len() >= 20, "{} tensors checked", checked.len());
}

/// tests/fixtures/ggml_quant/ holds ggml's own bytes (`ggml_quantize_chunk` without an
/// importance matrix, i.e. `quantize_row_*_ref`, built by the ggml-python package; see
/// tools/fixtures/make_ggml_quant_fixtures.py) for each source/<name>.npy in every type herd
/// writes; herd's quantizers must give the same bytes.
#[test]
fn quantized_bytes_identical_to_ggml() {
    let dir = testdata::fixtures().join("ggml_quant");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let tensors = index["tensors"].as_object().unwrap();
    let mut types = std::collections::BTreeSet::new();
    for (name, t) in tensors {
        let (shape, src) =
            formats::npy::read_f32(&dir.join(t["source"].as_str().unwrap())).unwrap();
        let ty = match t["type"].as_str().unwrap() {
            "Q8_0" => WeightType::Q8_0,
            "Q4_0" => WeightType::Q4_0,
            "Q2_K" => WeightType::Q2_K,
            "Q3_K" => WeightType::Q3_K,
            "Q4_K" => WeightType::Q4_K,
            "Q5_K" => WeightType::Q5_K,
            "Q6_K" => WeightType::Q6_K,
            other => panic!("{name}: unexpected type {other}"),
        };
        let n_cols = *shape.last().unwrap();
        let mut got = vec![0u8; src.len() / n_cols * ty.row_bytes(n_cols)];
        kernels::quantize_rows(ty, &src, n_cols, &mut got);
        let want = std::fs::read(dir.join(t["file"].as_str().unwrap())).unwrap();
        assert_eq!(got.len(), want.len(), "{name}: byte count");
        if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
            let bb = ty.block_bytes();
            panic!(
                "{name}: byte {i} (block {}, offset {}) is {:#04x}, ggml has {:#04x}",
                i / bb,
                i % bb,
                got[i],
                want[i]
            );
        }
        types.insert(format!("{ty:?}"));
    }
    assert_eq!(types.len(), 7, "{types:?}");
    assert!(tensors.len() >= 40, "{} tensors checked", tensors.len());
}
