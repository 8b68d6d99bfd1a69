//! Prefill on AMX BF16 tiles: the tile path of quantized weights at [`crate::Isa::Amx`], and
//! the bulk path of F16 / BF16 weights in two terms per value ([`Split`]).
//!
//! Int8 tiles (`tdpbssd`, the layout the VNNI block tiles of `block_tiles.rs` still use) must
//! take every block's sums out of the tile unit for its scales (a store and an `f32` epilogue
//! per 32 values), so the tile products sat idle most of the time (about a tenth of the int8
//! peak; they were retired). Here the scales go into the operands instead:
//!
//! - each thread decodes its weight rows a panel at a time into `bf16` (the row's own decoder,
//!   `dequant.rs`, then rounded to nearest even), tile after tile of 16 rows × 32 values: the
//!   first operand of `tdpbf16ps`, row-major as decoded;
//! - the activations are rounded to `bf16` once per input (the products of one input share
//!   it, [`Bf16Tiles`]), per group of 16 tokens and 32 columns one tile of 16 rows × 16
//!   tokens × 2 values (the pairs the second operand takes);
//! - per 32 weight rows × 32 tokens, four `f32` accumulator tiles take the products
//!   (`tdpbf16ps` adds in `f32` inside the tile): over the whole row in one pass while the
//!   activations fit in L2 beside the panel, else in passes of 256 columns, the accumulators
//!   stored and loaded again between passes, so that one slice of the activations stays in L2
//!   for all the panel's rows instead of coming from L3 for every 32 rows ([`K_TILES`]).
//!
//! Precision: `bf16` keeps 8 significant bits, so each operand is within 2⁻⁹ of its value
//! (relative); the quantized weights' own steps are far coarser (Q8_0: 1/254 of a block's
//! largest value; Q4_0: 1/16), and the activations are finer than the Q8_0 blocks the other
//! paths use (whose step is 1/254 of a block's largest value, here 2⁻⁹ of each value).
//! Results are not bitwise those of the other paths; every call of two tokens or more at the
//! AMX level takes this path, whatever the token count.
//!
//! The tile instructions sit behind [`Bf16Unit`]: the hardware's ([`Bf16Scope`]), or in tests a
//! software model ([`EmulatedBf16`]), so that the driver's packing and bookkeeping are checked
//! against a scalar twin on any machine.

use std::arch::asm;
use std::marker::PhantomData;

use crate::cpu::Amx;
use crate::par::{chunk_rows, OutCols, RowsJob};
use crate::scratch::{with_panel, AlignedBytes};
use crate::{dequantize, WeightType, WeightView};
use half::bf16;
use std::sync::Arc;

/// Rows (weight rows, or tokens) of one tile.
const ROWS: usize = 16;
/// Columns (`bf16` values) of one weight tile's row: 64 bytes.
const COLS: usize = 32;
/// Bytes of one tile: 16 rows of 64 bytes.
const TILE: usize = 1024;
/// Bytes of decoded weights a thread keeps per panel, about, while the activations fit in L2
/// beside it (up to [`ACT_L2_BYTES`]): the panel stays there from its decoding to its last
/// product, and each block of 32 rows × 32 tokens takes the whole row in one pass.
const PANEL_BYTES: usize = 512 << 10;
/// Activation tiles beyond which a product goes along its rows in passes of [`K_TILES`] tiles.
const ACT_L2_BYTES: usize = 1 << 20;
/// Weight rows per panel, at most; every panel's where the activations exceed
/// [`ACT_L2_BYTES`].
const MAX_PANEL_ROWS: usize = 256;
/// Tiles along a row per pass (256 columns) where the activations exceed [`ACT_L2_BYTES`]:
/// the panel is then these columns of 256 rows (128 KiB), decoded pass by pass; the
/// accumulators leave the tile unit and come back once per pass; a pass's slice of the
/// activations (at most [`PASS_GROUPS`] × 8 KiB) stays in L2 for all the panel's rows, the
/// slice of one token pair (16 KiB) in L1 for all its row pairs. (Two row groups by two token
/// groups is the most that eight tiles hold.) One pass over the whole row instead streams a
/// token pair's activations from L3 for every 32 rows once rows are long.
const K_TILES: usize = 8;
/// Token groups per pass, at most (512 tokens): their accumulators (`MAX_PANEL_ROWS` / 32 ×
/// `PASS_GROUPS` / 2 blocks of 4 KiB, 512 KiB) stay in L2 with the slices above.
const PASS_GROUPS: usize = 32;

/// `ldtilecfg`'s 64-byte operand: palette 1, eight tiles of 16 rows × 64 bytes (C `tmm0..3`:
/// 16 weight rows × 16 tokens of `f32`; A `tmm4`, `tmm5`: 16 weight rows × 32 `bf16`; B `tmm6`,
/// `tmm7`: 16 pairs of columns × 16 tokens × 2 `bf16`).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const fn tile_config() -> TileConfig {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64; // bytes per row (u16, little-endian)
        c[48 + t] = ROWS as u8;
        t += 1;
    }
    TileConfig(c)
}

static CONFIG: TileConfig = tile_config();

/// The four accumulator tiles of a 32 rows × 32 tokens block, as stored: `c[2i + j]` holds
/// rows of weight group `i` × tokens of token group `j`, `[row][token]`.
type Block = [[[f32; ROWS]; ROWS]; 4];

/// A [`Block`] on a cache line's boundary (a tile row then loads and stores whole lines).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Acc(Block);

impl Default for Acc {
    fn default() -> Acc {
        Acc([[[0.0; ROWS]; ROWS]; 4])
    }
}

thread_local! {
    /// The accumulators of this thread's last pass, for the next (fresh pages cost a fault and
    /// a zeroing each).
    static ACCS: std::cell::RefCell<Vec<Acc>> = std::cell::RefCell::default();
}

/// The tile instructions of one block.
///
/// # Safety
/// A value of an implementing type exists only where its instructions run (for the hardware:
/// AMX-BF16 present, this thread's configuration [`CONFIG`]).
pub(crate) unsafe trait Bf16Unit {
    /// `c[2i + j] = Σ_k w[i]'s tile k · a[j]'s tile k` over `n` tiles of each (1024 bytes
    /// apart), with `f32` accumulation: `c[2i + j][r][t] = Σ w[i][k][r][v] · a[j][k][v / 2][t][v % 2]`;
    /// with `add`, the sums go on from `c`'s values instead of zero.
    ///
    /// # Safety
    /// `w[i]` and `a[j]` each point at `n` readable tiles; `n > 0`.
    unsafe fn block(
        &self,
        w: [*const u8; 2],
        a: [*const u8; 2],
        n: usize,
        c: &mut Block,
        add: bool,
    );
}

/// Proof that this thread's tile configuration is [`CONFIG`]; releases the tiles when dropped.
/// Each product makes its own.
pub(crate) struct Bf16Scope {
    _not_send: PhantomData<*const ()>,
}

impl Bf16Scope {
    pub(crate) fn new(_: Amx) -> Bf16Scope {
        // SAFETY: the token proves AMX-TILE and AMX-BF16 present and the tile state granted;
        // CONFIG is a valid palette-1 configuration, 64 bytes on a 64-byte boundary.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly, preserves_flags));
        }
        Bf16Scope {
            _not_send: PhantomData,
        }
    }
}

impl Drop for Bf16Scope {
    fn drop(&mut self) {
        // SAFETY: AMX-TILE is present (a scope exists only with the token).
        unsafe { asm!("tilerelease", options(nomem, nostack, preserves_flags)) };
    }
}

// SAFETY: the configuration is loaded (the scope exists); the loop reads `n` tiles from each
// pointer and writes the 4 KiB of `c`.
unsafe impl Bf16Unit for Bf16Scope {
    #[inline(always)]
    unsafe fn block(
        &self,
        w: [*const u8; 2],
        a: [*const u8; 2],
        n: usize,
        c: &mut Block,
        add: bool,
    ) {
        let out = c.as_mut_ptr() as *mut u8;
        // SAFETY: the caller's promise; `c` is 4 KiB, four tiles of 16 rows of 64 bytes (the
        // accumulators start from it with `add`, are stored to it at the end). One block of
        // assembly: nothing promises that tile registers keep their values from one to the next.
        unsafe {
            asm!(
                "test {add}, {add}",
                "jz 3f",
                "tileloadd tmm0, [{c} + {s}*1]",
                "tileloadd tmm1, [{c} + {s}*1 + 1024]",
                "tileloadd tmm2, [{c} + {s}*1 + 2048]",
                "tileloadd tmm3, [{c} + {s}*1 + 3072]",
                "jmp 2f",
                "3:",
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "2:",
                "tileloadd tmm4, [{w0} + {s}*1]",
                "tileloadd tmm6, [{a0} + {s}*1]",
                "tileloadd tmm7, [{a1} + {s}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm5, [{w1} + {s}*1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {w0}, 1024",
                "add {w1}, 1024",
                "add {a0}, 1024",
                "add {a1}, 1024",
                "dec {n}",
                "jnz 2b",
                "tilestored [{c} + {s}*1], tmm0",
                "add {c}, 1024",
                "tilestored [{c} + {s}*1], tmm1",
                "add {c}, 1024",
                "tilestored [{c} + {s}*1], tmm2",
                "add {c}, 1024",
                "tilestored [{c} + {s}*1], tmm3",
                w0 = inout(reg) w[0] => _,
                w1 = inout(reg) w[1] => _,
                a0 = inout(reg) a[0] => _,
                a1 = inout(reg) a[1] => _,
                n = inout(reg) n => _,
                c = inout(reg) out => _,
                s = in(reg) 64usize,
                add = in(reg) add as usize,
                options(nostack),
            );
        }
    }
}

