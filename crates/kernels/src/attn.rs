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

/// Folds keys `0..n` of a block into one query row's state: the reference arithmetic of one
/// row, which [`attend_block_rows`] gives every row (and uses as is for the shapes it has no
/// fixed-size path for).
///
/// - `q`: the query, `head_dim` values;
/// - `keys_t`: the block's keys transposed, `[head_dim][block]` (so scores vectorize across
///   keys); `values`: `[block][head_dim]`;
/// - `scores`: scratch of `block` values; `acc`: the row's accumulator, `head_dim` values.
///
/// Scores are `q·k × scale`. Every multiply-add is fused, so the bits do not depend on the
/// instruction set the code is compiled for.
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

/// Folds keys of one block into many query rows: row `r` (query `q[r·head_dim..]`, state
/// `states[r]`, accumulator `acc[r·head_dim..]`) takes keys `0..ns[r]` (none when 0).
///
/// Every row gets exactly the arithmetic of `attend_generic` alone (so the result is bitwise
/// the same, whatever rows share the call and on every instruction-set level); the rows are only interleaved, so that
/// the score sums of several rows proceed side by side instead of one dependent chain. For
/// blocks of [`ATTN_BLOCK`] keys and heads of 32, 48, 64, 80, 96 or 128 the sizes are fixed at compile time and the
/// scores of a group of rows stay in registers.
#[allow(clippy::too_many_arguments)]
pub fn attend_block_rows(
    q: &[f32],
    ns: &[usize],
    keys_t: &[f32],
    values: &[f32],
    block: usize,
    scale: f32,
    scores: &mut [f32],
    states: &mut [SoftmaxState],
    acc: &mut [f32],
) {
    let n_rows = ns.len();
    assert!(n_rows > 0 && q.len().is_multiple_of(n_rows));
    let head_dim = q.len() / n_rows;
    let n_max = ns.iter().copied().max().unwrap_or(0);
    assert!(n_max <= block && scores.len() >= block);
    assert!(states.len() == n_rows && acc.len() == n_rows * head_dim);
    assert!(keys_t.len() >= head_dim * block && values.len() >= n_max * head_dim);
    let level = Level::new(crate::isa()).unwrap_or(Level::Scalar);
    rows_on(
        level, q, ns, keys_t, values, block, scale, scores, states, acc,
    )
}

