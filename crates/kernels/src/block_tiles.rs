//! Block tiles of K-quant weights at AVX-512 and AVX2: the driver ([`matmul_tiles`]) of the VNNI
//! kernels (`avx512_blocks.rs`, `avx2_blocks.rs`). (The AMX level multiplies on BF16 tiles
//! instead, `amx_bf16.rs`.)
//!
//! - Activations are quantized to Q8_0 blocks exactly as on the other paths (`act_q8.rs`), then
//!   laid out once per call: per group of 16 tokens (the last padded with zero tokens) and
//!   block, 8 rows of `[16 tokens][4 values]` ([`TileAct`]), with each block's (or half
//!   block's) `d_a · Σ a` for the mins.
//! - Each thread rewrites its weight rows a panel at a time, per call, into its scratch buffers
//!   (`block_tile_kquant.rs`): per 16 rows (the last group padded with zero rows) and block of 32 or 16
//!   values ([`TileForm`]), a 512-byte tile of unsigned values, 16 scales and 16 mins.
//! - Per (16 rows, 16 tokens) the kernel sums each block exactly in int32 and adds
//!   `sum · (d_a · d_w)` to an `f32` accumulator, block after block, with one fused multiply-add
//!   and one more subtracting `min · d_a · Σ a`: `out[t, r]` depends on row `r` and token `t`
//!   only, never on which or how many other tokens share the call (padding tokens and rows are
//!   never read back).
//! - The driver takes the kernel as a [`TileKernel`], so that tests run it with the scalar twin
//!   ([`tile_q8_scalar`]) on any machine.

use crate::act_q8::{ActLayout, ActQ8, QK};
use crate::block_tile_shape::{Mins, TILE_BYTES, TILE_ROWS, TILE_TOKENS};
use crate::cpu::Level;
use crate::matmul::{MIN_TASK_BYTES, PANEL_BYTES};
use crate::par::{for_each_row_chunk, tile_chunk_rows};
use crate::scratch::{sized, with_panel};
use crate::{WeightType, WeightView};

/// Blocks per pass of the tile kernel: the activation tiles of one pass (32 tokens × this many
/// blocks, 16 KiB) stay in the L1 cache while every row group of a panel passes over them. Each pass
/// starts from the accumulators the last one left, so passes do not change the result.
const PASS_BLOCKS: usize = 16;
/// Row groups of 16 in a panel, at most.
const MAX_PANEL_GROUPS: usize = 16;

/// How a weight type's blocks become tiles.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct TileForm {
    /// Blocks of 16 values, one per tile in its half of the 32 (the other half zero): two
    /// weight tiles per activation block.
    pub half: bool,
}

impl TileForm {
    /// The form of `ty`. The values are unsigned, so every type has mins (its own, plus
    /// `k · d · sc` for the offset), each subtracted as `min · d_a · Σ a`.
    pub(crate) fn new(ty: WeightType) -> TileForm {
        use WeightType::*;
        TileForm {
            half: matches!(ty.stored(), Q2_K | Q3_K | Q6_K),
        }
    }

    /// Weight tiles per activation block.
    pub(crate) fn per_block(self) -> usize {
        1 + self.half as usize
    }

    /// The activation sums the form needs.
    pub(crate) fn sums(self) -> ActSums {
        match self.half {
            false => ActSums::Blocks,
            true => ActSums::Halves,
        }
    }
}

/// The tile kernel of the driver: the AVX-512 VNNI kernel (`avx512_blocks.rs`), the AVX2 one
/// (`avx2_blocks.rs`), or in tests their scalar twin, so that the driver's packing and
/// bookkeeping are tested on any machine.
pub(crate) trait TileKernel {
    /// As `block_tile_shape.rs` says; the memory of `acc` holds `acc[t][r]` (token-major).
    /// `tokens[g]`: the real tokens of group `g` (the first lanes); a kernel may leave the
    /// accumulators of the others as they are.
    #[allow(clippy::too_many_arguments)]
    fn run<const G: usize>(
        &self,
        w: &[u8],
        wd: &[f32],
        a: [&[u8]; G],
        ad: [&[f32]; G],
        half: bool,
        mins: Option<Mins<'_, G>>,
        acc: [&mut [[f32; TILE_TOKENS]; TILE_ROWS]; G],
        tokens: [usize; G],
    );
}

