//! `matmul`: a stored weight matrix times the activations of one or more tokens, with the
//! kernels of the CPU's instruction set (`cpu.rs`: detected once, `HERD_ISA` lowers it).
//!
//! - F32 / F16 / BF16 weights meet `f32` activations: weights converted on the fly, products
//!   summed in `f32` (`matmul_float.rs`).
//! - Q8_0 / Q4_0 weights meet activations quantized to Q8_0 blocks, in exact integer dot
//!   products per block, as llama.cpp's CPU backend computes them (`matmul_quant.rs`,
//!   `act_q8.rs`); results differ from `f32` activations by that rounding. Q4_0 and Q8_0
//!   repacked at load ([`crate::repack`], `qx16.rs`) take the same drivers with a row kernel
//!   of their own.
//! - Q2_K..Q6_K weights meet activations quantized to Q8_K super-blocks (`matmul_kquant.rs`,
//!   `kquants/`); repacked at load ([`WeightType::Q2_Kx16`] ... [`WeightType::Q6_Kx16`]:
//!   sixteen rows side by side) they take the same driver with row kernels of their own.
//! - Any other weight type takes the plain path, [`crate::matmul_reference`].
//!
//! Three ways through a matrix, [`MatmulPath`]:
//! - [`MatmulPath::Rows`]: each thread streams a contiguous range of rows through a row kernel
//!   (`*_dot.rs`), every token of the call dotted with a row while it sits in L1; for one token
//!   (decode) reading the weights is the bound.
//! - [`MatmulPath::Tiles`]: each thread rewrites its rows a panel at a time (`pack.rs`) and tile
//!   kernels (`*_tile.rs`) take a few rows × a few tokens at once, each weight vector loaded once
//!   for several tokens (prefill); computing is the bound. K-quant panels are block tiles
//!   (`block_tile_kquant.rs`: 16 rows × 32 values of unpacked super-blocks per tile) against
//!   activations in Q8_0 blocks, multiplied by `vpdpbusd` (`avx512_blocks.rs`) or
//!   `vpmaddubsw` (`avx2_blocks.rs`). Float panels are groups of 16 rows laid out by column,
//!   multiplied by outer products (`avx512_panel.rs`, `avx2_panel.rs`: a column of rows per
//!   vector, each token's value broadcast). At the AMX level this path takes the AVX-512
//!   kernels.
//! - [`MatmulPath::Bulk`]: the tiles for many tokens (a prompt), with the products that pay
//!   only then: at the AMX level, every quantized type's panels decoded into `bf16` tiles
//!   (`amx_bf16.rs`), and F16 / BF16 weights on `bf16` tiles of two terms per value
//!   (`amx_bf16::Split`); elsewhere the tile path's kernels. [`MatmulPath::auto`] takes it
//!   from [`BULK_TOKENS`].
//!
//! # Batch invariance
//!
//! For a fixed instruction-set level, path and weight type, `out[t, r]` is bitwise a function of
//! weight row `r` and activation row `t` only: the same whatever the number of tokens in the
//! call, the token's position among them, and the number of threads. So a request gives the same
//! tokens alone or batched with others. What makes it hold:
//! - activations are quantized per token (`act_q8.rs`, `kquants::quantize_q8_k`);
//! - threads split the rows, never the columns (no sum is split across threads);
//! - every tile shape, the edge tiles included, computes each (row, token) pair with the same
//!   operations in the same order as the full tiles (one accumulator per pair, the same blocks
//!   of columns, the same final reduction).
//!
//! Across paths: repacked Q4_0 / Q8_0 ([`WeightType::Q4_0x16`], [`WeightType::Q8_0x16`]) at the
//! AVX-512 and AVX2 levels and the scalar level of every type give bitwise the same results on
//! both paths ([`MatmulPath::interchangeable`]); the tile path then takes the row kernel itself
//! for a token or a few (`matmul_quant.rs`). The SIMD float and Q8_0 / Q4_0 row
//! kernels sum in another order than their tile kernels (several accumulators per row, and for
//! Q8_0 / Q4_0 per-lane partial sums scaled block by block, which keeps decode at memory
//! speed; tile kernels scale whole-block sums, and tile kernels on matrix units order their
//! sums their own way; K-quant rows meet Q8_K activations, their tiles Q8_0 blocks), so their
//! two paths agree only within rounding: a caller that needs
//! invariance must then keep one path for every call, whatever the batch (for instance
//! [`MatmulPath::Tiles`] for every step of a server that batches).
//! `tests/batch_invariance.rs` checks all of this for every weight type and level.