/// A software model of [`Bf16Unit::block`] for tests: each product exact in `f32` (two `bf16`
/// have at most 16 significant bits), added in order of `k`, then of the pair.
#[cfg(test)]
pub(crate) struct EmulatedBf16;

#[cfg(test)]
// SAFETY: reads and writes only what the caller promises.
#[allow(clippy::needless_range_loop)]
unsafe impl Bf16Unit for EmulatedBf16 {
    unsafe fn block(
        &self,
        w: [*const u8; 2],
        a: [*const u8; 2],
        n: usize,
        c: &mut Block,
        add: bool,
    ) {
        let bf = |p: *const u8, i: usize| {
            // SAFETY: within the caller's tiles.
            let b = unsafe { p.add(2 * i).cast::<u16>().read_unaligned() };
            f32::from_bits((b as u32) << 16)
        };
        if !add {
            *c = [[[0.0; ROWS]; ROWS]; 4];
        }
        for k in 0..n {
            for (i, &wp) in w.iter().enumerate() {
                for (j, &ap) in a.iter().enumerate() {
                    let (wt, at) = (wp.wrapping_add(k * TILE), ap.wrapping_add(k * TILE));
                    for r in 0..ROWS {
                        for t in 0..ROWS {
                            let mut s = c[2 * i + j][r][t];
                            for p in 0..COLS / 2 {
                                for q in 0..2 {
                                    s +=
                                        bf(wt, r * COLS + 2 * p + q) * bf(at, p * COLS + 2 * t + q);
                                }
                            }
                            c[2 * i + j][r][t] = s;
                        }
                    }
                }
            }
        }
    }
}

/// The activations as second operands: per group of 16 tokens (the last padded with zero
/// tokens, and one zero group added to make their count even) and 32 columns, one tile whose
/// row `p` holds, for each token `t`, columns `2p` and `2p + 1` of that token.
pub(crate) struct ActBf16 {
    tiles: AlignedBytes,
    /// Token groups, even.
    n_groups: usize,
    /// Tiles per token group (columns / 32).
    n_k: usize,
}

impl ActBf16 {
    pub(crate) fn new(x: &[f32], n_tokens: usize, n_cols: usize) -> ActBf16 {
        ActBf16::with(Simd::detect(), x, n_tokens, n_cols, false)
    }

    /// [`ActBf16::new`] by AVX-512 where `simd` is given, else by scalar code (the same bits).
    /// With `residual`, each value's remainder `x − bf16(x)` takes its place ([`Split`]).
    fn with(
        simd: Option<Simd>,
        x: &[f32],
        n_tokens: usize,
        n_cols: usize,
        residual: bool,
    ) -> ActBf16 {
        assert_eq!(n_cols % COLS, 0, "bf16 tiles need a multiple of 32 columns");
        assert_eq!(x.len(), n_tokens * n_cols);
        let n_k = n_cols / COLS;
        let n_groups = n_tokens.div_ceil(ROWS).div_ceil(2) * 2;
        // The calling thread's buffer of the last call, if any (fresh pages cost a fault and a
        // zeroing each); every byte is written below, padding tokens with zeros.
        let mut tiles = ACT_TILES.with(|a| std::mem::take(&mut *a.borrow_mut()));
        let group_bytes = n_k * TILE;
        let items: Vec<(usize, &mut [u8])> = tiles
            .sized(n_groups * group_bytes)
            .chunks_mut(group_bytes)
            .enumerate()
            .collect();
        let fill = |(g, dst): (usize, &mut [u8])| {
            let dst: &mut [u32] = bytemuck::cast_slice_mut(dst);
            let mut pairs = [0u32; COLS / 2];
            let tokens = n_tokens.saturating_sub(g * ROWS).min(ROWS);
            // A tile at a time (its 1 KiB stays in L1 while its 16 tokens are written in).
            for (k, tile) in dst.chunks_exact_mut(TILE / 4).enumerate() {
                if let Some(simd) = simd.filter(|_| tokens > 0) {
                    let x = &x[g * ROWS * n_cols + k * COLS..];
                    // SAFETY: the token proves the features.
                    unsafe { simd::act_tile(simd, x, n_cols, tokens, tile, residual) };
                    continue;
                }
                if tokens < ROWS {
                    for row in tile.chunks_exact_mut(ROWS) {
                        row[tokens..].fill(0);
                    }
                }
                for t in 0..tokens {
                    let cols = &x[(g * ROWS + t) * n_cols + k * COLS..][..COLS];
                    let term = |v: f32| {
                        let v = if residual {
                            v - bf16::from_f32(v).to_f32()
                        } else {
                            v
                        };
                        bf16::from_f32(v).to_bits() as u32
                    };
                    for (p, v) in pairs.iter_mut().zip(cols.chunks_exact(2)) {
                        *p = term(v[0]) | term(v[1]) << 16;
                    }
                    for (p, &v) in pairs.iter().enumerate() {
                        tile[p * ROWS + t] = v;
                    }
                }
            }
        };
        if n_tokens * n_cols < 1 << 16 {
            items.into_iter().for_each(fill);
        } else {
            crate::team::for_each_item(items, fill);
        }
        ActBf16 {
            tiles,
            n_groups,
            n_k,
        }
    }

    /// The tiles of each value's remainder after its rounding, `x − bf16(x)` (the `xl` of
    /// [`Split`]).
    pub(crate) fn residual(x: &[f32], n_tokens: usize, n_cols: usize) -> ActBf16 {
        ActBf16::with(Simd::detect(), x, n_tokens, n_cols, true)
    }

    /// The first tile of token group `g`.
    fn group(&self, g: usize) -> *const u8 {
        self.tiles[g * self.n_k * TILE..].as_ptr()
    }
}

impl Drop for ActBf16 {
    fn drop(&mut self) {
        let tiles = std::mem::take(&mut self.tiles);
        ACT_TILES.with(|a| *a.borrow_mut() = tiles);
    }
}

thread_local! {
    /// The buffer of the last [`ActBf16`] this thread made, for the next one.
    static ACT_TILES: std::cell::RefCell<AlignedBytes> = std::cell::RefCell::default();
}

/// Decodes tiles `k0..k0 + nk` (columns `32·k0 ..`) of weight rows `r0..r0 + n` (`n` a
/// multiple of 16; rows past the matrix are zeros) into `panel`: per group of 16 rows, its `nk`
/// tiles one after another, each 16 rows × 32 `bf16`. `k0` and `nk` are multiples of 8 (256
/// columns, a K-quant super-block) unless `k0 + nk` is the row's end. With `simd`, Q8_0 / Q4_0
/// rows (stored or repacked) and repacked K-quant rows go straight from their blocks to `bf16`
/// and other rows' decoded values are rounded 32 at a time, by AVX-512 (the same bits as the
/// scalar code: each value is `d · q` in `f32`, rounded to nearest even). `tmp` is scratch.
///
/// With `lo` (float rows only, [`Split`]), each value's remainder after its `bf16` rounding,
/// `v − bf16(v)`, takes its place (then rounded in turn).
#[allow(clippy::too_many_arguments)]
fn decode_panel(
    simd: Option<Simd>,
    w: &WeightView,
    r0: usize,
    n: usize,
    (k0, nk): (usize, usize),
    panel: &mut [u8],
    tmp: &mut Vec<f32>,
    lo: bool,
) {
    assert!(
        !lo || matches!(w.ty, WeightType::F32 | WeightType::F16 | WeightType::BF16),
        "only float rows split"
    );
    let n_k = w.n_cols / COLS;
    assert!(k0 + nk <= n_k && (k0 % 8 == 0 && nk % 8 == 0 || k0 + nk == n_k));
    let (c0, cols) = (k0 * COLS, nk * COLS);
    let group_bytes = nk * TILE;
    let valid = w.n_rows.saturating_sub(r0).min(n);
    // The grouped types decode sixteen rows at a time (their groups start at multiples of 16).
    let step = if w.ty.is_grouped() { ROWS } else { 1 };
    for r in (0..n).step_by(step) {
        let group = &mut panel[r / ROWS * group_bytes..][..group_bytes];
        let dst: &mut [u16] = bytemuck::cast_slice_mut(group);
        if r >= valid {
            for k in 0..nk {
                dst[(k * ROWS + r % ROWS) * COLS..][..step * COLS].fill(0);
            }
            continue;
        }
        if let Some(simd) = simd {
            // SAFETY: the token proves the features.
            let done = !w.ty.is_grouped()
                && unsafe { simd::blocks(simd, w.ty, w.row(r0 + r), (k0, r % ROWS), dst, lo) };
            if done {
                continue;
            }
        }
        // The decoded values of the tiles, `cols` per row, and their rows.
        let (vals, n_rows): (&[f32], usize) = if w.ty.is_grouped() {
            let gb = ROWS * w.ty.row_bytes(w.n_cols);
            let g = (r0 + r) / ROWS;
            let src = &w.bytes[g * gb..][..gb];
            if let Some(simd) = simd {
                // Super-blocks of 256 columns, 16 rows each, one after another.
                let sb = gb / (w.n_cols / 256);
                let src = &src[c0 / 256 * sb..][..cols.div_ceil(256) * sb];
                // SAFETY: the token proves the features.
                if unsafe { simd::k_group(simd, w.ty, src, dst) } {
                    continue;
                }
            }
            tmp.resize(ROWS * w.n_cols, 0.0);
            dequantize(w.ty, src, tmp);
            // The group's rows are whole rows, one after another: keep the columns of the tiles.
            for i in 0..ROWS {
                tmp.copy_within(i * w.n_cols + c0..i * w.n_cols + c0 + cols, i * cols);
            }
            (&tmp[..ROWS * cols], ROWS)
        } else if w.ty.stored() != w.ty || c0 % w.ty.block_elems() != 0 {
            // A repacked row (its groups' bytes are not a row's columns in order): the whole.
            tmp.resize(w.n_cols, 0.0);
            dequantize(w.ty, w.row(r0 + r), tmp);
            tmp.copy_within(c0..c0 + cols, 0);
            (&tmp[..cols], 1)
        } else {
            let (ty, row) = (w.ty, w.row(r0 + r));
            let at = |c: usize| c / ty.block_elems() * ty.block_bytes();
            tmp.resize(cols, 0.0);
            dequantize(ty, &row[at(c0)..at(c0 + cols)], tmp);
            if lo {
                for v in tmp.iter_mut() {
                    *v -= bf16::from_f32(*v).to_f32();
                }
            }
            (&tmp[..cols], 1)
        };
        for (i, vals) in vals.chunks_exact(cols).take(n_rows).enumerate() {
            let row = r + i;
            if let Some(simd) = simd {
                // SAFETY: the token proves the features.
                unsafe { simd::round_row(simd, vals, row % ROWS, dst) };
                continue;
            }
            for (k, cols) in vals.chunks_exact(COLS).enumerate() {
                let d = &mut dst[(k * ROWS + row % ROWS) * COLS..][..COLS];
                for (d, &v) in d.iter_mut().zip(cols) {
                    *d = bf16::from_f32(v).to_bits();
                }
            }
        }
    }
}

