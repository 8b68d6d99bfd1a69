//! `matmul` for Q8_0 / Q4_0 weights: activations quantized to Q8_0 blocks (`act_q8.rs`), then
//! integer dot products — row kernels ([`MatmulPath::Rows`]), or packed panels and tile kernels
//! ([`MatmulPath::Tiles`], `quant_tiles`).

use std::sync::Arc;

use crate::act_q8::{ActLayout, ActQ8, GROUP_BLOCKS, GROUP_BYTES};
#[cfg(target_arch = "x86_64")]
use crate::avx512_tile::PanelRows;
use crate::cpu::Level;
use crate::matmul::{MatmulPath, MIN_TASK_BYTES, PANEL_BYTES};
use crate::pack::{n_groups, offset_of, pack_quant_row};
use crate::par::{chunk_rows, rows_task_rows, run_rows_jobs, tile_chunk_rows, OutCols, RowsJob};
use crate::qx16::X16;
use crate::scratch::{sized, with_panel, Panel};
use crate::tile_scalar::{self, ActRow, QuantRow};
use crate::tiles::{run_tiles, Tiler};
use crate::{dot_scalar, WeightType, WeightView};

/// `out = x · wᵀ` for Q8_0 / Q4_0 weights; shapes already checked (`n_cols` a multiple of 32).
pub(crate) fn matmul_quant(
    level: Level,
    path: MatmulPath,
    w: &WeightView,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) {
    match path {
        MatmulPath::Rows => quant_rows(level, w, x, n_tokens, out),
        MatmulPath::Tiles | MatmulPath::Bulk => quant_tiles(level, w, x, n_tokens, out),
    }
}

/// Natural-layout activations; each row once, dotted with every token by the row kernel.
fn quant_rows(level: Level, w: &WeightView, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    let job = QuantRows::new(level, w, x, n_tokens);
    run_rows_jobs(&[&job], &mut [out], n_tokens);
}

/// A Q8_0 / Q4_0 product by rows, activations quantized ([`RowsJob`]).
pub(crate) struct QuantRows<'a> {
    level: Level,
    w: WeightView<'a>,
    /// [`row_act`] of the input, shared by products of it that quantize it alike.
    act: Arc<ActQ8>,
    n_tokens: usize,
    chunk: usize,
}

/// How the row kernels of `level` want activations quantized for `ty`: their layout and lane
/// corrections. Products of one input with equal keys can share [`row_act`].
pub(crate) fn row_act_key(level: Level, ty: WeightType) -> (ActLayout, Option<i32>) {
    (row_act_layout(level, ty), lane_corr_k(level, ty))
}

/// `n_tokens` rows of `x` quantized as the row kernels of `level` want them for `ty`.
pub(crate) fn row_act(
    level: Level,
    ty: WeightType,
    x: &[f32],
    n_tokens: usize,
    n_cols: usize,
) -> ActQ8 {
    let (layout, corr) = row_act_key(level, ty);
    ActQ8::new(level, x, n_tokens, n_cols, layout, corr)
}

impl<'a> QuantRows<'a> {
    pub(crate) fn new(level: Level, w: &WeightView<'a>, x: &[f32], n_tokens: usize) -> Self {
        let act = Arc::new(row_act(level, w.ty, x, n_tokens, w.n_cols));
        Self::with_act(level, w, act, n_tokens)
    }

    /// A product whose activations ([`row_act`] for its type) are already made.
    pub(crate) fn with_act(
        level: Level,
        w: &WeightView<'a>,
        act: Arc<ActQ8>,
        n_tokens: usize,
    ) -> Self {
        let work_per_row = w.ty.row_bytes(w.n_cols) * n_tokens;
        let chunk = rows_task_rows(w.n_rows, work_per_row);
        QuantRows {
            level,
            w: *w,
            act,
            n_tokens,
            chunk,
        }
    }
}