use crate::cpu::{Isa, Level};
use crate::matmul_float::matmul_float;
use crate::matmul_quant::matmul_quant;
use crate::{dequantize, matmul_reference, WeightType};

/// Fewer bytes of weights (times tokens) than this stay in one task: spreading tiny matrices
/// over threads costs more than it saves.
pub(crate) const MIN_TASK_BYTES: usize = 64 << 10;
/// Target size of a packed weight panel: a few hundred KiB stays in a core's L2 cache while
/// every group of tokens passes over it.
pub(crate) const PANEL_BYTES: usize = 256 << 10;

/// A borrowed weight matrix `[n_rows, n_cols]`, row-major, each row `ty.row_bytes(n_cols)` bytes.
#[derive(Debug, Clone, Copy)]
pub struct WeightView<'a> {
    pub ty: WeightType,
    pub n_rows: usize,
    pub n_cols: usize,
    pub bytes: &'a [u8],
}

impl<'a> WeightView<'a> {
    /// Panics unless `bytes` holds exactly `n_rows` rows of `n_cols` values of `ty`.
    pub(crate) fn assert_bytes_fit(&self) {
        assert_eq!(
            self.bytes.len(),
            self.n_rows * self.ty.row_bytes(self.n_cols),
            "{:?} matrix of {} x {}",
            self.ty,
            self.n_rows,
            self.n_cols
        );
    }
    /// The bytes of row `r`.
    ///
    /// # Panics
    /// For the grouped types ([`WeightType::is_grouped`]), whose rows lie sixteen side by side
    /// (use [`WeightView::row_f32`]).
    #[inline]
    pub fn row(&self, r: usize) -> &'a [u8] {
        assert!(
            !self.ty.is_grouped(),
            "{:?} rows are not contiguous",
            self.ty
        );
        let rb = self.ty.row_bytes(self.n_cols);
        &self.bytes[r * rb..(r + 1) * rb]
    }
    /// Row `r` decoded into `out` (`n_cols` values).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        if self.ty.is_grouped() {
            let from = self.ty.stored();
            let mut stored = vec![0u8; from.row_bytes(self.n_cols)];
            crate::kquants::x16::stored_row(self, r, &mut stored);
            return dequantize(from, &stored, out);
        }
        dequantize(self.ty, self.row(r), out);
    }
}

/// How [`matmul_path`] goes through a matrix (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatmulPath {
    /// Row kernels: each row's weights read once, dotted with every token of the call.
    Rows,
    /// Tile kernels over packed panels: a few rows × a few tokens at a time.
    Tiles,
    /// Tile kernels for many tokens at a time (a prompt): as [`MatmulPath::Tiles`], except
    /// where a product exists that is faster for many tokens but that a few would pay for (at
    /// the AMX level, the `bf16` tiles, whose panels are decoded at every call; F16 and BF16
    /// weights there in two terms per value, `amx_bf16::Split`). Batch-invariant as the others.
    Bulk,
}

/// Tokens from which [`MatmulPath::auto`] takes [`MatmulPath::Bulk`], whose AMX tiles pay for
/// their panels from about there. TinyLlama at two threads (`HERD_ISA=amx|avx512 herd bench
/// tl-M.gguf -p 8,16,24,31 -n 0 -t 2 -r 3`, t/s AMX / AVX-512): Q4_0 pp16 210 / 202, pp24
/// 293 / 252, pp31 395 / 272; Q8_0 pp16 153 / 200, pp24 225 / 245, pp31 288 / 263; Q4_K_M
/// pp16 168 / 287, pp24 246 / 268, pp31 314 / 264. F16 split tiles against the `f32` ones
/// (one thread, `matvec --rows 5632 --cols 2048 --types f16 --isas amx --only prefill
/// --tokens N`, GFLOP/s): 16 tokens 83 / 109, 24 tokens 163-164 / 138-144, 32 tokens 164 / 110.
pub const BULK_TOKENS: usize = 24;

