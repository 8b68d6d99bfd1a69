//! Parity with the reference implementation: random-weight tiny Llama models written by
//! tools/fixtures/make_fixtures.py (transformers), in every layout herd loads, against the
//! logits transformers computed for the same ids.

use std::path::Path;

use engine::{KvType, Session};

/// Largest |herd − transformers| allowed on a logit, relative to the largest |logit|: float32
/// on both sides, only summation order and transcendental functions differ.
const REL_TOL: f32 = 1e-4;

/// The same bound with keys and values stored in f16 (herd's default): each cached value is
/// rounded by up to 2^-11 of itself, and that error passes through every later layer.
const F16_KV_REL_TOL: f32 = 4e-3;

/// f16 keys and values meeting activations quantized to Q8_0 blocks: quantization is a step
/// function, so a rounded key can move an activation across a step, 1/127 of its block's largest
/// magnitude, and that error passes on.
const F16_KV_QUANT_ACT_REL_TOL: f32 = 3e-2;

/// With keys and values in Q8_0: each value is rounded by up to half a step of its block's
/// scale, 1/254 of the block's largest magnitude.
const Q8_0_KV_REL_TOL: f32 = 3e-2;

/// Quantized weights by several tokens at the AMX level: on BF16 tiles, the activations not
/// rounded to Q8_0 blocks but to `bf16` (8 significant bits), the weights too; each product
/// within about 2⁻⁸ of itself, and that error passes through every later layer (as the f16 KV
/// cache's 2⁻¹¹ does, within [`F16_KV_REL_TOL`]).
const BF16_TILES_REL_TOL: f32 = 3e-2;

fn check(dir: &Path, model_path: &Path, logits_file: &str) {
    check_with(dir, model_path, logits_file, F16_KV_REL_TOL, None)
}

/// `bf16_batch`: for models whose batches take the AMX level's BF16 tiles there, the reference
/// with `f32` activations that such a batch is compared with (within [`BF16_TILES_REL_TOL`]).
fn check_with(
    dir: &Path,
    model_path: &Path,
    logits_file: &str,
    f16_kv_tol: f32,
    bf16_batch: Option<&str>,
) {
    let expected = testdata::read_json(&dir.join("expected.json"));
    let ids = testdata::ids(&expected);
    let (shape, want) = formats::npy::read_f32(&dir.join(logits_file)).unwrap();
    let (model, _, _) =
        engine::load_model(model_path).unwrap_or_else(|e| panic!("{}: {e}", model_path.display()));
    assert_eq!(
        shape,
        vec![ids.len(), model.config.vocab_size],
        "{}",
        model_path.display()
    );
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let batch_ref = match bf16_batch {
        Some(file) if kernels::isa() == kernels::Isa::Amx => {
            Some(formats::npy::read_f32(&dir.join(file)).unwrap().1)
        }
        _ => None,
    };
    for (kv_type, tol) in [
        (KvType::F32, REL_TOL),
        (KvType::F16, f16_kv_tol),
        (KvType::Q8_0, Q8_0_KV_REL_TOL),
    ] {
        if !kv_type.fits_head_dim(model.config.head_dim) {
            continue;
        }
        // Once as one batch, once token by token through the KV cache: both must match.
        let session = || Session::with_kv_type(&model, kv_type).unwrap();
        let all = session().feed_all(&ids).unwrap();
        let mut s = session();
        let one_by_one: Vec<f32> = ids.iter().flat_map(|&id| s.feed(&[id]).unwrap()).collect();
        for (name, got) in [("batch", &all), ("incremental", &one_by_one)] {
            let (want, tol) = match (&batch_ref, name) {
                (Some(r), "batch") => (r, tol.max(BF16_TILES_REL_TOL)),
                _ => (&want, tol),
            };
            let err = testdata::max_abs_diff(got, want);
            eprintln!(
                "{} ({name}, {kv_type} KV): max abs error {:.2e} x max|logit|",
                model_path.display(),
                err / scale
            );
            assert!(
                err <= tol * scale,
                "{} ({name}, {kv_type} KV): max abs error {err} > {tol} x {scale}",
                model_path.display()
            );
        }
    }
}