impl RowsJob for QuantRows<'_> {
    fn weights(&self) -> &WeightView<'_> {
        &self.w
    }
    fn chunk_rows(&self) -> usize {
        self.chunk
    }
    fn run(&self, mut oc: OutCols<'_>) {
        let rows = oc.rows();
        let mut i = 0;
        // Repacked Q4_0 / Q8_0 at AVX-512 and AVX2: the task's rows in one call per token (a
        // task's weights stay in L2 from one token to the next).
        #[cfg(target_arch = "x86_64")]
        if let (Some(kind), false) = (X16::of(self.w.ty), matches!(self.level, Level::Scalar)) {
            let stride = self.w.ty.row_bytes(self.w.n_cols);
            let w = &self.w.bytes[rows.start * stride..rows.end * stride];
            for t in 0..self.n_tokens {
                let (qs, d, sums) = (self.act.qs(t), self.act.d(t), self.act.sums(t));
                let out = oc.token(t);
                match self.level {
                    Level::Avx512(k) => crate::avx512_x16::dot_matrix(k, kind, w, qs, d, sums, out),
                    Level::Avx2(k) => crate::avx2_x16::dot_matrix(k, kind, w, qs, d, sums, out),
                    Level::Scalar => unreachable!("checked above"),
                }
            }
            return;
        }
        // AVX-512: four rows per kernel call (bitwise the one-row results).
        #[cfg(target_arch = "x86_64")]
        if let (Level::Avx512(k), WeightType::Q8_0 | WeightType::Q4_0) = (self.level, self.w.ty) {
            use crate::avx512_dot::{dot_quant_rows, ROWS};
            let q4 = self.w.ty == WeightType::Q4_0;
            while i + ROWS <= rows.len() {
                let w = std::array::from_fn(|j| self.w.row(rows.start + i + j));
                for t in 0..self.n_tokens {
                    let (qs, d, corr) = (self.act.qs(t), self.act.d(t), self.act.lane_corr(t));
                    let v = dot_quant_rows(k, q4, w, qs, d, corr);
                    oc.token(t)[i..i + ROWS].copy_from_slice(&v);
                }
                i += ROWS;
            }
        }
        for (i, r) in rows.clone().enumerate().skip(i) {
            let wr = self.w.row(r);
            for t in 0..self.n_tokens {
                oc.token(t)[i] = dot_row(self.level, self.w.ty, wr, &self.act, t);
            }
        }
    }
}

/// Interleaved activations against packed panels, by tiles.
fn quant_tiles(level: Level, w: &WeightView, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    // At the AMX level (the bulk path: other paths come without the AMX token), Q8_0 / Q4_0
    // tiles are BF16 tile products (`amx_bf16.rs`).
    #[cfg(target_arch = "x86_64")]
    if let Some(amx) = tiles_amx(level) {
        return crate::amx_bf16::matmul_bf16(amx, w, x, n_tokens, out, false);
    }
    let job = QuantTiles::new(
        level,
        w,
        Arc::new(tile_act(level, x, n_tokens, w.n_cols)),
        n_tokens,
    );
    run_rows_jobs(&[&job], &mut [out], n_tokens);
}

/// The AMX tiles of `level`, when it has them (quantized tiles are then BF16 tile products, `amx_bf16.rs`).
#[cfg(target_arch = "x86_64")]
pub(crate) fn tiles_amx(level: Level) -> Option<crate::cpu::Amx> {
    match level {
        Level::Avx512(k) => k.amx(),
        _ => None,
    }
}

/// `n_tokens` rows of `x` quantized as the tile kernels want them (interleaved, no lane
/// corrections): one quantization serves every product of `x` by tiles.
pub(crate) fn tile_act(level: Level, x: &[f32], n_tokens: usize, n_cols: usize) -> ActQ8 {
    #[allow(unused_mut)]
    let mut act = ActQ8::new(level, x, n_tokens, n_cols, ActLayout::Interleaved, None);
    // AVX2 tiles read the tokens regrouped (more tokens than the row kernels take).
    #[cfg(target_arch = "x86_64")]
    if matches!(level, Level::Avx2(_)) && n_tokens > x16_row_tokens(level) {
        act.groups = Some(crate::avx2_tile::TokenGroups::new(&act));
    }
    act
}