/// [`attend_block_rows`] with the code of `level`.
#[allow(clippy::too_many_arguments)]
fn rows_on(
    level: Level,
    q: &[f32],
    ns: &[usize],
    keys_t: &[f32],
    values: &[f32],
    block: usize,
    scale: f32,
    scores: &mut [f32],
    states: &mut [SoftmaxState],
    acc: &mut [f32],
) {
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512(_) => {
            // SAFETY: the level proves AVX-512 F/VL and FMA.
            unsafe { rows_avx512(q, ns, keys_t, values, block, scale, scores, states, acc) }
        }
        #[cfg(target_arch = "x86_64")]
        Level::Avx2(_) => {
            // SAFETY: the level proves AVX2 and FMA.
            unsafe { rows_avx2(q, ns, keys_t, values, block, scale, scores, states, acc) }
        }
        Level::Scalar => {
            rows_generic::<GenericScores>(q, ns, keys_t, values, block, scale, scores, states, acc)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_avx512(
    q: &[f32],
    ns: &[usize],
    keys_t: &[f32],
    values: &[f32],
    block: usize,
    scale: f32,
    scores: &mut [f32],
    states: &mut [SoftmaxState],
    acc: &mut [f32],
) {
    rows_generic::<Avx512Scores>(q, ns, keys_t, values, block, scale, scores, states, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_avx2(
    q: &[f32],
    ns: &[usize],
    keys_t: &[f32],
    values: &[f32],
    block: usize,
    scale: f32,
    scores: &mut [f32],
    states: &mut [SoftmaxState],
    acc: &mut [f32],
) {
    rows_generic::<Avx2Scores>(q, ns, keys_t, values, block, scale, scores, states, acc)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rows_generic<K: ScoreKernel>(
    q: &[f32],
    ns: &[usize],
    keys_t: &[f32],
    values: &[f32],
    block: usize,
    scale: f32,
    scores: &mut [f32],
    states: &mut [SoftmaxState],
    acc: &mut [f32],
) {
    let head_dim = q.len() / ns.len();
    match (block, head_dim) {
        (ATTN_BLOCK, 32) => rows_fixed::<K, 32>(q, ns, keys_t, values, scale, states, acc),
        (ATTN_BLOCK, 48) => rows_fixed::<K, 48>(q, ns, keys_t, values, scale, states, acc),
        (ATTN_BLOCK, 64) => rows_fixed::<K, 64>(q, ns, keys_t, values, scale, states, acc),
        (ATTN_BLOCK, 80) => rows_fixed::<K, 80>(q, ns, keys_t, values, scale, states, acc),
        (ATTN_BLOCK, 96) => rows_fixed::<K, 96>(q, ns, keys_t, values, scale, states, acc),
        (ATTN_BLOCK, 128) => rows_fixed::<K, 128>(q, ns, keys_t, values, scale, states, acc),
        _ => {
            for (r, &n) in ns.iter().enumerate() {
                if n > 0 {
                    attend_generic(
                        &q[r * head_dim..(r + 1) * head_dim],
                        keys_t,
                        values,
                        block,
                        n,
                        scale,
                        scores,
                        &mut states[r],
                        &mut acc[r * head_dim..(r + 1) * head_dim],
                    );
                }
            }
        }
    }
}

/// Scores of up to [`ScoreKernel::ROWS`] query rows (1, 2, 4 or `ROWS`) against a block of
/// [`ATTN_BLOCK`] transposed keys:
/// `s[r][k] = Σ_d q[r][d]·k[d][k]`, each a chain of fused multiply-adds over `d` from 0 (the
/// order and roundings of [`attend_generic`], whatever the instruction set).
trait ScoreKernel {
    const ROWS: usize;
    /// Whether the value sums go over a head 16 dimensions at a time ([`sum_values_rows`]'s
    /// `DC`): where a few rows' whole accumulators outgrow the vector registers.
    const VALUE_CHUNKS: bool = false;
    fn scores<const HD: usize>(qr: &[&[f32; HD]], keys_t: &[f32], out: &mut [[f32; ATTN_BLOCK]]);

    /// [`softmax_step`] for every row `r` of `s` with `ns[r] > 0` (its state `states[r]`, its
    /// factor into `corr[r]`), bitwise.
    #[inline(always)]
    fn softmax(
        s: &mut [[f32; ATTN_BLOCK]],
        ns: &[usize],
        scale: f32,
        states: &mut [SoftmaxState],
        corr: &mut [f32; 8],
    ) {
        for (r, &n) in ns.iter().enumerate() {
            if n > 0 {
                corr[r] = softmax_step(&mut s[r], n, scale, &mut states[r]);
            }
        }
    }
}

/// Plain loops (the scalar level): one row at a time.
struct GenericScores;
impl ScoreKernel for GenericScores {
    const ROWS: usize = 1;
    #[inline(always)]
    fn scores<const HD: usize>(qr: &[&[f32; HD]], keys_t: &[f32], out: &mut [[f32; ATTN_BLOCK]]) {
        for (q, s) in qr.iter().zip(out.iter_mut()) {
            *s = [0.0; ATTN_BLOCK];
            for d in 0..HD {
                let kd = &keys_t[d * ATTN_BLOCK..(d + 1) * ATTN_BLOCK];
                for k in 0..ATTN_BLOCK {
                    s[k] = q[d].mul_add(kd[k], s[k]);
                }
            }
        }
    }
}

/// Eight rows side by side, two 16-lane registers each.
#[cfg(target_arch = "x86_64")]
struct Avx512Scores;
#[cfg(target_arch = "x86_64")]
impl ScoreKernel for Avx512Scores {
    const ROWS: usize = 8;
    #[inline(always)]
    fn scores<const HD: usize>(qr: &[&[f32; HD]], keys_t: &[f32], out: &mut [[f32; ATTN_BLOCK]]) {
        match qr.len() {
            1 => avx512_scores::<HD, 1>(qr, keys_t, out),
            2 => avx512_scores::<HD, 2>(qr, keys_t, out),
            4 => avx512_scores::<HD, 4>(qr, keys_t, out),
            _ => avx512_scores::<HD, 8>(qr, keys_t, out),
        }
    }

    /// A row's scaling and `exp` sixteen lanes at once ([`exp_avx512`], bitwise [`exp`]), its
    /// maximum by one masked reduction (exact, so the same value as the scalar fold); then for
    /// all rows at once the factors `exp(old max − max)` in one vector, and the sums in key
    /// order, one lane per row, after a transpose of the rows' values (each lane's additions
    /// are the scalar fold's).
    #[inline(always)]
    fn softmax(
        s: &mut [[f32; ATTN_BLOCK]],
        ns: &[usize],
        scale: f32,
        states: &mut [SoftmaxState],
        corr: &mut [f32; 8],
    ) {
        use std::arch::x86_64::*;
        assert!(ns.len() <= 8 && s.len() == 8 && states.len() >= ns.len());
        assert!(ns.iter().all(|&n| n <= ATTN_BLOCK));
        let (mut old_max, mut new_max, mut old_sum, mut n_keys) =
            ([0f32; 16], [0f32; 16], [0f32; 8], [0i32; 8]);
        // SAFETY: only reached from `rows_avx512`, whose level proves AVX-512 F/VL; every row
        // of `s` holds 16 values, every array above as many as its loads read.
        unsafe {
            for (r, &n) in ns.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let st = &states[r];
                let sc = _mm512_set1_ps(scale);
                let v0 = _mm512_mul_ps(_mm512_loadu_ps(s[r].as_ptr()), sc);
                let v1 = _mm512_mul_ps(_mm512_loadu_ps(s[r].as_ptr().add(16)), sc);
                let first_n = (1u64 << n) - 1;
                let (m0, m1) = (first_n as u16, (first_n >> 16) as u16);
                // Exact maxima, so the order does not matter; a half with no key gives −inf.
                let m = st
                    .max
                    .max(_mm512_mask_reduce_max_ps(m0, v0))
                    .max(_mm512_mask_reduce_max_ps(m1, v1));
                let mv = _mm512_set1_ps(m);
                _mm512_storeu_ps(s[r].as_mut_ptr(), exp_avx512(_mm512_sub_ps(v0, mv)));
                _mm512_storeu_ps(s[r].as_mut_ptr().add(16), exp_avx512(_mm512_sub_ps(v1, mv)));
                (old_max[r], new_max[r], old_sum[r]) = (st.max, m, st.sum);
                n_keys[r] = n as i32;
            }
            // `exp(old − max)`, 0 where nothing came before (`exp` is not evaluated there in the
            // scalar code; here its lane is replaced).
            let old = _mm512_loadu_ps(old_max.as_ptr());
            let first = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(old, _mm512_set1_ps(f32::NEG_INFINITY));
            let c = exp_avx512(_mm512_sub_ps(old, _mm512_loadu_ps(new_max.as_ptr())));
            let c = _mm256_maskz_mov_ps(!first as u8, _mm512_castps512_ps256(c));
            let mut sums = _mm256_mul_ps(_mm256_loadu_ps(old_sum.as_ptr()), c);
            let n_keys = _mm256_loadu_si256(n_keys.as_ptr() as *const __m256i);
            for half in 0..ATTN_BLOCK / 16 {
                let at = 16 * half;
                // A plain loop: a closure would not inherit the features, and its load
                // compiled to a call per row.
                let mut rows = [_mm512_setzero_ps(); 8];
                for (v, s) in rows.iter_mut().zip(s.iter()) {
                    *v = _mm512_loadu_ps(s[at..].as_ptr());
                }
                let cols = transpose_8x16(rows);
                for (k, col) in cols.into_iter().enumerate() {
                    let live = _mm256_cmpgt_epi32_mask(n_keys, _mm256_set1_epi32((at + k) as i32));
                    sums = _mm256_mask_add_ps(sums, live, sums, col);
                }
            }
            let (mut sum, mut cs) = ([0f32; 8], [0f32; 8]);
            _mm256_storeu_ps(sum.as_mut_ptr(), sums);
            _mm256_storeu_ps(cs.as_mut_ptr(), c);
            for (r, &n) in ns.iter().enumerate() {
                if n > 0 {
                    states[r] = SoftmaxState {
                        max: new_max[r],
                        sum: sum[r],
                    };
                    corr[r] = cs[r];
                }
            }
        }
    }
}

/// [`ScoreKernel::scores`] of `R` rows at AVX-512, two 16-lane registers each.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn avx512_scores<const HD: usize, const R: usize>(
    qr: &[&[f32; HD]],
    keys_t: &[f32],
    out: &mut [[f32; ATTN_BLOCK]],
) {
    use std::arch::x86_64::*;
    assert!(qr.len() == R && out.len() == R);
    assert!(keys_t.len() >= HD * ATTN_BLOCK);
    // SAFETY: only reached from `rows_avx512`, whose level proves AVX-512 F; every load
    // and store is inside the slices checked above.
    unsafe {
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        // Query values go down the columns of `qr` (`qr[r][d]` for each `d`).
        #[allow(clippy::needless_range_loop)]
        for d in 0..HD {
            let kp = keys_t.as_ptr().add(d * ATTN_BLOCK);
            let (k0, k1) = (_mm512_loadu_ps(kp), _mm512_loadu_ps(kp.add(16)));
            for r in 0..R {
                let qd = _mm512_set1_ps(qr[r][d]);
                lo[r] = _mm512_fmadd_ps(qd, k0, lo[r]);
                hi[r] = _mm512_fmadd_ps(qd, k1, hi[r]);
            }
        }
        for r in 0..R {
            _mm512_storeu_ps(out[r].as_mut_ptr(), lo[r]);
            _mm512_storeu_ps(out[r].as_mut_ptr().add(16), hi[r]);
        }
    }
}

/// The columns of eight rows of sixteen values: `out[k]` holds value `k` of rows 0..8.
///
/// # Safety
/// AVX-512 F available.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn transpose_8x16(rows: [std::arch::x86_64::__m512; 8]) -> [std::arch::x86_64::__m256; 16] {
    use std::arch::x86_64::*;
    let [p0, p1, p2, p3, p4, p5, p6, p7] = rows;
    // In every 128-bit lane j (values 4j..4j + 4 of each row): pairs of rows interleaved, ...
    let lo = |a, b| _mm512_unpacklo_ps(a, b);
    let hi = |a, b| _mm512_unpackhi_ps(a, b);
    let t = [
        lo(p0, p1),
        hi(p0, p1),
        lo(p2, p3),
        hi(p2, p3),
        lo(p4, p5),
        hi(p4, p5),
        lo(p6, p7),
        hi(p6, p7),
    ];
    // ... then value 4j + i of rows 0..4 (u[i]) and of rows 4..8 (u[4 + i]) ...
    let even = |a, b| _mm512_shuffle_ps::<0b01_00_01_00>(a, b);
    let odd = |a, b| _mm512_shuffle_ps::<0b11_10_11_10>(a, b);
    let u = [
        even(t[0], t[2]),
        odd(t[0], t[2]),
        even(t[1], t[3]),
        odd(t[1], t[3]),
        even(t[4], t[6]),
        odd(t[4], t[6]),
        even(t[5], t[7]),
        odd(t[5], t[7]),
    ];
    // ... then the two halves of a column side by side: lanes (j, j) of u[i] and u[4 + i].
    let pick = |i: usize, j: usize| {
        let (a, b) = (j as i32 * 4, 16 + j as i32 * 4);
        let idx = _mm512_setr_epi32(
            a,
            a + 1,
            a + 2,
            a + 3,
            b,
            b + 1,
            b + 2,
            b + 3,
            a + 4,
            a + 5,
            a + 6,
            a + 7,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
        );
        _mm512_permutex2var_ps(u[i], idx, u[4 + i])
    };
    let mut out = [_mm256_setzero_ps(); 16];
    for i in 0..4 {
        for jj in [0, 2] {
            // Columns 4·jj + i and 4·(jj + 1) + i.
            let both = pick(i, jj);
            out[4 * jj + i] = _mm512_castps512_ps256(both);
            out[4 * (jj + 1) + i] =
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(both)));
        }
    }
    out
}

