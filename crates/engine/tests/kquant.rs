//! K-quant support end to end, against tests/fixtures/kquant/ (written by
//! tools/fixtures/make_kquant_fixtures.py): decoding of Q2_K ... Q6_K against the reference
//! library (gguf.quants.dequantize), Q8_K activations against ggml's reference quantiser, the
//! K-quant × Q8_K dot products (scalar and AVX2), and a Q4_K_M-style model against
//! transformers.

use std::path::{Path, PathBuf};

use engine::Session;
use formats::gguf::GgufFile;
use formats::{DType, Tensor};
use kernels::kquants::{self, BlockQ8K, QK_K};
use kernels::{dequantize, WeightType};

/// Largest |scalar dot − f64 dot of the decoded weights and activations|, relative to the sum
/// of the magnitudes of the terms: the dots use exact integer sums, only `f32` rounding of the
/// scales and of the accumulation differs.
const DOT_REL_TOL: f64 = 1e-5;
/// Largest |AVX2 dot − scalar dot| on the same scale: identical integer sums, only the order
/// of the `f32` accumulation differs.
const AVX2_REL_TOL: f64 = 1e-6;
/// Largest |herd − transformers| on a logit, relative to the largest |logit| (as in parity.rs).
const LOGIT_REL_TOL: f32 = 1e-4;
/// Tolerance against the Q8_K- and Q8_0-activation references, in units of their recorded
/// sensitivity to rounding flips (`act_q8_k_flip_sensitivity`, `act_q8_0_flip_sensitivity` in
/// model/expected.json).
const FLIP_FACTOR: f32 = 2.0;

fn dir() -> PathBuf {
    testdata::fixtures().join("kquant")
}

fn weight_type(t: &Tensor) -> WeightType {
    match t.dtype {
        DType::Q2_K => WeightType::Q2_K,
        DType::Q3_K => WeightType::Q3_K,
        DType::Q4_K => WeightType::Q4_K,
        DType::Q5_K => WeightType::Q5_K,
        DType::Q6_K => WeightType::Q6_K,
        other => panic!("{}: {other} is not a K-quant type", t.name),
    }
}

fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    formats::npy::read_f32(path).unwrap_or_else(|e| panic!("{e}"))
}