/// [`BULK_TOKENS`] for Q8_0 weights, whose AVX-512 tiles since read the repacked rows as they
/// stream in (`avx512_tile::panel_streamed`, bursts of the next panel above 20 tokens):
/// TinyLlama Q8_0 at two threads (`HERD_ISA=avx512` against the AMX level, `herd bench
/// tl-q8_0.gguf -p 24,28,32,40,48 -n 0 -t 2 -r 4`, two rounds, t/s tiles / bulk): pp24 255.2,
/// 241.2 / 229.0, 201.6; pp28 253.0, 257.8 / 251.9, 241.8; pp32 288.2, 261.8 / 286.6, 256.5;
/// pp48 322.6, 312.7 / 353.3, 328.4. Q4_0 the same at pp24 (306.3, 252.1 / 298.9, 253.8), the
/// bulk tiles ahead from pp28.
pub const BULK_TOKENS_Q8_0: usize = 32;

/// [`BULK_TOKENS`] for Q4_0 rows (stored or repacked) whose blocks fill less than three
/// quarters of their groups of 16 (the repacked layout's groups, which the AVX-512 tiles
/// multiply whole, padding included), and [`BULK_TOKENS_SHORT_Q8_0`] for such Q8_0 rows:
/// stories15M's rows of 288 values (9 blocks of a group of 16). stories15M at one / two
/// threads (`herd bench s15-M.gguf -p 8,12,16,20 -n 0 -t 1,2 -r 10`, two alternating rounds,
/// t/s tiles / bulk): Q4_0 pp8 8106.8, 7768.4 / 6929.7, 6382.0 (one thread); pp12 8714.5,
/// 8798.5 / 10174.4, 9164.9 (one) and 11611.6, 11745.6 / 12955.7, 12339.2 (two); pp16 9490.0,
/// 9809.1 / 12814.3, 11590.2 (one) and 12091.8, 12432.3 / 15874.4, 15088.9 (two). Q8_0 (`-p
/// 8,12,16,24`) pp12 7705.7, 7940.7 / 7395.5, 7776.6 (one); pp16 8450.9, 8664.8 / 9764.3,
/// 9923.7 (one) and 12742.3, 12710.1 / 13749.1, 13566.1 (two); pp24 15556.2, 15941.1 /
/// 18411.8, 18220.3 (two).
pub const BULK_TOKENS_SHORT: usize = 12;

/// [`BULK_TOKENS_SHORT`] for Q8_0 rows.
pub const BULK_TOKENS_SHORT_Q8_0: usize = 16;

/// Float weights (F32, F16, BF16) take the row path up to this many tokens at the AVX-512 and
/// AMX levels ([`MatmulPath::auto_for`]), where the row kernel reads each row once for four
/// tokens (`avx512_dot::dot_float_tokens`, each token's sum bitwise a decode's): TinyLlama F16
/// at two threads (`herd bench tl-f16.gguf -p 2,4,8 -n 0 -t 2 -r 5`, three alternating rounds,
/// t/s tiles / rows): pp2 25.0, 23.7, 24.0 / 28.1, 25.6, 25.1; pp4 40.4, 38.8, 40.5 / 49.8,
/// 43.8, 46.3; pp8 54.5, 56.8, 56.9 / 42.7, 39.4, 38.6 (`-p 3,5,6`, two rounds: pp5 43.8, 44.1
/// / 47.5, 47.8; pp6 47.8, 46.5 / 45.6, 45.4).
pub const ROWS_FLOAT_TOKENS: usize = 4;

