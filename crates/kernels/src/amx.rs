//! Block tiles of Q8_0 / Q4_0 and K-quant weights: the driver ([`matmul_tiles`]) of the VNNI
//! layout's tiles at AVX-512 and AVX2 (`avx512_blocks.rs`, `avx2_blocks.rs`), and the int8 tile
//! layout of AMX's `tdpbssd` (`amx_tile.rs`). The products of the AMX level no longer take the
//! int8 tiles (they take BF16 tiles, `amx_bf16.rs`: about 1.5x faster at 512 tokens, with no
//! per-block epilogue); the int8 layout now runs only on the software model of the tile unit in
//! tests, and what follows describes it.
//!
//! - Activations are quantized to Q8_0 blocks exactly as on the other paths (`act_q8.rs`), then
//!   laid out once per call as the second operand of `tdpbssd`: per group of 16 tokens (the last
//!   padded with zero tokens) and block, 8 rows of `[16 tokens][4 values]` ([`TileAct`]).
//! - Each thread rewrites its weight rows a panel at a time, per call, into its scratch buffers:
//!   per 16 rows (the last group padded with zero rows) and block, the 16 rows' 32 values as
//!   signed bytes (Q4_0 nibbles minus 8) — a 512-byte tile — and the 16 block scales as `f32`.
//!   K-quant rows are unpacked and rewritten the same way (`amx_kquant.rs`): a tile per block of
//!   32 or 16 values ([`TileForm`]), with the blocks' mins where the type has them.
//! - Per (16 rows, 16 tokens) the tile kernel sums each block exactly in int32 and adds
//!   `sum · (d_a · d_w)` to an `f32` accumulator, block after block, with one fused
//!   multiply-add (and one more subtracting `min · d_a · Σ a` for types with mins):
//!   `out[t, r]` depends on row `r` and token `t` only, never on which or how many other tokens
//!   share the call (padding tokens and rows are never read back).
//! - The driver ([`matmul_tiles`]) takes the kernel as a [`TileKernel`], so that tests run it
//!   with the scalar twin on machines without AMX, and with the AMX kernel itself on a software
//!   model of the tile unit (`amx_tile::EmulatedTiles`) wherever AVX-512 runs.
//!
//! Throughput: one 16 × 16 × 32 tile product per block uses half the depth a tile row can take
//! (64 bytes), and each block's sums must leave the tile unit through memory for the `f32`
//! epilogue (3 vector operations per 16 outputs per block); the tile loads and stores, and that
//! epilogue, are the bounds. Two token groups share each weight tile load.
//!
//! Which kernels: this path serves every call of 2 tokens or more at the AMX level, whatever the
//! shape (measured for Q8_0 / Q4_0; the K-quant tiles, added on a machine without AMX, are
//! tested against their scalar twin on the model of the tile unit and not yet timed). It is faster than the AVX-512 VNNI tiles from about 16 tokens on, on every shape
//! measured (TinyLlama's and stories15M's matrices); below that it computes 16 tokens' worth
//! for a few and is slower. Choosing by token count would make a token's result depend on how
//! many others share its call, so the choice is per level only.

use crate::act_q8::{ActLayout, ActQ8, QK};
use crate::amx_tile::{tile_q8, Mins, TileUnit, TILE_BYTES, TILE_ROWS, TILE_TOKENS};
use crate::cpu::Level;
use crate::dot_scalar::{f16_at, Q4_0_BYTES, Q8_0_BYTES};
use crate::matmul::{MIN_TASK_BYTES, PANEL_BYTES};
use crate::par::{chunk_rows, for_each_row_chunk};
use crate::qx16::X16;
use crate::scratch::{sized, with_panel};
use crate::{WeightType, WeightView};