/// A Q8_0 / Q4_0 product by tiles, activations quantized ([`tile_act`]), as a [`RowsJob`]: the
/// products of one input share a parallel section ([`run_rows_jobs`]).
pub(crate) struct QuantTiles<'a> {
    level: Level,
    w: WeightView<'a>,
    act: Arc<ActQ8>,
    n_tokens: usize,
    chunk: usize,
}

impl<'a> QuantTiles<'a> {
    pub(crate) fn new(level: Level, w: &WeightView<'a>, act: Arc<ActQ8>, n_tokens: usize) -> Self {
        let work_per_row = w.ty.row_bytes(w.n_cols) * n_tokens;
        let (rm, _) = tile_shape(level);
        let min_rows = MIN_TASK_BYTES.div_ceil(work_per_row);
        // A prompt's tasks (more tokens than the row kernels take) as every prompt tile's.
        let chunk = if n_tokens > x16_row_tokens(level) {
            let panel = panel_rows(level, n_groups(w.n_cols) * GROUP_BYTES);
            tile_chunk_rows(level, w.n_rows, rm, min_rows, panel)
        } else {
            chunk_rows(w.n_rows, rm, min_rows)
        };
        QuantTiles {
            level,
            w: *w,
            act,
            n_tokens,
            chunk,
        }
    }
}

