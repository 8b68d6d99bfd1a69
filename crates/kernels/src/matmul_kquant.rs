//! K-quant weights (Q2_K..Q6_K), rows spread over threads.
//!
//! - [`MatmulPath::Rows`]: activations quantized to Q8_K super-blocks, each row's super-blocks
//!   unpacked as they stream in and dotted with up to [`group_tokens`] tokens at a time (the
//!   `kquants` module's dot products); no result depends on which tokens share its group.
//! - [`MatmulPath::Tiles`]: at AVX-512 and AVX2, block tiles (`block_tile_kquant.rs`, driven by
//!   `block_tiles.rs`) against activations in Q8_0 blocks: `vpdpbusd` at AVX-512 (`avx512_blocks.rs`),
//!   `vpmaddubsw` at AVX2 (`avx2_blocks.rs`), bitwise equal. The two paths agree within
//!   rounding there; at the scalar level both are the row path (ggml's scalar dot products),
//!   bitwise the same. At the AMX level, on the bulk path, BF16 tiles (`amx_bf16.rs`).
//!
//! Repacked K-quants ([`WeightType::Q2_Kx16`] ... [`WeightType::Q6_Kx16`]): by rows, a group of 16 rows at a time against each token
//! (`kquants/avx512_x16.rs`, `kquants/avx2_x16.rs`, twin `kquants::x16::dot_group_scalar` at
//! the scalar level); by tiles at AVX-512 and AVX2, the stored matrix's results bit for bit:
//! the tiles made from the repacked rows directly (`block_tile_kquant::put_x16_block`), or below `in_place_tokens` (at
//! AVX-512 always) not made at all (`tiles_in_place`).

use std::sync::Arc;

use crate::cpu::Level;
use crate::kquants::{dot_tokens, quantize_row_q8_k_at, x16, BlockQ8K, QK_K};
use crate::matmul::MatmulPath;
use crate::par::{rows_task_rows, run_rows_jobs, OutCols, RowsJob};
use crate::{WeightType, WeightView};

/// Tokens per kernel call at `level`: as many as the accumulators fit in registers.
fn group_tokens(level: Level) -> usize {
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512(_) => 8,
        _ => 4,
    }
}

/// `out[t, r] = w[r] · x[t]` for a K-quant `w` (rows of whole 256-value super-blocks, checked
/// when the file was read).
pub(crate) fn matmul_kquant(
    level: Level,
    path: MatmulPath,
    w: &WeightView,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) {
    // At AVX-512 and AVX2, tiles are block tiles (`block_tile_kquant.rs`) against Q8_0
    // activations: VNNI products (`avx512_blocks.rs`), `vpmaddubsw` at AVX2 (`avx2_blocks.rs`);
    // at the AMX level (the bulk path: other paths come without the AMX token), BF16 tiles
    // (`amx_bf16.rs`).
    #[cfg(target_arch = "x86_64")]
    if path != MatmulPath::Rows {
        use crate::block_tiles::matmul_tiles;
        match level {
            Level::Avx512(k) => {
                return match k.amx() {
                    Some(amx) => crate::amx_bf16::matmul_bf16(amx, w, x, n_tokens, out, false),
                    None if in_place(level, w, n_tokens) => {
                        tiles_in_place(level, w, x, n_tokens, out)
                    }
                    None => {
                        let vnni = || crate::avx512_blocks::VnniTiles(k);
                        matmul_tiles(level, vnni, w, x, n_tokens, out)
                    }
                };
            }
            Level::Avx2(_) if in_place(level, w, n_tokens) => {
                return tiles_in_place(level, w, x, n_tokens, out);
            }
            Level::Avx2(k) => {
                let tiles = || crate::avx2_blocks::Avx2Tiles::new(k, w.ty);
                return matmul_tiles(level, tiles, w, x, n_tokens, out);
            }
            Level::Scalar => {}
        }
    }
    // Rows, and the scalar level's tiles: its row kernels are ggml's scalar code.
    let _ = path;
    let job = KquantRows::new(level, w, x, n_tokens);
    run_rows_jobs(&[&job], &mut [out], n_tokens)
}