/// Most tokens for which float weights take the row path at the AVX2 level
/// (`avx2_dot::dot_float_block`: four rows read once for all the tokens, the tokens' values in
/// L1 chunk by chunk, each token's sum bitwise a decode's) rather than the tiles (8 × 8
/// register transposes, `fused_avx2`, or 16-bit panels); one block of
/// [`crate::avx2_dot::BLOCK_TOKENS`] at most, since each block reads the rows again. Zen 3,
/// TinyLlama F16 at two threads (`herd bench tl-f16.gguf -p 10,12,14,16 -n 0 -t 2 -r 3`, four
/// alternating rounds, medians, t/s, tiles from 9 tokens / rows up to 16): pp10 34.96 / 41.38,
/// pp12 30.89 / 39.02, pp14 34.64 / 44.18, pp16 40.90 / 39.47.
pub const ROWS_FLOAT_TOKENS_AVX2: usize = 15;

impl MatmulPath {
    /// The path [`matmul`] takes for `n_tokens` tokens: rows for one token, tiles for more,
    /// bulk tiles from [`BULK_TOKENS`].
    pub fn auto(n_tokens: usize) -> MatmulPath {
        Self::auto_from(n_tokens, BULK_TOKENS)
    }

    /// [`MatmulPath::auto`] for a product by weights of type `ty` with rows of `n_cols` values
    /// (a model's passes: its layers' matrices): bulk tiles from [`BULK_TOKENS_Q8_0`] for
    /// Q8_0, and for Q4_0 / Q8_0 rows that fill their groups of 16 blocks less than three
    /// quarters from [`BULK_TOKENS_SHORT`] / [`BULK_TOKENS_SHORT_Q8_0`]; float weights by
    /// rows up to [`ROWS_FLOAT_TOKENS`] tokens where [`crate::isa`] is AVX-512 or AMX, up to
    /// [`ROWS_FLOAT_TOKENS_AVX2`] where it is AVX2.
    pub fn auto_for(n_tokens: usize, ty: WeightType, n_cols: usize) -> MatmulPath {
        Self::auto_at(crate::isa(), n_tokens, ty, n_cols)
    }

    /// [`MatmulPath::auto_for`] for the kernels of `isa`.
    fn auto_at(isa: Isa, n_tokens: usize, ty: WeightType, n_cols: usize) -> MatmulPath {
        let float = matches!(ty, WeightType::F32 | WeightType::F16 | WeightType::BF16);
        if float && n_tokens <= ROWS_FLOAT_TOKENS && isa >= Isa::Avx512 {
            return MatmulPath::Rows;
        }
        if float && n_tokens <= ROWS_FLOAT_TOKENS_AVX2 && isa == Isa::Avx2 {
            return MatmulPath::Rows;
        }
        let blocks = n_cols / 32;
        let padded = blocks.div_ceil(16) * 16;
        let short = 4 * blocks < 3 * padded;
        let bulk = match (ty, short) {
            (WeightType::Q8_0 | WeightType::Q8_0x16, false) => BULK_TOKENS_Q8_0,
            (WeightType::Q8_0 | WeightType::Q8_0x16, true) => BULK_TOKENS_SHORT_Q8_0,
            (WeightType::Q4_0 | WeightType::Q4_0x16, true) => BULK_TOKENS_SHORT,
            _ => BULK_TOKENS,
        };
        Self::auto_from(n_tokens, bulk)
    }

    /// Rows for one token, tiles for more, bulk tiles from `bulk`.
    fn auto_from(n_tokens: usize, bulk: usize) -> MatmulPath {
        if n_tokens <= 1 {
            MatmulPath::Rows
        } else if n_tokens < bulk {
            MatmulPath::Tiles
        } else {
            MatmulPath::Bulk
        }
    }

    /// Whether both paths give bitwise the same outputs for `ty` at `isa`, so that [`matmul`]'s
    /// own choice of path keeps results independent of the batch. (At the AMX level both
    /// take the AVX-512 kernels.)
    pub fn interchangeable(isa: Isa, ty: WeightType) -> bool {
        isa == Isa::Scalar
            || (matches!(isa, Isa::Amx | Isa::Avx512 | Isa::Avx2)
                && matches!(ty, WeightType::Q4_0x16 | WeightType::Q8_0x16))
    }