fn open_tensors() -> GgufFile {
    GgufFile::open(&dir().join("kquant.gguf")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn dequantize_matches_reference_library() {
    let file = open_tensors();
    assert_eq!(file.tensors.len(), 25, "tensors in kquant.gguf");
    let mut seen = std::collections::BTreeSet::new();
    for t in &file.tensors {
        let ty = weight_type(t);
        seen.insert(t.dtype.name());
        let (shape, want) = npy(&dir().join("expected").join(format!("{}.npy", t.name)));
        assert_eq!(shape, t.shape, "{}", t.name);
        let mut got = vec![0f32; t.n_elems()];
        dequantize(ty, t.bytes(), &mut got);
        // Both sides compute every value with the same f32 operations: bit-identical.
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{}[{i}]: {a} vs {b}", t.name);
        }
    }
    assert_eq!(seen.len(), 5, "types covered: {seen:?}");
}

/// The activations of act.npy, one `Vec` per row.
fn activations() -> Vec<Vec<f32>> {
    let (shape, act) = npy(&dir().join("act.npy"));
    act.chunks_exact(shape[1]).map(<[f32]>::to_vec).collect()
}

#[test]
fn q8_k_matches_reference_quantizer() {
    let act = activations();
    let (_, d) = npy(&dir().join("act_q8k_d.npy"));
    let (_, qs) = npy(&dir().join("act_q8k_qs.npy"));
    let (_, bsums) = npy(&dir().join("act_q8k_bsums.npy"));
    let blocks: Vec<BlockQ8K> = act
        .iter()
        .flat_map(|row| kquants::quantize_q8_k(row))
        .collect();
    assert_eq!(blocks.len(), d.len());
    for (i, b) in blocks.iter().enumerate() {
        assert_eq!(
            b.d.to_bits(),
            d[i].to_bits(),
            "block {i} d: {} vs {}",
            b.d,
            d[i]
        );
        for (j, &q) in b.qs.iter().enumerate() {
            assert_eq!(q as f32, qs[i * QK_K + j], "block {i} qs[{j}]");
        }
        for (j, &s) in b.bsums.iter().enumerate() {
            assert_eq!(s as f32, bsums[i * 16 + j], "block {i} bsums[{j}]");
        }
    }
}

/// Byte offset of the f16 `d` of a block of `ty` when the type also has a `dmin` (the min
/// part of each value is what a copy of the block with `d` zeroed decodes to).
fn d_offset_with_min(ty: WeightType) -> Option<usize> {
    match ty {
        WeightType::Q2_K => Some(80),
        WeightType::Q4_K | WeightType::Q5_K => Some(0),
        _ => None,
    }
}

/// (f64 dot of the decoded row and activations, sum of the magnitudes of its terms).
fn reference_dot(ty: WeightType, row: &[u8], act: &[BlockQ8K]) -> (f64, f64) {
    let n = act.len() * QK_K;
    let mut w = vec![0f32; n];
    dequantize(ty, row, &mut w);
    let mut mins = vec![0f32; n];
    if let Some(at) = d_offset_with_min(ty) {
        let mut no_d = row.to_vec();
        for b in no_d.chunks_exact_mut(ty.block_bytes()) {
            b[at..at + 2].copy_from_slice(&[0, 0]);
        }
        dequantize(ty, &no_d, &mut mins);
    }
    let mut a = vec![0f32; n];
    kquants::dequantize_q8_k(act, &mut a);
    let mut dot = 0f64;
    let mut mag = 0f64;
    for ((&w, &m), &a) in w.iter().zip(&mins).zip(&a) {
        dot += w as f64 * a as f64;
        mag += (w.abs() as f64 + 2.0 * m.abs() as f64) * a.abs() as f64;
    }
    (dot, mag)
}

fn scalar_dot(ty: WeightType, row: &[u8], act: &[BlockQ8K]) -> f32 {
    match ty {
        WeightType::Q2_K => kquants::vec_dot_q2_k_q8_k(row, act),
        WeightType::Q3_K => kquants::vec_dot_q3_k_q8_k(row, act),
        WeightType::Q4_K => kquants::vec_dot_q4_k_q8_k(row, act),
        WeightType::Q5_K => kquants::vec_dot_q5_k_q8_k(row, act),
        WeightType::Q6_K => kquants::vec_dot_q6_k_q8_k(row, act),
        other => panic!("{other:?} is not a K-quant type"),
    }
}

#[test]
fn dot_products_match_decoded_values() {
    let file = open_tensors();
    let acts = activations();
    let avx2 = kquants::kquant_path() != kquants::KQuantPath::Scalar;
    if !avx2 {
        testdata::skip(
            "dot_products_match_decoded_values (AVX2 part)",
            "no AVX2 + FMA on this CPU",
        );
    }
    let mut n_dots = 0;
    for t in &file.tensors {
        let ty = weight_type(t);
        let n_cols = *t.shape.last().unwrap();
        for (r, row) in t.bytes().chunks_exact(ty.row_bytes(n_cols)).enumerate() {
            for (a, act) in acts.iter().enumerate() {
                let q8 = kquants::quantize_q8_k(&act[..n_cols]);
                let what = format!("{} row {r} · act {a}", t.name);
                let (want, mag) = reference_dot(ty, row, &q8);
                let scalar = scalar_dot(ty, row, &q8);
                assert!(
                    (scalar as f64 - want).abs() <= DOT_REL_TOL * mag,
                    "{what}: scalar {scalar} vs {want} (scale {mag})"
                );
                let fast = kernels::kquant_matvec_row(ty, row, &q8);
                assert!(
                    (fast as f64 - want).abs() <= DOT_REL_TOL * mag,
                    "{what}: dispatched {fast} vs {want} (scale {mag})"
                );
                if let Some(simd) = kquants::vec_dot_avx2(ty, row, &q8) {
                    assert!(
                        (simd as f64 - scalar as f64).abs() <= AVX2_REL_TOL * mag,
                        "{what}: AVX2 {simd} vs scalar {scalar} (scale {mag})"
                    );
                }
                n_dots += 1;
            }
        }
    }
    assert!(n_dots > 200, "{n_dots} dot products checked");
}

#[test]
fn q4_k_m_model_matches_reference() {
    let dir = dir().join("model");
    let expected = testdata::read_json(&dir.join("expected.json"));
    let ids = testdata::ids(&expected);
    let path = dir.join("kquant-q4_k_m.gguf");
    let (model, _, _) =
        engine::load_model(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Three references: float32 activations (a matmul that decodes the weights: held to the
    // usual tolerance) and activations rounded to Q8_K (a matmul through the K-quant dot
    // products, as ggml's CPU path and herd's decode) or to Q8_0 blocks (herd's prefill tiles
    // at the AVX-512 levels). Rounding to levels is discontinuous, so two correct
    // implementations of either differ wherever an activation lies within float noise of a
    // level boundary; the fixture records how far that moves the logits, and an engine on that
    // path is held to twice it. Either way a wiring mistake (wrong rows, blocks, scales or
    // mins) moves the logits by far more.
    let (shape, f32_act) = npy(&dir.join("expected_logits.npy"));
    let (_, q8k_act) = npy(&dir.join("act_q8_k_logits.npy"));
    let (_, q80_act) = npy(&dir.join("act_q8_0_logits.npy"));
    assert_eq!(shape, vec![ids.len(), model.config.vocab_size]);
    let scale = f32_act.iter().fold(0f32, |m, v| m.max(v.abs()));
    let tol = LOGIT_REL_TOL * scale;
    let flip = expected["act_q8_k_flip_sensitivity"].as_f64().unwrap() as f32;
    let tol_q8k = tol.max(FLIP_FACTOR * flip);
    let flip0 = expected["act_q8_0_flip_sensitivity"].as_f64().unwrap() as f32;
    let tol_q80 = tol.max(FLIP_FACTOR * flip0);
    for (what, t) in [("Q8_K", tol_q8k), ("Q8_0", tol_q80)] {
        assert!(
            t < 0.1 * scale,
            "{what} tolerance {t} vs max |logit| {scale}"
        );
    }

    // f32 keys and values: the references were computed without KV rounding.
    let session = || Session::with_kv_type(&model, engine::KvType::F32).unwrap();
    let all = session().feed_all(&ids).unwrap();
    let mut session = session();
    let one_by_one: Vec<f32> = ids
        .iter()
        .flat_map(|&id| session.feed(&[id]).unwrap())
        .collect();
    for (name, got) in [("batch", &all), ("incremental", &one_by_one)] {
        let (e_f32, e_q8k) = (
            testdata::max_abs_diff(got, &f32_act),
            testdata::max_abs_diff(got, &q8k_act),
        );
        let e_q80 = testdata::max_abs_diff(got, &q80_act);
        eprintln!(
            "{name}: max abs error {e_f32} (f32 activations), {e_q8k} (Q8_K activations), \
             {e_q80} (Q8_0 activations)"
        );
        assert!(
            e_f32 <= tol || e_q8k <= tol_q8k || e_q80 <= tol_q80,
            "{name}: max abs error {e_f32} vs the f32-activation reference (allowed {tol}), \
             {e_q8k} vs the Q8_K-activation one (allowed {tol_q8k}), {e_q80} vs the \
             Q8_0-activation one (allowed {tol_q80})"
        );
    }
}
