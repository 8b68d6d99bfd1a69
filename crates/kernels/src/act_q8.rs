//! Activations quantized to Q8_0 blocks before integer dot products against Q8_0 / Q4_0
//! weights, exactly as llama.cpp's CPU backend does (its reference `quantize_row_q8_0`).
//!
//! Per block of 32 values: `amax = max|x|`, `d = amax / 127`, `id = d != 0 ? 1/d : 0`,
//! `q = roundf(x · id)` (half away from zero), and the scale kept is `d` rounded to f16. The
//! scale is stored here as the `f32` value of that f16, so kernels multiply by it directly.
//!
//! Besides `q` and `d`, each block keeps `Σ q` (the correction of kernels that offset one operand
//! to make it unsigned), and, when asked, per 4-value group `−k · Σ q` for the decode kernels
//! that offset the weights by `k`.

use half::f16;

use crate::cpu::Level;

/// Values per block.
pub(crate) const QK: usize = 32;
/// Blocks per group of [`ActLayout::Interleaved`] (and of packed weight panels).
pub(crate) const GROUP_BLOCKS: usize = 16;
/// Bytes of one group of [`ActLayout::Interleaved`].
pub(crate) const GROUP_BYTES: usize = GROUP_BLOCKS * QK;
/// 4-value groups of a block (the int32 lanes of the SIMD dot products).
pub(crate) const LANES: usize = QK / 4;

/// Where each block's 32 quantized values sit in [`ActQ8::qs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ActLayout {
    /// Block after block, values in order (the decode kernels, one token against raw rows).
    Natural,
    /// Groups of [`GROUP_BLOCKS`] blocks, the last padded with zero blocks; within a group,
    /// values `4k..4k+4` of block `i` sit at bytes `(k · 16 + i) · 4` (the layout of packed
    /// weight panels, see `pack.rs`): one 64-byte vector holds the same 4 positions of 16 blocks.
    Interleaved,
}

/// Quantized activations of `n_tokens` rows.
#[derive(Debug, Clone)]
pub(crate) struct ActQ8 {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub n_tokens: usize,
    /// Blocks stored per token (padding included).
    pub n_blocks: usize,
    /// `[n_tokens][n_blocks · 32]` in `layout` (as `i8`; on a 64-byte boundary).
    pub qs: crate::scratch::AlignedBytes,
    /// `[n_tokens][n_blocks]`: scales (f16 values, as `f32`); 0 for padding. On a 64-byte
    /// boundary, as `sums`: a group's 16 values are one cache line for the tile kernels' loads
    /// (line-splitting loads made AVX-512 Q4_0 prefill several percent slower).
    d: crate::scratch::AlignedBytes,
    /// `[n_tokens][n_blocks]`: `Σ q` of each block.
    sums: crate::scratch::AlignedBytes,
    /// `[n_tokens][n_blocks][8]`: `−k · Σ q` over each 4-value group, for the `k` asked for
    /// (empty when not asked for; only with [`ActLayout::Natural`]).
    pub lane_corr: Vec<i32>,
    /// The tokens regrouped for the AVX2 tile kernel, when its products will take them
    /// (`matmul_quant::tile_act`).
    #[cfg(target_arch = "x86_64")]
    pub groups: Option<crate::avx2_tile::TokenGroups>,
}