/// Proof that AVX-512 F/BW/VL, AVX-512 BF16, F16C and AVX2 are available (the panel's
/// decoders).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Simd(());

impl Simd {
    /// The token, when this CPU has the features.
    pub(crate) fn detect() -> Option<Simd> {
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512bf16")
            && std::is_x86_feature_detected!("f16c")
            && std::is_x86_feature_detected!("avx2")
        {
            return Some(Simd(()));
        }
        None
    }
}

mod simd {
    use super::{Simd, COLS, ROWS};
    use crate::act_q8::GROUP_BLOCKS;
    use crate::dot_scalar::{f16_at, Q4_0_BYTES, Q8_0_BYTES};
    use crate::qx16::{step_at, QUANTS_AT, X16};
    use crate::WeightType;
    use std::arch::x86_64::*;

    /// Row `row` (of its group of 16) of a Q8_0 / Q4_0 matrix, stored or repacked, or of an
    /// F16 / BF16 matrix (`lo`: each value's remainder `v − bf16(v)`, [`Split`]), from its bytes
    /// `src` into the tiles of `dst`, blocks `k0..` (as many as `dst` has tiles); false for
    /// other types.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,f16c")]
    pub(super) fn blocks(
        _: Simd,
        ty: WeightType,
        src: &[u8],
        (k0, row): (usize, usize),
        dst: &mut [u16],
        lo: bool,
    ) -> bool {
        let at = |b: usize| (b * ROWS + row) * COLS;
        let nk = dst.len() / (ROWS * COLS);
        match ty {
            WeightType::F16 | WeightType::BF16 => {
                // 32 values of two bytes per tile.
                let src = &src[k0 * 64..][..nk * 64];
                for (b, v) in src.chunks_exact(64).enumerate() {
                    // SAFETY: `v` holds 64 bytes, the tile's row in `dst` 32 values.
                    unsafe {
                        let (x0, x1) = (
                            _mm256_loadu_si256(v.as_ptr().cast()),
                            _mm256_loadu_si256(v.as_ptr().add(32).cast()),
                        );
                        let (v0, v1) = if ty == WeightType::F16 {
                            (_mm512_cvtph_ps(x0), _mm512_cvtph_ps(x1))
                        } else {
                            (widen(x0), widen(x1))
                        };
                        store(
                            term(v0, lo),
                            term(v1, lo),
                            dst[at(b)..][..COLS].as_mut_ptr(),
                        );
                    }
                }
                true
            }
            WeightType::Q4_0 | WeightType::Q8_0 => {
                let bytes = if ty == WeightType::Q4_0 {
                    Q4_0_BYTES
                } else {
                    Q8_0_BYTES
                };
                let src = &src[k0 * bytes..][..nk * bytes];
                for (b, blk) in src.chunks_exact(bytes).enumerate() {
                    let d = f16_at(blk, 0);
                    let out = &mut dst[at(b)..][..COLS];
                    // SAFETY: the token proves the features; `blk` holds a whole block and
                    // `out` 32 values.
                    unsafe {
                        if ty == WeightType::Q4_0 {
                            q4_block(
                                d,
                                _mm_loadu_si128(blk[2..].as_ptr().cast()),
                                out.as_mut_ptr(),
                            )
                        } else {
                            q8_block(
                                d,
                                _mm256_loadu_si256(blk[2..].as_ptr().cast()),
                                out.as_mut_ptr(),
                            )
                        }
                    }
                }
                true
            }
            WeightType::Q4_0x16 | WeightType::Q8_0x16 => {
                let kind = X16::of(ty).expect("a repacked type");
                let gb = kind.group_bytes();
                let nb = src.len() / kind.block_bytes();
                // The groups holding blocks `k0..k0 + nk` (a partial last group's missing
                // blocks have no tiles), and of each the blocks wanted.
                for g in k0 / GROUP_BLOCKS..(k0 + nk).div_ceil(GROUP_BLOCKS) {
                    let first = g * GROUP_BLOCKS;
                    let (i0, i1) = (
                        k0.max(first) - first,
                        (k0 + nk).min(first + GROUP_BLOCKS) - first,
                    );
                    // A partial last group (`n` < 16 blocks, `n · block` bytes) is read in
                    // place by masked loads, as the whole group it stands for.
                    let n = crate::qx16::group_blocks(nb, g);
                    let grp = &src[g * gb..][..n * kind.block_bytes()];
                    let out = dst[at(first + i0 - k0)..].as_mut_ptr();
                    // SAFETY: the token proves the features; `grp` is a group of `n` blocks
                    // (`i1 <= n`), and blocks `i0..i1`'s tiles are within `dst` (tiles
                    // `first + i0 - k0 .. first + i1 - k0 <= nk`).
                    unsafe {
                        if kind == X16::Q4_0 {
                            q4_group(grp, n, i0..i1, out)
                        } else {
                            q8_group(grp, n, i0..i1, out)
                        }
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// One tile of activations: columns `0..32` of `tokens` (1 to 16) rows of `x`, `n_cols`
    /// apart, rounded to `bf16` (to nearest even) in pairs (value `2p` in the low half of pair
    /// `p`) and transposed: `out[16·p + t]` holds pair `p` of token `t` (zero past `tokens`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub(super) fn act_tile(
        _: Simd,
        x: &[f32],
        n_cols: usize,
        tokens: usize,
        out: &mut [u32],
        residual: bool,
    ) {
        assert!((1..=ROWS).contains(&tokens) && out.len() == ROWS * COLS / 2);
        let mut r = [_mm512_setzero_ps(); ROWS];
        for (t, r) in r.iter_mut().enumerate().take(tokens) {
            let v = &x[t * n_cols..][..COLS];
            // SAFETY: `v` holds 32 values; the conversion's 32 `bf16` are 64 bytes, as the
            // vector of 16 `f32` they travel in.
            unsafe {
                let b = _mm512_cvtne2ps_pbh(
                    term(_mm512_loadu_ps(v.as_ptr().add(16)), residual),
                    term(_mm512_loadu_ps(v.as_ptr()), residual),
                );
                *r = std::mem::transmute::<__m512bh, __m512>(b);
            }
        }
        // SAFETY: this function has AVX-512 F; `out` holds 16 rows of 16.
        unsafe {
            let w = crate::kv_f16::avx512::transpose16(r);
            for (p, w) in w.iter().enumerate() {
                _mm512_storeu_ps(out[p * ROWS..].as_mut_ptr().cast(), *w);
            }
        }
    }

    /// `v`, or (`residual`) its remainder after its rounding to `bf16`, `v − bf16(v)`
    /// (written out, not a closure: a closure's intrinsics would compile to calls).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    fn term(v: __m512, residual: bool) -> __m512 {
        if residual {
            _mm512_sub_ps(v, rounded(v))
        } else {
            v
        }
    }

    /// `v` rounded to `bf16` (to nearest even) and back to `f32`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    fn rounded(v: __m512) -> __m512 {
        // SAFETY: 16 `bf16` are 32 bytes, as the integer vector.
        widen(unsafe { std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v)) })
    }