impl RowsJob for QuantTiles<'_> {
    fn weights(&self) -> &WeightView<'_> {
        &self.w
    }
    fn chunk_rows(&self) -> usize {
        self.chunk
    }
    fn run(&self, mut oc: OutCols<'_>) {
        let (level, w, act, n_tokens) = (self.level, &self.w, &*self.act, self.n_tokens);
        let (n_cols, ty) = (w.n_cols, w.ty);
        let ng = n_groups(n_cols);
        let (q_row, d_row) = (ng * GROUP_BYTES, ng * GROUP_BLOCKS);
        let panel_rows = panel_rows(level, q_row);
        let offset = offset_of(ty);
        let rows = oc.rows();
        // Repacked rows for a few tokens: the row kernel where the rows lie (at AVX-512 two
        // tokens per pass, at AVX2 a token at a time, the task's rows staying in L2), bitwise
        // the tiles below (both sum a block's lanes alike, `qx16.rs`); packing a panel costs
        // more than these products.
        #[cfg(target_arch = "x86_64")]
        if let (Some(kind), true) = (X16::of(ty), n_tokens <= x16_row_tokens(level)) {
            let stride = ty.row_bytes(n_cols);
            let w = &w.bytes[rows.start * stride..rows.end * stride];
            let tok = |t: usize| (act.qs(t), act.d(t), act.sums(t));
            match level {
                Level::Avx512(k) => {
                    for t0 in (0..n_tokens).step_by(2) {
                        let ts = t0..n_tokens.min(t0 + 2);
                        let acts: Vec<_> = ts.clone().map(tok).collect();
                        let mut outs: Vec<&mut [f32]> = oc.tokens_mut(ts, 0..rows.len()).collect();
                        crate::avx512_x16::dot_matrix_tokens(k, kind, w, &acts, &mut outs);
                    }
                }
                Level::Avx2(k) => {
                    for t in 0..n_tokens {
                        let ((qs, d, sums), out) = (tok(t), oc.token(t));
                        crate::avx2_x16::dot_matrix(k, kind, w, qs, d, sums, out);
                    }
                }
                Level::Scalar => unreachable!("no row kernels by tiles at the scalar level"),
            }
            return;
        }
        // The AVX2 tiles' token groups: made with the activations (`tile_act`) for more tokens
        // than the row kernels take; here, for this task, only when stored (not repacked) rows
        // come with so few tokens (at most `x16_row_tokens`, a few kilobytes to regroup).
        #[cfg(target_arch = "x86_64")]
        let owned;
        #[cfg(target_arch = "x86_64")]
        let groups = match (&act.groups, level) {
            (Some(g), _) => Some(g),
            (None, Level::Avx2(_)) => {
                owned = crate::avx2_tile::TokenGroups::new(act);
                Some(&owned)
            }
            _ => None,
        };
        with_panel(|p| {
            for p0 in rows.clone().step_by(panel_rows) {
                let np = panel_rows.min(rows.end - p0);
                let col0 = p0 - rows.start;
                #[cfg(target_arch = "x86_64")]
                if let Level::Avx512(k) = level {
                    // Repacked rows are multiplied where they lie (no panel copy), others
                    // packed; whole panels per call, 4, 2 or 1 tokens, results straight into
                    // the output.
                    let rows = match X16::of(ty) {
                        Some(kind) => {
                            let stride = ty.row_bytes(n_cols);
                            let w = &w.bytes[p0 * stride..(p0 + np) * stride];
                            PanelRows::Repacked { kind, w }
                        }
                        None => {
                            let (q, d) = pack_panel(level, w, p0..p0 + np, (q_row, d_row), p);
                            PanelRows::Packed {
                                q,
                                d,
                                q_row,
                                d_row,
                                offset,
                            }
                        }
                    };
                    // Repacked rows come from memory. Up to STREAM_TOKENS tokens, the first
                    // token group's pass streams the panel in as decode does and the later
                    // passes find it in L2; up to TILE_MAJOR_TOKENS (their activations within
                    // TILE_MAJOR_ACT_BYTES), each tile of rows takes every token group in turn
                    // while the rows stream in; more tokens, every
                    // pass brings a share of the next panel into L2 meanwhile, so memory
                    // streams while the tiles compute.
                    let repacked = matches!(rows, PanelRows::Repacked { .. });
                    let stream = repacked && n_tokens <= STREAM_TOKENS;
                    if let PanelRows::Repacked { kind, w } = rows {
                        // Every tile reads all the tokens' activations (values, scales, sums).
                        let act_bytes = n_tokens * ng * (GROUP_BYTES + 8 * GROUP_BLOCKS);
                        if !stream
                            && n_tokens <= TILE_MAJOR_TOKENS
                            && act_bytes <= TILE_MAJOR_ACT_BYTES
                        {
                            let acts: Vec<ActRow> = (0..n_tokens)
                                .map(|t| ActRow {
                                    qs: act.qs(t),
                                    d: act.d(t),
                                    sums: act.sums(t),
                                })
                                .collect();
                            let mut outs: Vec<&mut [f32]> =
                                oc.tokens_mut(0..n_tokens, col0..col0 + np).collect();
                            crate::avx512_tile::panel_streamed(k, kind, w, &acts, &mut outs);
                            continue;
                        }
                    }
                    let next = match rows {
                        PanelRows::Repacked { .. } if !stream => {
                            let stride = ty.row_bytes(n_cols);
                            let end = (p0 + 2 * np).min(w.n_rows);
                            &w.bytes[(p0 + np).min(end) * stride..end * stride]
                        }
                        _ => &[],
                    };
                    let share = next.len().div_ceil(n_tokens.div_ceil(4)).div_ceil(64) * 64;
                    let mut rest = next;
                    for (t0, nt) in crate::avx512_tile::token_groups(n_tokens) {
                        let (lines, later) = rest.split_at(share.min(rest.len()));
                        rest = later;
                        let ahead = if stream && t0 == 0 {
                            Ahead::Stream
                        } else {
                            Ahead::Lines(lines)
                        };
                        let act_row = |i: usize| ActRow {
                            qs: act.qs(t0 + i),
                            d: act.d(t0 + i),
                            sums: act.sums(t0 + i),
                        };
                        let mut outs = oc.tokens_mut(t0..t0 + nt, col0..col0 + np);
                        let mut o = || outs.next().expect("a token's outputs");
                        use crate::avx512_tile::{panel, Ahead};
                        match nt {
                            4 => panel::<4>(
                                k,
                                rows,
                                std::array::from_fn(act_row),
                                [o(), o(), o(), o()],
                                ahead,
                            ),
                            2 => {
                                panel::<2>(k, rows, std::array::from_fn(act_row), [o(), o()], ahead)
                            }
                            _ => panel::<1>(k, rows, [act_row(0)], [o()], ahead),
                        }
                    }
                    continue;
                }
                // AVX2, repacked rows and few enough tokens: the tiles read the rows where
                // they lie, the first token group's pass asking for them ahead as decode does
                // (the later passes find the panel in L2).
                #[cfg(target_arch = "x86_64")]
                if let (Level::Avx2(k), Some(groups), Some(kind)) = (level, groups, X16::of(ty)) {
                    if n_tokens <= avx2_in_place_tokens(kind) {
                        let stride = ty.row_bytes(n_cols);
                        let w = &w.bytes[p0 * stride..(p0 + np) * stride];
                        let tails = crate::avx2_tile::x16_tails(kind, w, stride);
                        for (t0, nt) in crate::avx512_tile::token_groups(n_tokens) {
                            // A group's outputs (at most four) without an allocation.
                            let mut outs: [&mut [f32]; 4] = Default::default();
                            let tokens = oc.tokens_mut(t0..t0 + nt, col0..col0 + np);
                            for (o, t) in outs.iter_mut().zip(tokens) {
                                *o = t;
                            }
                            crate::avx2_tile::panel_x16(
                                k,
                                kind,
                                w,
                                stride,
                                &tails,
                                if t0 == 0 {
                                    crate::par::PREFETCH_BYTES
                                } else {
                                    0
                                },
                                groups.group(t0, nt),
                                &mut outs[..nt],
                            );
                        }
                        continue;
                    }
                }
                let (q, d) = pack_panel(level, w, p0..p0 + np, (q_row, d_row), p);
                #[cfg(target_arch = "x86_64")]
                if let (Level::Avx2(k), Some(groups)) = (level, groups) {
                    // Whole panels per call, 4, 2 or 1 tokens, results straight into the
                    // output.
                    for (t0, nt) in crate::avx512_tile::token_groups(n_tokens) {
                        let mut outs: [&mut [f32]; 4] = std::array::from_fn(|_| &mut [][..]);
                        let to = oc.tokens_mut(t0..t0 + nt, col0..col0 + np);
                        for (slot, o) in outs.iter_mut().zip(to) {
                            *slot = o;
                        }
                        crate::avx2_tile::panel_quant(
                            k,
                            q,
                            d,
                            (q_row, d_row),
                            groups.group(t0, nt),
                            &mut outs[..nt],
                            offset,
                        );
                    }
                    continue;
                }
                let tiler = ScalarTiler {
                    q,
                    d,
                    q_row,
                    d_row,
                    act,
                    offset,
                };
                let emit = |r: usize, t: usize, v: f32| oc.token(t)[col0 + r] = v;
                run_tiles::<{ SCALAR_TILE.0 }, { SCALAR_TILE.1 }, _>(&tiler, np, n_tokens, emit);
            }
        });
    }
}