/// [`exp`] on sixteen lanes, operation for operation (the same bits for every input; NaN
/// stays NaN).
///
/// # Safety
/// AVX-512 F available.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
pub(crate) unsafe fn exp_avx512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // `f32::clamp`: below the minimum the minimum, then above the maximum the maximum.
    let (lo, hi) = (_mm512_set1_ps(EXP_MIN), _mm512_set1_ps(EXP_MAX));
    let x = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, lo), x, lo);
    let x = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, hi), x, hi);
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm512_fmadd_ps(
        x,
        _mm512_set1_ps(EXP_LOG2E),
        _mm512_set1_ps(0.5),
    ));
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-EXP_LN2_HI), x);
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-EXP_LN2_LO), r);
    let mut p = _mm512_set1_ps(EXP_POLY[0]);
    for c in &EXP_POLY[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
    }
    let y = _mm512_add_ps(
        _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r),
        _mm512_set1_ps(1.0),
    );
    // 2^n in two halves, as the scalar code.
    let ni = _mm512_cvttps_epi32(n);
    let (half, bias) = (_mm512_srai_epi32::<1>(ni), _mm512_set1_epi32(127));
    let a = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(half, bias)));
    let b = _mm512_add_epi32(_mm512_sub_epi32(ni, half), bias);
    _mm512_mul_ps(
        _mm512_mul_ps(y, a),
        _mm512_castsi512_ps(_mm512_slli_epi32::<23>(b)),
    )
}

