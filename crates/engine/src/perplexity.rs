use model::Llama;

use crate::{EngineError, KvType, Result, Session};

/// Mean negative log-likelihood of a text and its exponential.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerplexityResult {
    pub perplexity: f64,
    pub mean_nll: f64,
    /// Number of scored tokens.
    pub n_tokens: usize,
    pub n_chunks: usize,
}

/// Scores `ids` (the whole text, encoded without BOS): cut into non-overlapping windows of
/// `n_ctx - 1` ids (only whole windows, unless the text is shorter than one), each run as
/// `[bos] + window` from an empty cache with every position after BOS predicted.
pub fn perplexity(
    model: &Llama,
    ids: &[u32],
    bos: u32,
    n_ctx: usize,
    max_chunks: Option<usize>,
    kv_type: KvType,
) -> Result<PerplexityResult> {
    if n_ctx < 2 {
        return Err(EngineError::Invalid(format!(
            "context {n_ctx} is too small to score anything"
        )));
    }
    if n_ctx > model.config.max_seq_len {
        return Err(EngineError::Invalid(format!(
            "context {n_ctx} exceeds the model's context length {}",
            model.config.max_seq_len
        )));
    }
    if ids.is_empty() {
        return Err(EngineError::Invalid("the text encodes to no tokens".into()));
    }
    let window = n_ctx - 1;
    let mut windows: Vec<&[u32]> = ids.chunks_exact(window).collect();
    if windows.is_empty() {
        windows.push(ids);
    }
    if let Some(m) = max_chunks {
        windows.truncate(m);
    }
    let vocab = model.config.vocab_size;
    let mut total_nll = 0f64;
    let mut n_tokens = 0;
    for w in &windows {
        let mut input = Vec::with_capacity(w.len() + 1);
        input.push(bos);
        input.extend_from_slice(w);
        let mut session = Session::with_kv_type(model, kv_type)?;
        // Logits after every token but the last predict the next one.
        let logits = session.feed_all(&input[..input.len() - 1])?;
        for (row, &target) in logits.chunks_exact(vocab).zip(&input[1..]) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&l| (l as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            total_nll += lse - row[target as usize] as f64;
            n_tokens += 1;
        }
    }
    let mean_nll = total_nll / n_tokens as f64;
    Ok(PerplexityResult {
        perplexity: mean_nll.exp(),
        mean_nll,
        n_tokens,
        n_chunks: windows.len(),
    })
}