/// Below how many tokens repacked `ty` (any K-quant) is multiplied where its rows lie, up to
/// eight tokens at a time ([`tiles_in_place`]), at `level`, instead of being put into block
/// tiles first (the VNNI layout's). At AVX-512, always: with eight tokens per pass (32
/// registers hold their accumulators) the weights are decoded once for eight tokens, and in
/// place is ahead at every count (`matvec --rows 2048 --cols 5632 --tokens 512`, GFLOP/s on
/// one core: Q4_K 571 against 468 packed, Q6_K 463 against 370, Q2_K 461 against 390); at AVX2
/// (four tokens per pass) ahead at 16, level at 32, behind at 64 (221 against 252). Both give
/// the same bits, so the choice never makes a result depend on the batch.
#[cfg(target_arch = "x86_64")]
pub(crate) fn in_place_tokens(level: Level, ty: WeightType) -> usize {
    match level {
        _ if !ty.is_grouped() => 0,
        Level::Avx512(_) => usize::MAX,
        Level::Avx2(_) => 32,
        Level::Scalar => 0,
    }
}

/// Whether the tiles of `w` for `n_tokens` tokens are made in place ([`in_place_tokens`]).
#[cfg(target_arch = "x86_64")]
fn in_place(level: Level, w: &WeightView, n_tokens: usize) -> bool {
    n_tokens < in_place_tokens(level, w.ty)
}

/// The block tiles' products (VNNI layout) of repacked K-quant `w`, read in place: per
/// group of 16 rows and up to four tokens, the level's `tile_tokens` kernel over the whole row
/// (`kquants/avx512_x16.rs`, `kquants/avx2_x16.rs`), activations quantized as for the packed
/// tiles ([`crate::block_tiles::TileAct`]). Bitwise the packed tiles' results.
#[cfg(target_arch = "x86_64")]
pub(crate) fn tiles_in_place(
    level: Level,
    w: &WeightView,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) {
    use crate::block_tile_shape::TILE_TOKENS;
    use crate::block_tiles::{TileAct, TileForm};
    use crate::matmul::MIN_TASK_BYTES;
    use crate::par::{chunk_rows, for_each_row_chunk};
    let (n_rows, n_cols, ty) = (w.n_rows, w.n_cols, w.ty);
    assert!(ty.is_grouped() && n_rows.is_multiple_of(x16::ROWS));
    let form = TileForm::new(ty);
    // Fewer tokens than a tile unit takes: groups of just those. A one-token call read a 64-byte
    // line of activations for every 4 bytes it used and waited on them: Q4_Kx16 at one token,
    // 2048 × 5632 from memory, went from 18.3 to 33.7 GB/s on one core at AVX-512 (rows: 35.0)
    // and from 11.7 to 25.0 at AVX2 (`examples/matvec.rs --only decode --tiles`).
    let lanes = n_tokens.min(TILE_TOKENS);
    let act = TileAct::with_lanes(level, x, n_tokens, n_cols, form.sums(), lanes);
    let (nb, nt) = (n_cols / 32, n_cols / 32 * form.per_block());
    let group_bytes = n_cols / QK_K * x16::group_block(ty);
    let work_per_row = ty.row_bytes(n_cols) * n_tokens;
    let chunk = chunk_rows(
        n_rows,
        x16::ROWS,
        MIN_TASK_BYTES.div_ceil(work_per_row.max(1)),
    );
    for_each_row_chunk(out, n_rows, n_tokens, chunk, |mut oc| {
        let rows = oc.rows();
        for g0 in rows.clone().step_by(x16::ROWS) {
            let group = &w.bytes[g0 / x16::ROWS * group_bytes..][..group_bytes];
            // Tokens eight (AVX-512) or four at a time, within one token group (16 is a
            // multiple of both; a call of fewer tokens is one group).
            let mut t = 0;
            while t < n_tokens {
                let (tg, lane) = (t / lanes, t % lanes);
                let (qs, ad) = act.group(tg, 0..nb);
                let am = act.sums(tg, 0..nt);
                let step = match n_tokens - t {
                    1 => 1,
                    2 | 3 => 2,
                    n if n >= 8 && lane + 8 <= lanes && matches!(level, Level::Avx512(_)) => 8,
                    _ => 4,
                };
                let mut put = |i: usize, v: [f32; x16::ROWS]| {
                    let at = g0 - rows.start;
                    oc.token(t + i)[at..at + x16::ROWS].copy_from_slice(&v);
                };
                macro_rules! run {
                    ($k:ident, $module:ident, $n:literal) => {
                        crate::kquants::$module::tile_tokens::<$n>(
                            $k, ty, group, qs, ad, am, lanes, lane,
                        )
                        .into_iter()
                        .enumerate()
                        .for_each(|(i, v)| put(i, v))
                    };
                }
                match (level, step) {
                    (Level::Avx512(k), 1) => run!(k, avx512_x16, 1),
                    (Level::Avx512(k), 2) => run!(k, avx512_x16, 2),
                    (Level::Avx512(k), 8) => run!(k, avx512_x16, 8),
                    (Level::Avx512(k), _) => run!(k, avx512_x16, 4),
                    (Level::Avx2(k), 1) => run!(k, avx2_x16, 1),
                    (Level::Avx2(k), 2) => run!(k, avx2_x16, 2),
                    (Level::Avx2(k), _) => run!(k, avx2_x16, 4),
                    (Level::Scalar, _) => unreachable!("no in-place tiles at the scalar level"),
                }
                t += step;
            }
        }
    });
}