/// Four rows side by side, two 8-lane registers each, over one half of the block's keys at a
/// time (four rows keep the four-row value sums of a GQA entry's heads; a whole block of four
/// rows would need more registers than AVX2 has).
#[cfg(target_arch = "x86_64")]
struct Avx2Scores;
#[cfg(target_arch = "x86_64")]
impl ScoreKernel for Avx2Scores {
    const ROWS: usize = 4;
    const VALUE_CHUNKS: bool = true;
    #[inline(always)]
    fn scores<const HD: usize>(qr: &[&[f32; HD]], keys_t: &[f32], out: &mut [[f32; ATTN_BLOCK]]) {
        match qr.len() {
            1 => avx2_scores::<HD, 1>(qr, keys_t, out),
            2 => avx2_scores::<HD, 2>(qr, keys_t, out),
            _ => avx2_scores::<HD, 4>(qr, keys_t, out),
        }
    }

    /// A row's scaling and `exp` eight lanes at a time ([`exp_avx2`], bitwise [`exp`]), its
    /// maximum by a reduction of the first `n` lanes (exact, so the scalar fold's value); the
    /// factor and the sum as [`softmax_step`] makes them. Compiled from plain loops, the `exp`
    /// went through scalar conversions and the maximum through a scalar chain: about half of
    /// the attention's time in a TinyLlama prompt.
    #[inline(always)]
    fn softmax(
        s: &mut [[f32; ATTN_BLOCK]],
        ns: &[usize],
        scale: f32,
        states: &mut [SoftmaxState],
        corr: &mut [f32; 8],
    ) {
        use std::arch::x86_64::*;
        assert!(ns.len() <= s.len() && ns.len() <= states.len() && ns.len() <= corr.len());
        assert!(ns.iter().all(|&n| n <= ATTN_BLOCK));
        // SAFETY: only reached from `rows_avx2`, whose level proves AVX2 and FMA; every row of
        // `s` holds ATTN_BLOCK (four vectors of) values.
        unsafe {
            let sc = _mm256_set1_ps(scale);
            let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
            let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            for (r, &n) in ns.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let p = s[r].as_mut_ptr();
                let v: [__m256; ATTN_BLOCK / 8] =
                    std::array::from_fn(|j| _mm256_mul_ps(_mm256_loadu_ps(p.add(8 * j)), sc));
                // Keys past `n` count as −inf.
                let nv = _mm256_set1_epi32(n as i32);
                let mut mx = ninf;
                for (j, &v) in v.iter().enumerate() {
                    let at = _mm256_add_epi32(iota, _mm256_set1_epi32(8 * j as i32));
                    let live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(nv, at));
                    mx = _mm256_max_ps(mx, _mm256_blendv_ps(ninf, v, live));
                }
                let m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps::<1>(mx));
                let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
                let m1 = _mm_max_ss(m2, _mm_shuffle_ps::<0b01>(m2, m2));
                let st = &mut states[r];
                let m = st.max.max(_mm_cvtss_f32(m1));
                let mv = _mm256_set1_ps(m);
                for (j, &v) in v.iter().enumerate() {
                    _mm256_storeu_ps(p.add(8 * j), exp_avx2(_mm256_sub_ps(v, mv)));
                }
                let c = if st.max == f32::NEG_INFINITY {
                    0.0
                } else {
                    exp(st.max - m)
                };
                *st = SoftmaxState {
                    max: m,
                    sum: st.sum * c,
                };
                corr[r] = c;
            }
            // The sums in key order, the rows' chains side by side (one after another, each
            // row's dependent additions took a sixth of the attention's time).
            let mut sums = [0f32; 8];
            for (sum, st) in sums.iter_mut().zip(states.iter()) {
                *sum = st.sum;
            }
            let n_max = ns.iter().copied().max().unwrap_or(0);
            #[allow(clippy::needless_range_loop)]
            for k in 0..n_max {
                for (r, &n) in ns.iter().enumerate() {
                    if k < n {
                        sums[r] += s[r][k];
                    }
                }
            }
            for ((st, &n), sum) in states.iter_mut().zip(ns).zip(sums) {
                if n > 0 {
                    st.sum = sum;
                }
            }
        }
    }
}

