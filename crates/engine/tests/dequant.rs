//! herd's decoding of every stored weight type against the reference library's
//! (gguf.quants.dequantize), on tensors written by tools/fixtures/make_fixtures.py.

use formats::gguf::GgufFile;
use kernels::{dequantize, WeightType};

#[test]
fn dequantize_matches_reference_library() {
    let dir = testdata::fixtures().join("quant");
    let file = GgufFile::open(&dir.join("quant.gguf")).unwrap();
    assert!(file.tensors.len() >= 20, "{} tensors", file.tensors.len());
    let mut seen = std::collections::BTreeSet::new();
    for t in &file.tensors {
        let ty = match t.dtype {
            formats::DType::F32 => WeightType::F32,
            formats::DType::F16 => WeightType::F16,
            formats::DType::BF16 => WeightType::BF16,
            formats::DType::Q8_0 => WeightType::Q8_0,
            formats::DType::Q4_0 => WeightType::Q4_0,
            formats::DType::Q2_K => WeightType::Q2_K,
            formats::DType::Q3_K => WeightType::Q3_K,
            formats::DType::Q4_K => WeightType::Q4_K,
            formats::DType::Q5_K => WeightType::Q5_K,
            formats::DType::Q6_K => WeightType::Q6_K,
        };
        seen.insert(t.dtype.name());
        let (shape, want) =
            formats::npy::read_f32(&dir.join("expected").join(format!("{}.npy", t.name))).unwrap();
        assert_eq!(shape, t.shape, "{}", t.name);
        let mut got = vec![0f32; t.n_elems()];
        dequantize(ty, t.bytes(), &mut got);
        // Both sides compute d * q in f32 from the same bytes: results are bit-identical.
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{}[{i}]: {a} vs {b}", t.name);
        }
    }
    assert_eq!(seen.len(), 5, "types covered: {seen:?}");
}
