//! Throughput tests with llama-bench's method.
//!
//! - `pp N`: a prompt of N random ids fed at once (the session runs it in chunks), timed to the
//!   end. Warm-up: one whole run.
//! - `tg N`: N single-token decodes of random ids after an empty context, each token fed
//!   alone. Warm-up: one decode, as llama-bench does.
//! - `@ dD` (llama-bench's `-d`): either test after a context of D random ids fed as a prompt
//!   first, outside the timing (`pp512 @ d2048`, `tg128 @ d2048`): the speed at that depth of
//!   the KV cache.
//!
//! Every repetition starts from a fresh [`Session`] (empty KV storage). Results keep the time
//! of each repetition; rates are the mean and sample standard deviation of tokens/s over them.
//! Threads are the caller's: the kernels run on rayon's current pool.

use std::time::Instant;

use kernels::WeightType;
use model::Llama;

use crate::{EngineError, KvType, Result, Session};

/// Which test a result is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchTest {
    /// Prompt processing of `n` tokens.
    Prompt(usize),
    /// Generation of `n` tokens, one at a time.
    Gen(usize),
}

impl BenchTest {
    /// llama-bench's name: `pp512`, `tg128`.
    pub fn name(self) -> String {
        match self {
            BenchTest::Prompt(n) => format!("pp{n}"),
            BenchTest::Gen(n) => format!("tg{n}"),
        }
    }
    /// Tokens one repetition processes.
    pub fn n_tokens(self) -> usize {
        match self {
            BenchTest::Prompt(n) | BenchTest::Gen(n) => n,
        }
    }
}

/// Timings of one test's repetitions (warm-up excluded).
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub test: BenchTest,
    /// Tokens in the context before the timed part of each repetition.
    pub depth: usize,
    /// Wall time of each repetition, nanoseconds.
    pub samples_ns: Vec<u64>,
}

impl BenchResult {
    /// llama-bench's name of the test at its depth: `tg128`, `tg128 @ d2048`.
    pub fn name(&self) -> String {
        match self.depth {
            0 => self.test.name(),
            d => format!("{} @ d{d}", self.test.name()),
        }
    }
    /// Tokens/s of each repetition.
    pub fn samples_ts(&self) -> Vec<f64> {
        let n = self.test.n_tokens() as f64;
        self.samples_ns
            .iter()
            .map(|&ns| n * 1e9 / ns.max(1) as f64)
            .collect()
    }
    pub fn avg_ts(&self) -> f64 {
        mean(&self.samples_ts())
    }
    pub fn stddev_ts(&self) -> f64 {
        stddev(&self.samples_ts())
    }
    pub fn avg_ns(&self) -> f64 {
        mean(&self.ns_f64())
    }
    pub fn stddev_ns(&self) -> f64 {
        stddev(&self.ns_f64())
    }
    fn ns_f64(&self) -> Vec<f64> {
        self.samples_ns.iter().map(|&v| v as f64).collect()
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample standard deviation (n − 1), 0 for fewer than two values.
fn stddev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// Random token ids below the vocabulary size (SplitMix64).
struct Ids {
    state: u64,
    vocab: u64,
}

impl Ids {
    fn new(seed: u64, vocab: usize) -> Self {
        Ids {
            state: seed,
            vocab: vocab as u64,
        }
    }
    fn next(&mut self) -> u32 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % self.vocab) as u32
    }
    fn take(&mut self, n: usize) -> Vec<u32> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn check(model: &Llama, test: BenchTest, depth: usize, reps: usize) -> Result<()> {
    let n = test.n_tokens();
    if n == 0 || reps == 0 {
        return Err(EngineError::Invalid(format!(
            "{}: a test needs at least one token and one repetition ({reps} repetitions)",
            test.name()
        )));
    }
    let n_ctx = model.config.max_seq_len;
    if n + depth > n_ctx {
        return Err(EngineError::Invalid(format!(
            "{} at depth {depth} needs {} positions, the model's context holds {n_ctx}",
            test.name(),
            n + depth
        )));
    }
    Ok(())
}

/// A fresh session holding a context of `depth` ids (fed as one prompt).
fn session_at<'m>(model: &'m Llama, kv_type: KvType, depth: &[u32]) -> Result<Session<'m>> {
    let mut s = Session::with_kv_type(model, kv_type)?;
    if !depth.is_empty() {
        s.feed(depth)?;
    }
    Ok(s)
}