/// [`exp`] on eight lanes, operation for operation (the same bits for every input; NaN stays
/// NaN), as [`exp_avx512`] on sixteen.
///
/// # Safety
/// AVX2 and FMA available.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp_avx2(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let (lo, hi) = (_mm256_set1_ps(EXP_MIN), _mm256_set1_ps(EXP_MAX));
    let x = _mm256_blendv_ps(x, lo, _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo));
    let x = _mm256_blendv_ps(x, hi, _mm256_cmp_ps::<_CMP_GT_OQ>(x, hi));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm256_fmadd_ps(
        x,
        _mm256_set1_ps(EXP_LOG2E),
        _mm256_set1_ps(0.5),
    ));
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-EXP_LN2_HI), x);
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-EXP_LN2_LO), r);
    let mut p = _mm256_set1_ps(EXP_POLY[0]);
    for c in &EXP_POLY[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
    }
    let y = _mm256_add_ps(
        _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r),
        _mm256_set1_ps(1.0),
    );
    let ni = _mm256_cvttps_epi32(n);
    let (half, bias) = (_mm256_srai_epi32::<1>(ni), _mm256_set1_epi32(127));
    let a = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(half, bias)));
    let b = _mm256_add_epi32(_mm256_sub_epi32(ni, half), bias);
    _mm256_mul_ps(
        _mm256_mul_ps(y, a),
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(b)),
    )
}

/// [`ScoreKernel::scores`] of `R` rows at AVX2, half a step at a time.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn avx2_scores<const HD: usize, const R: usize>(
    qr: &[&[f32; HD]],
    keys_t: &[f32],
    out: &mut [[f32; ATTN_BLOCK]],
) {
    use std::arch::x86_64::*;
    assert!(qr.len() == R && out.len() == R);
    assert!(keys_t.len() >= HD * ATTN_BLOCK);
    // SAFETY: only reached from `rows_avx2`, whose level proves AVX2 and FMA; every load
    // and store is inside the slices checked above.
    unsafe {
        for at in (0..ATTN_BLOCK).step_by(16) {
            let mut lo = [_mm256_setzero_ps(); R];
            let mut hi = [_mm256_setzero_ps(); R];
            // Query values go down the columns of `qr` (`qr[r][d]` for each `d`).
            #[allow(clippy::needless_range_loop)]
            for d in 0..HD {
                let kp = keys_t.as_ptr().add(d * ATTN_BLOCK + at);
                let (k0, k1) = (_mm256_loadu_ps(kp), _mm256_loadu_ps(kp.add(8)));
                for r in 0..R {
                    let qd = _mm256_set1_ps(qr[r][d]);
                    lo[r] = _mm256_fmadd_ps(qd, k0, lo[r]);
                    hi[r] = _mm256_fmadd_ps(qd, k1, hi[r]);
                }
            }
            for r in 0..R {
                _mm256_storeu_ps(out[r][at..].as_mut_ptr(), lo[r]);
                _mm256_storeu_ps(out[r][at + 8..].as_mut_ptr(), hi[r]);
            }
        }
    }
}