/// Most tokens for which [`QuantTiles`] takes repacked rows by the row kernel of `level`
/// instead of tiles. One core, 2048 × 5632, GFLOP/s by the row kernel / by tiles: AVX2
/// (packed panels) Q4_0x16 1 token 181 / 86, 2 tokens 179 / 143, 4 tokens 166 / 180, 8 tokens
/// 170 / 207; Q8_0x16 126 / 59, 123 / 91, 118 / 107, 123 / 125. AVX-512 (tiles on the rows in
/// place): Q4_0x16 1 token 269 / 291, 2 tokens 287 / 528, 4 tokens 267 / 657 (matrix in L3,
/// `examples/matvec.rs --only prefill --tiles --tokens N`), but one token from memory (`--only
/// decode --tiles`) 36 / 21 GB/s: a single token's tile leaves the memory idle. TinyLlama's
/// prompts at two threads, weights from memory (`herd bench tl-M.gguf -p 2,3,4,5 -n 0 -t 2 -r
/// 3`, three rounds, t/s by tiles / by the row kernel up to 4 tokens for Q8_0 and 2 for Q4_0):
/// Q8_0 pp2 46.43, 46.13, 46.45 / 52.03, 51.43, 52.58, pp3 about equal, pp4 81.78, 80.69, 83.02
/// / 77.86, 76.44, 77.42; Q4_0 pp2 82.91, 81.02, 79.67 / 90.14, 84.63, 89.03: two tokens by rows.
/// At AVX2 the tiles on rows in place ([`avx2_in_place_tokens`]) took two and three tokens
/// from the row kernel (Zen 3, `herd bench tl-M.gguf -p 2,3 -n 0 -t 2 -r 4`, four alternating
/// rounds, medians, row kernel / tiles: Q8_0 pp2 23.4 / 26.7, pp3 27.7 / 30.6; Q4_0 pp2 29.6
/// / 41.1, pp3 45.0 / 41.8; then the previous build against this one, four rounds of `-r 3`:
/// pp2 43.2 / 49.7, pp3 53.4 / 58.6).
#[cfg(target_arch = "x86_64")]
fn x16_row_tokens(level: Level) -> usize {
    match level {
        Level::Avx512(_) => 2,
        Level::Avx2(_) => 1,
        Level::Scalar => 0,
    }
}