    /// The kernels this path takes at `isa`: the AMX tiles only on the bulk path (a few
    /// tokens do not pay for their panels), the AVX-512 kernels otherwise.
    ///
    /// # Panics
    /// When this CPU does not support `isa`.
    fn level(self, isa: Isa) -> Level {
        let level = Level::new(isa).unwrap_or_else(|| panic!("this CPU does not support {isa}"));
        match self {
            MatmulPath::Bulk => level,
            MatmulPath::Rows | MatmulPath::Tiles => level.without_amx(),
        }
    }
}

/// `out[t, r] = Σ_c x[t, c] · w[r, c]` for `n_tokens` rows of `x` (`[n_tokens, n_cols]`) into
/// `out` (`[n_tokens, n_rows]`), with the kernels of [`crate::isa`], by the path
/// [`MatmulPath::auto_for`] picks for its type.
///
/// # Panics
/// When the lengths of `w.bytes`, `x` or `out` do not match the shapes.
pub fn matmul(w: &WeightView, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    matmul_with(crate::isa(), w, x, n_tokens, out)
}

/// [`matmul`] with the kernels of a given instruction-set level (tests, comparisons), by the
/// path [`MatmulPath::auto_for`] would pick at that level.
///
/// # Panics
/// When this CPU does not support `isa`, or the lengths do not match the shapes.
pub fn matmul_with(isa: Isa, w: &WeightView, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    matmul_path_with(
        isa,
        MatmulPath::auto_at(isa, n_tokens, w.ty, w.n_cols),
        w,
        x,
        n_tokens,
        out,
    )
}

/// [`matmul`] by a given path: for a fixed path, each output is bitwise independent of the
/// batch (see the module documentation).
///
/// # Panics
/// As [`matmul`].
pub fn matmul_path(path: MatmulPath, w: &WeightView, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    matmul_path_with(crate::isa(), path, w, x, n_tokens, out)
}

/// [`matmul_path`] with the kernels of a given instruction-set level.
///
/// # Panics
/// When this CPU does not support `isa`, or the lengths do not match the shapes.
pub fn matmul_path_with(
    isa: Isa,
    path: MatmulPath,
    w: &WeightView,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) {
    let level = path.level(isa);
    check_shapes(w, x, n_tokens, out);
    if out.is_empty() {
        return;
    }
    if w.n_cols == 0 {
        out.fill(0.0);
        return;
    }
    // Weight types without kernels of their own (added to `WeightType` over time) take the
    // plain path.
    #[allow(unreachable_patterns)]
    match w.ty {
        WeightType::F32 | WeightType::F16 | WeightType::BF16 => {
            matmul_float(level, path, w, x, n_tokens, out)
        }
        WeightType::Q8_0 | WeightType::Q8_0x16 | WeightType::Q4_0 | WeightType::Q4_0x16 => {
            matmul_quant(level, path, w, x, n_tokens, out)
        }
        WeightType::Q2_K
        | WeightType::Q2_Kx16
        | WeightType::Q3_K
        | WeightType::Q3_Kx16
        | WeightType::Q4_K
        | WeightType::Q4_Kx16
        | WeightType::Q5_K
        | WeightType::Q5_Kx16
        | WeightType::Q6_K
        | WeightType::Q6_Kx16 => {
            crate::matmul_kquant::matmul_kquant(level, path, w, x, n_tokens, out)
        }
        _ => matmul_reference(w, x, n_tokens, out),
    }
}