    /// 16 `bf16` as `f32` (exact: their bits in the high half).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn widen(x: __m256i) -> __m512 {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(x)))
    }

    /// A decoded row (`src`, row `row` of its group of 16) rounded to `bf16` into its tiles.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub(super) fn round_row(_: Simd, src: &[f32], row: usize, dst: &mut [u16]) {
        for (k, cols) in src.chunks_exact(COLS).enumerate() {
            let d = &mut dst[(k * ROWS + row) * COLS..][..COLS];
            // SAFETY: both hold 32 values.
            unsafe {
                store(
                    _mm512_loadu_ps(cols.as_ptr()),
                    _mm512_loadu_ps(cols.as_ptr().add(16)),
                    d.as_mut_ptr(),
                )
            }
        }
    }

    /// One group of 16 repacked K-quant rows (`kquants/x16.rs`) straight into its tiles (the
    /// values `dequantize_q2_k` ... `_q6_k` give, bit for bit: `(d·sc)·q − dmin·m`,
    /// `(d·(sc − 32))·(q − 4)`, `(d·sc)·(q − 32)`); false for other types.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub(super) fn k_group(_: Simd, ty: WeightType, src: &[u8], dst: &mut [u16]) -> bool {
        match ty {
            WeightType::Q4_Kx16 | WeightType::Q5_Kx16 => {
                // SAFETY: the token proves the features; `src` holds whole groups and `dst`
                // their tiles.
                unsafe { q45k_groups(src, dst, ty == WeightType::Q5_Kx16) };
                true
            }
            WeightType::Q2_Kx16 | WeightType::Q3_Kx16 => {
                // SAFETY: the token proves the features; `src` holds whole groups and `dst`
                // their tiles.
                unsafe { q23k_groups(src, dst, ty == WeightType::Q3_Kx16) };
                true
            }
            WeightType::Q6_Kx16 => {
                // SAFETY: the token proves the features; `src` holds whole groups and `dst`
                // their tiles.
                unsafe { q6k_groups(src, dst) };
                true
            }
            _ => false,
        }
    }

    /// Repacked Q4_K or (`five`) Q5_K groups (`src`, whole super-blocks of 16 rows) into their
    /// tiles, the values of the stored rows' decoder bit for bit: per row and sub-block, its
    /// values `d1 · q − m1` (`q` in `0..16`, Q5_K `0..32`: the same multiply and subtract)
    /// rounded to `bf16` once into a table that `vpermw` reads by the 32 values' `q`; the
    /// nibbles of one sub-block for all 16 rows by one transpose ([`words4`]). Q5_K: Q4_K's
    /// nibbles plus, per sub-block `j` and row, four bytes whose bit `s` / `4 + s` of byte `k`
    /// is the fifth bit of value `4s + k` / `16 + 4s + k`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,avx2")]
    unsafe fn q45k_groups(src: &[u8], dst: &mut [u16], five: bool) {
        use crate::kquants::layout::{f16_at as kf16, scale_min_k4};
        use crate::kquants::x16::{q4, q5};
        let (gbb, qs_at) = if five {
            (q5::GROUP_BLOCK, q5::QS)
        } else {
            (q4::GROUP_BLOCK, q4::QS)
        };
        let steps = [0.0f32, 16.0].map(|o| {
            _mm512_add_ps(
                _mm512_setr_ps(
                    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0,
                    15.0,
                ),
                _mm512_set1_ps(o),
            )
        });
        let (one, sixteen) = (_mm_set1_epi8(1), _mm_set1_epi8(0x10));
        let fifth = _mm_setr_epi32(0, 1, 2, 3);
        let mut words = [0u8; 256];
        for (b, gb) in src.chunks_exact(gbb).enumerate() {
            // Q5_K keeps Q4_K's scales where Q4_K has them.
            let mut dm = [[(0f32, 0f32); 8]; ROWS];
            for (l, dm) in dm.iter_mut().enumerate() {
                let (d, dmin) = (kf16(gb, q4::D + 2 * l), kf16(gb, q4::DMIN + 2 * l));
                let mut packed = [0u8; 12];
                for w in 0..3 {
                    let at = q4::SCALES + 64 * w + 4 * l;
                    packed[4 * w..4 * w + 4].copy_from_slice(&gb[at..at + 4]);
                }
                for (j, dm) in dm.iter_mut().enumerate() {
                    let (sc, m) = scale_min_k4(j, &packed);
                    *dm = (d * sc as f32, dmin * m as f32);
                }
            }
            for j in 0..8 {
                // SAFETY: the sub-block's four rows of words lie within the group.
                unsafe { words4(&gb[qs_at + 256 * j..], &mut words) };
                for (l, dm) in dm.iter().enumerate() {
                    let (d1, m1) = dm[j];
                    let (dv, mv) = (_mm512_set1_ps(d1), _mm512_set1_ps(m1));
                    let low = _mm512_sub_ps(_mm512_mul_ps(dv, steps[0]), mv);
                    let qs = &words[words_at(l)..][..16];
                    // SAFETY: `qs` holds 16 bytes.
                    let (mut lo, mut hi) = nibbles(unsafe { _mm_loadu_si128(qs.as_ptr().cast()) });
                    let table = if five {
                        // Byte `4s + k` of `h`: the fifth-bit byte `k` shifted right by `s`
                        // (bits from the next byte land above bit 4, never read).
                        let at = q5::QH + 64 * j + 4 * l;
                        let w = u32::from_le_bytes([gb[at], gb[at + 1], gb[at + 2], gb[at + 3]]);
                        let h = _mm_srlv_epi32(_mm_set1_epi32(w as i32), fifth);
                        lo = _mm_or_si128(lo, _mm_slli_epi16::<4>(_mm_and_si128(h, one)));
                        hi = _mm_or_si128(hi, _mm_and_si128(h, sixteen));
                        let high = _mm512_sub_ps(_mm512_mul_ps(dv, steps[1]), mv);
                        // SAFETY: 32 `bf16` are 64 bytes, as the integer vector.
                        unsafe {
                            std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(high, low))
                        }
                    } else {
                        table16(low)
                    };
                    let out = &mut dst[((8 * b + j) * ROWS + l) * COLS..][..COLS];
                    // SAFETY: `out` holds 32 values, 64 bytes.
                    unsafe { lookup32(table, lo, hi, out.as_mut_ptr()) };
                }
            }
        }
    }

    /// Repacked Q2_K or (`three`) Q3_K groups (`src`, whole super-blocks of 16 rows) into
    /// their tiles, the values of the stored rows' decoder bit for bit: `(d·sc)·q − dmin·m`
    /// (Q2_K, `q` in `0..4`) and `(d·(sc − 32))·(q − 4)` (Q3_K, `q` in `0..8`). A block of 16
    /// values takes so few values that they are a table: per row and tile (two blocks), the
    /// blocks' values at every `q` in one vector of 32 `bf16` (each computed as the decoder
    /// computes it, then rounded), which `vpermw` reads by the 32 values' `q`. Per block `g`
    /// and row `l`, one word whose byte `k` holds value `16g + 4s + k` in bits `2s, 2s + 1`;
    /// Q3_K adds per pair of blocks `p` and row a word whose byte `k` bit `4h + s` is the high
    /// bit of value `16(2p + h) + 4s + k`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,avx2")]
    unsafe fn q23k_groups(src: &[u8], dst: &mut [u16], three: bool) {
        use crate::kquants::layout::{f16_at as kf16, scales_q3_k};
        use crate::kquants::x16::{q2, q3};
        let word = |gb: &[u8], at: usize| crate::kquants::x16::word_at(gb, at) as i32;
        let (gbb, qs_at, offset) = if three {
            (q3::GROUP_BLOCK, q3::QS, 4.0)
        } else {
            (q2::GROUP_BLOCK, q2::QS, 0.0)
        };
        // `q − offset` at every `q` of a table (exact in `f32`, as the decoder's integers).
        let steps = _mm512_sub_ps(
            _mm512_setr_ps(
                0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0,
                15.0,
            ),
            _mm512_set1_ps(offset),
        );
        let lows = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
        let highs = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let (m3, m1) = (_mm256_set1_epi8(3), _mm256_set1_epi8(1));
        // The second block's values index the table's second half.
        let second = _mm512_inserti64x4::<1>(_mm512_setzero_si512(), _mm256_set1_epi16(16));
        for (b, gb) in src.chunks_exact(gbb).enumerate() {
            for l in 0..ROWS {
                // The row's 16 block scales `dl` and mins `m`, a lane each.
                let (dl, m) = if three {
                    let mut packed = [0u8; 12];
                    for w in 0..3 {
                        let at = q3::SCALES + 64 * w + 4 * l;
                        packed[4 * w..4 * w + 4].copy_from_slice(&gb[at..at + 4]);
                    }
                    let sc: [i8; 16] = scales_q3_k(&packed);
                    // SAFETY: `sc` holds 16 bytes.
                    let sc = unsafe { _mm_loadu_si128(sc.as_ptr().cast()) };
                    let sc = _mm512_sub_epi32(_mm512_cvtepi8_epi32(sc), _mm512_set1_epi32(32));
                    let d = _mm512_set1_ps(kf16(gb, q3::D + 2 * l));
                    (
                        _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc)),
                        _mm512_setzero_ps(),
                    )
                } else {
                    let at = |w: usize| q2::SCALES + 64 * w + 4 * l;
                    let sc = _mm512_cvtepu8_epi32(_mm_setr_epi32(
                        word(gb, at(0)),
                        word(gb, at(1)),
                        word(gb, at(2)),
                        word(gb, at(3)),
                    ));
                    let (d, dmin) = (kf16(gb, q2::D + 2 * l), kf16(gb, q2::DMIN + 2 * l));
                    let low = _mm512_and_si512(sc, _mm512_set1_epi32(0xf));
                    let high = _mm512_srli_epi32::<4>(sc);
                    (
                        _mm512_mul_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(low)),
                        _mm512_mul_ps(_mm512_set1_ps(dmin), _mm512_cvtepi32_ps(high)),
                    )
                };
                for j in 0..8 {
                    let g = 2 * j;
                    let pair = _mm256_setr_m128i(
                        _mm_set1_epi32(word(gb, qs_at + 64 * g + 4 * l)),
                        _mm_set1_epi32(word(gb, qs_at + 64 * (g + 1) + 4 * l)),
                    );
                    let mut q = _mm256_and_si256(_mm256_srlv_epi32(pair, lows), m3);
                    if three {
                        let hw = _mm256_set1_epi32(word(gb, q3::HM + 64 * j + 4 * l));
                        let h = _mm256_and_si256(_mm256_srlv_epi32(hw, highs), m1);
                        q = _mm256_or_si256(q, _mm256_slli_epi16::<2>(h));
                    }
                    let idx = _mm512_add_epi16(_mm512_cvtepu8_epi16(q), second);
                    let (ta, tb) = (table16_at(dl, m, steps, g), table16_at(dl, m, steps, g + 1));
                    // SAFETY: 32 `bf16` are 64 bytes, as the integer vector.
                    let table: __m512i =
                        unsafe { std::mem::transmute(_mm512_cvtne2ps_pbh(tb, ta)) };
                    let out = &mut dst[((8 * b + j) * ROWS + l) * COLS..][..COLS];
                    // SAFETY: `out` holds 32 values, 64 bytes.
                    unsafe {
                        _mm512_storeu_si512(
                            out.as_mut_ptr().cast(),
                            _mm512_permutexvar_epi16(idx, table),
                        )
                    };
                }
            }
        }
    }

    /// Block `g`'s values at every step of `steps` (`q − offset`): `dl[g] · step − m[g]`, the
    /// decoder's multiply and subtract (written out, not a closure: a closure's intrinsics
    /// would compile to calls).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn table16_at(dl: __m512, m: __m512, steps: __m512, g: usize) -> __m512 {
        let at = _mm512_set1_epi32(g as i32);
        let (d, m) = (_mm512_permutexvar_ps(at, dl), _mm512_permutexvar_ps(at, m));
        _mm512_sub_ps(_mm512_mul_ps(d, steps), m)
    }

    /// Repacked Q6_K groups (`src`, whole super-blocks of 16 rows) into their tiles, the values
    /// of the stored rows' decoder bit for bit: per block `g` of 16 values and row `l`, two
    /// words of low nibbles (values `16g + k`, `+ 4 + k` in the first, `+ 8 + k`, `+ 12 + k` in
    /// the second) and one of high bit pairs (value `16g + 4s + k` in bits `2s, 2s + 1` of byte
    /// `k`), the block's three words for all 16 rows by one transpose ([`words4`]); value
    /// `d·sc · (q − 32)`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,avx2")]
    unsafe fn q6k_groups(src: &[u8], dst: &mut [u16]) {
        use crate::kquants::layout::f16_at as kf16;
        use crate::kquants::x16::q6;
        // Of a row's 16 bytes (its three words and a zero word): the low-nibble words as
        // value order wants them (`n0, n0, n1, n1`), and the high-bit word four times.
        let lows = _mm_setr_epi8(0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7);
        let highs = _mm_setr_epi8(8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11);
        let (m4, m2) = (_mm_set1_epi8(0x0f), _mm_set1_epi8(3));
        let shifts = _mm_setr_epi32(0, 2, 4, 6);
        let mut words = [[0u8; 256]; 2];
        for (b, gb) in src.chunks_exact(q6::GROUP_BLOCK).enumerate() {
            let d: [f32; ROWS] = std::array::from_fn(|l| kf16(gb, q6::D + 2 * l));
            for j in 0..8 {
                for (h, words) in words.iter_mut().enumerate() {
                    // SAFETY: the block's three rows of words lie within the group.
                    unsafe { words4(&gb[q6::QS + 192 * (2 * j + h)..][..192], words) };
                }
                for (l, &dl) in d.iter().enumerate() {
                    let mut halves = [_mm512_setzero_ps(); 2];
                    for (h, half) in halves.iter_mut().enumerate() {
                        let g = 2 * j + h;
                        let w = &words[h][words_at(l)..][..16];
                        // SAFETY: `w` holds 16 bytes.
                        let x = unsafe { _mm_loadu_si128(w.as_ptr().cast()) };
                        let a = _mm_shuffle_epi8(x, lows);
                        let low = _mm_blend_epi32::<0b1010>(
                            _mm_and_si128(a, m4),
                            _mm_and_si128(_mm_srli_epi16::<4>(a), m4),
                        );
                        let hb = _mm_srlv_epi32(_mm_shuffle_epi8(x, highs), shifts);
                        let q = _mm_or_si128(low, _mm_slli_epi16::<4>(_mm_and_si128(hb, m2)));
                        let v = _mm512_cvtepi32_ps(_mm512_sub_epi32(
                            _mm512_cvtepu8_epi32(q),
                            _mm512_set1_epi32(32),
                        ));
                        let d1 = dl * gb[q6::SCALES + 16 * g + l] as i8 as f32;
                        *half = _mm512_mul_ps(_mm512_set1_ps(d1), v);
                    }
                    let out = &mut dst[((8 * b + j) * ROWS + l) * COLS..][..COLS];
                    // SAFETY: `out` holds 32 values.
                    unsafe { store(halves[0], halves[1], out.as_mut_ptr()) };
                }
            }
        }
    }

    /// `lo`, `hi` rounded to nearest even `bf16` into the 32 values at `dst`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn store(lo: __m512, hi: __m512, dst: *mut u16) {
        // SAFETY: 32 `bf16` are 64 bytes, as the integer vector.
        let v: __m512i = unsafe { std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo)) };
        // SAFETY: the caller's promise (64 writable bytes).
        unsafe { _mm512_storeu_si512(dst.cast(), v) }
    }

    /// 16 bytes as `d · (b − offset)` in `f32` (written out, not a closure: a closure's
    /// intrinsics would compile to calls).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn scaled(v: __m512i, offset: __m512i, d: __m512) -> __m512 {
        _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(v, offset)))
    }

    /// Four rows of 64 bytes holding word `k` of each of 16 items at `64·k + 4·i` (the
    /// quantized words of a repacked Q4_0 / Q8_0 group's blocks, `qx16.rs`, from `QUANTS_AT`;
    /// a repacked Q4_K group's nibbles of one sub-block for its 16 rows), transposed so that
    /// `out[64·j + 16·l ..][..16]` holds the four words of item `4·l + j`, in order (a 4 × 4
    /// transpose in each 128-bit lane). With three rows (`rows` of 192 bytes: a repacked Q6_K
    /// block's words), the fourth words are zeros.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn words4(rows: &[u8], out: &mut [u8; 256]) {
        // SAFETY: `rows` holds three or four vectors (checked), `out` four.
        unsafe {
            let q = rows[..192].as_ptr();
            let r0 = _mm512_loadu_si512(q.cast());
            let r1 = _mm512_loadu_si512(q.add(64).cast());
            let r2 = _mm512_loadu_si512(q.add(128).cast());
            let r3 = match rows.get(192..256) {
                Some(r) => _mm512_loadu_si512(r.as_ptr().cast()),
                None => _mm512_setzero_si512(),
            };
            transpose_words([r0, r1, r2, r3], out)
        }
    }

    /// Steps `k0..k0 + 4` of a repacked Q4_0 / Q8_0 group of `n` blocks (`grp`, its `n ·
    /// block` bytes) as [`words4`] lays out the steps of a whole group; a partial group's by
    /// loads masked to its bytes (zeros in the blocks it lacks).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn group_words(grp: &[u8], n: usize, k0: usize, out: &mut [u8; 256]) {
        let p = grp.as_ptr();
        let mut r = [_mm512_setzero_si512(); 4];
        // SAFETY: the caller's promise: step `k0 + 3` of a group of `n` blocks lies in `grp`;
        // masked loads read only a partial group's `4n` bytes of a step.
        unsafe {
            if n == GROUP_BLOCKS {
                for (j, r) in r.iter_mut().enumerate() {
                    *r = _mm512_loadu_si512(p.add(QUANTS_AT + 64 * (k0 + j)).cast());
                }
            } else {
                let m = (1u64 << (4 * n)) - 1;
                for (j, r) in r.iter_mut().enumerate() {
                    *r = _mm512_maskz_loadu_epi8(m, p.add(step_at(n, k0 + j)).cast());
                }
            }
            transpose_words(r, out)
        }
    }

    /// The scales of a repacked group of `n` blocks as `f32` (zeros after `n`).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn group_scales(grp: &[u8], n: usize) -> __m512 {
        // SAFETY: the caller's promise: the group's `2n` bytes of scales lie in `grp`.
        unsafe {
            _mm512_cvtph_ps(if n == GROUP_BLOCKS {
                _mm256_loadu_si256(grp.as_ptr().cast())
            } else {
                _mm256_maskz_loadu_epi16(((1u32 << n) - 1) as u16, grp.as_ptr().cast())
            })
        }
    }

    /// Four vectors of words (`r[k]`: word `i` is step `k`'s four bytes of block `i`) by block:
    /// block `i`'s four words at [`words_at`]`(i)` of `out` (a 4 × 4 transpose in each
    /// 128-bit lane).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn transpose_words(r: [__m512i; 4], out: &mut [u8; 256]) {
        let [r0, r1, r2, r3] = r;
        // SAFETY: `out` holds four vectors.
        unsafe {
            let t0 = _mm512_unpacklo_epi32(r0, r1);
            let t1 = _mm512_unpackhi_epi32(r0, r1);
            let t2 = _mm512_unpacklo_epi32(r2, r3);
            let t3 = _mm512_unpackhi_epi32(r2, r3);
            let o = out.as_mut_ptr();
            _mm512_storeu_si512(o.cast(), _mm512_unpacklo_epi64(t0, t2));
            _mm512_storeu_si512(o.add(64).cast(), _mm512_unpackhi_epi64(t0, t2));
            _mm512_storeu_si512(o.add(128).cast(), _mm512_unpacklo_epi64(t1, t3));
            _mm512_storeu_si512(o.add(192).cast(), _mm512_unpackhi_epi64(t1, t3));
        }
    }

    /// The low nibbles (values `0..16`) and the high nibbles (values `16..32`) of 16 bytes, a
    /// byte each.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn nibbles(x: __m128i) -> (__m128i, __m128i) {
        let m = _mm_set1_epi8(0x0f);
        (
            _mm_and_si128(x, m),
            _mm_and_si128(_mm_srli_epi16::<4>(x), m),
        )
    }

    /// The 32 `bf16` of `table` (a vector of 32; only the first 16 read where the indices stay
    /// below 16) at the indices `lo` (values `0..16`) then `hi` (values `16..32`), one byte
    /// each, into the 32 values at `dst`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn lookup32(table: __m512i, lo: __m128i, hi: __m128i, dst: *mut u16) {
        let idx = _mm512_cvtepu8_epi16(_mm256_set_m128i(hi, lo));
        // SAFETY: the caller's promise (64 writable bytes).
        unsafe { _mm512_storeu_si512(dst.cast(), _mm512_permutexvar_epi16(idx, table)) }
    }

    /// 16 values rounded to `bf16`, as the first half of a [`lookup32`] table.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    fn table16(v: __m512) -> __m512i {
        // SAFETY: 16 `bf16` are 32 bytes, as the integer vector.
        let t = unsafe { std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v)) };
        _mm512_castsi256_si512(t)
    }

    /// Where [`words4`] put block `i`'s words.
    const fn words_at(i: usize) -> usize {
        64 * (i % 4) + 16 * (i / 4)
    }

    /// Blocks `blocks` of a repacked Q4_0 group into their tiles (block `blocks.start + i` at
    /// `dst + i · ROWS · COLS`): per block, its 16 values `d · (q − 8)` rounded to `bf16`
    /// once (the rounding of [`q4_block`], value by value) and looked up by the 32 nibbles.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn q4_group(grp: &[u8], n: usize, blocks: std::ops::Range<usize>, dst: *mut u16) {
        let mut words = [0u8; 256];
        // SAFETY: as the callers promise: `grp` a group of `n` blocks, the tiles of `blocks`
        // (within `0..n`) at `dst`.
        unsafe {
            group_words(grp, n, 0, &mut words);
            let d = group_scales(grp, n);
            let steps = _mm512_setr_ps(
                -8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0,
                7.0,
            );
            for (o, i) in blocks.enumerate() {
                let di = _mm512_permutexvar_ps(_mm512_set1_epi32(i as i32), d);
                let (lo, hi) = nibbles(_mm_loadu_si128(words[words_at(i)..][..16].as_ptr().cast()));
                lookup32(
                    table16(_mm512_mul_ps(di, steps)),
                    lo,
                    hi,
                    dst.add(o * ROWS * COLS),
                );
            }
        }
    }

    /// Blocks `blocks` of a repacked Q8_0 group into their tiles, as [`q8_block`] does each.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn q8_group(grp: &[u8], n: usize, blocks: std::ops::Range<usize>, dst: *mut u16) {
        let (mut lo, mut hi) = ([0u8; 256], [0u8; 256]);
        // SAFETY: as the callers promise: `grp` a group of `n` blocks, the tiles of `blocks`
        // (within `0..n`) at `dst`.
        unsafe {
            group_words(grp, n, 0, &mut lo);
            group_words(grp, n, 4, &mut hi);
            let d = group_scales(grp, n);
            let mut ds = [0f32; 16];
            _mm512_storeu_ps(ds.as_mut_ptr(), d);
            let sign = _mm_set1_epi8(0x80u8 as i8);
            for (o, i) in blocks.enumerate() {
                let l = _mm_loadu_si128(lo[words_at(i)..].as_ptr().cast());
                let h = _mm_loadu_si128(hi[words_at(i)..].as_ptr().cast());
                let v = _mm256_set_m128i(_mm_xor_si128(h, sign), _mm_xor_si128(l, sign));
                q8_block(ds[i], v, dst.add(o * ROWS * COLS));
            }
        }
    }

    /// A Q4_0 block (scale `d`, 16 bytes of nibbles) as 32 `bf16` at `dst`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn q4_block(d: f32, qs: __m128i, dst: *mut u16) {
        let m = _mm_set1_epi8(0x0f);
        let (lo, hi) = (
            _mm_and_si128(qs, m),
            _mm_and_si128(_mm_srli_epi16(qs, 4), m),
        );
        let (eight, dv) = (_mm512_set1_epi32(8), _mm512_set1_ps(d));
        let lo = scaled(_mm512_cvtepu8_epi32(lo), eight, dv);
        let hi = scaled(_mm512_cvtepu8_epi32(hi), eight, dv);
        // SAFETY: the caller's promise.
        unsafe { store(lo, hi, dst) }
    }

    /// A Q8_0 block (scale `d`, 32 signed bytes) as 32 `bf16` at `dst`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn q8_block(d: f32, qs: __m256i, dst: *mut u16) {
        let (zero, dv) = (_mm512_setzero_si512(), _mm512_set1_ps(d));
        let lo = scaled(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(qs)), zero, dv);
        let hi = scaled(
            _mm512_cvtepi8_epi32(_mm256_extracti128_si256::<1>(qs)),
            zero,
            dv,
        );
        // SAFETY: the caller's promise.
        unsafe { store(lo, hi, dst) }
    }
}