/// Blocks per pass of the tile kernel: the activation tiles of one pass (32 tokens × this many
/// blocks, 16 KiB) stay in the L1 cache while every row group of a panel passes over them. Each pass
/// starts from the accumulators the last one left, so passes do not change the result.
const PASS_BLOCKS: usize = 16;
/// How many blocks ahead the panel packer prefetches each stored row.
const PACK_PREFETCH_BLOCKS: usize = 8;
/// Row groups of 16 in a panel, at most.
const MAX_PANEL_GROUPS: usize = 16;

/// How a weight tile's 512 bytes hold its 16 rows × 32 values.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum TileLayout {
    /// Row after row, values as signed bytes (`u − k`): `tdpbssd`'s first operand.
    Amx,
    /// `[k: 8][row: 16][4]`, values `4k..4k+4` of each row, as unsigned bytes (`u`, the offset
    /// `k` moved into the min): one 64-byte vector per `k` for `vpdpbusd`, a lane per row
    /// (`avx512_blocks.rs`).
    Vnni,
}

/// How a weight type's blocks become tiles.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct TileForm {
    pub layout: TileLayout,
    /// Blocks of 16 values, one per tile in its half of the 32 (the other half zero): two
    /// weight tiles per activation block.
    pub half: bool,
    /// Each block has a min to subtract (`min · d_a · Σ a`).
    pub mins: bool,
}

impl TileForm {
    /// The form of `ty` in `layout`: with AMX, mins only where the type has them; with VNNI the
    /// values are unsigned, so every type has mins (its own, plus `k · d · sc` for the offset).
    pub(crate) fn new(layout: TileLayout, ty: WeightType) -> TileForm {
        use WeightType::*;
        TileForm {
            layout,
            half: matches!(ty.stored(), Q2_K | Q3_K | Q6_K),
            mins: layout == TileLayout::Vnni || matches!(ty.stored(), Q2_K | Q4_K | Q5_K),
        }
    }

    /// Weight tiles per activation block.
    pub(crate) fn per_block(self) -> usize {
        1 + self.half as usize
    }

    /// The activation sums the form needs.
    pub(crate) fn sums(self) -> ActSums {
        match (self.mins, self.half) {
            (false, _) => ActSums::None,
            (true, false) => ActSums::Blocks,
            (true, true) => ActSums::Halves,
        }
    }
}

/// The tile kernel of the driver: [`tile_q8`] under a thread's [`TileScope`], the AVX-512 VNNI
/// kernel (`avx512_blocks.rs`), or in tests their scalar twin, so that the driver's packing and
/// bookkeeping are tested on any machine.
pub(crate) trait TileKernel {
    /// As [`tile_q8`], weights in the layout the driver was given; with
    /// [`TileLayout::Vnni`] the memory of `acc` holds `acc[t][r]` instead of `acc[r][t]`.
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

/// The AMX kernel on a tile unit: the hardware's ([`TileScope`]), or in tests its software
/// model (`amx_tile::EmulatedTiles`).
impl<U: TileUnit> TileKernel for U {
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
        // A tile product takes all 16 tokens at once.
        tile_q8(self, w, wd, a, ad, half, mins, acc)
    }
}