fn hf(name: &str) {
    let dir = testdata::fixtures().join("hf").join(name);
    check(&dir, &dir, "expected_logits.npy");
}

#[test]
fn hf_mha() {
    hf("mha");
}

#[test]
fn hf_gqa() {
    hf("gqa");
}

#[test]
fn hf_tied_embeddings() {
    hf("tied");
}

#[test]
fn hf_rope_scaling_llama3() {
    hf("llama3rope");
}

#[test]
fn hf_rope_scaling_linear() {
    hf("linearrope");
}

#[test]
fn hf_head_dim_not_power_of_two() {
    hf("headdim_odd");
}

#[test]
fn hf_bf16_weights() {
    hf("bf16");
}

#[test]
fn hf_sharded_checkpoint() {
    hf("sharded");
}

#[test]
fn hf_single_safetensors_file_path() {
    // Pointing at the .safetensors file instead of its directory loads the same model.
    let dir = testdata::fixtures().join("hf/gqa");
    check(&dir, &dir.join("model.safetensors"), "expected_logits.npy");
}

#[test]
fn meta_consolidated_pth() {
    let dir = testdata::fixtures().join("meta");
    check(&dir, &dir, "expected_logits.npy");
}

#[test]
fn meta_two_shards_joined() {
    let dir = testdata::fixtures().join("meta2");
    check(&dir, &dir, "expected_logits.npy");
}

#[test]
fn gguf_f32() {
    let dir = testdata::fixtures().join("gguf");
    check(
        &dir,
        &dir.join("gqa-f32.gguf"),
        "gqa-f32.expected_logits.npy",
    );
}

#[test]
fn gguf_q8_0() {
    let dir = testdata::fixtures().join("gguf");
    // Activations meet Q8_0 weights quantized to Q8_0 blocks (integer dot products, as
    // llama.cpp's CPU backend computes them); act_q8_0_logits.npy is the reference computed that
    // way (the input of every linear layer rounded to Q8_0 blocks), not with f32 activations.
    check_with(
        &dir,
        &dir.join("gqa-q8_0.gguf"),
        "gqa-q8_0.act_q8_0_logits.npy",
        F16_KV_QUANT_ACT_REL_TOL,
        Some("gqa-q8_0.expected_logits.npy"),
    );
}

/// The bulk path (`MatmulPath::Bulk`, which a prompt of 32 tokens or more takes; at the AMX
/// level BF16 weights go on `bf16` tiles in two terms per activation, `kernels` `amx_bf16`)
/// against the reference, all 12 ids in one batch (the path, not the count, picks the kernels).
/// Its products are within about 2⁻¹⁶ of the exact ones, so the `f32` KV cache's bound holds.
#[test]
fn hf_bf16_weights_by_the_bulk_path() {
    use model::{Batch, MatmulPath};
    let dir = testdata::fixtures().join("hf").join("bf16");
    let expected = testdata::read_json(&dir.join("expected.json"));
    let ids = testdata::ids(&expected);
    let (_, want) = formats::npy::read_f32(&dir.join("expected_logits.npy")).unwrap();
    let (model, _, _) = engine::load_model(&dir).unwrap();
    let spec = engine::KvSpec::new(&model.config, KvType::F32).unwrap();
    let mut kv = engine::KvCache::for_context(spec, model.config.max_seq_len);
    kv.reserve(0, ids.len()).unwrap();
    let n = ids.len();
    let (positions, seq_ids, logits_for): (Vec<usize>, Vec<usize>, Vec<usize>) =
        ((0..n).collect(), vec![0; n], (0..n).collect());
    let batch = Batch {
        tokens: &ids,
        positions: &positions,
        seq_ids: &seq_ids,
        logits_for: &logits_for,
    };
    let got = model
        .forward_path(&batch, &mut kv, Some(MatmulPath::Bulk))
        .unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = testdata::max_abs_diff(&got, &want);
    eprintln!(
        "bf16 weights, bulk path: max abs error {:.2e} x max|logit|",
        err / scale
    );
    assert_eq!(got.len(), want.len());
    assert!(
        err <= REL_TOL * scale,
        "max abs error {err} > {REL_TOL} x {scale}"
    );
}