/// One prompt of `ids`, fed into a fresh session after `depth`; nanoseconds.
fn prompt_once(model: &Llama, kv_type: KvType, depth: &[u32], ids: &[u32]) -> Result<u64> {
    let mut s = session_at(model, kv_type, depth)?;
    let t0 = Instant::now();
    s.feed(ids)?;
    Ok(t0.elapsed().as_nanos() as u64)
}

/// `ids.len()` single-token decodes into a fresh session after `depth`; nanoseconds.
fn gen_once(model: &Llama, kv_type: KvType, depth: &[u32], ids: &[u32]) -> Result<u64> {
    let mut s = session_at(model, kv_type, depth)?;
    let t0 = Instant::now();
    for &id in ids {
        s.feed(&[id])?;
    }
    Ok(t0.elapsed().as_nanos() as u64)
}

/// `pp n` (at `depth`): one warm-up, then `reps` timed prompts of `n` random ids (seeded by
/// `seed`), each after a context of `depth` random ids.
pub fn run_pp(
    model: &Llama,
    kv_type: KvType,
    n: usize,
    depth: usize,
    reps: usize,
    seed: u64,
) -> Result<BenchResult> {
    let test = BenchTest::Prompt(n);
    check(model, test, depth, reps)?;
    let mut ids = Ids::new(seed, model.config.vocab_size);
    let context = ids.take(depth);
    prompt_once(model, kv_type, &context, &ids.take(n))?;
    let samples_ns = (0..reps)
        .map(|_| prompt_once(model, kv_type, &context, &ids.take(n)))
        .collect::<Result<_>>()?;
    Ok(BenchResult {
        test,
        depth,
        samples_ns,
    })
}

/// `tg n` (at `depth`): one warm-up decode, then `reps` timed runs of `n` single-token decodes
/// of random ids (seeded by `seed`), each from a context of `depth` random ids (empty at
/// depth 0). `between` runs before each timed run and after the last, outside the timing
/// (`herd bench` measures the memory bandwidth there, so that each decode test is set against
/// what the machine gave while it ran).
pub fn run_tg(
    model: &Llama,
    kv_type: KvType,
    n: usize,
    depth: usize,
    reps: usize,
    seed: u64,
    between: &mut dyn FnMut(),
) -> Result<BenchResult> {
    let test = BenchTest::Gen(n);
    check(model, test, depth, reps)?;
    let mut ids = Ids::new(seed ^ 0x7467, model.config.vocab_size);
    let context = ids.take(depth);
    gen_once(model, kv_type, &context, &ids.take(1))?;
    let mut samples_ns = Vec::with_capacity(reps);
    for _ in 0..reps {
        between();
        samples_ns.push(gen_once(model, kv_type, &context, &ids.take(n))?);
    }
    between();
    Ok(BenchResult {
        test,
        depth,
        samples_ns,
    })
}

/// Raises the model's context length to `n_tokens` when it is shorter (as llama-bench sizes
/// its context to the test, whatever the model was trained for); true when it did. RoPE and
/// the KV storage work at any position.
pub fn extend_context(model: &mut Llama, n_tokens: usize) -> bool {
    if model.config.max_seq_len >= n_tokens {
        return false;
    }
    model.config.max_seq_len = n_tokens;
    true
}

/// Sizes of a model's weights, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightBytes {
    /// All weights once (a tied output matrix counted once), norms as `f32`.
    pub total: u64,
    /// What one decoded token reads: every weight but the embedding table, plus one row of
    /// it; the output matrix in full even when it is the tied embedding.
    pub per_token: u64,
}