/// `out = x · wᵀ` for K-quant `w` by block tiles, with the kernel each thread makes for itself
/// by `kernel` (`level`: of the activations' quantization and the weights' unpacking).
pub(crate) fn matmul_tiles<K: TileKernel>(
    level: Level,
    kernel: impl Fn() -> K + Sync,
    w: &WeightView,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) {
    let (n_rows, n_cols, ty) = (w.n_rows, w.n_cols, w.ty);
    let form = TileForm::new(ty);
    let nb = n_cols / QK;
    // Weight tiles per row.
    let nt = nb * form.per_block();
    let act = TileAct::new(level, x, n_tokens, n_cols, form.sums());
    let work_per_row = ty.row_bytes(n_cols) * n_tokens;
    let panel_rows = (PANEL_BYTES / (nt * QK)).clamp(TILE_ROWS, MAX_PANEL_GROUPS * TILE_ROWS)
        / TILE_ROWS
        * TILE_ROWS;
    let min_rows = MIN_TASK_BYTES.div_ceil(work_per_row);
    let chunk = tile_chunk_rows(level, n_rows, TILE_ROWS, min_rows, panel_rows);
    let (tile_q, tile_d) = (nt * TILE_BYTES, nt * TILE_ROWS);
    let tile_m = tile_d;
    for_each_row_chunk(out, n_rows, n_tokens, chunk, |mut oc| {
        let rows = oc.rows();
        let scope = kernel();
        let mut kpack =
            crate::block_tile_kquant::Packer::new(level, w, form).expect("block tiles of K-quants");
        with_panel(|p| {
            for p0 in rows.clone().step_by(panel_rows) {
                let np = panel_rows.min(rows.end - p0);
                let n_groups = np.div_ceil(TILE_ROWS);
                let q = p.q.sized(n_groups * tile_q);
                let d = sized(&mut p.d, n_groups * tile_d);
                let m = sized(&mut p.m, n_groups * tile_m);
                for g in 0..n_groups {
                    let (qg, dg) = (
                        &mut q[g * tile_q..][..tile_q],
                        &mut d[g * tile_d..][..tile_d],
                    );
                    let mg = &mut m[g * tile_m..][..tile_m];
                    let r0 = p0 + g * TILE_ROWS;
                    let valid = (p0 + np - r0).min(TILE_ROWS);
                    kpack.pack_group(r0, valid, qg, dg, mg);
                }
                let col0 = p0 - rows.start;
                // Token groups two at a time (the last one alone when their count is odd):
                // both kernels give each (row, token) the same operations.
                let mut accs = [[[[0f32; TILE_TOKENS]; TILE_ROWS]; 2]; MAX_PANEL_GROUPS];
                let accs = &mut accs[..n_groups];
                let per = form.per_block();
                for tg in (0..act.n_groups).step_by(2) {
                    let pair = tg + 1 < act.n_groups;
                    let real = |g: usize| (n_tokens - g * TILE_TOKENS).min(TILE_TOKENS);
                    accs.fill(Default::default());
                    for b0 in (0..nb).step_by(PASS_BLOCKS) {
                        let b1 = (b0 + PASS_BLOCKS).min(nb);
                        let tiles = b0 * per..b1 * per;
                        let (aq0, ad0) = act.group(tg, b0..b1);
                        let am0 = act.sums(tg, tiles.clone());
                        for (g, [acc0, acc1]) in accs.iter_mut().enumerate() {
                            let wq =
                                &q[g * tile_q..][tiles.start * TILE_BYTES..tiles.end * TILE_BYTES];
                            let wd =
                                &d[g * tile_d..][tiles.start * TILE_ROWS..tiles.end * TILE_ROWS];
                            let wm = Some(
                                &m[g * tile_m..][tiles.start * TILE_ROWS..tiles.end * TILE_ROWS],
                            );
                            let half = form.half;
                            if pair {
                                let (aq1, ad1) = act.group(tg + 1, b0..b1);
                                let am1 = act.sums(tg + 1, tiles.clone());
                                let mins = wm.map(|w| Mins { w, a: [am0, am1] });
                                let (a, ad) = ([aq0, aq1], [ad0, ad1]);
                                let tokens = [real(tg), real(tg + 1)];
                                scope.run(wq, wd, a, ad, half, mins, [acc0, acc1], tokens);
                            } else {
                                let mins = wm.map(|w| Mins { w, a: [am0] });
                                let tokens = [real(tg)];
                                scope.run(wq, wd, [aq0], [ad0], half, mins, [acc0], tokens);
                            }
                        }
                    }
                    for (g, accs) in accs.iter().enumerate() {
                        let nr = (np - g * TILE_ROWS).min(TILE_ROWS);
                        for (i, acc) in accs.iter().enumerate().take(1 + pair as usize) {
                            let t0 = (tg + i) * TILE_TOKENS;
                            #[allow(clippy::needless_range_loop)]
                            for t in 0..(n_tokens - t0).min(TILE_TOKENS) {
                                let o = &mut oc.token(t0 + t)[col0 + g * TILE_ROWS..][..nr];
                                o.copy_from_slice(&acc[t][..nr]);
                            }
                        }
                    }
                }
            }
        });
        drop(scope);
    });
}

