//! One step of attention with an online softmax: a query row against a block of cached keys and
//! values (already decoded to `f32`), folded into the row's running maximum, sum and weighted
//! value accumulator.
//!
//! The code is plain Rust written so the compiler vectorizes it across keys (scores, `exp`) and
//! across dimensions (the value accumulator); the same source is compiled once per instruction
//! set (`#[target_feature]` wrappers). Every multiply-add is an explicit [`f32::mul_add`] (one
//! rounding, on every level) and no loop sums across lanes, so all levels give bitwise the
//! same results and a row's result depends on nothing but its own inputs.

use crate::cpu::Level;

/// Running state of one query row: the largest score so far, the sum of `exp(score - max)`,
/// and `acc` (the value accumulator, owned by the caller).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftmaxState {
    pub max: f32,
    pub sum: f32,
}

impl Default for SoftmaxState {
    fn default() -> Self {
        SoftmaxState {
            max: f32::NEG_INFINITY,
            sum: 0.0,
        }
    }
}

/// Folds keys `0..n` of a block into one query row's state.
///
/// - `q`: the query, `head_dim` values;
/// - `keys_t`: the block's keys transposed, `[head_dim][block]` (so scores vectorize across
///   keys); `values`: `[block][head_dim]`;
/// - `scores`: scratch of `block` values; `acc`: the row's accumulator, `head_dim` values.
///
/// Scores are `q·k × scale`.
#[allow(clippy::too_many_arguments)]
pub fn attend_block(
    q: &[f32],
    keys_t: &[f32],
    values: &[f32],
    block: usize,
    n: usize,
    scale: f32,
    scores: &mut [f32],
    state: &mut SoftmaxState,
    acc: &mut [f32],
) {
    let head_dim = q.len();
    assert!(n <= block && scores.len() >= block && acc.len() == head_dim);
    assert!(keys_t.len() >= head_dim * block && values.len() >= n * head_dim);
    let level = Level::new(crate::isa()).unwrap_or(Level::Scalar);
    attend_on(
        level, q, keys_t, values, block, n, scale, scores, state, acc,
    )
}