/// The asserts of [`matmul_path_with`].
fn check_shapes(w: &WeightView, x: &[f32], n_tokens: usize, out: &[f32]) {
    w.assert_bytes_fit();
    assert!(
        !w.ty.is_grouped() || w.n_rows.is_multiple_of(crate::kquants::X16_ROWS),
        "{:?} matrices hold whole groups of rows",
        w.ty
    );
    assert_eq!(
        x.len(),
        n_tokens * w.n_cols,
        "activations of {n_tokens} tokens"
    );
    assert_eq!(
        out.len(),
        n_tokens * w.n_rows,
        "outputs of {n_tokens} tokens"
    );
}

/// Several products of the same activations (a layer's query, key and value projections, or
/// its gate and up projections): `outs[i] = x · ws[i]ᵀ`, bitwise what [`matmul_path`] gives
/// for each. By [`MatmulPath::Rows`] all their rows share one parallel section, so the threads
/// meet once instead of once per matrix (decoding is made of such short sections), and the
/// input is quantized once for all matrices that want it quantized alike.
///
/// # Panics
/// As [`matmul`], for each matrix; when `ws` and `outs` differ in length.
pub fn matmul_many(
    path: MatmulPath,
    ws: &[WeightView],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) {
    matmul_many_with(crate::isa(), path, ws, x, n_tokens, outs)
}