/// Which sums of each token's quantized values a [`TileAct`] keeps, for the mins of the
/// weights ([`TileForm`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ActSums {
    /// `d · Σ q` over each block of 32.
    Blocks,
    /// `d · Σ q` over each half block of 16.
    Halves,
}

/// Q8_0 activations laid out as the block tiles read them (groups of [`TILE_TOKENS`] tokens),
/// or as the in-place K-quant kernels read them (groups of fewer: `kquants::*_x16::tile_tokens`).
pub(crate) struct TileAct {
    /// Groups of `lanes` tokens.
    pub n_groups: usize,
    /// Blocks per token.
    pub nb: usize,
    /// Tokens per group: [`TILE_TOKENS`], or fewer where a call has fewer tokens and no tile
    /// unit reads them (values past a call's tokens would be padding read for nothing).
    pub lanes: usize,
    /// `[group][block][k: 8][token: lanes][4]`: values `4k..4k+4` of each token's block, as
    /// bytes of `i8`; zeros for padding tokens.
    pub qs: crate::scratch::AlignedBytes,
    /// `[group][block][token: lanes]`: block scales; zeros for padding tokens.
    pub d: Vec<f32>,
    /// `[group][unit][token: lanes]`: the [`ActSums`] asked for, per block or half block (empty
    /// for none); zeros for padding tokens.
    pub s: Vec<f32>,
    /// Sums per block: 0, 1 or 2.
    pub s_per_block: usize,
}

impl TileAct {
    /// Quantizes `n_tokens` rows of `x` (`[n_tokens, n_cols]`) as [`ActQ8`] does, in groups of
    /// [`TILE_TOKENS`].
    pub(crate) fn new(
        level: Level,
        x: &[f32],
        n_tokens: usize,
        n_cols: usize,
        sums: ActSums,
    ) -> TileAct {
        Self::with_lanes(level, x, n_tokens, n_cols, sums, TILE_TOKENS)
    }

    /// [`TileAct::new`] in groups of `lanes` tokens (at most [`TILE_TOKENS`]).
    pub(crate) fn with_lanes(
        level: Level,
        x: &[f32],
        n_tokens: usize,
        n_cols: usize,
        sums: ActSums,
        lanes: usize,
    ) -> TileAct {
        assert!((1..=TILE_TOKENS).contains(&lanes));
        let nat = ActQ8::new(level, x, n_tokens, n_cols, ActLayout::Natural, None);
        let nb = n_cols / QK;
        let n_groups = n_tokens.div_ceil(lanes);
        // Bytes of one block's tile: eight rows of four bytes a token.
        let tile = QK * lanes;
        let sp = match sums {
            ActSums::Blocks => 1,
            ActSums::Halves => 2,
        };
        let mut act = TileAct {
            n_groups,
            nb,
            lanes,
            qs: crate::scratch::AlignedBytes::zeroed(n_groups * nb * tile),
            d: vec![0.0; n_groups * nb * lanes],
            s: vec![0.0; n_groups * nb * sp * lanes],
            s_per_block: sp,
        };
        let fill = |(g, (qs, d)): (usize, (&mut [u8], &mut [f32]))| {
            for n in 0..lanes.min(n_tokens - g * lanes) {
                let t = g * lanes + n;
                let (tq, td) = (nat.qs(t), nat.d(t));
                for b in 0..nb {
                    for k in 0..QK / 4 {
                        let at = b * tile + k * 4 * lanes + n * 4;
                        for j in 0..4 {
                            qs[at + j] = tq[b * QK + 4 * k + j] as u8;
                        }
                    }
                    d[b * lanes + n] = td[b];
                }
            }
        };
        let sum = |(g, s): (usize, &mut [f32])| {
            for n in 0..lanes.min(n_tokens - g * lanes) {
                let t = g * lanes + n;
                let (tq, td) = (nat.qs(t), nat.d(t));
                if sp == 1 {
                    // Whole blocks: the integer sums the quantizer made.
                    for (b, &total) in nat.sums(t).iter().enumerate() {
                        s[b * lanes + n] = td[b] * total as f32;
                    }
                    continue;
                }
                for (u, vals) in tq.chunks_exact(QK / sp).enumerate() {
                    let total: i32 = vals.iter().map(|&v| v as i32).sum();
                    s[u * lanes + n] = td[u / sp] * total as f32;
                }
            }
        };
        let (gq, gd) = (nb * tile, nb * lanes);
        let tiles = act.qs.chunks_mut(gq).zip(act.d.chunks_mut(gd)).enumerate();
        let sums = act.s.chunks_mut(gd * sp.max(1)).enumerate();
        if n_groups > 1 {
            crate::team::for_each_item(tiles.collect(), fill);
            crate::team::for_each_item(sums.collect(), sum);
        } else {
            tiles.for_each(fill);
            sums.for_each(sum);
        }
        act
    }

