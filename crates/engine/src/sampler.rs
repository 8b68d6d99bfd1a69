//! Turning logits into the next token: repetition penalty, temperature, top-k, top-p, min-p,
//! then a draw from a seeded generator. The same seed and inputs always give the same token.

/// Sampling settings of one request. `temperature <= 0` means greedy (argmax).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 disables.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability exceeds `top_p`; 1 disables.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; 0 disables.
    pub min_p: f32,
    /// Penalty on tokens seen in the last `repeat_last_n` tokens; 1 disables.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Checks ranges; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top-p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min-p must be in [0, 1], got {}", self.min_p));
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            return Err(format!(
                "repeat-penalty must be > 0, got {}",
                self.repeat_penalty
            ));
        }
        Ok(())
    }
}

/// xorshift* generator: small, fast and identical on every platform.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // The all-zero state is a fixed point of xorshift.
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }
    fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }
    /// Uniform in [0, 1) with 24 bits.
    fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / 16_777_216.0
    }
}

/// A sampler for one sequence.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
    rng: Rng,
}

/// Index of the largest value; the first one on ties.
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Self {
        let rng = Rng::new(config.seed);
        Sampler { config, rng }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Picks the next token from `logits` (modified in place), given the tokens so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.penalize(logits, history);
        self.sample_penalized(logits)
    }

    /// Applies the repetition penalty over the last `repeat_last_n` tokens of `history`: the
    /// first half of [`Sampler::sample`].
    pub fn penalize(&self, logits: &mut [f32], history: &[u32]) {
        let c = &self.config;
        if c.repeat_penalty != 1.0 {
            let start = history.len().saturating_sub(c.repeat_last_n);
            let mut seen: Vec<u32> = history[start..].to_vec();
            seen.sort_unstable();
            seen.dedup();
            for id in seen {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = if *l > 0.0 {
                        *l / c.repeat_penalty
                    } else {
                        *l * c.repeat_penalty
                    };
                }
            }
        }
    }

    /// Draws the next token from logits already penalized with [`Sampler::penalize`]
    /// (temperature, top-k, top-p, min-p; `logits` is modified in place): the second half of
    /// [`Sampler::sample`].
    pub fn sample_penalized(&mut self, logits: &mut [f32]) -> u32 {
        let c = &self.config;
        if c.temperature <= 0.0 {
            return argmax(logits) as u32;
        }
        for l in logits.iter_mut() {
            *l /= c.temperature;
        }
        kernels::softmax(logits);
        let probs = logits;
        let n = probs.len();
        let filtered = (c.top_k > 0 && c.top_k < n) || c.top_p < 1.0 || c.min_p > 0.0;
        let coin = self.rng.next_f32();
        if !filtered {
            // Walk the distribution in id order.
            let mut cdf = 0.0;
            for (i, &p) in probs.iter().enumerate() {
                cdf += p;
                if coin < cdf {
                    return i as u32;
                }
            }
            return (n - 1) as u32;
        }
        let mut cand: Vec<(u32, f32)> = probs
            .iter()
            .enumerate()
            .map(|(i, &p)| (i as u32, p))
            .collect();
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if c.top_k > 0 {
            cand.truncate(c.top_k);
        }
        if c.top_p < 1.0 {
            let mut cum = 0.0;
            let mut keep = cand.len();
            for (i, &(_, p)) in cand.iter().enumerate() {
                cum += p;
                if cum > c.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep);
        }
        if c.min_p > 0.0 {
            let floor = c.min_p * cand[0].1;
            cand.retain(|&(_, p)| p >= floor);
        }
        let total: f32 = cand.iter().map(|&(_, p)| p).sum();
        let r = coin * total;
        let mut cdf = 0.0;
        for &(id, p) in &cand {
            cdf += p;
            if r < cdf {
                return id;
            }
        }
        cand[cand.len() - 1].0
    }
}