/// The block size [`attend_block_rows`] has a fixed-size path for: callers gather this many
/// keys per call where they can (fewer softmax steps, and each step's bookkeeping serves more
/// multiply-adds).
pub const ATTN_BLOCK: usize = 32;
// The AVX-512 scores and softmax hold a step's keys in two 16-lane vectors.
const _: () = assert!(ATTN_BLOCK == 32);
/// [`attend_generic`] for [`ScoreKernel::ROWS`] rows at a time, block [`ATTN_BLOCK`], head
/// `HD`.
#[inline(always)]
fn rows_fixed<K: ScoreKernel, const HD: usize>(
    q: &[f32],
    ns: &[usize],
    keys_t: &[f32],
    values: &[f32],
    scale: f32,
    states: &mut [SoftmaxState],
    acc: &mut [f32],
) {
    let n_rows = ns.len();
    let mut s = [[0f32; ATTN_BLOCK]; 8];
    let s = &mut s[..K::ROWS];
    for r0 in (0..n_rows).step_by(K::ROWS) {
        let rn = K::ROWS.min(n_rows - r0);
        // Rows past the last repeat it; their scores are not used.
        let mut qr = [&[0f32; HD]; 8];
        for (r, slot) in qr[..K::ROWS].iter_mut().enumerate() {
            let row = r0 + r.min(rn - 1);
            *slot = q[row * HD..(row + 1) * HD].try_into().expect("a head");
        }
        // Only as many rows as hold queries (a decode step without GQA has one): 1, 2, 4 or
        // the kernel's full count, the rest repeating the last.
        let m = rn.next_power_of_two().min(K::ROWS);
        K::scores::<HD>(&qr[..m], keys_t, &mut s[..m]);
        let mut corr = [0f32; 8];
        K::softmax(
            s,
            &ns[r0..r0 + rn],
            scale,
            &mut states[r0..r0 + rn],
            &mut corr,
        );
        // Value sums four rows at a time where four rows share their keys (the query heads of
        // one entry under GQA) and four rows' accumulators fit the registers (heads of 64),
        // else two at a time: independent chains of multiply-adds per key.
        let acc = &mut acc[r0 * HD..(r0 + rn) * HD];
        let mut r = 0;
        while r < rn {
            let n = ns[r0 + r];
            if HD <= 64 && r + 4 <= rn && n > 0 && ns[r0 + r..r0 + r + 4].iter().all(|&m| m == n) {
                let mut rows = acc[r * HD..(r + 4) * HD].chunks_exact_mut(HD);
                let mut next = || -> &mut [f32; HD] {
                    rows.next().expect("a row").try_into().expect("a head")
                };
                let a = [next(), next(), next(), next()];
                let p = std::array::from_fn(|i| &s[r + i][..n]);
                let c = std::array::from_fn(|i| corr[r + i]);
                match K::VALUE_CHUNKS {
                    true => sum_values_rows::<HD, 4, 16>(p, values, c, a),
                    false => sum_values_rows::<HD, 4, HD>(p, values, c, a),
                }
                r += 4;
                continue;
            }
            let (n0, n1) = (ns[r0 + r], if r + 1 < rn { ns[r0 + r + 1] } else { 0 });
            let pair = &mut acc[r * HD..(r + 2).min(rn) * HD];
            let (a0, a1) = pair.split_at_mut(HD);
            let a0: &mut [f32; HD] = a0.try_into().expect("a head");
            if n1 == 0 {
                if n0 > 0 {
                    sum_values(&s[r][..n0], values, corr[r], a0);
                }
            } else if n0 == 0 {
                let a1: &mut [f32; HD] = a1.try_into().expect("a head");
                sum_values(&s[r + 1][..n1], values, corr[r + 1], a1);
            } else {
                let a1: &mut [f32; HD] = a1.try_into().expect("a head");
                let (p, c) = ([&s[r][..n0], &s[r + 1][..n1]], [corr[r], corr[r + 1]]);
                match K::VALUE_CHUNKS {
                    true => sum_values_rows::<HD, 2, 16>(p, values, c, [a0, a1]),
                    false => sum_values_rows::<HD, 2, HD>(p, values, c, [a0, a1]),
                }
            }
            r += 2;
        }
    }
}