/// `out = x · wᵀ` on the AMX BF16 tiles; shapes already checked. `split`: F16 / BF16 weights
/// in two terms ([`Split`]; columns a multiple of 32).
pub(crate) fn matmul_bf16(
    amx: Amx,
    w: &WeightView,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    split: bool,
) {
    matmul_with(move || Bf16Scope::new(amx), (w, split), x, n_tokens, out)
}

/// [`matmul_bf16`]'s driver with the tile unit each thread makes by `unit`.
pub(crate) fn matmul_with<U: Bf16Unit, F: Fn() -> U + Sync>(
    unit: F,
    (w, split): (&WeightView, bool),
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) {
    let act = Arc::new(ActBf16::new(x, n_tokens, w.n_cols));
    let job = if split {
        let xl = Arc::new(ActBf16::residual(x, n_tokens, w.n_cols));
        let split = Split::new(w.ty, xl).expect("F16 or BF16 weights");
        Bf16Tiles::split(unit, w, act, split, n_tokens)
    } else {
        Bf16Tiles::new(unit, w, act, n_tokens)
    };
    crate::par::run_rows_jobs(&[&job], &mut [out], n_tokens);
}

/// A product on the BF16 tiles as a [`RowsJob`]: the products of one input (Q / K / V, gate /
/// up) share its rounding ([`ActBf16`]) and one parallel section (`matmul::matmul_many`).
pub(crate) struct Bf16Tiles<'a, F> {
    unit: F,
    w: WeightView<'a>,
    act: Arc<ActBf16>,
    n_tokens: usize,
    chunk: usize,
    simd: Option<Simd>,
    /// Float weights in two `bf16` terms, [`Split`].
    split: Option<Split>,
}