/// [`attend_block`] with the code of `level`.
#[allow(clippy::too_many_arguments)]
fn attend_on(
    level: Level,
    q: &[f32],
    keys_t: &[f32],
    values: &[f32],
    block: usize,
    n: usize,
    scale: f32,
    scores: &mut [f32],
    state: &mut SoftmaxState,
    acc: &mut [f32],
) {
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512(_) => {
            // SAFETY: the level proves AVX-512 F/VL and FMA.
            unsafe { attend_avx512(q, keys_t, values, block, n, scale, scores, state, acc) }
        }
        #[cfg(target_arch = "x86_64")]
        Level::Avx2(_) => {
            // SAFETY: the level proves AVX2 and FMA.
            unsafe { attend_avx2(q, keys_t, values, block, n, scale, scores, state, acc) }
        }
        Level::Scalar => attend_generic(q, keys_t, values, block, n, scale, scores, state, acc),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_avx512(
    q: &[f32],
    keys_t: &[f32],
    values: &[f32],
    block: usize,
    n: usize,
    scale: f32,
    scores: &mut [f32],
    state: &mut SoftmaxState,
    acc: &mut [f32],
) {
    attend_generic(q, keys_t, values, block, n, scale, scores, state, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_avx2(
    q: &[f32],
    keys_t: &[f32],
    values: &[f32],
    block: usize,
    n: usize,
    scale: f32,
    scores: &mut [f32],
    state: &mut SoftmaxState,
    acc: &mut [f32],
) {
    attend_generic(q, keys_t, values, block, n, scale, scores, state, acc)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_generic(
    q: &[f32],
    keys_t: &[f32],
    values: &[f32],
    block: usize,
    n: usize,
    scale: f32,
    scores: &mut [f32],
    state: &mut SoftmaxState,
    acc: &mut [f32],
) {
    let head_dim = q.len();
    let scores = &mut scores[..block];
    // Scores of every key of the block at once: lanes are keys, no sum crosses lanes.
    scores.fill(0.0);
    for (d, &qd) in q.iter().enumerate() {
        let kd = &keys_t[d * block..(d + 1) * block];
        for (s, &k) in scores.iter_mut().zip(kd) {
            *s = qd.mul_add(k, *s);
        }
    }
    let scores = &mut scores[..n];
    let mut m = state.max;
    for s in scores.iter_mut() {
        *s *= scale;
        m = m.max(*s);
    }
    let corr = if state.max == f32::NEG_INFINITY {
        0.0
    } else {
        exp(state.max - m)
    };
    for s in scores.iter_mut() {
        *s = exp(*s - m);
    }
    let mut sum = state.sum * corr;
    for &p in scores.iter() {
        sum += p;
    }
    for a in acc.iter_mut() {
        *a *= corr;
    }
    for (&p, v) in scores.iter().zip(values.chunks_exact(head_dim)) {
        for (a, &x) in acc.iter_mut().zip(v) {
            *a = p.mul_add(x, *a);
        }
    }
    state.max = m;
    state.sum = sum;
}

/// `e^x` for `f32`, within 2 ulp on the range softmax uses, branch-free so that loops over it
/// vectorize: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-6 polynomial for `e^r`, and
/// `2^n` put into the exponent bits. Inputs below −87.3 give about 1e-38 (never a denormal),
/// above 88.3 about 2e38.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n·LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.336_55, 88.3);
    let n = x.mul_add(LOG2E, 0.5).floor();
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 0.166_666_65);
    p = p.mul_add(r, 0.5);
    let y = p.mul_add(r * r, r) + 1.0;
    // n is in [-126, 128): 2^n as a float built from its exponent bits (2^128 is reached only
    // by the clamp's upper end and is formed in two halves).
    let ni = n as i32;
    let half = ni >> 1;
    let a = f32::from_bits(((half + 127) as u32) << 23);
    let b = f32::from_bits(((ni - half + 127) as u32) << 23);
    y * a * b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Isa;

    /// Worst relative error of [`exp`]: the polynomial's own error (~1 ulp) plus the roundings
    /// of the range reduction and the final scaling.
    const EXP_REL_TOL: f64 = 3.0 * f32::EPSILON as f64;

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst <= EXP_REL_TOL, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1e30) > 0.0 && exp(-1e30) < 1e-37);
        assert!(exp(1e30).is_finite());
    }

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Runs rows of random queries over several blocks at every level this CPU has: the levels
    /// agree bitwise, and the result matches a two-pass softmax in f64.
    #[test]
    fn levels_agree_bitwise_and_match_softmax() {
        let (head_dim, block) = (64, 16);
        let mut seed = 7u64;
        for n_pos in [1usize, 5, 16, 17, 40] {
            let keys: Vec<f32> = (0..n_pos * head_dim)
                .map(|_| 2.0 * lcg(&mut seed))
                .collect();
            let vals: Vec<f32> = (0..n_pos * head_dim).map(|_| lcg(&mut seed)).collect();
            let q: Vec<f32> = (0..head_dim).map(|_| lcg(&mut seed)).collect();
            let scale = 1.0 / (head_dim as f32).sqrt();
            let mut results = Vec::new();
            for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
                let mut st = SoftmaxState::default();
                let mut acc = vec![0f32; head_dim];
                let mut scores = vec![0f32; block];
                for b0 in (0..n_pos).step_by(block) {
                    let n = block.min(n_pos - b0);
                    let mut kt = vec![0f32; head_dim * block];
                    let mut v = vec![0f32; block * head_dim];
                    for j in 0..n {
                        for d in 0..head_dim {
                            kt[d * block + j] = keys[(b0 + j) * head_dim + d];
                        }
                        v[j * head_dim..(j + 1) * head_dim]
                            .copy_from_slice(&vals[(b0 + j) * head_dim..(b0 + j + 1) * head_dim]);
                    }
                    attend_on(
                        Level::new(isa).unwrap(),
                        &q,
                        &kt,
                        &v,
                        block,
                        n,
                        scale,
                        &mut scores,
                        &mut st,
                        &mut acc,
                    );
                }
                let out: Vec<f32> = acc.iter().map(|a| a / st.sum).collect();
                results.push((isa, out));
            }
            for (isa, out) in &results[1..] {
                assert_eq!(out, &results[0].1, "{isa} differs from {}", results[0].0);
            }
            // Reference: two-pass softmax in f64.
            let s: Vec<f64> = (0..n_pos)
                .map(|p| {
                    (0..head_dim)
                        .map(|d| q[d] as f64 * keys[p * head_dim + d] as f64)
                        .sum::<f64>()
                        * scale as f64
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let total: f64 = w.iter().sum();
            for d in 0..head_dim {
                let want: f64 = (0..n_pos)
                    .map(|p| w[p] * vals[p * head_dim + d] as f64)
                    .sum::<f64>()
                    / total;
                let got = results[0].1[d] as f64;
                // Values are in [-1, 1]; f32 sums of up to 64 products and 40 weights.
                assert!(
                    (got - want).abs() < 1e-5,
                    "n_pos {n_pos} d {d}: {got} vs {want}"
                );
            }
        }
    }
}