/// The driver of [`matmul_amx`], with weight tiles in `layout` and the kernel each thread makes
/// for itself by `kernel` (`level`: of the activations' quantization and the weights'
/// unpacking, AVX-512 where the weights are repacked Q4_0).
pub(crate) fn matmul_tiles<K: TileKernel>(
    level: Level,
    layout: TileLayout,
    kernel: impl Fn() -> K + Sync,
    w: &WeightView,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) {
    let (n_rows, n_cols, ty) = (w.n_rows, w.n_cols, w.ty);
    let form = TileForm::new(layout, ty);
    // The VNNI kernel's accumulators are token-major.
    let token_major = layout == TileLayout::Vnni;
    let nb = n_cols / QK;
    // Weight tiles per row.
    let nt = nb * form.per_block();
    let act = TileAct::new(level, x, n_tokens, n_cols, form.sums());
    let work_per_row = ty.row_bytes(n_cols) * n_tokens;
    let chunk = chunk_rows(n_rows, TILE_ROWS, MIN_TASK_BYTES.div_ceil(work_per_row));
    let panel_rows = (PANEL_BYTES / (nt * QK)).clamp(TILE_ROWS, MAX_PANEL_GROUPS * TILE_ROWS)
        / TILE_ROWS
        * TILE_ROWS;
    let (tile_q, tile_d) = (nt * TILE_BYTES, nt * TILE_ROWS);
    let tile_m = if form.mins { tile_d } else { 0 };
    for_each_row_chunk(out, n_rows, n_tokens, chunk, |mut oc| {
        let rows = oc.rows();
        let scope = kernel();
        let mut kpack = crate::amx_kquant::Packer::new(level, w, form);
        // Q8_0 / Q4_0 rows are packed for AMX only.
        assert!(kpack.is_some() || form.layout == TileLayout::Amx);
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
                    match &mut kpack {
                        Some(k) => k.pack_group(r0, valid, qg, dg, mg),
                        None => {
                            let rows = std::array::from_fn(|i| (i < valid).then(|| w.row(r0 + i)));
                            match (X16::of(ty), level) {
                                (Some(kind), Level::Avx512(k)) => {
                                    crate::avx512_x16::pack_tile_group(k, kind, &rows, qg, dg)
                                }
                                _ => pack_tile_group(ty, &rows, qg, dg),
                            }
                        }
                    }
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
                            let wm = form.mins.then(|| {
                                &m[g * tile_m..][tiles.start * TILE_ROWS..tiles.end * TILE_ROWS]
                            });
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
                                if token_major {
                                    o.copy_from_slice(&acc[t][..nr]);
                                } else {
                                    for (r, o) in o.iter_mut().enumerate() {
                                        *o = acc[r][t];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        });
        drop(scope);
    });
}

/// Packs a row group: the stored (or repacked, `qx16.rs`) rows' values as signed bytes into
/// `q` (`nb` tiles of 16 rows × 32 bytes, written one tile after the other) and their block
/// scales into `d` (`nb × 16`); zeros for padding rows (`None`).
pub(crate) fn pack_tile_group(
    ty: WeightType,
    rows: &[Option<&[u8]>; TILE_ROWS],
    q: &mut [u8],
    d: &mut [f32],
) {
    let nb = d.len() / TILE_ROWS;
    assert!(q.len() == nb * TILE_BYTES && d.len() == nb * TILE_ROWS);
    if let Some(kind) = X16::of(ty) {
        // Repacked rows: the stored blocks put back together, then packed as stored ones.
        let stored: Vec<Option<Vec<u8>>> = rows
            .iter()
            .map(|r| {
                r.map(|r| {
                    (0..nb)
                        .flat_map(|b| {
                            crate::qx16::block_at(kind, r, b)[..kind.block_bytes()].to_vec()
                        })
                        .collect()
                })
            })
            .collect();
        let rows = std::array::from_fn(|m| stored[m].as_deref());
        return pack_tile_group(kind.stored(), &rows, q, d);
    }
    let bytes = match ty {
        WeightType::Q8_0 => Q8_0_BYTES,
        WeightType::Q4_0 => Q4_0_BYTES,
        _ => panic!("not a Q8_0 / Q4_0 type: {ty:?}"),
    };
    assert!(rows.iter().flatten().all(|r| r.len() == nb * bytes));
    for (b, (tile, scales)) in q
        .chunks_exact_mut(TILE_BYTES)
        .zip(d.chunks_exact_mut(TILE_ROWS))
        .enumerate()
    {
        for ((dst, scale), row) in tile.chunks_exact_mut(QK).zip(scales).zip(rows) {
            let dst: &mut [u8; QK] = dst.try_into().unwrap();
            let Some(row) = row else {
                *dst = [0; QK];
                *scale = 0.0;
                continue;
            };
            let blk = &row[b * bytes..(b + 1) * bytes];
            // Sixteen rows are read side by side: ask for their next lines early.
            #[cfg(target_arch = "x86_64")]
            if let Some(ahead) = row.get((b + PACK_PREFETCH_BLOCKS) * bytes) {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                // SAFETY: SSE is part of x86-64; a prefetch only hints the cache (the address
                // is inside `row` anyway).
                unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead as *const u8 as *const i8) };
            }
            if ty == WeightType::Q4_0 {
                let (lo, hi) = nibbles_minus_8(blk[2..].try_into().unwrap());
                dst[..QK / 2].copy_from_slice(&lo);
                dst[QK / 2..].copy_from_slice(&hi);
            } else {
                dst.copy_from_slice(&blk[2..]);
            }
            *scale = f16_at(blk, 0);
        }
    }
}