/// The softmax update of [`attend_generic`] for one row's first `n` keys: turns its unscaled
/// scores into `exp(score·scale − max)`, updates its state, returns the factor for its
/// accumulator. The scaling and `exp` run over all 16 lanes (one vector; the lanes past `n`
/// are never read); the maximum and the sum over the first `n`, in key order.
#[inline(always)]
fn softmax_step(
    scores: &mut [f32; ATTN_BLOCK],
    n: usize,
    scale: f32,
    state: &mut SoftmaxState,
) -> f32 {
    for s in scores.iter_mut() {
        *s *= scale;
    }
    let mut m = state.max;
    for &s in &scores[..n] {
        m = m.max(s);
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
    for &p in &scores[..n] {
        sum += p;
    }
    state.max = m;
    state.sum = sum;
    corr
}

/// `acc = acc·corr + Σ_k p[k]·values[k]`, keys in order (as [`attend_generic`]).
#[inline(always)]
fn sum_values<const HD: usize>(p: &[f32], values: &[f32], corr: f32, acc: &mut [f32; HD]) {
    // A local copy stays in registers through the key loop.
    let mut a = *acc;
    for a in a.iter_mut() {
        *a *= corr;
    }
    for (&p, v) in p.iter().zip(values.chunks_exact(HD)) {
        let v: &[f32; HD] = v.try_into().expect("a value row");
        for (a, &x) in a.iter_mut().zip(v) {
            *a = p.mul_add(x, *a);
        }
    }
    *acc = a;
}

/// [`sum_values`] for `R` rows side by side over the keys they share, then each row's own
/// remaining keys; each row's operations are the ones it gets alone. The head goes `DC`
/// dimensions at a time (all `HD` at once, or 16 where `R` rows of `HD` values would not stay
/// in registers: at AVX2, four rows of 64 took 32 vectors and spilled on every key); each
/// value's chain of multiply-adds is the same either way.
#[inline(always)]
fn sum_values_rows<const HD: usize, const R: usize, const DC: usize>(
    p: [&[f32]; R],
    values: &[f32],
    corr: [f32; R],
    mut acc: [&mut [f32; HD]; R],
) {
    const { assert!(DC > 0 && HD.is_multiple_of(DC)) };
    let shared = p.iter().map(|r| r.len()).min().unwrap_or(0);
    let value = |k: usize, d0: usize| -> &[f32; DC] {
        values[k * HD + d0..k * HD + d0 + DC]
            .try_into()
            .expect("a value row")
    };
    for d0 in (0..HD).step_by(DC) {
        // Local copies stay in registers through the key loop.
        let mut a: [[f32; DC]; R] =
            std::array::from_fn(|i| acc[i][d0..d0 + DC].try_into().expect("a chunk"));
        for (a, c) in a.iter_mut().zip(corr) {
            for v in a.iter_mut() {
                *v *= c;
            }
        }
        for k in 0..shared {
            let (v, pk) = (value(k, d0), p.map(|r| r[k]));
            for d in 0..DC {
                for i in 0..R {
                    a[i][d] = pk[i].mul_add(v[d], a[i][d]);
                }
            }
        }
        for (row, a) in p.iter().zip(a.iter_mut()) {
            for (k, &pk) in row.iter().enumerate().skip(shared) {
                let v = value(k, d0);
                for d in 0..DC {
                    a[d] = pk.mul_add(v[d], a[d]);
                }
            }
        }
        for (dst, src) in acc.iter_mut().zip(&a) {
            dst[d0..d0 + DC].copy_from_slice(src);
        }
    }
}

/// `e^x` for `f32`, within 2 ulp on the range softmax uses, branch-free so that loops over it
/// vectorize: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-6 polynomial for `e^r`, and
/// `2^n` put into the exponent bits. Inputs below −87.3 give about 1e-38 (never a denormal),
/// above 88.3 about 2e38.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(EXP_MIN, EXP_MAX);
    let n = x.mul_add(EXP_LOG2E, 0.5).floor();
    let r = n.mul_add(-EXP_LN2_LO, n.mul_add(-EXP_LN2_HI, x));
    let mut p = EXP_POLY[0];
    for c in &EXP_POLY[1..] {
        p = p.mul_add(r, *c);
    }
    let y = p.mul_add(r * r, r) + 1.0;
    // n is in [-126, 128): 2^n as a float built from its exponent bits (2^128 is reached only
    // by the clamp's upper end and is formed in two halves).
    let ni = n as i32;
    let half = ni >> 1;
    let a = f32::from_bits(((half + 127) as u32) << 23);
    let b = f32::from_bits(((ni - half + 127) as u32) << 23);
    y * a * b
}