/// Most tokens for which the AVX2 tiles multiply repacked rows of `kind` where they lie
/// (`avx2_tile::panel_x16`) instead of packing each panel first: the same bits, no copy, and
/// the first pass over a panel overlaps the memory with the products. Q8_0's panel is a copy
/// of its bytes, so in place costs nothing; Q4_0's splits the nibbles once per panel, which in
/// place takes three instructions per two steps of each row and token group (about a fifth
/// more of the tile's work), paid back only while the packing is a large share: one or two
/// token groups. Zen 3, TinyLlama at two threads (`herd bench tl-M.gguf -p N -n 0 -t 2 -r 3`,
/// alternating rounds, medians, t/s packed / in place; BENCHMARKS.md has every round): Q4_0
/// pp4 53.3 / 65.8 (52.5 without the prefetch), pp8 64.8 / 85.1, then in other runs pp8 71.7 /
/// 70.9, pp12 81.8 / 79.2, pp16 90.0 / 83.2, pp20 93.8 / 77.3, pp24 98.2 / 75.1; Q8_0 pp4 33.5
/// / 50.7, pp8 44.8 / 63.0, pp16 44.5 / 62.6, pp32 58.0 / 70.2, pp64 64.3 / 70.7, pp128 69.2 /
/// 71.2; one core at 512 tokens (`matvec --rows 5632
/// --cols 2048 --types q4_0x16,q8_0x16 --isas avx2 --threads 1 --only prefill --tokens 512`,
/// best of eight) Q4_0x16 161.7 / 153.8, Q8_0x16 100.4 / 96.3 GFLOP/s.
#[cfg(target_arch = "x86_64")]
fn avx2_in_place_tokens(kind: X16) -> usize {
    match kind {
        X16::Q4_0 => 8,
        X16::Q8_0 => 128,
    }
}

/// Rows `rows` of `w` packed into the panel scratch `p` (`pack.rs`): `(bytes, scales)`, rows of
/// `row.0` bytes and `row.1` scales.
fn pack_panel<'p>(
    level: Level,
    w: &WeightView,
    rows: std::ops::Range<usize>,
    row: (usize, usize),
    p: &'p mut Panel,
) -> (&'p [u8], &'p [f32]) {
    let q = p.q.sized(rows.len() * row.0);
    let d = sized(&mut p.d, rows.len() * row.1);
    for (r, (qr, dr)) in rows.zip(q.chunks_exact_mut(row.0).zip(d.chunks_exact_mut(row.1))) {
        pack_quant_row(level, w.ty, w.row(r), qr, dr);
    }
    (q, d)
}