/// [`matmul_many`] with the kernels of a given instruction-set level.
///
/// # Panics
/// As [`matmul_many`]; when this CPU does not support `isa`.
pub fn matmul_many_with<'a>(
    isa: Isa,
    path: MatmulPath,
    ws: &[WeightView<'a>],
    x: &'a [f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) {
    use std::sync::Arc;

    use crate::act_q8::ActQ8;
    use crate::kquants::BlockQ8K;
    use crate::matmul_float::{float_interleaved, FloatRows};
    use crate::matmul_kquant::{quantize_acts, KquantRows};
    use crate::matmul_quant::{row_act, row_act_key, QuantRows};
    use crate::par::{run_rows_jobs, RowsJob};

    assert_eq!(ws.len(), outs.len(), "one output per matrix");
    let level = path.level(isa);
    for (w, out) in ws.iter().zip(outs.iter()) {
        check_shapes(w, x, n_tokens, out);
    }
    // Every matrix reads the same input: each way of quantizing it is done once.
    let mut quant_acts: Vec<(_, Arc<ActQ8>)> = Vec::new();
    let mut kquant_acts: Option<Arc<Vec<BlockQ8K>>> = None;
    let mut float_xi = None;
    let mut rows_job = |w: &WeightView<'a>| -> Option<Box<dyn RowsJob + 'a>> {
        if w.n_rows == 0 || w.n_cols == 0 || n_tokens == 0 {
            return None;
        }
        #[allow(unreachable_patterns)]
        match w.ty {
            WeightType::F32 | WeightType::F16 | WeightType::BF16 => {
                let xi = float_xi
                    .get_or_insert_with(|| float_interleaved(level, x, n_tokens, w.n_cols))
                    .clone();
                Some(Box::new(FloatRows::with_interleaved(
                    level, w, x, n_tokens, xi,
                )))
            }
            WeightType::Q8_0 | WeightType::Q8_0x16 | WeightType::Q4_0 | WeightType::Q4_0x16 => {
                let key = row_act_key(level, w.ty);
                let act = match quant_acts.iter().find(|(k, _)| *k == key) {
                    Some((_, a)) => a.clone(),
                    None => {
                        let a = Arc::new(row_act(level, w.ty, x, n_tokens, w.n_cols));
                        quant_acts.push((key, a.clone()));
                        a
                    }
                };
                Some(Box::new(QuantRows::with_act(level, w, act, n_tokens)))
            }
            WeightType::Q2_K
            | WeightType::Q2_Kx16
            | WeightType::Q3_K
            | WeightType::Q3_Kx16
            | WeightType::Q4_K
            | WeightType::Q4_Kx16
            | WeightType::Q5_K
            | WeightType::Q5_Kx16
            | WeightType::Q6_K
            | WeightType::Q6_Kx16 => {
                let acts = kquant_acts
                    .get_or_insert_with(|| Arc::new(quantize_acts(level, x, n_tokens, w.n_cols)))
                    .clone();
                Some(Box::new(KquantRows::with_acts(level, w, acts, n_tokens)))
            }
            _ => None,
        }
    };
    // Q8_0 / Q4_0 tiles (prefill) share one quantization of the input and one parallel
    // section, so one thread's last task of a product is not a wait for the other; so do float
    // tiles of a few tokens (a server's steps).
    let mut tile_act = None;
    #[cfg(target_arch = "x86_64")]
    let mut bf16_act = None;
    #[cfg(target_arch = "x86_64")]
    let mut bf16_residual = None;
    let mut tiles_job = |w: &WeightView<'a>| -> Option<Box<dyn RowsJob + 'a>> {
        use crate::matmul_quant::{tile_act as quantize, QuantTiles};
        if w.n_rows == 0 || w.n_cols == 0 || n_tokens == 0 {
            return None;
        }
        // Bulk tiles at the AMX level (only the bulk path's level has the AMX token): F16 /
        // BF16 weights in two `bf16` terms, the input's two terms made once for all.
        #[cfg(target_arch = "x86_64")]
        if let Some(amx) = crate::matmul_float::split_amx(level, w) {
            use crate::amx_bf16::{ActBf16, Bf16Scope, Bf16Tiles, Split};
            let act = bf16_act
                .get_or_insert_with(|| Arc::new(ActBf16::new(x, n_tokens, w.n_cols)))
                .clone();
            let xl = bf16_residual
                .get_or_insert_with(|| Arc::new(ActBf16::residual(x, n_tokens, w.n_cols)))
                .clone();
            let split = Split::new(w.ty, xl).expect("F16 or BF16 weights");
            let unit = move || Bf16Scope::new(amx);
            return Some(Box::new(Bf16Tiles::split(unit, w, act, split, n_tokens)));
        }
        #[cfg(target_arch = "x86_64")]
        if matches!(w.ty, WeightType::F32 | WeightType::F16 | WeightType::BF16) {
            let job = crate::matmul_float::FloatFused::for_call(level, w, x, n_tokens);
            return job.map(|j| Box::new(j) as Box<dyn RowsJob + 'a>);
        }
        // At the AMX level (the bulk path), quantized weights on BF16 tiles, the input rounded
        // once for all.
        #[cfg(target_arch = "x86_64")]
        if let Some(amx) = crate::matmul_quant::tiles_amx(level) {
            use crate::amx_bf16::{ActBf16, Bf16Scope, Bf16Tiles};
            let from = w.ty.stored();
            if !(matches!(from, WeightType::Q8_0 | WeightType::Q4_0) || from.is_k_quant()) {
                return None;
            }
            let act = bf16_act
                .get_or_insert_with(|| Arc::new(ActBf16::new(x, n_tokens, w.n_cols)))
                .clone();
            let unit = move || Bf16Scope::new(amx);
            return Some(Box::new(Bf16Tiles::new(unit, w, act, n_tokens)));
        }
        match w.ty {
            WeightType::Q8_0 | WeightType::Q8_0x16 | WeightType::Q4_0 | WeightType::Q4_0x16 => {
                let act = tile_act
                    .get_or_insert_with(|| Arc::new(quantize(level, x, n_tokens, w.n_cols)))
                    .clone();
                Some(Box::new(QuantTiles::new(level, w, act, n_tokens)))
            }
            _ => None,
        }
    };
    let jobs: Option<Vec<_>> = match path {
        MatmulPath::Rows => ws.iter().map(&mut rows_job).collect(),
        MatmulPath::Tiles | MatmulPath::Bulk => ws.iter().map(&mut tiles_job).collect(),
    };
    match jobs {
        Some(jobs) => {
            let refs: Vec<&dyn RowsJob> = jobs.iter().map(|j| &**j).collect();
            run_rows_jobs(&refs, outs, n_tokens);
        }
        // Matrices without jobs of their kind go alone.
        None => {
            for (w, out) in ws.iter().zip(outs.iter_mut()) {
                matmul_path_with(isa, path, w, x, n_tokens, out);
            }
        }
    }
}