/// The constants of [`exp`] and its SIMD twins ([`exp_avx2`], [`exp_avx512`]): `log2 e`; ln 2
/// split in two so that `n·EXP_LN2_HI` is exact; the clamp's ends; the polynomial's
/// coefficients, highest degree first (of degree 6 with the `r + r²·p` around it).
const EXP_LOG2E: f32 = std::f32::consts::LOG2_E;
const EXP_LN2_HI: f32 = 0.693_359_4;
const EXP_LN2_LO: f32 = -2.121_944_4e-4;
const EXP_MIN: f32 = -87.336_55;
const EXP_MAX: f32 = 88.3;
const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Isa;

    /// The sixteen-lane `exp` gives the scalar one's bits on a dense sweep of the inputs
    /// softmax meets (and past both ends of the clamp), and NaN for NaN.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn exp_avx512_is_bitwise_exp() {
        use std::arch::x86_64::*;
        if !Isa::Avx512.is_supported() {
            eprintln!("skip: AVX-512 not available");
            return;
        }
        // SAFETY: AVX-512 F checked above; 16 values in, 16 out.
        check_exp_lanes::<16>(|x, y| unsafe {
            _mm512_storeu_ps(y.as_mut_ptr(), exp_avx512(_mm512_loadu_ps(x.as_ptr())))
        });
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn exp_avx2_is_bitwise_exp() {
        use std::arch::x86_64::*;
        if !Isa::Avx2.is_supported() {
            eprintln!("skip: AVX2 not available");
            return;
        }
        // SAFETY: AVX2 and FMA checked above; 8 values in, 8 out.
        check_exp_lanes::<8>(|x, y| unsafe {
            _mm256_storeu_ps(y.as_mut_ptr(), exp_avx2(_mm256_loadu_ps(x.as_ptr())))
        });
    }

    /// `lanes(x, y)` puts `exp` of `x` into `y` by a SIMD `exp`: bitwise [`exp`] over a range of
    /// arguments, the clamp's edges, infinities, zeros and tiny values; NaN stays NaN.
    fn check_exp_lanes<const L: usize>(lanes: impl Fn(&[f32; L], &mut [f32; L])) {
        let mut xs: Vec<f32> = (-200_000..=20_000).map(|i| i as f32 * 1e-3).collect();
        xs.extend([
            -1e30,
            -88.0,
            -87.336_55,
            88.3,
            100.0,
            1e30,
            f32::NEG_INFINITY,
            f32::INFINITY,
            -0.0,
            0.0,
        ]);
        xs.extend((0..1000).map(|i| f32::from_bits(0x3380_0000 + i * 0x1234)));
        for chunk in xs.chunks(L) {
            let mut x = [0f32; L];
            x[..chunk.len()].copy_from_slice(chunk);
            let mut got = [0f32; L];
            lanes(&x, &mut got);
            for (&x, &g) in x.iter().zip(&got) {
                assert_eq!(
                    g.to_bits(),
                    exp(x).to_bits(),
                    "exp({x:e}): {g:e} vs {:e}",
                    exp(x)
                );
            }
        }
        let mut got = [0f32; L];
        lanes(&[f32::NAN; L], &mut got);
        assert!(got.iter().all(|v| v.is_nan()) && exp(f32::NAN).is_nan());
    }

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

    /// Many rows at once give every row bitwise what the plain row arithmetic gives it alone,
    /// on every level, for the
    /// fixed-size shapes and the fallback, with rows that skip a block (n = 0).
    #[test]
    fn rows_at_once_match_one_row_at_a_time() {
        let mut seed = 99u64;
        for (head_dim, block) in [
            (64, ATTN_BLOCK),
            (128, ATTN_BLOCK),
            (32, ATTN_BLOCK),
            (48, ATTN_BLOCK),
            (80, ATTN_BLOCK),
            (96, ATTN_BLOCK),
            (40, ATTN_BLOCK),
            (64, 16),
            (64, 8),
        ] {
            // Rows of one length in runs of `same` (the query heads of one entry under GQA).
            for (n_rows, same) in [
                (1usize, 1usize),
                (3, 1),
                (8, 1),
                (9, 1),
                (19, 1),
                (24, 8),
                (21, 4),
                (13, 5),
            ] {
                let n_blocks = 3;
                let keys: Vec<f32> = (0..n_blocks * block * head_dim)
                    .map(|_| 2.0 * lcg(&mut seed))
                    .collect();
                let vals: Vec<f32> = (0..n_blocks * block * head_dim)
                    .map(|_| lcg(&mut seed))
                    .collect();
                let q: Vec<f32> = (0..n_rows * head_dim).map(|_| lcg(&mut seed)).collect();
                // Row r sees the first `len[r]` positions (some rows end inside a block).
                let len: Vec<usize> = (0..n_rows)
                    .map(|r| 1 + (r / same * 7 + 3) % (n_blocks * block))
                    .collect();
                let scale = 1.0 / (head_dim as f32).sqrt();
                for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
                    let level = Level::new(isa).unwrap();
                    let mut st_many = vec![SoftmaxState::default(); n_rows];
                    let mut acc_many = vec![0f32; n_rows * head_dim];
                    let mut st_one = st_many.clone();
                    let mut acc_one = acc_many.clone();
                    let mut scores = vec![0f32; block];
                    for b in 0..n_blocks {
                        let first = b * block;
                        let kt: Vec<f32> = (0..head_dim * block)
                            .map(|i| keys[(first + i % block) * head_dim + i / block])
                            .collect();
                        let v = &vals[first * head_dim..(first + block) * head_dim];
                        let ns: Vec<usize> = len
                            .iter()
                            .map(|&l| l.saturating_sub(first).min(block))
                            .collect();
                        rows_on(
                            level,
                            &q,
                            &ns,
                            &kt,
                            v,
                            block,
                            scale,
                            &mut scores,
                            &mut st_many,
                            &mut acc_many,
                        );
                        for (r, &n) in ns.iter().enumerate() {
                            if n > 0 {
                                attend_generic(
                                    &q[r * head_dim..(r + 1) * head_dim],
                                    &kt,
                                    v,
                                    block,
                                    n,
                                    scale,
                                    &mut scores,
                                    &mut st_one[r],
                                    &mut acc_one[r * head_dim..(r + 1) * head_dim],
                                );
                            }
                        }
                    }
                    let what = format!("{isa} {head_dim}/{block} rows {n_rows} by {same}");
                    assert_eq!(st_many, st_one, "{what}");
                    assert_eq!(acc_many, acc_one, "{what}");
                }
            }
        }
    }

    /// Runs rows of random queries over several blocks at every level this CPU has: the levels
    /// agree bitwise, and the result matches a two-pass softmax in f64.
    #[test]
    fn levels_agree_bitwise_and_match_softmax() {
        let (head_dim, block) = (64, ATTN_BLOCK);
        let mut seed = 7u64;
        for n_pos in [1usize, 5, 16, 17, 32, 33, 40, 70] {
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
                    rows_on(
                        Level::new(isa).unwrap(),
                        &q,
                        &[n],
                        &kt,
                        &v,
                        block,
                        scale,
                        &mut scores,
                        std::slice::from_mut(&mut st),
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