/// Weight bytes of a Q8_0/Q4_0 prefill panel at `level`.
///
/// AVX-512: twice [`PANEL_BYTES`], half of a 1 MiB L2, so that a token group's activations
/// serve more rows before the next group's are loaded. Long rows gained most: Q4_0x16 at 11008
/// columns (`matvec --rows 1024 --tokens 512`, three runs alternating) 528–537 G op/s at 256
/// KiB, 580–598 at 512 KiB; 1 MiB made Q8_0x16 there slower (459–479 against 506–542).
///
/// AVX2 (and scalar): half of [`PANEL_BYTES`], since many processors with AVX2 and no AVX-512
/// have L2 caches of 256 KiB (Intel's to the 10th generation) or 512 KiB (AMD's Zen 2 and 3),
/// which a 512 KiB panel overflows: every token group's pass then reads the panel from L3. On a Zen 3
/// core (512 KiB L2), `matvec --rows 5632 --cols 2048 --types q4_0x16,q8_0x16 --isas avx2
/// --threads 1 --only prefill --tokens 64`, GFLOP/s at 512 / 256 / 128 / 64 KiB: Q4_0x16 100.7
/// / 121.5 / 129.6 / 120.0, Q8_0x16 73.8 / 80.7 / 86.8 / 76.6.
fn tile_panel_bytes(level: Level) -> usize {
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512(_) => 2 * PANEL_BYTES,
        _ => PANEL_BYTES / 2,
    }
}

/// Rows of a packed panel of `q_row`-byte rows: about [`tile_panel_bytes`], whole tiles.
fn panel_rows(level: Level, q_row: usize) -> usize {
    let (rm, _) = tile_shape(level);
    (tile_panel_bytes(level) / q_row).clamp(rm, 256) / rm * rm
}

/// Tokens up to which the AVX-512 tiles on repacked rows stream each panel in during the first
/// token group's pass ([`crate::avx512_tile::Ahead::Stream`]) rather than prefetch the next
/// panel in shares per tile during every pass. TinyLlama Q8_0 at two threads (`herd bench -p
/// 4,7 -n 0 -t 2 -r 5`, alternating, three rounds): pp4 77.6-81.8 -> 98.8-108.6 t/s, pp7
/// 116.2-121.6 -> 133.3-141.2. Tile by tile ([`TILE_MAJOR_TOKENS`]) was slower at two token
/// groups (Q8_0 pp6 110.0-120.8 against 124.1-132.9).
const STREAM_TOKENS: usize = 8;

/// Tokens up to which (from [`STREAM_TOKENS`]) each tile of repacked rows takes every token
/// group in turn while the rows stream in (`avx512_tile::panel_streamed`), instead of one pass
/// over a panel per token group with the next panel prefetched meanwhile: the memory is asked
/// at an even pace while the tiles compute. TinyLlama at two threads (`herd bench -p
/// 10,16,20 -n 0 -t 2 -r 5`, alternating, three rounds), panels / tile by tile: Q8_0 pp10
/// 175.0-177.9 -> 180.5-204.6, pp16 210.4-227.1 -> 230.4-241.1, pp20 227.4-253.6 ->
/// 263.3-264.0; Q4_0 pp10 236.5-250.5 -> 265.7-274.8, pp16 276.2-287.5 -> 289.9-315.4, pp20
/// about the same; beyond, slower (Q8_0 pp23 230.6-245.1 against 248.0-265.7: the activations
/// of more tokens leave L1).
const TILE_MAJOR_TOKENS: usize = 20;

/// Activation bytes (all the tokens') up to which a product goes tile by tile
/// ([`TILE_MAJOR_TOKENS`]): every tile of three rows reads them all, from L2 once they leave
/// L1. Llama-2-7B Q4_0 at two threads (`herd bench -p 12,16 -n 0 -t 2 -r 1`, alternating,
/// two rounds), every product tile by tile / up to 160 KiB / up to 64 KiB: pp16 41.4, 42.3 /
/// 45.0, 44.6 / 46.9, 47.1 (its 4096-column rows take 82 KiB at 16 tokens, its 11008-column
/// rows 225 KiB); TinyLlama Q8_0 pp16 (2048 columns 41 KiB, 5632 columns 112 KiB) every
/// product / up to 64 KiB: 228.6-233.3 / 211.9-228.0 (four rounds).
const TILE_MAJOR_ACT_BYTES: usize = 128 << 10;

/// Rows and tokens of a scalar tile (`run_tiles` on [`ScalarTiler`]).
const SCALAR_TILE: (usize, usize) = (2, 2);

/// Rows and tokens of a full tile at `level`.
fn tile_shape(level: Level) -> (usize, usize) {
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512(_) => (3, 4),
        Level::Scalar => SCALAR_TILE,
        #[cfg(target_arch = "x86_64")]
        Level::Avx2(_) => crate::avx2_tile::AVX2_TILE,
    }
}