/// A K-quant product by rows, activations quantized to Q8_K ([`RowsJob`]).
pub(crate) struct KquantRows<'a> {
    level: Level,
    w: WeightView<'a>,
    /// `[n_tokens][n_cols / QK_K]` ([`quantize_acts`]), shared by the products of one input.
    acts: Arc<Vec<BlockQ8K>>,
    n_tokens: usize,
    chunk: usize,
}

/// `n_tokens` rows of `x` (`n_cols` values each) as Q8_K blocks, the activations of every
/// K-quant type.
pub(crate) fn quantize_acts(
    level: Level,
    x: &[f32],
    n_tokens: usize,
    n_cols: usize,
) -> Vec<BlockQ8K> {
    let nb = n_cols / QK_K;
    let mut acts = vec![BlockQ8K::ZERO; n_tokens * nb];
    if n_tokens * n_cols < 1 << 14 {
        quantize_row_q8_k_at(level, x, &mut acts);
    } else {
        let items = acts.chunks_mut(nb).zip(x.chunks(n_cols)).collect();
        crate::team::for_each_item(items, |(a, x)| quantize_row_q8_k_at(level, x, a));
    }
    acts
}

impl<'a> KquantRows<'a> {
    pub(crate) fn new(level: Level, w: &WeightView<'a>, x: &[f32], n_tokens: usize) -> Self {
        let acts = Arc::new(quantize_acts(level, x, n_tokens, w.n_cols));
        Self::with_acts(level, w, acts, n_tokens)
    }

    /// A product whose activations ([`quantize_acts`] of its input) are already made.
    pub(crate) fn with_acts(
        level: Level,
        w: &WeightView<'a>,
        acts: Arc<Vec<BlockQ8K>>,
        n_tokens: usize,
    ) -> Self {
        let work_per_row = w.ty.row_bytes(w.n_cols) * n_tokens;
        let mut chunk = rows_task_rows(w.n_rows, work_per_row);
        if w.ty.is_grouped() {
            chunk = chunk.next_multiple_of(x16::ROWS);
        }
        KquantRows {
            level,
            w: *w,
            acts,
            n_tokens,
            chunk,
        }
    }
}