impl ActQ8 {
    /// Quantizes `n_tokens` rows of `x` (`[n_tokens, n_cols]`, `n_cols` a multiple of 32).
    /// `lane_corr_k`: the weight offset `k` the decode kernel will correct for, if any.
    pub(crate) fn new(
        level: Level,
        x: &[f32],
        n_tokens: usize,
        n_cols: usize,
        layout: ActLayout,
        lane_corr_k: Option<i32>,
    ) -> ActQ8 {
        assert_eq!(
            n_cols % QK,
            0,
            "Q8_0 activations need a multiple of 32 columns"
        );
        assert_eq!(x.len(), n_tokens * n_cols);
        assert!(lane_corr_k.is_none() || layout == ActLayout::Natural);
        let nb = n_cols / QK;
        let n_blocks = match layout {
            ActLayout::Natural => nb,
            ActLayout::Interleaved => nb.div_ceil(GROUP_BLOCKS) * GROUP_BLOCKS,
        };
        let lc_len = if lane_corr_k.is_some() { nb * LANES } else { 0 };
        let mut act = ActQ8 {
            n_tokens,
            n_blocks,
            qs: crate::scratch::AlignedBytes::zeroed_reused(n_tokens * n_blocks * QK),
            d: crate::scratch::AlignedBytes::zeroed_reused(n_tokens * n_blocks * 4),
            sums: crate::scratch::AlignedBytes::zeroed_reused(n_tokens * n_blocks * 4),
            lane_corr: vec![0; n_tokens * lc_len],
            #[cfg(target_arch = "x86_64")]
            groups: None,
        };
        let row_qs = n_blocks * QK;
        let mut lc_rows = act.lane_corr.chunks_mut(lc_len.max(1));
        let rows: Vec<RowOut<'_>> = act
            .qs
            .as_i8_mut()
            .chunks_mut(row_qs)
            .zip(bytemuck::cast_slice_mut::<u8, f32>(&mut act.d).chunks_mut(n_blocks))
            .zip(bytemuck::cast_slice_mut::<u8, i32>(&mut act.sums).chunks_mut(n_blocks))
            .map(|((qs, d), sums)| RowOut {
                qs,
                d: &mut d[..nb],
                sums: &mut sums[..nb],
                lc: lane_corr_k.and_then(|k| Some((lc_rows.next()?, k))),
            })
            .collect();
        let work = |tmp: &mut Vec<i8>, (row, xt): (RowOut<'_>, &[f32])| match (layout, level) {
            (ActLayout::Natural, _) => quantize_row(level, xt, row.qs, row.d, row.sums, row.lc),
            // Straight into the interleaved order at AVX-512.
            #[cfg(target_arch = "x86_64")]
            (ActLayout::Interleaved, Level::Avx512(k)) => {
                crate::avx512_act::quantize_row_interleaved(k, xt, row.qs, row.d, row.sums)
            }
            (ActLayout::Interleaved, _) => {
                tmp.resize(n_cols, 0);
                quantize_row(level, xt, tmp, row.d, row.sums, None);
                interleave(tmp, row.qs);
            }
        };
        if n_tokens * n_cols < PAR_MIN_VALUES {
            let mut tmp = Vec::new();
            for item in rows.into_iter().zip(x.chunks(n_cols)) {
                work(&mut tmp, item);
            }
        } else {
            let items: Vec<_> = rows.into_iter().zip(x.chunks(n_cols)).collect();
            crate::team::for_each_item(items, |item| work(&mut Vec::new(), item));
        }
        act
    }

    /// Token `t`'s quantized values.
    pub(crate) fn qs(&self, t: usize) -> &[i8] {
        let n = self.n_blocks * QK;
        &self.qs.as_i8()[t * n..(t + 1) * n]
    }
    /// Token `t`'s block scales.
    pub(crate) fn d(&self, t: usize) -> &[f32] {
        &bytemuck::cast_slice::<u8, f32>(&self.d)[t * self.n_blocks..(t + 1) * self.n_blocks]
    }
    /// Token `t`'s block sums.
    pub(crate) fn sums(&self, t: usize) -> &[i32] {
        &bytemuck::cast_slice::<u8, i32>(&self.sums)[t * self.n_blocks..(t + 1) * self.n_blocks]
    }
    /// Token `t`'s lane corrections (empty when not asked for).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn lane_corr(&self, t: usize) -> &[i32] {
        let n = self.lane_corr.len() / self.n_tokens.max(1);
        &self.lane_corr[t * n..(t + 1) * n]
    }
}

/// The buffers go back to the dropping thread's spares, for the next activations.
impl Drop for ActQ8 {
    fn drop(&mut self) {
        for b in [&mut self.qs, &mut self.d, &mut self.sums] {
            std::mem::take(b).recycle();
        }
    }
}

/// Fewer values than this are quantized on the calling thread.
const PAR_MIN_VALUES: usize = 1 << 14;

/// One token's share of the output buffers.
struct RowOut<'a> {
    qs: &'a mut [i8],
    d: &'a mut [f32],
    sums: &'a mut [i32],
    lc: Option<(&'a mut [i32], i32)>,
}

/// Quantizes one row (`x.len()` a multiple of 32) into `qs` (natural layout), `d`, `sums`, and
/// the lane corrections `(lc, k)` when given.
pub(crate) fn quantize_row(
    level: Level,
    x: &[f32],
    qs: &mut [i8],
    d: &mut [f32],
    sums: &mut [i32],
    lc: Option<(&mut [i32], i32)>,
) {
    match level {
        Level::Scalar => quantize_row_scalar(x, qs, d, sums, lc),
        #[cfg(target_arch = "x86_64")]
        Level::Avx2(t) => crate::avx2_act::quantize_row(t, x, qs, d, sums, lc),
        #[cfg(target_arch = "x86_64")]
        Level::Avx512(t) => crate::avx2_act::quantize_row(t.avx2(), x, qs, d, sums, lc),
    }
}