/// OpenAI's presence and frequency penalties: subtracts `presence` from the logit of every
/// token that occurs in `generated` and `frequency` times its number of occurrences.
pub fn apply_presence_frequency(
    logits: &mut [f32],
    generated: &[u32],
    presence: f32,
    frequency: f32,
) {
    if presence == 0.0 && frequency == 0.0 {
        return;
    }
    let mut counts: Vec<u32> = generated.to_vec();
    counts.sort_unstable();
    for run in counts.chunk_by(|a, b| a == b) {
        if let Some(l) = logits.get_mut(run[0] as usize) {
            *l -= presence + frequency * run.len() as f32;
        }
    }
}

/// Natural-log probabilities of `logits` (a numerically stable log-softmax, summed in f64).
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let log_z = max as f64 + sum.ln();
    logits.iter().map(|&l| (l as f64 - log_z) as f32).collect()
}

/// The `k` largest entries of `logprobs` as (token id, value), largest first; ties go to the
/// smaller id.
pub fn top_logprobs(logprobs: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut ids: Vec<u32> = (0..logprobs.len() as u32).collect();
    let by_value = |a: &u32, b: &u32| {
        logprobs[*b as usize]
            .total_cmp(&logprobs[*a as usize])
            .then(a.cmp(b))
    };
    let k = k.min(ids.len());
    if k == 0 {
        return Vec::new();
    }
    if k < ids.len() {
        ids.select_nth_unstable_by(k - 1, by_value);
        ids.truncate(k);
    }
    ids.sort_by(by_value);
    ids.into_iter().map(|i| (i, logprobs[i as usize])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f32, top_k: usize, top_p: f32, min_p: f32, seed: u64) -> SamplerConfig {
        SamplerConfig {
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed,
        }
    }

    fn logits() -> Vec<f32> {
        (0..50).map(|i| ((i * 37 % 17) as f32) * 0.3).collect()
    }

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(cfg(0.0, 0, 1.0, 0.0, 1));
        let mut l = logits();
        let want = argmax(&l) as u32;
        assert_eq!(s.sample(&mut l, &[]), want);
    }

    #[test]
    fn same_seed_same_tokens() {
        let run = |seed| {
            let mut s = Sampler::new(cfg(1.0, 0, 0.9, 0.0, seed));
            (0..20)
                .map(|_| s.sample(&mut logits(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(cfg(1.5, 1, 1.0, 0.0, 3));
        let want = argmax(&logits()) as u32;
        for _ in 0..10 {
            assert_eq!(s.sample(&mut logits(), &[]), want);
        }
    }

    #[test]
    fn min_p_keeps_only_likely() {
        let mut l = vec![0.0f32; 10];
        l[3] = 10.0;
        l[5] = 9.5;
        let mut s = Sampler::new(cfg(1.0, 0, 1.0, 0.5, 11));
        for _ in 0..50 {
            let t = s.sample(&mut l.clone(), &[]);
            assert!(t == 3 || t == 5, "{t}");
        }
    }

    #[test]
    fn presence_and_frequency_penalties() {
        let mut l = vec![1.0f32, 1.0, 1.0, 1.0];
        apply_presence_frequency(&mut l, &[2, 1, 2, 2, 9], 0.5, 0.25);
        assert_eq!(l, vec![1.0, 1.0 - 0.5 - 0.25, 1.0 - 0.5 - 0.75, 1.0]);
    }

    #[test]
    fn log_softmax_and_top() {
        let l = [0.0f32, 2.0, 1.0, 2.0];
        let lp = log_softmax(&l);
        let z = (1.0f64 + 2f64.exp() * 2.0 + 1f64.exp()).ln();
        for (i, &x) in l.iter().enumerate() {
            assert!((lp[i] as f64 - (x as f64 - z)).abs() < 1e-6);
        }
        let top = top_logprobs(&lp, 3);
        let ids: Vec<u32> = top.iter().map(|t| t.0).collect();
        assert_eq!(ids, vec![1, 3, 2]);
        assert!(top_logprobs(&lp, 0).is_empty());
        assert_eq!(top_logprobs(&lp, 10).len(), 4);
    }

    #[test]
    fn repetition_penalty_moves_argmax() {
        let mut l = vec![1.0f32, 2.0, 1.9];
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 1.5,
            ..cfg(0.0, 0, 1.0, 0.0, 1)
        });
        assert_eq!(s.sample(&mut l, &[1]), 2);
    }
}
