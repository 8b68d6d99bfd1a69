//! Quality guard of `quantize`: stories260K (llama2.c checkpoint + tok512.model) written as
//! GGUF in F32, Q8_0 and Q4_0, each loaded back with the tokenizer it carries and scored with
//! the perplexity method of `herd perplexity` (windows of 512, 20 chunks) on the TinyStories
//! validation head. The F32 file must score exactly as the source; Q8_0 within 1%, Q4_0
//! within `Q4_0_BOUND` of it.
//!
//! stories260K's MLP width 172 is not a multiple of 32, so its `ffn_down` rows stay F16 in
//! both quantized files; its 64-wide tied embedding is the output matrix and, by llama.cpp's
//! rule for an output whose rows are not whole 256-blocks, Q8_0 in the Q4_0 file.

use std::path::Path;

use engine::{QuantType, QuantizeEvent};

/// Largest relative perplexity increase of the Q4_0 file, as the issue asks. herd reaches
/// 4.7% (4.4025 against 4.2059): each block's scale is fitted by least squares with the error
/// of every column weighted by the mean square of the input it meets, estimated from the
/// weights alone (`engine/src/importance.rs`, `kernels::block_q4_0_fitted`). ggml's
/// reference rounding gives 6.8% (4.4912; about the same with the weights decoded back to
/// F32, 4.4895, so it is the 4-bit rounding, not the integer kernels), the unweighted fit
/// 5.6% (4.4416).
const Q4_0_BOUND: f64 = 0.05;
const Q8_0_BOUND: f64 = 0.01;

fn score(path: &Path, tokenizer: Option<&Path>, text: &str) -> (f64, Vec<u32>) {
    let loaded = engine::load(path, tokenizer).unwrap();
    let tok = loaded.tokenizer.as_ref().expect("a tokenizer");
    let ids = tok.encode(text, false);
    let bos = tok.bos().unwrap();
    let r =
        engine::perplexity(&loaded.model, &ids, bos, 512, Some(20), engine::KvType::F32).unwrap();
    assert_eq!(r.n_tokens, 20 * 511);
    (r.perplexity, ids)
}

#[test]
fn stories260k_quantized_perplexity_stays_close() {
    let Some(d) = testdata::shared_data("stories260k_quantized_perplexity_stays_close") else {
        return;
    };
    let model = d.join("stories260K/stories260K.bin");
    let tok = d.join("stories260K/tok512.model");
    let text = std::fs::read_to_string(d.join("corpora/tinystories-valid-head.txt")).unwrap();
    let dir = std::env::temp_dir().join(format!("herd-quant-quality-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let (base, base_ids) = score(&model, Some(&tok), &text);
    eprintln!("stories260K F32 source: perplexity {base:.6}");
    let mut figures = Vec::new();
    for (q, bound) in [
        (QuantType::F32, 0.0),
        (QuantType::Q8_0, Q8_0_BOUND),
        (QuantType::Q4_0, Q4_0_BOUND),
    ] {
        let out = dir.join(format!("stories260K-{}.gguf", q.name()));
        let mut notes = Vec::new();
        let report = engine::quantize(&model, &out, q, Some(&tok), &mut |e| {
            if let QuantizeEvent::Note(n) = e {
                notes.push(n)
            }
        })
        .unwrap();
        assert!(report.has_tokenizer);
        if q != QuantType::F32 {
            // The five ffn_down matrices fall back, and say so.
            assert_eq!(notes.len(), 5, "{notes:?}");
            assert!(notes
                .iter()
                .all(|n| n.contains("ffn_down") && n.contains("F16")));
        }
        // The tokenizer comes from the GGUF file itself now.
        let (ppl, ids) = score(&out, None, &text);
        assert_eq!(
            ids,
            base_ids,
            "{}: the embedded tokenizer encodes differently",
            q.name()
        );
        let rel = ppl / base - 1.0;
        eprintln!(
            "stories260K {}: perplexity {ppl:.6} ({:+.3}% against F32), {} bytes",
            q.name(),
            100.0 * rel,
            report.file_bytes
        );
        figures.push((q, ppl));
        if q == QuantType::F32 {
            assert_eq!(ppl, base, "the F32 file must score exactly as the source");
        } else {
            assert!(
                rel.abs() <= bound,
                "{}: {ppl} vs {base}: {rel:+.4}",
                q.name()
            );
            assert!(
                rel > 0.0,
                "{}: quantization cannot make it better here",
                q.name()
            );
        }
    }
    // More bits, closer.
    assert!(figures[1].1 < figures[2].1, "{figures:?}");
    std::fs::remove_dir_all(&dir).ok();
}