/// `roundf`: nearest integer, halves away from zero (for `|v| < 2³¹`), without a libm call.
#[inline]
pub(crate) fn round_half_away(v: f32) -> f32 {
    let t = v as i32 as f32; // truncation; v − t is exact
    let frac = v - t;
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// The scale and `1/scale` of a block whose largest magnitude is `amax`: `(f16(d) as f32, id)`.
#[inline]
pub(crate) fn block_scale(amax: f32) -> (f32, f32) {
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (f16::from_f32(d).to_f32(), id)
}

/// Scalar twin of the SIMD row quantizers.
pub(crate) fn quantize_row_scalar(
    x: &[f32],
    qs: &mut [i8],
    d: &mut [f32],
    sums: &mut [i32],
    mut lc: Option<(&mut [i32], i32)>,
) {
    let nb = x.len() / QK;
    assert!(x.len() == nb * QK && qs.len() == x.len() && d.len() == nb && sums.len() == nb);
    for b in 0..nb {
        let xb = &x[b * QK..(b + 1) * QK];
        let qb = &mut qs[b * QK..(b + 1) * QK];
        let amax = xb
            .iter()
            .fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m });
        let (db, id) = block_scale(amax);
        d[b] = db;
        for (q, v) in qb.iter_mut().zip(xb) {
            *q = round_half_away(v * id) as i8;
        }
        sums[b] = qb.iter().map(|&q| q as i32).sum();
        if let Some((lc, k)) = lc.as_mut() {
            for (l, c) in lc[b * LANES..(b + 1) * LANES].iter_mut().enumerate() {
                *c = -*k * qb[4 * l..4 * l + 4].iter().map(|&q| q as i32).sum::<i32>();
            }
        }
    }
}