/// A Q4_0 block's 16 bytes of nibbles as the signed values `nibble − 8`: low nibbles (values
/// 0..16), high nibbles (values 16..32). Sixteen lanes at once in two words, each byte kept
/// from borrowing from its neighbour by its top bit: `((n | 0x80) − 8) ^ 0x80 = n − 8`.
#[inline]
fn nibbles_minus_8(src: &[u8; QK / 2]) -> ([u8; QK / 2], [u8; QK / 2]) {
    const LOW: u128 = u128::from_le_bytes([0x0f; 16]);
    const TOP: u128 = u128::from_le_bytes([0x80; 16]);
    const EIGHT: u128 = u128::from_le_bytes([0x08; 16]);
    let w = u128::from_le_bytes(*src);
    let minus_8 = |n: u128| ((n | TOP) - EIGHT) ^ TOP;
    (
        minus_8(w & LOW).to_le_bytes(),
        minus_8((w >> 4) & LOW).to_le_bytes(),
    )
}

/// Which sums of each token's quantized values a [`TileAct`] keeps, for the mins of the
/// weights ([`TileForm::mins`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ActSums {
    None,
    /// `d · Σ q` over each block of 32.
    Blocks,
    /// `d · Σ q` over each half block of 16.
    Halves,
}

/// Q8_0 activations laid out as `tdpbssd`'s second operand (groups of [`TILE_TOKENS`] tokens),
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
            ActSums::None => 0,
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

/// The scalar twin as a [`TileKernel`] of either layout (tests of the driver).
#[cfg(test)]
pub(crate) struct ScalarTiles(pub TileLayout);

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
            tile_q8_scalar(self.0, w, wd, a[g], ad[g], half, m, acc);
        }
    }
}

/// Scalar twin of [`crate::amx_tile::tile_q8`] (weights in the [`TileLayout::Amx`] layout) and
/// of the VNNI kernel (`avx512_blocks.rs`, [`TileLayout::Vnni`], whose accumulators are
/// `acc[t][r]`) for one token group: the same integer block sums and the same float operations
/// in the same order (`d_a · d_w`, one fused multiply-add per tile, then with `mins = (wm, am)`
/// one more subtracting `wm · am`), so the results are bitwise equal.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile_q8_scalar(
    layout: TileLayout,
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
    if layout == TileLayout::Vnni {
        transpose(acc);
    }
    for b in 0..nt {
        let ab = if half { b / 2 } else { b };
        let (wt, at) = (&w[b * TILE_BYTES..], &a[ab * TILE_BYTES..]);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            for (t, v) in acc_r.iter_mut().enumerate() {
                let mut s = 0i32;
                for k in 0..QK / 4 {
                    for j in 0..4 {
                        let wv = match layout {
                            TileLayout::Amx => wt[r * QK + 4 * k + j] as i8 as i32,
                            TileLayout::Vnni => wt[k * 64 + r * 4 + j] as i32,
                        };
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
    if layout == TileLayout::Vnni {
        transpose(acc);
    }
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
