//! Q4_0, Q8_0 and K-quant weights repacked (`Llama::repack_for_kernels`, or on first use by decode)
//! against the same model as stored: prefill gives the same bits (its tiles see the stored
//! blocks), decode the same logits within the kernels' rounding and the same greedy token.
//! (Batch invariance of a repacked model: `serve.rs`.) stories15m's width (288 = 9 blocks)
//! pads every repacked Q4_0 / Q8_0 row; the Q4_K_M fixture has Q4_K and Q6_K matrices of 128 to 512
//! rows (whole groups of 16).

use engine::Session;
use kernels::WeightType;

fn prompt(vocab: usize, n: u32) -> Vec<u32> {
    (0..n)
        .map(|i| (i * 7919 + 13 + i * i * 31) % vocab as u32)
        .collect()
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap()
}

#[test]
fn repacked_q4_0_model_matches_the_stored_one() {
    let stored = model::synthetic("stories15m", WeightType::Q4_0, 11).unwrap();
    let x16 = |m: &model::Llama| {
        m.layers
            .iter()
            .all(|l| l.w_down.current_view().ty == WeightType::Q4_0x16)
    };
    assert_eq!(stored.tok_embeddings.ty, WeightType::Q4_0);
    check(stored, x16, 0.0);
}

#[test]
fn repacked_q8_0_model_matches_the_stored_one() {
    let stored = model::synthetic("stories15m", WeightType::Q8_0, 12).unwrap();
    let x16 = |m: &model::Llama| {
        m.output.current_view().ty == WeightType::Q8_0x16
            && m.layers.iter().all(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                    .into_iter()
                    .all(|w| w.current_view().ty == WeightType::Q8_0x16)
            })
    };
    assert_eq!(stored.tok_embeddings.ty, WeightType::Q8_0);
    check(stored, x16, 0.0);
}

#[test]
fn repacked_q4_k_model_matches_the_stored_one() {
    let path = testdata::fixtures().join("kquant/model/kquant-q4_k_m.gguf");
    let (stored, _, _) = engine::load_model(&path).unwrap();
    let x16 = |m: &model::Llama| {
        let repacked = |w: &model::Weight| {
            let want = match w.ty {
                WeightType::Q4_K => WeightType::Q4_Kx16,
                WeightType::Q5_K => WeightType::Q5_Kx16,
                _ => WeightType::Q6_Kx16,
            };
            w.current_view().ty == want
        };
        repacked(&m.output)
            && m.layers.iter().all(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                    .into_iter()
                    .all(repacked)
            })
    };
    assert!(stored.layers[0].wv.ty == WeightType::Q6_K && stored.output.ty == WeightType::Q6_K);
    // This random model's logits move by up to this much when an activation crosses a Q8_K
    // rounding edge (recorded with the fixture, as `kquant.rs` uses it).
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(path.with_file_name("expected.json")).unwrap(),
    )
    .unwrap();
    let flip = expected["act_q8_k_flip_sensitivity"].as_f64().unwrap() as f32;
    check(stored, x16, 2.0 * flip);
}

/// The Q4_K_M fixture quantized again by `herd quantize` into llama.cpp's Q3_K_M and Q2_K
/// mixes (Q2_K, Q3_K, Q4_K, Q5_K and Q6_K matrices): each repacked type against the stored one.
#[test]
fn repacked_q3_k_and_q2_k_models_match_the_stored_ones() {
    let path = testdata::fixtures().join("kquant/model/kquant-q4_k_m.gguf");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(path.with_file_name("expected.json")).unwrap(),
    )
    .unwrap();
    let flip = expected["act_q8_k_flip_sensitivity"].as_f64().unwrap() as f32;
    let dir = std::env::temp_dir().join(format!("herd-repack-low-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, q, low) in [
        ("q3_k_m", engine::QuantType::Q3KM, WeightType::Q3_K),
        ("q2_k", engine::QuantType::Q2KMix, WeightType::Q2_K),
    ] {
        let out = dir.join(format!("{name}.gguf"));
        engine::quantize(&path, &out, q, None, &mut |_| {}).unwrap();
        let loaded = engine::load_model(&out);
        std::fs::remove_file(&out).unwrap();
        let (stored, _, _) = loaded.unwrap();
        assert_eq!(stored.layers[0].w_gate.ty, low, "{name}");
        let x16 = |m: &model::Llama| {
            let repacked = |w: &model::Weight| {
                let ty = w.current_view().ty;
                ty.is_grouped() && ty.stored() == w.ty
            };
            repacked(&m.output)
                && m.layers.iter().all(|l| {
                    [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                        .into_iter()
                        .all(repacked)
                })
        };
        check(stored, x16, 2.0 * flip);
    }
    std::fs::remove_dir(&dir).unwrap();
}

/// Three copies of `stored` (kept stored, repacked at load, repacked by the first decode step)
/// fed the same tokens; `x16` tells whether a model's matrices are repacked, `flips` what
/// rounding flips of the activations can move a logit by (beside the general bound).
fn check(stored: model::Llama, x16: impl Fn(&model::Llama) -> bool, flips: f32) {
    let (repacked, lazy) = (stored.clone(), stored.clone());
    stored.keep_stored_layouts();
    let bytes = repacked.repack_for_kernels();
    if bytes == 0 {
        eprintln!("skip: this CPU's kernels keep the stored layouts (no AVX2, or a type repacked only at AVX-512)");
        return;
    }
    assert!(x16(&repacked) && !x16(&stored) && !x16(&lazy));
    assert_eq!(
        repacked.tok_embeddings.current_view().ty,
        repacked.tok_embeddings.ty
    );
    let vocab = stored.config.vocab_size;
    let ids = prompt(vocab, 21);

    let mut s = [&stored, &repacked, &lazy].map(Session::new);
    let p: Vec<Vec<f32>> = s.iter_mut().map(|s| s.feed_all(&ids).unwrap()).collect();
    assert!(
        p[0] == p[1] && p[1] == p[2],
        "prefill logits differ after repacking"
    );
    assert!(!x16(&lazy), "a prompt made the copies");

    // Decode steps (one token each: the row kernels).
    for step in 0..4u32 {
        let next = [(step * 977 + 5) % vocab as u32];
        let d: Vec<Vec<f32>> = s.iter_mut().map(|s| s.feed(&next).unwrap()).collect();
        assert!(x16(&lazy), "the first decode step makes the copies");
        assert!(
            d[1] == d[2],
            "step {step}: made at load or on first use, the same logits"
        );
        let (da, db) = (&d[0], &d[1]);
        let scale = da.iter().fold(0f32, |m, x| m.max(x.abs()));
        let worst = da
            .iter()
            .zip(db)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        // Both sum the same exact block products in f32, in another order; the few-ulp
        // difference can move an activation across a rounding edge of its next 8-bit
        // quantization (a step of 1/127 of its block's largest value), and such steps carry
        // through the layers: a small fraction of the largest logit, never more.
        assert!(
            worst <= (2e-2 * scale).max(flips),
            "step {step}: logits differ by {worst} (scale {scale})"
        );
        assert!(
            worst > 0.0 || step > 0,
            "step {step}: no difference at all is suspicious"
        );
        let (ta, tb) = (argmax(da), argmax(db));
        assert!(
            ta == tb || (db[ta] - db[tb]).abs() <= 2.0 * worst,
            "step {step}: greedy token {ta} vs {tb}, beyond the difference of the logits"
        );
    }
}