/// The bytes of `model`'s weights: [`WeightBytes`].
/// Bytes of the weights, as the kernels read them now (repacked copies where they were made).
pub fn weight_bytes(model: &Llama) -> WeightBytes {
    let c = &model.config;
    let norms = |n: usize| (n * 4) as u64;
    let layers: u64 = model
        .layers
        .iter()
        .map(|l| {
            [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_down, &l.w_up]
                .iter()
                .map(|w| w.current_view().bytes.len() as u64)
                .sum::<u64>()
                + norms(l.attn_norm.len() + l.ffn_norm.len())
        })
        .sum();
    let emb = model.tok_embeddings.view().bytes.len() as u64;
    let emb_row = model.tok_embeddings.ty.row_bytes(c.dim) as u64;
    let out = model.output.current_view().bytes.len() as u64;
    let rest = layers + norms(model.output_norm.len());
    WeightBytes {
        total: emb + rest + if c.tied_embeddings { 0 } else { out },
        per_token: emb_row + rest + out,
    }
}

/// The type most of the layers' matrices are stored in (llama-bench names a model by it).
pub fn main_weight_type(model: &Llama) -> WeightType {
    let mut counts: Vec<(WeightType, usize)> = Vec::new();
    for l in &model.layers {
        for w in [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_down, &l.w_up] {
            match counts.iter_mut().find(|(t, _)| *t == w.ty) {
                Some((_, k)) => *k += 1,
                None => counts.push((w.ty, 1)),
            }
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(_, k)| k)
        .map_or(model.tok_embeddings.ty, |(t, _)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Llama {
        model::synthetic("stories15m", WeightType::Q8_0, 3).unwrap()
    }

    #[test]
    fn stats_follow_llama_bench() {
        let r = BenchResult {
            test: BenchTest::Gen(10),
            depth: 0,
            samples_ns: vec![1_000_000_000, 2_000_000_000, 500_000_000],
        };
        assert_eq!(r.samples_ts(), vec![10.0, 5.0, 20.0]);
        assert!((r.avg_ts() - 35.0 / 3.0).abs() < 1e-9);
        // Sample variance of (10, 5, 20): ((5/3)^2 + (20/3)^2 + (25/3)^2) / 2.
        let want = ((25.0 + 400.0 + 625.0) / 9.0 / 2.0f64).sqrt();
        assert!((r.stddev_ts() - want).abs() < 1e-9);
        assert_eq!(r.name(), "tg10");
        let deep = BenchResult { depth: 512, ..r };
        assert_eq!(deep.name(), "tg10 @ d512");
    }

    #[test]
    fn runs_each_repetition() {
        let m = tiny();
        let pp = run_pp(&m, KvType::F16, 8, 0, 2, 1).unwrap();
        assert_eq!((pp.samples_ns.len(), pp.name()), (2, "pp8".to_string()));
        let mut calls = 0;
        let tg = run_tg(&m, KvType::F16, 3, 0, 3, 1, &mut || calls += 1).unwrap();
        assert_eq!(tg.samples_ns.len(), 3);
        // Before each timed run and after the last.
        assert_eq!(calls, 4);
        assert!(tg.avg_ts() > 0.0);
        assert!(run_pp(&m, KvType::F16, 0, 0, 2, 1).is_err());
        assert!(run_tg(&m, KvType::F16, 300, 0, 1, 1, &mut || ()).is_err());
        // At a depth: the context counts against the model's 256 positions.
        let deep = run_tg(&m, KvType::F16, 4, 200, 1, 1, &mut || ()).unwrap();
        assert_eq!(deep.name(), "tg4 @ d200");
        let deep = run_pp(&m, KvType::F16, 16, 200, 1, 1).unwrap();
        assert_eq!(deep.name(), "pp16 @ d200");
        assert!(run_tg(&m, KvType::F16, 60, 200, 1, 1, &mut || ()).is_err());
        assert!(run_pp(&m, KvType::F16, 60, 200, 1, 1).is_err());
    }

    #[test]
    fn context_extends_only_upward() {
        let mut m = tiny();
        assert!(!extend_context(&mut m, 100));
        assert!(extend_context(&mut m, 640));
        assert_eq!(m.config.max_seq_len, 640);
    }

    #[test]
    fn bytes_per_token_counts_the_tied_output() {
        let m = tiny();
        let b = weight_bytes(&m);
        let row = WeightType::Q8_0.row_bytes(288) as u64;
        let table = 32000 * row;
        assert_eq!(b.per_token, b.total - table + row + table);
        assert_eq!(main_weight_type(&m), WeightType::Q8_0);
    }
}
