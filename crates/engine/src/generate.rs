use std::time::Instant;

use model::{Batch, Llama};

use crate::{EngineError, KvCache, KvSpec, KvType, Result, Sampler};

/// Tokens run through the model in one forward call at most (bounds activation memory; the
/// prefill tile paths decode or pack each weight matrix once per call, so fewer, larger calls
/// spend less on that: 512 as llama.cpp's default micro-batch).
const MAX_BATCH: usize = 512;

/// One sequence being run on a model: the tokens it holds and their KV storage. Feeding more
/// tokens extends it; rewinding drops a suffix and keeps the cached prefix.
pub struct Session<'m> {
    model: &'m Llama,
    kv: KvCache,
    tokens: Vec<u32>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced one of the stop tokens.
    Eos,
    /// The requested number of tokens was generated.
    MaxTokens,
    /// The context is full.
    ContextFull,
    /// The caller's callback asked to stop.
    Cancelled,
}

/// Counts and timings of one generation.
#[derive(Debug, Clone)]
pub struct GenerateStats {
    pub n_prompt: usize,
    pub n_generated: usize,
    pub prompt_secs: f64,
    /// Time of the generation, [`GenerateStats::repack_secs`] left out.
    pub gen_secs: f64,
    /// Time spent making the weights' repacked copies before the first decode step (0 when they
    /// were made already), apart so that `gen_secs` is the decode rate's.
    pub repack_secs: f64,
    pub stop: StopReason,
}

/// The only sequence id a session uses in its own KV storage.
const SEQ: usize = 0;

impl<'m> Session<'m> {
    /// A session with the default KV cache type ([`KvType::F16`]).
    pub fn new(model: &'m Llama) -> Self {
        Self::with_kv_type(model, KvType::default()).expect("f16 stores any head size")
    }

    /// A session whose KV cache stores keys and values as `kv_type`.
    pub fn with_kv_type(model: &'m Llama, kv_type: KvType) -> Result<Self> {
        let spec = KvSpec::new(&model.config, kv_type)?;
        Ok(Session {
            model,
            kv: KvCache::for_context(spec, model.config.max_seq_len),
            tokens: Vec::new(),
        })
    }

    /// The KV storage (for its figures: blocks used, bytes taken).
    pub fn kv(&self) -> &KvCache {
        &self.kv
    }

    /// The tokens fed so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Context length: the most tokens a session can hold.
    pub fn n_ctx(&self) -> usize {
        self.model.config.max_seq_len
    }

    /// Keeps the first `n` tokens (and their cached keys and values), dropping the rest.
    pub fn rewind(&mut self, n: usize) {
        self.tokens.truncate(n);
        self.kv.truncate(SEQ, n);
    }

    fn check_room(&self, n_new: usize) -> Result<()> {
        let n_ctx = self.n_ctx();
        if self.tokens.len() + n_new > n_ctx {
            return Err(EngineError::PromptTooLong {
                n_prompt: self.tokens.len() + n_new,
                n_ctx,
            });
        }
        Ok(())
    }

    fn run(&mut self, ids: &[u32], all_logits: bool) -> Result<Vec<f32>> {
        if ids.is_empty() {
            return Err(EngineError::Invalid("no tokens to feed".into()));
        }
        self.check_room(ids.len())?;
        let mut out = Vec::new();
        for chunk in ids.chunks(MAX_BATCH) {
            let start = self.tokens.len();
            let positions: Vec<usize> = (start..start + chunk.len()).collect();
            let seq_ids = vec![SEQ; chunk.len()];
            let logits_for: Vec<usize> = if all_logits {
                (0..chunk.len()).collect()
            } else {
                vec![chunk.len() - 1]
            };
            let batch = Batch {
                tokens: chunk,
                positions: &positions,
                seq_ids: &seq_ids,
                logits_for: &logits_for,
            };
            self.kv.reserve(SEQ, start + chunk.len())?;
            let logits = self.model.forward(&batch, &mut self.kv)?;
            self.tokens.extend_from_slice(chunk);
            if all_logits {
                out.extend_from_slice(&logits);
            } else {
                out = logits;
            }
        }
        Ok(out)
    }

    /// Feeds `ids` after the current tokens; returns the logits after the last one.
    pub fn feed(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        self.run(ids, false)
    }

    /// Feeds `ids`; returns the logits after each of them (`[ids.len(), vocab_size]`).
    pub fn feed_all(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        self.run(ids, true)
    }

    /// Feeds `prompt`, then samples up to `max_tokens` tokens, calling `on_token` with each
    /// (it returns false to stop). Every generated token but the last is fed back and ends up
    /// in [`Session::tokens`]. Stops early at any of `stop_ids` (not passed on) or when the
    /// context is full.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_tokens: usize,
        sampler: &mut Sampler,
        stop_ids: &[u32],
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<GenerateStats> {
        let t0 = Instant::now();
        let mut logits = self.feed(prompt)?;
        let prompt_secs = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut repack_secs = 0.0;
        let mut n_generated = 0;
        let stop = loop {
            if n_generated == max_tokens {
                break StopReason::MaxTokens;
            }
            let next = sampler.sample(&mut logits, &self.tokens);
            if stop_ids.contains(&next) {
                break StopReason::Eos;
            }
            n_generated += 1;
            if !on_token(next) {
                break StopReason::Cancelled;
            }
            if n_generated == max_tokens {
                // The last token is not fed: no forward pass is paid for logits nobody reads.
                break StopReason::MaxTokens;
            }
            if self.tokens.len() >= self.n_ctx() {
                break StopReason::ContextFull;
            }
            if n_generated == 1 {
                // The repacked copies the first decode step would make (once per model), made
                // here and timed apart: after the first token is out, as that step would.
                let t = Instant::now();
                self.model.repack_for_kernels();
                repack_secs = t.elapsed().as_secs_f64();
            }
            logits = self.feed(&[next])?;
        };
        Ok(GenerateStats {
            n_prompt: prompt.len(),
            n_generated,
            prompt_secs,
            gen_secs: (t1.elapsed().as_secs_f64() - repack_secs).max(0.0),
            repack_secs,
            stop,
        })
    }
}