impl RowsJob for KquantRows<'_> {
    fn weights(&self) -> &WeightView<'_> {
        &self.w
    }
    fn chunk_rows(&self) -> usize {
        self.chunk
    }
    fn run(&self, mut oc: OutCols<'_>) {
        if self.w.ty.is_grouped() {
            return self.run_groups(oc);
        }
        let nb = self.w.n_cols / QK_K;
        let act = |t: usize| &self.acts[t * nb..(t + 1) * nb];
        let group = group_tokens(self.level);
        for (i, r) in oc.rows().enumerate() {
            let row = self.w.row(r);
            let mut put = |t: usize, v: f32| oc.token(t)[i] = v;
            for_token_groups(self.n_tokens, group, |t0, n| {
                dot_group(self.level, self.w.ty, row, &act, t0, n, &mut put)
            });
        }
    }
}

impl KquantRows<'_> {
    /// [`RowsJob::run`] for the repacked types: whole groups of 16 rows (chunks are
    /// multiples of 16), each against one token at a time.
    fn run_groups(&self, mut oc: OutCols<'_>) {
        let nb = self.w.n_cols / QK_K;
        let group_bytes = nb * x16::group_block(self.w.ty);
        let rows = oc.rows();
        for g in (rows.start..rows.end).step_by(x16::ROWS) {
            let group = &self.w.bytes[g / x16::ROWS * group_bytes..][..group_bytes];
            for t in 0..self.n_tokens {
                let act = &self.acts[t * nb..(t + 1) * nb];
                let v = match self.level {
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx512(k) => {
                        crate::kquants::avx512_x16::dot_group(k, self.w.ty, group, act)
                    }
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx2(k) => crate::kquants::avx2_x16::dot_group(k, self.w.ty, group, act),
                    Level::Scalar => x16::dot_group_scalar(self.w.ty, group, act),
                };
                let at = g - rows.start;
                oc.token(t)[at..at + x16::ROWS].copy_from_slice(&v);
            }
        }
    }
}

/// Calls `f(t0, n)` for consecutive groups of at most `group` tokens covering `0..n_tokens`.
fn for_token_groups(n_tokens: usize, group: usize, mut f: impl FnMut(usize, usize)) {
    let mut t0 = 0;
    while t0 < n_tokens {
        let n = group.min(n_tokens - t0);
        f(t0, n);
        t0 += n;
    }
}

/// Tokens `t0..t0 + n` against one row, by kernel calls of 8, 4, 2 and 1 tokens; each result
/// handed to `put(token, value)`.
fn dot_group<'a>(
    level: Level,
    ty: WeightType,
    row: &[u8],
    act: &impl Fn(usize) -> &'a [BlockQ8K],
    t0: usize,
    n: usize,
    put: &mut impl FnMut(usize, f32),
) {
    let end = t0 + n;
    let mut t = t0;
    while t < end {
        let left = end - t;
        let step = if left >= 8 {
            piece::<8>(level, ty, row, act, t, put)
        } else if left >= 4 {
            piece::<4>(level, ty, row, act, t, put)
        } else if left >= 2 {
            piece::<2>(level, ty, row, act, t, put)
        } else {
            piece::<1>(level, ty, row, act, t, put)
        };
        t += step;
    }
}

/// One kernel call on tokens `t0..t0 + T`; returns `T`.
fn piece<'a, const T: usize>(
    level: Level,
    ty: WeightType,
    row: &[u8],
    act: &impl Fn(usize) -> &'a [BlockQ8K],
    t0: usize,
    put: &mut impl FnMut(usize, f32),
) -> usize {
    let a: [&[BlockQ8K]; T] = std::array::from_fn(|j| act(t0 + j));
    for (j, v) in dot_tokens(level, ty, row, a).into_iter().enumerate() {
        put(t0 + j, v);
    }
    T
}