/// F16 and BF16 weights on the BF16 tiles without their rounding: an F16 value (11 significant
/// bits) is exactly the sum of two `bf16` (8 bits each), `hi = bf16(w)` and `lo = bf16(w − hi)`
/// (the remainder has at most 4 significant bits); a BF16 value is its own `hi`. The
/// activations likewise, `x ≈ xh + xl` (16 significant bits, where one `bf16` keeps 8), so
/// that `w · x ≈ hi·xh + lo·xh + hi·xl`, three tile products into the same `f32` accumulators
/// (two for BF16); only `lo·xl` (about `2⁻¹⁸` of `|w·x|`) and the remainder of `x` past 16 bits
/// are left out, finer than the `f16` activations llama.cpp's F16 products take (11 bits).
pub(crate) struct Split {
    /// The activations' remainders `x − bf16(x)`, as tiles.
    xl: Arc<ActBf16>,
    /// Whether the weights have a `lo` term (F16; BF16 weights have none).
    lo: bool,
}

impl Split {
    /// The split of `ty` weights against `xl` (the tiles of [`ActBf16::residual`]); `None` for
    /// types the tiles take rounded.
    pub(crate) fn new(ty: WeightType, xl: Arc<ActBf16>) -> Option<Split> {
        match ty {
            WeightType::F16 => Some(Split { xl, lo: true }),
            WeightType::BF16 => Some(Split { xl, lo: false }),
            _ => None,
        }
    }
}

impl<'a, U: Bf16Unit, F: Fn() -> U + Sync> Bf16Tiles<'a, F> {
    /// The product of `w` by the activations `act` (of `n_tokens` tokens, `w.n_cols` columns),
    /// with the tile unit each task makes by `unit`.
    pub(crate) fn new(unit: F, w: &WeightView<'a>, act: Arc<ActBf16>, n_tokens: usize) -> Self {
        assert_eq!(act.n_k * COLS, w.n_cols, "activations of another width");
        let work_per_row = w.ty.row_bytes(w.n_cols).max(1) * n_tokens;
        let chunk = chunk_rows(
            w.n_rows,
            2 * ROWS,
            crate::matmul::MIN_TASK_BYTES.div_ceil(work_per_row),
        );
        Bf16Tiles {
            unit,
            w: *w,
            act,
            n_tokens,
            chunk,
            simd: Simd::detect(),
            split: None,
        }
    }

    /// [`Bf16Tiles::new`] for F16 / BF16 weights in two terms ([`Split`]).
    pub(crate) fn split(
        unit: F,
        w: &WeightView<'a>,
        act: Arc<ActBf16>,
        split: Split,
        n_tokens: usize,
    ) -> Self {
        assert_eq!(split.xl.n_k, act.n_k, "remainders of another width");
        assert_eq!(
            split.xl.n_groups, act.n_groups,
            "remainders of other tokens"
        );
        Bf16Tiles {
            split: Some(split),
            ..Bf16Tiles::new(unit, w, act, n_tokens)
        }
    }
}