/// The activation layout the row kernels of `level` read for `ty`: repacked Q4_0 / Q8_0 rows
/// meet interleaved activations, except at the scalar level (blocks in order, see `qx16.rs`).
pub(crate) fn row_act_layout(level: Level, ty: WeightType) -> ActLayout {
    match (level, X16::of(ty)) {
        (Level::Scalar, _) | (_, None) => ActLayout::Natural,
        (_, Some(_)) => ActLayout::Interleaved,
    }
}

/// The weight offset whose lane corrections the row kernel of `level` wants, if any.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(crate) fn lane_corr_k(level: Level, ty: WeightType) -> Option<i32> {
    if X16::of(ty).is_some() {
        return None;
    }
    match level {
        Level::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        Level::Avx2(_) => (ty == WeightType::Q4_0).then_some(crate::pack::Q4_0_OFFSET),
        #[cfg(target_arch = "x86_64")]
        Level::Avx512(_) => Some(offset_of(ty)),
    }
}

/// One row · token `t` of activations in [`row_act_layout`] (natural, or interleaved for
/// repacked Q4_0 / Q8_0 rows above the scalar level).
pub(crate) fn dot_row(level: Level, ty: WeightType, w: &[u8], act: &ActQ8, t: usize) -> f32 {
    let (qs, d) = (act.qs(t), act.d(t));
    if let Some(kind) = X16::of(ty) {
        return match level {
            Level::Scalar => crate::qx16::dot_sequential(kind, w, qs, d),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2(k) => {
                let mut out = [0f32];
                crate::avx2_x16::dot_matrix(k, kind, w, qs, d, act.sums(t), &mut out);
                out[0]
            }
            #[cfg(target_arch = "x86_64")]
            Level::Avx512(k) => {
                crate::avx512_x16::dot_rows::<1>(k, kind, [w], qs, d, act.sums(t))[0]
            }
        };
    }
    let q4 = ty == WeightType::Q4_0;
    match level {
        Level::Scalar if q4 => dot_scalar::dot_q4_0(w, qs, d),
        Level::Scalar => dot_scalar::dot_q8_0(w, qs, d),
        #[cfg(target_arch = "x86_64")]
        Level::Avx2(k) if q4 => crate::avx2_dot::dot_q4_0(k, w, qs, d, act.lane_corr(t)),
        #[cfg(target_arch = "x86_64")]
        Level::Avx2(k) => crate::avx2_dot::dot_q8_0(k, w, qs, d),
        #[cfg(target_arch = "x86_64")]
        Level::Avx512(k) if q4 => crate::avx512_dot::dot_q4_0(k, w, qs, d, act.lane_corr(t)),
        #[cfg(target_arch = "x86_64")]
        Level::Avx512(k) => crate::avx512_dot::dot_q8_0(k, w, qs, d, act.lane_corr(t)),
    }
}

/// Scalar tiles of a packed quantized panel against interleaved activations (the SIMD levels
/// take whole panels per call: `avx2_tile::panel_quant`, `avx512_tile::panel`).
struct ScalarTiler<'a> {
    q: &'a [u8],
    d: &'a [f32],
    q_row: usize,
    d_row: usize,
    act: &'a ActQ8,
    offset: i32,
}

impl Tiler for ScalarTiler<'_> {
    fn tile<const R: usize, const T: usize>(&self, r0: usize, t0: usize) -> [[f32; T]; R] {
        let (qr, dr) = (self.q_row, self.d_row);
        let w: [QuantRow<'_>; R] = std::array::from_fn(|i| QuantRow {
            qs: &self.q[(r0 + i) * qr..][..qr],
            d: &self.d[(r0 + i) * dr..][..dr],
        });
        let a: [ActRow<'_>; T] = std::array::from_fn(|i| ActRow {
            qs: self.act.qs(t0 + i),
            d: self.act.d(t0 + i),
            sums: self.act.sums(t0 + i),
        });
        tile_scalar::tile_quant(w, a, self.offset)
    }
}