/// Copies a natural-layout row into [`ActLayout::Interleaved`] (`dst` already zeroed, its
/// length a whole number of groups).
pub(crate) fn interleave(src: &[i8], dst: &mut [i8]) {
    for (b, block) in src.chunks_exact(QK).enumerate() {
        let (g, i) = (b / GROUP_BLOCKS, b % GROUP_BLOCKS);
        let group = &mut dst[g * GROUP_BYTES..(g + 1) * GROUP_BYTES];
        for (k, four) in block.chunks_exact(4).enumerate() {
            let at = (k * GROUP_BLOCKS + i) * 4;
            group[at..at + 4].copy_from_slice(four);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's `quantize_row_q8_0_ref`, transcribed line by line: f16 scale bits and q.
    fn reference(x: &[f32]) -> Vec<(u16, [i8; 32])> {
        x.chunks_exact(32)
            .map(|xb| {
                let mut amax = 0.0f32;
                for &v in xb {
                    amax = if amax > v.abs() { amax } else { v.abs() };
                }
                let d = amax / ((1 << 7) - 1) as f32;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                let mut q = [0i8; 32];
                for (o, &v) in q.iter_mut().zip(xb) {
                    *o = (v * id).round() as i8; // C roundf: halves away from zero
                }
                (f16::from_f32(d).to_bits(), q)
            })
            .collect()
    }

    fn check_against_reference(level: Level, x: &[f32]) {
        let nb = x.len() / 32;
        let (mut qs, mut d, mut sums) = (vec![0i8; x.len()], vec![0f32; nb], vec![0i32; nb]);
        let mut lc = vec![0i32; nb * 8];
        quantize_row(level, x, &mut qs, &mut d, &mut sums, Some((&mut lc, 8)));
        for (b, (want_d, want_q)) in reference(x).into_iter().enumerate() {
            assert_eq!(
                f16::from_f32(d[b]).to_bits(),
                want_d,
                "{level:?} block {b} scale"
            );
            assert_eq!(d[b], f16::from_bits(want_d).to_f32());
            assert_eq!(
                &qs[b * 32..(b + 1) * 32],
                &want_q[..],
                "{level:?} block {b}"
            );
            assert_eq!(sums[b], want_q.iter().map(|&q| q as i32).sum::<i32>());
            for l in 0..8 {
                let s: i32 = want_q[4 * l..4 * l + 4].iter().map(|&q| q as i32).sum();
                assert_eq!(lc[b * 8 + l], -8 * s);
            }
        }
    }

    fn xorshift(state: &mut u64) -> f32 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    /// Inputs that hit the rounding edge cases: exact halves after scaling, zeros, one large value.
    fn edge_rows() -> Vec<Vec<f32>> {
        let mut rows = Vec::new();
        // amax 127 makes id = 1: values k + 0.5 are exact ties.
        rows.push(
            (0..32)
                .map(|j| {
                    if j == 0 {
                        127.0
                    } else {
                        (j as f32 - 16.0) + 0.5
                    }
                })
                .collect(),
        );
        rows.push(vec![0.0; 32]);
        rows.push((0..32).map(|j| if j == 5 { -3e-3 } else { 0.0 }).collect());
        rows.push((0..32).map(|j| (j as f32 * 0.37).sin() * 1e-6).collect());
        rows.push((0..32).map(|j| (j as f32 - 15.5) * 1e4).collect());
        rows
    }

    #[test]
    fn scalar_matches_llama_cpp_reference() {
        for x in edge_rows() {
            check_against_reference(Level::Scalar, &x);
        }
        let mut s = 0x9e3779b97f4a7c15u64;
        let x: Vec<f32> = (0..32 * 64).map(|_| xorshift(&mut s) * 3.0).collect();
        check_against_reference(Level::Scalar, &x);
    }

    #[test]
    fn every_level_matches_llama_cpp_reference() {
        let mut s = 0x2545f4914f6cdd1du64;
        for isa in crate::Isa::ALL {
            let Some(level) = Level::new(isa) else {
                continue;
            };
            for x in edge_rows() {
                check_against_reference(level, &x);
            }
            for nb in [1, 2, 3, 7, 64] {
                let scale = 10f32.powi(nb % 5 - 2);
                let x: Vec<f32> = (0..32 * nb).map(|_| xorshift(&mut s) * scale).collect();
                check_against_reference(level, &x);
            }
        }
    }

    #[test]
    fn interleaved_layout_and_padding() {
        let (n_tokens, n_cols) = (3, 32 * 17); // 17 blocks: one full group, one padded
        let mut s = 7u64;
        let x: Vec<f32> = (0..n_tokens * n_cols).map(|_| xorshift(&mut s)).collect();
        let nat = ActQ8::new(
            Level::Scalar,
            &x,
            n_tokens,
            n_cols,
            ActLayout::Natural,
            None,
        );
        let il = ActQ8::new(
            Level::Scalar,
            &x,
            n_tokens,
            n_cols,
            ActLayout::Interleaved,
            None,
        );
        assert_eq!(il.n_blocks, 32);
        for t in 0..n_tokens {
            for b in 0..il.n_blocks {
                let (g, i) = (b / 16, b % 16);
                for j in 0..32 {
                    let got = il.qs(t)[g * 512 + ((j / 4) * 16 + i) * 4 + j % 4];
                    let want = if b < 17 { nat.qs(t)[b * 32 + j] } else { 0 };
                    assert_eq!(got, want);
                }
                let (d, sum) = if b < 17 {
                    (nat.d(t)[b], nat.sums(t)[b])
                } else {
                    (0.0, 0)
                };
                assert_eq!((il.d(t)[b], il.sums(t)[b]), (d, sum));
            }
        }
    }

    /// Every level's interleaved activations (AVX-512 quantizes straight into that order) are
    /// the scalar level's, bit for bit, for whole and part-filled groups, one token or enough
    /// to be spread over threads, and the edge rows of the reference test.
    #[test]
    fn interleaved_levels_agree_bitwise() {
        let mut s = 0x5851f42d4c957f2du64;
        let mut cases: Vec<(usize, Vec<f32>)> = edge_rows().into_iter().map(|x| (1, x)).collect();
        for (n_tokens, nb) in [(1, 1), (1, 15), (1, 16), (1, 17), (3, 40), (64, 33)] {
            let scale = 10f32.powi((nb % 5) as i32 - 2);
            let x = (0..n_tokens * nb * 32)
                .map(|_| xorshift(&mut s) * scale)
                .collect();
            cases.push((n_tokens, x));
        }
        for (n_tokens, x) in cases {
            let n_cols = x.len() / n_tokens;
            let il = |level| ActQ8::new(level, &x, n_tokens, n_cols, ActLayout::Interleaved, None);
            let want = il(Level::Scalar);
            for isa in crate::Isa::ALL {
                let Some(level) = Level::new(isa) else {
                    continue;
                };
                let got = il(level);
                for t in 0..n_tokens {
                    let what = format!("{isa} {n_tokens} tokens of {n_cols}, token {t}");
                    assert_eq!(got.qs(t), want.qs(t), "{what}");
                    assert_eq!(got.sums(t), want.sums(t), "{what}");
                    let bits = |a: &ActQ8| a.d(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "{what}");
                }
            }
        }
    }
}
