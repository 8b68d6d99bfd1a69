/// Per-pair inverse frequencies of rotary position embedding, `head_dim / 2` of them, already
/// adjusted for any context-extension scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeFreqs {
    pub inv_freq: Vec<f32>,
}

/// `theta^(-2i/d)` for `i < n_rot/2`, each divided by `divisors[i]` when given (llama3 / linear
/// scaling are expressed as divisors by the caller).
pub fn rope_inv_freqs(n_rot: usize, theta: f32, divisors: Option<&[f32]>) -> RopeFreqs {
    let inv_freq = (0..n_rot / 2)
        .map(|i| {
            let f = 1.0 / (theta as f64).powf(2.0 * i as f64 / n_rot as f64);
            let div = divisors.map_or(1.0, |d| d[i] as f64);
            (f / div) as f32
        })
        .collect();
    RopeFreqs { inv_freq }
}

/// `(cos, sin)` of `pos · inv_freq[i]` for every pair: the rotation of one position, computed
/// once and applied to the queries and keys of every layer.
pub fn rope_cos_sin(pos: usize, freqs: &RopeFreqs) -> Vec<(f32, f32)> {
    freqs
        .inv_freq
        .iter()
        .map(|&f| {
            let angle = pos as f32 * f;
            (angle.cos(), angle.sin())
        })
        .collect()
}

/// Rotates each head of `x` (`n_heads` × `head_dim`, heads contiguous) in the interleaved
/// layout: pairs `(x[2i], x[2i+1])` turn by the angle whose `(cos, sin)` is `cs[i]` (from
/// [`rope_cos_sin`]). Dimensions past `2 · cs.len()` are left as they are.
pub fn rope_interleaved(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &(c, s)) in cs.iter().enumerate() {
            let a = head[2 * i];
            let b = head[2 * i + 1];
            head[2 * i] = a * c - b * s;
            head[2 * i + 1] = a * s + b * c;
        }
    }
}