    /// The tiles and scales of token group `g`, blocks `blocks`.
    pub(crate) fn group(&self, g: usize, blocks: std::ops::Range<usize>) -> (&[u8], &[f32]) {
        let (tile, lanes) = (QK * self.lanes, self.lanes);
        let q = &self.qs[g * self.nb * tile..][..self.nb * tile];
        let d = &self.d[g * self.nb * lanes..][..self.nb * lanes];
        (
            &q[blocks.start * tile..blocks.end * tile],
            &d[blocks.start * lanes..blocks.end * lanes],
        )
    }

    /// The sums of token group `g` for weight tiles `tiles` (one sum per tile; empty when the
    /// activations keep none).
    pub(crate) fn sums(&self, g: usize, tiles: std::ops::Range<usize>) -> &[f32] {
        if self.s_per_block == 0 {
            return &[];
        }
        let lanes = self.lanes;
        let per_group = self.nb * self.s_per_block * lanes;
        &self.s[g * per_group..][tiles.start * lanes..tiles.end * lanes]
    }
}

/// The scalar twin as a [`TileKernel`] (tests of the driver).
#[cfg(test)]
pub(crate) struct ScalarTiles;

#[cfg(test)]
impl TileKernel for ScalarTiles {
    fn run<const G: usize>(
        &self,
        w: &[u8],
        wd: &[f32],
        a: [&[u8]; G],
        ad: [&[f32]; G],
        half: bool,
        mins: Option<Mins<'_, G>>,
        acc: [&mut [[f32; TILE_TOKENS]; TILE_ROWS]; G],
        _tokens: [usize; G],
    ) {
        for (g, acc) in acc.into_iter().enumerate() {
            let m = mins.as_ref().map(|m| (m.w, m.a[g]));
            tile_q8_scalar(w, wd, a[g], ad[g], half, m, acc);
        }
    }
}

/// Scalar twin of the block-tile kernels (`avx512_blocks.rs`, `avx2_blocks.rs`: weight tiles
/// `[k: 8][row: 16][4]` unsigned, accumulators `acc[t][r]`) for one token group: the same integer block sums and the same float operations
/// in the same order (`d_a · d_w`, one fused multiply-add per tile, then with `mins = (wm, am)`
/// one more subtracting `wm · am`), so the results are bitwise equal.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile_q8_scalar(
    w: &[u8],
    wd: &[f32],
    a: &[u8],
    ad: &[f32],
    half: bool,
    mins: Option<(&[f32], &[f32])>,
    acc: &mut [[f32; TILE_TOKENS]; TILE_ROWS],
) {
    let nt = wd.len() / TILE_ROWS;
    let na = if half { nt / 2 } else { nt };
    assert!(
        wd.len() == nt * TILE_ROWS
            && ad.len() == na * TILE_TOKENS
            && w.len() == nt * TILE_BYTES
            && a.len() == na * TILE_BYTES
    );
    transpose(acc);
    for b in 0..nt {
        let ab = if half { b / 2 } else { b };
        let (wt, at) = (&w[b * TILE_BYTES..], &a[ab * TILE_BYTES..]);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            for (t, v) in acc_r.iter_mut().enumerate() {
                let mut s = 0i32;
                for k in 0..QK / 4 {
                    for j in 0..4 {
                        let wv = wt[k * 64 + r * 4 + j] as i32;
                        let av = at[k * 64 + t * 4 + j] as i8 as i32;
                        s += wv * av;
                    }
                }
                let scale = ad[ab * TILE_TOKENS + t] * wd[b * TILE_ROWS + r];
                *v = (s as f32).mul_add(scale, *v);
                if let Some((wm, am)) = mins {
                    *v = (-wm[b * TILE_ROWS + r]).mul_add(am[b * TILE_TOKENS + t], *v);
                }
            }
        }
    }
    transpose(acc);
}

/// `m` transposed in place (the VNNI kernel's accumulators are token-major).
#[cfg(test)]
fn transpose(m: &mut [[f32; TILE_TOKENS]; TILE_ROWS]) {
    let c = *m;
    for (r, row) in c.iter().enumerate() {
        for (t, &v) in row.iter().enumerate() {
            m[t][r] = v;
        }
    }
}