impl<U: Bf16Unit, F: Fn() -> U + Sync> RowsJob for Bf16Tiles<'_, F> {
    fn weights(&self) -> &WeightView<'_> {
        &self.w
    }
    fn chunk_rows(&self) -> usize {
        self.chunk
    }
    fn run(&self, mut oc: OutCols<'_>) {
        let (w, act, n_tokens, simd) = (&self.w, &*self.act, self.n_tokens, self.simd);
        let n_k = act.n_k;
        // Split weights decode two panels (`hi`, `lo`).
        let parts = if self.split.as_ref().is_some_and(|s| s.lo) {
            2
        } else {
            1
        };
        // Passes along the row, and rows per panel: a panel is the rows' tiles of one pass.
        let (k_tiles, panel_rows) = if act.tiles.len() > ACT_L2_BYTES {
            (K_TILES, MAX_PANEL_ROWS)
        } else {
            let rows = PANEL_BYTES / (2 * parts * w.n_cols);
            (
                n_k,
                rows.clamp(2 * ROWS, MAX_PANEL_ROWS) / (2 * ROWS) * (2 * ROWS),
            )
        };
        let rows = oc.rows();
        let unit = (self.unit)();
        let mut accs = ACCS.with(|a| std::mem::take(&mut *a.borrow_mut()));
        // The thread's panel buffers, kept between calls (fresh pages cost a fault and a
        // zeroing each).
        with_panel(|scratch| {
            for p0 in rows.clone().step_by(panel_rows) {
                let np = panel_rows.min(rows.end - p0);
                let n_pad = np.div_ceil(2 * ROWS) * 2 * ROWS;
                let pairs = n_pad / (2 * ROWS);
                // `n_groups` is even, and so is every pass's count.
                for g0 in (0..act.n_groups).step_by(PASS_GROUPS) {
                    let t_pairs = PASS_GROUPS.min(act.n_groups - g0) / 2;
                    if accs.len() < pairs * t_pairs {
                        accs.resize(pairs * t_pairs, Acc::default());
                    }
                    for k0 in (0..n_k).step_by(k_tiles) {
                        let n = k_tiles.min(n_k - k0);
                        let size = n_pad / ROWS * n * TILE;
                        let (panel, lo_panel) = scratch.q.sized(parts * size).split_at_mut(size);
                        // One pass along the row keeps its panel for every pass of tokens; passes
                        // of 256 columns decode theirs again per pass of tokens (so decoding
                        // costs a call of many tokens what it costs one of 512).
                        if k_tiles < n_k || g0 == 0 {
                            let f = &mut scratch.f;
                            decode_panel(simd, w, p0, n_pad, (k0, n), panel, f, false);
                            if parts == 2 {
                                decode_panel(simd, w, p0, n_pad, (k0, n), lo_panel, f, true);
                            }
                        }
                        for tp in 0..t_pairs {
                            let tg = g0 + 2 * tp;
                            // SAFETY: tile `k0 < n_k` of a group of `n_k`.
                            let pair = |act: &ActBf16| unsafe {
                                [act.group(tg), act.group(tg + 1)].map(|p| p.add(k0 * TILE))
                            };
                            let a = pair(act);
                            let al = self.split.as_ref().map(|s| pair(&s.xl));
                            for rp in 0..pairs {
                                let at = |p: &[u8]| {
                                    [2 * rp, 2 * rp + 1].map(|rg| p[rg * n * TILE..].as_ptr())
                                };
                                let wp = at(panel);
                                let c = &mut accs[tp * pairs + rp].0;
                                // SAFETY: each pointer starts `n` tiles of its panel's or
                                // activations' group (`k0 + n <= n_k`).
                                unsafe {
                                    unit.block(wp, a, n, c, k0 > 0);
                                    if parts == 2 {
                                        unit.block(at(lo_panel), a, n, c, true);
                                    }
                                    if let Some(al) = al {
                                        unit.block(wp, al, n, c, true);
                                    }
                                }
                            }
                        }
                    }
                    for tp in 0..t_pairs {
                        for rp in 0..pairs {
                            let c = &accs[tp * pairs + rp].0;
                            for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                                let r0 = p0 + (2 * rp + i) * ROWS;
                                let t0 = (g0 + 2 * tp + j) * ROWS;
                                let nr = (p0 + np).saturating_sub(r0).min(ROWS);
                                if nr == 0 {
                                    continue;
                                }
                                let (col0, tile) = (r0 - rows.start, &c[2 * i + j]);
                                for t in 0..n_tokens.saturating_sub(t0).min(ROWS) {
                                    let o = &mut oc.token(t0 + t)[col0..][..nr];
                                    for (o, row) in o.iter_mut().zip(tile) {
                                        *o = row[t];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        });
        ACCS.with(|a| *a.borrow_mut() = accs);
        drop(unit);
    }
}

/// The scalar twin of [`matmul_with`]: every weight and activation rounded to `bf16` as the
/// driver rounds them, products summed in `f64`.
#[cfg(test)]
pub(crate) fn matmul_twin(w: &WeightView, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    let n_cols = w.n_cols;
    let mut row = vec![0f32; n_cols];
    let r16 = |v: f32| bf16::from_f32(v).to_f64();
    for r in 0..w.n_rows {
        w.row_f32(r, &mut row);
        for t in 0..n_tokens {
            let xt = &x[t * n_cols..][..n_cols];
            let s: f64 = row.iter().zip(xt).map(|(&a, &b)| r16(a) * r16(b)).sum();
            out[t * w.n_rows + r] = s as f32;
        }
    }
}

/// The scalar twin of [`matmul_with`] with `split`: every weight and activation in its two `bf16` terms as
/// the driver makes them ([`Split`]), the three products summed in `f64`.
#[cfg(test)]
pub(crate) fn split_twin(w: &WeightView, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    let n_cols = w.n_cols;
    let terms = |v: f32| {
        let hi = bf16::from_f32(v);
        (hi.to_f64(), bf16::from_f32(v - hi.to_f32()).to_f64())
    };
    let mut row = vec![0f32; n_cols];
    for r in 0..w.n_rows {
        w.row_f32(r, &mut row);
        for t in 0..n_tokens {
            let xt = &x[t * n_cols..][..n_cols];
            let s: f64 = row
                .iter()
                .zip(xt)
                .map(|(&a, &b)| {
                    let ((wh, wl), (xh, xl)) = (terms(a), terms(b));
                    wh * xh + wl * xh + wh * xl
                })
                .sum();
            out[t * w.n_rows + r] = s as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How far split products ([`Split`]) may be from the exact products of the F16 / BF16
    /// weights and `f32` activations, relative to `Σ |w · x|`: the terms left out, `lo·xl` and
    /// the activations' remainder past `xh + xl`, are each within about `2⁻¹⁶` of a product,
    /// and the `f32` sums add [`ORDER_BOUND`]'s share (one `bf16` rounding of each operand, the
    /// unsplit tiles, is off by up to `2⁻⁸` a product). A product left out fails the twin
    /// comparison, which holds every term.
    const SPLIT_BOUND: f64 = 1.0 / 4096.0;

    /// How far the tile products may be from the twin, relative to `Σ |w · x|` over the row:
    /// both take the same `bf16` operands and exact products, and differ only in the order and
    /// precision of the `f32` sums (the unit's accumulation), at most about `n · 2⁻²⁴` of that
    /// sum for `n` terms; 2⁻¹² leaves room for rows of a few thousand values.
    const ORDER_BOUND: f64 = 1.0 / 4096.0;

    /// A `rows × cols` matrix of `ty` quantized from random values, and its repacked copy
    /// where `ty` has one.
    fn weights(ty: WeightType, rows: usize, cols: usize) -> Vec<(WeightType, Vec<u8>)> {
        let mut rng = crate::kernel_tests::Rng(0x9e3779b97f4a7c15 ^ rows as u64);
        let vals: Vec<f32> = (0..rows * cols).map(|_| rng.f32()).collect();
        let mut bytes = vec![0u8; rows * ty.row_bytes(cols)];
        crate::quantize_rows(ty, &vals, cols, &mut bytes);
        let stored = view(ty, rows, cols, &bytes);
        let repacked = match ty {
            WeightType::Q4_0 => Some(WeightType::Q4_0x16),
            WeightType::Q8_0 => Some(WeightType::Q8_0x16),
            WeightType::Q4_K => Some(WeightType::Q4_Kx16),
            WeightType::Q6_K => Some(WeightType::Q6_Kx16),
            WeightType::Q5_K => Some(WeightType::Q5_Kx16),
            WeightType::Q2_K => Some(WeightType::Q2_Kx16),
            WeightType::Q3_K => Some(WeightType::Q3_Kx16),
            _ => None,
        };
        let mut out = vec![];
        if let Some(r) = repacked.filter(|_| rows.is_multiple_of(ROWS)) {
            out.push((r, crate::repack(&stored)));
        }
        out.push((ty, bytes));
        out
    }

    fn view(ty: WeightType, n_rows: usize, n_cols: usize, bytes: &[u8]) -> WeightView<'_> {
        WeightView {
            ty,
            n_rows,
            n_cols,
            bytes,
        }
    }

    fn check<U: Bf16Unit>(unit: impl Fn() -> U + Sync, ty: WeightType, rows: usize, cols: usize) {
        check_tokens(unit, ty, rows, cols, &[2, 5, 16, 17, 33, 40]);
    }

    fn check_tokens<U: Bf16Unit>(
        unit: impl Fn() -> U + Sync,
        ty: WeightType,
        rows: usize,
        cols: usize,
        tokens: &[usize],
    ) {
        for (ty, bytes) in weights(ty, rows, cols) {
            let w = view(ty, rows, cols, &bytes);
            for &n_tokens in tokens {
                let x: Vec<f32> = (0..n_tokens * cols)
                    .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1 + i % 3) as f32)
                    .collect();
                let mut got = vec![f32::NAN; n_tokens * rows];
                let mut want = vec![0f32; n_tokens * rows];
                matmul_with(&unit, (&w, false), &x, n_tokens, &mut got);
                matmul_twin(&w, &x, n_tokens, &mut want);
                let twin = |t: usize, r: usize, _: &[f32], _: &[f32]| want[t * rows + r] as f64;
                assert_outputs(&w, &x, n_tokens, &got, &[("twin", ORDER_BOUND, &twin)]);
            }
        }
    }

    /// The AVX-512 panel decoders give the scalar decoders' bits (every type they take, stored
    /// and repacked, padding rows included).
    #[test]
    fn simd_panels_equal_the_scalar_ones() {
        let Some(simd) = Simd::detect() else {
            eprintln!("skip: AVX-512 BF16 not available");
            return;
        };
        let k_quants = [
            WeightType::Q4_K,
            WeightType::Q6_K,
            WeightType::Q5_K,
            WeightType::Q2_K,
            WeightType::Q3_K,
        ];
        // 768 columns: passes of 8 tiles, the second ending and the third starting inside a
        // repacked Q4_0 / Q8_0 group of 16 blocks; 352: a last group of 11 blocks (its padding
        // has no tiles) and a last pass of 3 tiles.
        let shapes = [WeightType::Q4_0, WeightType::Q8_0]
            .into_iter()
            .flat_map(|ty| [(ty, 768), (ty, 352)])
            .chain(k_quants.into_iter().map(|ty| (ty, 768)))
            .chain([WeightType::F16, WeightType::BF16].map(|ty| (ty, 352)));
        // Float rows also as their remainders (`lo`, the second term of a split).
        let float = |ty| matches!(ty, WeightType::F16 | WeightType::BF16);
        let runs = shapes.flat_map(|(ty, cols)| {
            [false, true]
                .into_iter()
                .filter(move |&lo| !lo || float(ty))
                .map(move |lo| (ty, cols, lo))
        });
        for (ty, cols, lo) in runs {
            let tiles = |w: &WeightView, r0, n, ks: (usize, usize), simd| {
                let mut p = vec![1u8; n / ROWS * ks.1 * TILE];
                decode_panel(simd, w, r0, n, ks, &mut p, &mut Vec::new(), lo);
                p
            };
            for (ty, bytes) in weights(ty, 48, cols) {
                let w = view(ty, 48, cols, &bytes);
                let n_k = cols / COLS;
                // Rows 32..48 real, 48..96 padding; then rows 0..32.
                for (r0, n) in [(32, 64), (0, 32)] {
                    let full = tiles(&w, r0, n, (0, n_k), Some(simd));
                    let twin = tiles(&w, r0, n, (0, n_k), None);
                    assert!(
                        full == twin,
                        "{ty:?}: AVX-512 panel differs from the scalar one"
                    );
                    for k0 in (0..n_k).step_by(K_TILES) {
                        let ks = (k0, K_TILES.min(n_k - k0));
                        let part = tiles(&w, r0, n, ks, Some(simd));
                        let twin = tiles(&w, r0, n, ks, None);
                        assert!(
                            part == twin,
                            "{ty:?} tiles {ks:?}: AVX-512 differs from scalar"
                        );
                        for (g, part) in part.chunks_exact(ks.1 * TILE).enumerate() {
                            let whole = &full[(g * n_k + k0) * TILE..][..ks.1 * TILE];
                            assert!(part == whole, "{ty:?} tiles {ks:?}: not the whole's");
                        }
                    }
                }
            }
        }
    }

    /// The AVX-512 activation tiles are the scalar ones, bit for bit (padding tokens and the
    /// added zero group included).
    #[test]
    fn simd_activations_equal_the_scalar_ones() {
        let Some(simd) = Simd::detect() else {
            eprintln!("skip: AVX-512 BF16 not available");
            return;
        };
        let cols = 96;
        for n_tokens in [1usize, 5, 16, 17, 40] {
            let x: Vec<f32> = (0..n_tokens * cols)
                .map(|i| ((i * 7919 % 1000) as f32 / 300.0 - 1.7) * (1 + i % 5) as f32)
                .collect();
            for residual in [false, true] {
                let a = ActBf16::with(Some(simd), &x, n_tokens, cols, residual);
                let a = a.tiles[..].to_vec();
                let b = ActBf16::with(None, &x, n_tokens, cols, residual);
                let what = if residual { "remainder " } else { "" };
                assert!(
                    a == b.tiles[..],
                    "{n_tokens} tokens: AVX-512 {what}tiles differ"
                );
            }
        }
    }

    #[test]
    fn emulated_tiles_match_the_twin() {
        for (ty, rows) in [
            (WeightType::Q4_0, 40),
            (WeightType::Q8_0, 48),
            (WeightType::Q4_K, 48),
            (WeightType::Q2_K, 20),
        ] {
            check(|| EmulatedBf16, ty, rows, 256);
        }
    }

    /// A shape with two panels (the second partial), activations beyond [`ACT_L2_BYTES`] (so
    /// passes along the row, the last partial) and two passes of tokens (the second of one
    /// pair of groups, partly padding): rows, columns, tokens.
    fn passes_shape() -> (usize, usize, usize) {
        let (rows, cols) = (
            MAX_PANEL_ROWS + 2 * ROWS,
            (4 * K_TILES + K_TILES / 2) * COLS,
        );
        let tokens = PASS_GROUPS * ROWS + ROWS + 2;
        let groups = tokens.div_ceil(ROWS).div_ceil(2) * 2;
        assert!(groups * cols / COLS * TILE > ACT_L2_BYTES);
        assert!(!(cols / COLS).is_multiple_of(K_TILES));
        (rows, cols, tokens)
    }

    /// Split F16 / BF16 products: within [`ORDER_BOUND`] of their twin and [`SPLIT_BOUND`] of
    /// the exact products, on the model of the tile unit and (where present) on AMX.
    fn check_split<U: Bf16Unit>(
        unit: impl Fn() -> U + Sync,
        ty: WeightType,
        (rows, cols): (usize, usize),
        tokens: &[usize],
    ) {
        let (_, bytes) = weights(ty, rows, cols).pop().expect("the stored matrix");
        let w = view(ty, rows, cols, &bytes);
        let mut rng = crate::kernel_tests::Rng(0x6a09e667f3bcc909 ^ cols as u64);
        for &n_tokens in tokens {
            let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.f32() * 3.0).collect();
            let mut got = vec![f32::NAN; n_tokens * rows];
            let mut want = vec![0f32; n_tokens * rows];
            matmul_with(&unit, (&w, true), &x, n_tokens, &mut got);
            split_twin(&w, &x, n_tokens, &mut want);
            let twin = |t: usize, r: usize, _: &[f32], _: &[f32]| want[t * rows + r] as f64;
            let exact = |_: usize, _: usize, row: &[f32], xt: &[f32]| -> f64 {
                row.iter().zip(xt).map(|(&a, &b)| a as f64 * b as f64).sum()
            };
            let refs: [Reference; 2] =
                [("twin", ORDER_BOUND, &twin), ("exact", SPLIT_BOUND, &exact)];
            assert_outputs(&w, &x, n_tokens, &got, &refs);
        }
    }

    /// What an output should be: a name, a bound relative to `Σ |w · x|`, and its value given
    /// (token, row, the decoded row, the token's activations).
    type Reference<'a> = (
        &'a str,
        f64,
        &'a dyn Fn(usize, usize, &[f32], &[f32]) -> f64,
    );

    /// Asserts every output `got[t · rows + r]` of `w` by `x` within each reference's bound of
    /// its value.
    fn assert_outputs(w: &WeightView, x: &[f32], n_tokens: usize, got: &[f32], refs: &[Reference]) {
        let (rows, cols) = (w.n_rows, w.n_cols);
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            w.row_f32(r, &mut row);
            for t in 0..n_tokens {
                let xt = &x[t * cols..][..cols];
                let mag: f64 = row.iter().zip(xt).map(|(a, b)| (a * b).abs() as f64).sum();
                let g = got[t * rows + r] as f64;
                for (name, bound, value) in refs {
                    let e = value(t, r, &row, xt);
                    assert!(
                        (g - e).abs() <= bound * mag + 1e-30,
                        "{:?} {rows}x{cols}, {n_tokens} tokens: row {r} token {t}: {g} vs {name} {e}",
                        w.ty
                    );
                }
            }
        }
    }

    #[test]
    fn split_tiles_match_the_twin_and_the_exact_product() {
        for ty in [WeightType::F16, WeightType::BF16] {
            check_split(|| EmulatedBf16, ty, (48, 352), &[1, 2, 17]);
        }
        use crate::cpu::{Isa, Level};
        let Some(Level::Avx512(k)) = Level::new(Isa::Amx) else {
            eprintln!("skip: AMX not available (the driver ran on the model of the tile unit)");
            return;
        };
        let amx = k.amx().expect("the AMX level's token");
        for ty in [WeightType::F16, WeightType::BF16] {
            check_split(|| Bf16Scope::new(amx), ty, (96, 2048), &[1, 5, 40]);
        }
        // Passes of 256 columns, two panels each.
        let (rows, cols, tokens) = passes_shape();
        check_split(
            || Bf16Scope::new(amx),
            WeightType::F16,
            (rows, cols),
            &[tokens],
        );
    }

    #[test]
    fn emulated_tiles_match_the_twin_across_passes() {
        let (rows, cols, tokens) = passes_shape();
        check_tokens(|| EmulatedBf16, WeightType::Q8_0, rows, cols, &[tokens]);
    }

    #[test]
    fn amx_tiles_match_the_twin() {
        use crate::cpu::{Isa, Level};
        let Some(Level::Avx512(k)) = Level::new(Isa::Amx) else {
            eprintln!("skip: AMX not available (the driver ran on the model of the tile unit)");
            return;
        };
        let amx = k.amx().expect("the AMX level's token");
        for (ty, rows, cols) in [
            (WeightType::Q4_0, 72, 512),
            (WeightType::Q8_0, 96, 2048),
            (WeightType::Q4_K, 48, 768),
            (WeightType::Q6_K, 64, 256),
            (WeightType::Q3_K, 33, 512),
        ] {
            check(|| Bf16Scope::new(amx), ty, rows, cols);
        }
        let (rows, cols, tokens) = passes_shape();
        check_tokens(
            || Bf16Scope::new(amx),
            WeightType::Q4_0,
            rows,
            cols,
            &[tokens],
        );
    }
}
