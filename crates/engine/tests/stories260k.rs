//! Conformance on stories260K, a trained tiny Llama, in its three formats, against outputs of
//! llama2.c's run.c (greedy text and ids, seeded sampling, logits, perplexity).

use std::path::{Path, PathBuf};

use engine::{Sampler, SamplerConfig, Session};
use tokenizer::{SpmTokenizer, StreamDecoder};

/// Largest |herd − run.c| allowed on a logit: both compute in f32; only summation order
/// differs.
const LOGITS_ABS_TOL: f32 = 1e-4;
/// BOS of the tok512 vocabulary; run.c stops generating when it samples it.
const BOS: u32 = 1;

fn data(test: &str) -> Option<PathBuf> {
    testdata::shared_data(test)
}

/// The three files of stories260K: legacy .bin, export v1 .bin, GGUF.
fn model_files(d: &Path) -> [PathBuf; 3] {
    let s = d.join("stories260K");
    [
        s.join("stories260K.bin"),
        s.join("stories260K_v1_ak42.bin"),
        s.join("stories260K.gguf"),
    ]
}

fn tok512(d: &Path) -> SpmTokenizer {
    SpmTokenizer::from_llama2c_bin(d.join("stories260K/tok512.bin"), Some(512)).unwrap()
}

/// run.c's loop: feed the prompt, sample until `steps` positions or BOS; returns prompt + generated.
fn runc_generate(
    model: &model::Llama,
    prompt: &[u32],
    steps: usize,
    sampling: SamplerConfig,
) -> Vec<u32> {
    let mut session = Session::with_kv_type(model, engine::KvType::F32).unwrap();
    let mut sampler = Sampler::new(sampling);
    let mut ids = prompt.to_vec();
    let max_tokens = steps + 1 - prompt.len();
    session
        .generate(prompt, max_tokens, &mut sampler, &[BOS], |id| {
            ids.push(id);
            true
        })
        .unwrap();
    ids
}

fn greedy() -> SamplerConfig {
    SamplerConfig {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        repeat_last_n: 64,
        seed: 1,
    }
}

#[test]
fn greedy_text_matches_llama2c_in_every_format() {
    let Some(d) = data("greedy_text_matches_llama2c_in_every_format") else {
        return;
    };
    let expected = std::fs::read_to_string(d.join("expected/stories260K_greedy_n200.txt")).unwrap();
    let tok = tok512(&d);
    for path in model_files(&d) {
        let (model, _, _) = engine::load_model(&path).unwrap();
        // llama2.c's `-n 200` samples 200 tokens after BOS (the run.c ids of
        // stories260K_greedy_llama2c_runc.json: steps 256 give 256 tokens after BOS).
        let ids = runc_generate(&model, &[BOS], 200, greedy());
        let mut dec = StreamDecoder::new();
        let text: String = ids[1..]
            .iter()
            .map(|&id| dec.push(&tok, id).unwrap())
            .collect::<String>()
            + &dec.finish();
        assert_eq!(text, expected, "{}", path.display());
    }
}

#[test]
fn greedy_ids_match_runc() {
    let Some(d) = data("greedy_ids_match_runc") else {
        return;
    };
    let cases = testdata::read_json(&d.join("expected/stories260K_greedy_llama2c_runc.json"));
    let tok = tok512(&d);
    let (model, _, _) = engine::load_model(&model_files(&d)[0]).unwrap();
    for case in cases["cases"].as_array().unwrap() {
        let prompt: Vec<u32> = case["prompt_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            tok.encode(case["prompt"].as_str().unwrap(), true),
            prompt,
            "prompt {}",
            case["prompt"]
        );
        let steps = case["steps"].as_u64().unwrap() as usize;
        let got = runc_generate(&model, &prompt, steps, greedy());
        assert_eq!(got, want, "prompt {:?}", case["prompt"]);
    }
}

#[test]
fn seeded_sampling_matches_llama2c() {
    let Some(d) = data("seeded_sampling_matches_llama2c") else {
        return;
    };
    let cases = testdata::read_json(&d.join("expected/clebert_llama2zig_expected.json"));
    let tok = tok512(&d);
    let (model, _, _) = engine::load_model(&model_files(&d)[0]).unwrap();
    let mut n_checked = 0;
    for case in cases["stories260K_cases"].as_array().unwrap() {
        let args = case["llama2_zig_args"].as_str().unwrap();
        let arg = |name: &str| -> Option<String> {
            let rest = args.split(&format!("--{name} ")).nth(1)?;
            Some(if let Some(q) = rest.strip_prefix('"') {
                q.split('"').next().unwrap().to_string()
            } else {
                rest.split(' ').next().unwrap().to_string()
            })
        };
        // llama2.c's defaults: temperature 1.0, top-p 0.9; no top-k or min-p.
        let sampling = SamplerConfig {
            temperature: arg("temperature").map_or(1.0, |v| v.parse().unwrap()),
            top_k: 0,
            top_p: arg("top_p").map_or(0.9, |v| v.parse().unwrap()),
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: arg("random_seed").map_or(1, |v| v.parse().unwrap()),
        };
        let prompt = tok.encode(&arg("prompt").unwrap_or_default(), true);
        let steps: usize = arg("sequence_length").unwrap().parse().unwrap();
        let ids = runc_generate(&model, &prompt, steps, sampling);
        let text = tok.decode(&ids).unwrap();
        assert_eq!(text, case["expected_output"].as_str().unwrap(), "{args}");
        n_checked += 1;
    }
    assert_eq!(n_checked, 5);
}

#[test]
fn logits_of_first_positions_match_runc() {
    let Some(d) = data("logits_of_first_positions_match_runc") else {
        return;
    };
    let meta = testdata::read_json(&d.join("expected/stories260K_logits_first8.json"));
    let ids = testdata::ids(&meta);
    let (shape, want) =
        formats::npy::read_f32(&d.join("expected/stories260K_logits_first8.npy")).unwrap();
    assert_eq!(shape, vec![ids.len(), 512]);
    for path in model_files(&d) {
        let (model, _, _) = engine::load_model(&path).unwrap();
        let got = Session::with_kv_type(&model, engine::KvType::F32)
            .unwrap()
            .feed_all(&ids)
            .unwrap();
        let max_err = testdata::max_abs_diff(&got, &want);
        assert!(
            max_err <= LOGITS_ABS_TOL,
            "{}: max abs error {max_err}",
            path.display()
        );
    }
}

#[test]
fn perplexity_matches_runc() {
    let Some(d) = data("perplexity_matches_runc") else {
        return;
    };
    let text = std::fs::read_to_string(d.join("corpora/tinystories-valid-head.txt")).unwrap();
    // The reference encoded with tok512.model, whose normalizer collapses runs of spaces.
    let tok = SpmTokenizer::from_model_file(d.join("stories260K/tok512.model")).unwrap();
    let ids = tok.encode(&text, false);
    assert_eq!(ids.len(), 393012);
    let (model, _, _) = engine::load_model(&model_files(&d)[0]).unwrap();
    let r = engine::perplexity(&model, &ids, BOS, 512, Some(20), engine::KvType::F32).unwrap();
    assert_eq!(r.n_tokens, 10220);
    assert!(
        (r.perplexity - 4.2059).abs() <= 0.0005,
        "perplexity {}",
        r.perplexity
    );
}
