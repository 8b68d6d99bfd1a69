//! AVX2 kernels of float prefill: the outer products of `avx512_panel.rs` with 256-bit vectors,
//! on the same packed groups (`[group][column][16]`, rows converted to `f32` once per pass, or
//! for short prompts F16 / BF16 kept as stored and converted as the tiles load them:
//! `avx512_panel::panel_kind`), reached through that module's `pack_groups` and `tile`. A
//! 16-row column is two loads; a token's value is broadcast and two FMAs move 16 (row, token)
//! sums: 12 accumulators for 6 tokens, and per column 2 loads and 6 broadcasts for 12 FMAs (the
//! dot-product tiles this replaced spent a reduction per (row, token) and a load per FMA pair).
//! A call's groups are multiplied one after the other.
//!
//! Each (row, token) sum is one chain of fused multiply-adds over a chunk of
//! [`crate::avx512_panel::K_CHUNK_AVX2`] columns, as the few-token kernel ([`fused_avx2`]) sums
//! it too, so the results are bitwise those of [`crate::tile_scalar::panel_f32`] on the same
//! chunks; the AVX-512 kernel's chunks are shorter, so its bits differ.

use std::arch::x86_64::*;

use crate::avx2_dot::{load1, load8};
use crate::avx2_pack::transpose8x8;
use crate::avx512_panel::{GROUP_ROWS, TOKENS};

/// # Safety
/// AVX2/FMA/F16C available; `rows[l]` reads `kw` values of `KIND` for `l < n`; `out` holds
/// `kw · 16` values.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn pack_group_avx2<const KIND: u8>(
    rows: &[*const u8; GROUP_ROWS],
    n: usize,
    kw: usize,
    out: &mut [f32],
) {
    let whole = kw / 8 * 8;
    for half in 0..2 {
        let lanes = 8 * half..8 * half + 8;
        for c in (0..whole).step_by(8) {
            // SAFETY: columns c..c + 8 ≤ kw of a row the caller vouches for.
            let block = eight_rows(rows, lanes.start, n, |r| unsafe {
                _mm256_castps_si256(load8::<KIND>(r, c))
            });
            for (j, col) in transpose8x8(block).into_iter().enumerate() {
                let at = (c + j) * GROUP_ROWS + lanes.start;
                // SAFETY: column c + j < kw of the group, lanes `lanes` of its 16.
                unsafe {
                    _mm256_storeu_ps(out.as_mut_ptr().add(at), _mm256_castsi256_ps(col));
                }
            }
        }
    }
    for c in whole..kw {
        for (l, o) in out[c * GROUP_ROWS..][..GROUP_ROWS].iter_mut().enumerate() {
            // SAFETY: column c < kw of a row the caller vouches for.
            *o = if l < n {
                unsafe { load1::<KIND>(rows[l], c) }
            } else {
                0.0
            };
        }
    }
}

/// The sixteen-bit panels of F16 / BF16 rows at AVX2 ([`crate::avx512_panel::panel_kind`]): the
/// stored values of `n` rows transposed into `[column][16]` (rows past `n` zero), eight rows by
/// sixteen columns at a time (the 128-bit halves of the 16-bit transpose are two 8 × 8 blocks).
/// The tiles convert them as they load a column (exact, so the sums are those of an `f32`
/// panel), and the pass's packing is a copy of half the bytes: packing to `f32` took 27% of the
/// samples of a 16-token TinyLlama F16 prompt (`perf record -e cpu-clock herd bench
/// tl-f16.gguf -p 16 -n 0 -t 2`), this 22% (most of it waiting on the weights from memory).
///
/// # Safety
/// AVX2 available; `rows[l]` reads `kw` 16-bit values for `l < n`; `out` holds `kw · 16`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn pack_group_avx2_16(
    rows: &[*const u8; GROUP_ROWS],
    n: usize,
    kw: usize,
    out: &mut [u16],
) {
    assert!(out.len() >= kw * GROUP_ROWS);
    let o = out.as_mut_ptr();
    let whole = kw / 16 * 16;
    for half in 0..2 {
        let lanes = 8 * half..8 * half + 8;
        for c in (0..whole).step_by(16) {
            // SAFETY: columns c..c + 16 ≤ kw of a row the caller vouches for.
            let block = eight_rows(rows, lanes.start, n, |r| unsafe {
                _mm256_loadu_si256(r.add(2 * c) as *const __m256i)
            });
            for (j, col) in transpose8x8_16(block).into_iter().enumerate() {
                // SAFETY: columns c + j and c + 8 + j < kw, lanes `lanes` of their 16.
                unsafe {
                    let lo = o.add((c + j) * GROUP_ROWS + lanes.start) as *mut __m128i;
                    let hi = o.add((c + 8 + j) * GROUP_ROWS + lanes.start) as *mut __m128i;
                    _mm_storeu_si128(lo, _mm256_castsi256_si128(col));
                    _mm_storeu_si128(hi, _mm256_extracti128_si256::<1>(col));
                }
            }
        }
    }
    for c in whole..kw {
        for (l, v) in out[c * GROUP_ROWS..][..GROUP_ROWS].iter_mut().enumerate() {
            // SAFETY: column c < kw of a row the caller vouches for.
            *v = if l < n {
                unsafe { (rows[l].add(2 * c) as *const u16).read_unaligned() }
            } else {
                0
            };
        }
    }
}

/// `load` of the group's rows `first..first + 8`, zero for those at or past `n`.
#[inline(always)]
fn eight_rows(
    rows: &[*const u8; GROUP_ROWS],
    first: usize,
    n: usize,
    load: impl Fn(*const u8) -> __m256i,
) -> [__m256i; 8] {
    // SAFETY: AVX is available wherever a caller of this (an AVX2 kernel) runs.
    std::array::from_fn(|i| match first + i < n {
        true => load(rows[first + i]),
        false => unsafe { _mm256_setzero_si256() },
    })
}

/// Transposes the 8 × 8 blocks of 16-bit values in each 128-bit half: lane `i` of half `h` of
/// `out[k]` is lane `k` of half `h` of `r[i]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn transpose8x8_16(r: [__m256i; 8]) -> [__m256i; 8] {
    let t: [__m256i; 8] = std::array::from_fn(|i| {
        let (a, b) = (r[2 * (i / 2)], r[2 * (i / 2) + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_epi16(a, b)
        } else {
            _mm256_unpackhi_epi16(a, b)
        }
    });
    // u[0..4]: rows 0-3 of columns (0, 1), (2, 3), (4, 5), (6, 7); u[4..8] rows 4-7.
    let u: [__m256i; 8] = std::array::from_fn(|i| {
        let (a, b) = (
            t[4 * (i / 4) + (i % 4) / 2],
            t[4 * (i / 4) + (i % 4) / 2 + 2],
        );
        if i % 2 == 0 {
            _mm256_unpacklo_epi32(a, b)
        } else {
            _mm256_unpackhi_epi32(a, b)
        }
    });
    std::array::from_fn(|k| {
        let (a, b) = (u[k / 2], u[4 + k / 2]);
        if k % 2 == 0 {
            _mm256_unpacklo_epi64(a, b)
        } else {
            _mm256_unpackhi_epi64(a, b)
        }
    })
}

/// The AVX2 kernel of [`crate::avx512_panel::tile`]: the `rows.div_ceil(16)` groups of `gs`
/// values of `KIND` from `w` (the panel's kind), one after the other, against the first `t`
/// tokens.
///
/// # Safety
/// AVX2/FMA/F16C available; group `g` at `w + g·gs` values readable for `16·n` values, each of
/// the first `t` of `x` for `n` values, each of the first `t` of `out` writable for `rows`
/// values.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile<const KIND: u8>(
    w: *const u8,
    gs: usize,
    x: [*const f32; TOKENS],
    t: usize,
    n: usize,
    out: [*mut f32; TOKENS],
    rows: usize,
    add: bool,
) {
    let vb = crate::avx2_dot::float_bytes(KIND);
    macro_rules! call {
        ($($t:literal)*) => {
            match t {
                $($t => {
                    let x: [*const f32; $t] = std::array::from_fn(|i| x[i]);
                    for g in 0..rows.div_ceil(GROUP_ROWS) {
                        let o: [*mut f32; $t] =
                            std::array::from_fn(|i| out[i].wrapping_add(GROUP_ROWS * g));
                        let rows = (rows - GROUP_ROWS * g).min(GROUP_ROWS);
                        // SAFETY: the caller's promise, for group g and its rows.
                        unsafe {
                            tile_avx2::<KIND, $t>(w.add(g * gs * vb), x, n, o, rows, add)
                        }
                    }
                })*
                _ => unreachable!("at most {TOKENS} tokens"),
            }
        };
    }
    call!(1 2 3 4 5 6)
}

/// # Safety
/// AVX2/FMA/F16C available; `w` readable for `16·n` values of `KIND`, each `x[t]` for `n`
/// values, each `out[t]` writable for `rows ≤ 16` values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_avx2<const KIND: u8, const T: usize>(
    w: *const u8,
    x: [*const f32; T],
    n: usize,
    out: [*mut f32; T],
    rows: usize,
    add: bool,
) {
    let mut acc = [[_mm256_setzero_ps(); T]; 2];
    for k in 0..n {
        // SAFETY: k < n (the caller's bounds).
        unsafe {
            let wv = [
                load8::<KIND>(w, GROUP_ROWS * k),
                load8::<KIND>(w, GROUP_ROWS * k + 8),
            ];
            for t in 0..T {
                let b = _mm256_broadcast_ss(&*x[t].add(k));
                acc[0][t] = _mm256_fmadd_ps(wv[0], b, acc[0][t]);
                acc[1][t] = _mm256_fmadd_ps(wv[1], b, acc[1][t]);
            }
        }
    }
    for (t, &o) in out.iter().enumerate() {
        for (half, &a) in acc.iter().enumerate() {
            let valid = rows.saturating_sub(8 * half).min(8);
            // SAFETY: the first `valid` values of this half of `out[t]` (the caller's promise).
            unsafe { put8(o.add(8 * half), valid, a[t], add) };
        }
    }
}

/// Lanes `0..valid` of `v` stored at `p`, or added to what is there with `add`: plain loads and
/// stores for all eight (masked stores cost about ten times a store on AMD's Zen cores, and a
/// tile of 16 rows × 6 tokens, 1536 fused multiply-adds, ends in 12 of them), masked ones for
/// fewer.
///
/// # Safety
/// AVX2 available; `p` readable and writable for `valid ≤ 8` values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn put8(p: *mut f32, valid: usize, v: __m256, add: bool) {
    // SAFETY: `valid` values at `p` (the caller's promise); lanes past them masked off.
    unsafe {
        if valid == 8 {
            let v = if add {
                _mm256_add_ps(_mm256_loadu_ps(p), v)
            } else {
                v
            };
            _mm256_storeu_ps(p, v);
        } else {
            let mask = crate::avx2_x16::lanes32(valid);
            let v = if add {
                _mm256_add_ps(_mm256_maskload_ps(p, mask), v)
            } else {
                v
            };
            _mm256_maskstore_ps(p, mask, v);
        }
    }
}

/// Row `i` of unit `u` (rows `8u..8u + 8`, half of group `u / 2`) of the fused kernels.
#[inline(always)]
fn unit_row<const G: usize>(rows: &[[*const u8; GROUP_ROWS]; G], u: usize, i: usize) -> *const u8 {
    rows[u / 2][8 * (u % 2) + i]
}

/// The AVX2 kernel of [`crate::avx512_panel::fused`]: units of eight rows (half a group), each
/// eight columns of a unit loaded, converted and transposed in registers, then multiplied by the
/// tokens' values; `P` units at a time (two for up to three tokens: independent chains of fused
/// multiply-adds; four kept the eight broadcast values of a block live across units and spilled),
/// one for more (sixteen registers: eight columns and the accumulators). Each (row, token) sum
/// is the chain of [`tile`] on the packed groups of the same rows, chunk by chunk of `chunk`
/// columns (the level's, `avx512_panel::k_chunk`).
///
/// # Safety
/// AVX2/FMA/F16C available; each of the `16·G` pointers reads `n_cols` values of `KIND`, each
/// `x[t]` holds `n_cols` values, each `out[t]` is writable for `n ≤ 16·G` values; `2G` a
/// multiple of `P`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn fused_avx2<const KIND: u8, const G: usize, const T: usize, const P: usize>(
    rows: &[[*const u8; GROUP_ROWS]; G],
    n: usize,
    n_cols: usize,
    chunk: usize,
    x: [*const f32; T],
    out: [*mut f32; T],
) {
    use crate::avx512_panel::FUSED_AHEAD_BYTES;
    let vb = crate::avx2_dot::float_bytes(KIND);
    let units = n.div_ceil(8);
    // Unit `u` (rows 8u..8u + 8): every one below 2G has pointers (past `n`: row 0 again).
    let ptr = |u: usize, i: usize| unit_row(rows, u, i);
    for ks in (0..n_cols).step_by(chunk) {
        let ke = n_cols.min(ks + chunk);
        let whole = ks + (ke - ks) / 8 * 8;
        for u0 in (0..units).step_by(P) {
            // `P` of the four used, each by a constant index: the accumulators stay in
            // registers (a loop over them kept them in memory, one chain through the stack).
            let mut acc = [[_mm256_setzero_ps(); T]; 4];
            // SAFETY (loads, broadcasts): columns below `ke ≤ n_cols` of rows the caller vouches
            // for; units below `u0 + P ≤ 2G`.
            unsafe {
                for c in (ks..whole).step_by(8) {
                    macro_rules! unit {
                        ($j:literal) => {
                            if $j < P {
                                let u = u0 + $j;
                                // Each row ahead of its loads, a line at a time (as at AVX-512).
                                if (c * vb).is_multiple_of(64) {
                                    for i in 0..8 {
                                        let p = ptr(u, i).wrapping_add(c * vb + FUSED_AHEAD_BYTES);
                                        _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
                                    }
                                }
                                let mut block = [_mm256_setzero_si256(); 8];
                                for (i, v) in block.iter_mut().enumerate() {
                                    *v = _mm256_castps_si256(load8::<KIND>(ptr(u, i), c));
                                }
                                for (i, col) in transpose8x8(block).into_iter().enumerate() {
                                    for (t, a) in acc[$j].iter_mut().enumerate() {
                                        let b = _mm256_broadcast_ss(&*x[t].add(c + i));
                                        *a = _mm256_fmadd_ps(_mm256_castsi256_ps(col), b, *a);
                                    }
                                }
                            }
                        };
                    }
                    unit!(0);
                    unit!(1);
                    unit!(2);
                    unit!(3);
                }
                fused_columns::<KIND, G, T, P>(rows, u0, whole..ke, x, &mut acc);
            }
            // SAFETY: the caller's bounds.
            unsafe { fused_put::<T, P>(&acc, u0, n, out, ks > 0) };
        }
    }
}

/// Steps (of 16 columns, two steps an F16 line) by which the second unit of [`fused16_avx2`]
/// follows the first, so that the two units' rows are at other cache lines (see there).
const FUSED16_LAG: usize = 4;

/// The AVX2 kernel of [`crate::avx512_panel::fused`] for F16 / BF16 rows and one token (a
/// server's decode step of one sequence): each (row, token) sum is still one chain of fused
/// multiply-adds per chunk, column after column, so a step of sixteen columns of eight rows
/// (a unit) is sixteen multiply-adds in a row, four cycles each. [`fused_avx2`] ran them one
/// unit's chain at a time (about 70 cycles a step) with its compiled loop keeping broadcasts
/// and row pointers on the stack. Here two units go side by side: each unit's sixteen columns
/// are loaded as stored, transposed in 16 bits (`transpose8x8_16`: three rounds of unpacks for
/// sixteen columns, where converting first takes three for eight) and stored to a 512-byte
/// buffer, then the two chains run interleaved column by column, each conversion reading its
/// half of a stored vector ([`fmas16`], in assembly: compiled, the halves were taken back out
/// of registers and spilled). The second unit follows the first by [`FUSED16_LAG`] steps: rows of 2048 F16 values lie 4 KiB
/// apart, so the lines of sixteen rows at one column all fall in one set of the eight-way L1
/// and evict each other; two lines apart, each unit's eight rows have a set of their own. Same
/// sums in the same order as [`fused_avx2`]: the same bits.
///
/// On a Zen 3 core, `matvec --rows 128 --cols C --types f16,bf16 --isas avx2 --threads 1
/// --only decode --tiles --decode-mib 1` (GB/s of weights, two alternating runs, [`fused_avx2`]
/// / this): 2048 columns F16 5.77, 6.00 / 9.29, 9.57, BF16 5.68, 5.97 / 10.06, 9.84; 5632
/// columns F16 11.62, 10.54 / 12.53, 12.38 (the row kernels 18.6-26.8). A model of the loop
/// alone (rows in L1) took 22.4 ns a step for one chain, 27.0 ns for a step of two.
///
/// # Safety
/// As [`fused_avx2`] with `T` = 1 and `P` = 2; `KIND` not F32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn fused16_avx2<
    const KIND: u8,
    const G: usize,
    const T: usize,
    const P: usize,
>(
    rows: &[[*const u8; GROUP_ROWS]; G],
    n: usize,
    n_cols: usize,
    chunk: usize,
    x: [*const f32; T],
    out: [*mut f32; T],
) {
    use crate::avx2_dot::{F16, F32};
    use crate::avx512_panel::FUSED_AHEAD_BYTES;
    assert!(KIND != F32 && T == 1 && P == 2 && 2 * G >= P);
    let units = n.div_ceil(8);
    let ptr = |u: usize, i: usize| unit_row(rows, u, i);
    // The two units' blocks of a step.
    let mut blocks = [_mm256_setzero_si256(); 16];
    let buf = blocks.as_mut_ptr() as *mut u8;
    for ks in (0..n_cols).step_by(chunk) {
        let ke = n_cols.min(ks + chunk);
        let steps = (ke - ks) / 16;
        let whole = ks + 16 * steps;
        let lag = FUSED16_LAG.min(steps);
        for u0 in (0..units).step_by(P) {
            let mut acc = [[_mm256_setzero_ps(); T]; 4];
            let (mut a0, mut a1) = (acc[0][0], acc[1][0]);
            // SAFETY (blocks and products): columns below `whole ≤ n_cols` of rows the caller
            // vouches for, and of the token; units below `u0 + 2 ≤ 2G`; `buf` holds two
            // blocks.
            unsafe {
                // Unit `u0 + j`'s block of columns `c..c + 16` into the buffer's block `j`.
                let block = |j: usize, c: usize| {
                    let r: [*const u8; 8] = std::array::from_fn(|i| ptr(u0 + j, i));
                    if (2 * c).is_multiple_of(64) {
                        for p in r {
                            let p = p.wrapping_add(2 * c + FUSED_AHEAD_BYTES);
                            _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
                        }
                    }
                    let block: [__m256i; 8] = std::array::from_fn(|i| {
                        _mm256_loadu_si256(r[i].add(2 * c) as *const __m256i)
                    });
                    let b = buf.add(256 * j) as *mut __m256i;
                    for (k, col) in transpose8x8_16(block).into_iter().enumerate() {
                        _mm256_store_si256(b.add(k), col);
                    }
                };
                macro_rules! products {
                    ($($arg:expr),+) => {
                        if KIND == F16 {
                            fmas16!(F16, $($arg),+)
                        } else {
                            fmas16!(BF16, $($arg),+)
                        }
                    };
                }
                let col = |i: usize| ks + 16 * i;
                for i in 0..lag {
                    block(0, col(i));
                    products!(buf, x[0].add(col(i)), a0);
                }
                for i in lag..steps {
                    let (c0, c1) = (col(i), col(i - lag));
                    block(0, c0);
                    block(1, c1);
                    products!(buf, x[0].add(c0), x[0].add(c1), a0, a1);
                }
                for i in steps - lag..steps {
                    block(1, col(i));
                    products!(buf.add(256), x[0].add(col(i)), a1);
                }
                acc[0][0] = a0;
                acc[1][0] = a1;
                fused_columns::<KIND, G, T, P>(rows, u0, whole..ke, x, &mut acc);
            }
            // SAFETY: the caller's bounds.
            unsafe { fused_put::<T, P>(&acc, u0, n, out, ks > 0) };
        }
    }
}

/// The half of a stored block at `{b}` + `$at` that holds column `$k` (of 16).
macro_rules! half_at {
    ($at:literal, $k:literal) => {
        concat!(
            "xmmword ptr [{b} + ",
            $at,
            " + 32*(",
            $k,
            "%8) + 16*(",
            $k,
            "/8)]"
        )
    };
}

/// Column `$k` of a stored block at `{b}` + `$at`, converted from 16 bits to `f32` into
/// `ymm$w`.
macro_rules! widen_at {
    (F16, $w:literal, $at:literal, $k:literal) => {
        concat!("vcvtph2ps ymm", $w, ", ", half_at!($at, $k), "\n")
    };
    (BF16, $w:literal, $at:literal, $k:literal) => {
        concat!(
            "vpmovzxwd ymm",
            $w,
            ", ",
            half_at!($at, $k),
            "\n",
            "vpslld ymm",
            $w,
            ", ymm",
            $w,
            ", 16\n"
        )
    };
}

/// Column `$k` of the block at `{b}` + `$at` as `f32` in `ymm$w`, the token's value `$k` from
/// `{$x}` broadcast in `ymm$v`.
macro_rules! column_operands {
    ($kind:ident, $w:literal, $v:literal, $at:literal, $x:literal, $k:literal) => {
        concat!(
            widen_at!($kind, $w, $at, $k),
            "vbroadcastss ymm",
            $v,
            ", dword ptr [{",
            $x,
            "} + 4*",
            $k,
            "]\n"
        )
    };
}

/// Column `$k` of one unit's block into its accumulator.
macro_rules! column1 {
    ($kind:ident, $k:literal) => {
        concat!(
            column_operands!($kind, 0, 1, 0, "x0", $k),
            "vfmadd231ps ymm15, ymm0, ymm1\n"
        )
    };
}

/// Column `$k` of two units' blocks, each into its accumulator.
macro_rules! column2 {
    ($kind:ident, $k:literal) => {
        concat!(
            column_operands!($kind, 0, 1, 0, "x0", $k),
            column_operands!($kind, 2, 3, 256, "x1", $k),
            "vfmadd231ps ymm15, ymm0, ymm1\n",
            "vfmadd231ps ymm14, ymm2, ymm3\n"
        )
    };
}

/// `$column` of each of a step's sixteen columns, in order.
macro_rules! sixteen_columns {
    ($column:ident, $kind:ident) => {
        concat!(
            $column!($kind, 0),
            $column!($kind, 1),
            $column!($kind, 2),
            $column!($kind, 3),
            $column!($kind, 4),
            $column!($kind, 5),
            $column!($kind, 6),
            $column!($kind, 7),
            $column!($kind, 8),
            $column!($kind, 9),
            $column!($kind, 10),
            $column!($kind, 11),
            $column!($kind, 12),
            $column!($kind, 13),
            $column!($kind, 14),
            $column!($kind, 15)
        )
    };
}

/// The sixteen columns of the blocks at `$buf` (one unit, or two side by side) times the
/// tokens' values from `$x0` (and `$x1`) into the accumulators, column by column: the two
/// units' chains of multiply-adds interleaved.
macro_rules! fmas16 {
    ($kind:ident, $buf:expr, $x0:expr, $a0:expr) => {
        std::arch::asm!(
            sixteen_columns!(column1, $kind),
            b = in(reg) $buf,
            x0 = in(reg) $x0,
            inout("ymm15") $a0,
            out("ymm0") _, out("ymm1") _,
            options(nostack, readonly, preserves_flags),
        )
    };
    ($kind:ident, $buf:expr, $x0:expr, $x1:expr, $a0:expr, $a1:expr) => {
        std::arch::asm!(
            sixteen_columns!(column2, $kind),
            b = in(reg) $buf,
            x0 = in(reg) $x0,
            x1 = in(reg) $x1,
            inout("ymm15") $a0,
            inout("ymm14") $a1,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
            options(nostack, readonly, preserves_flags),
        )
    };
}
use column1;
use column2;
use column_operands;
use fmas16;
use half_at;
use sixteen_columns;
use widen_at;

/// The fused kernels' columns `cols` (fewer than a step's, at a chunk's end) of units
/// `u0..u0 + P`, one column at a time into `acc`.
///
/// # Safety
/// As [`fused_avx2`], for the columns `cols`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fused_columns<const KIND: u8, const G: usize, const T: usize, const P: usize>(
    rows: &[[*const u8; GROUP_ROWS]; G],
    u0: usize,
    cols: std::ops::Range<usize>,
    x: [*const f32; T],
    acc: &mut [[__m256; T]; 4],
) {
    let ptr = |u: usize, i: usize| unit_row(rows, u, i);
    for c in cols {
        for (j, acc) in acc.iter_mut().enumerate().take(P) {
            let mut v = [0f32; 8];
            // SAFETY: column c of rows the caller vouches for, and of every token.
            unsafe {
                for (i, v) in v.iter_mut().enumerate() {
                    *v = load1::<KIND>(ptr(u0 + j, i), c);
                }
                let col = _mm256_loadu_ps(v.as_ptr());
                for (t, a) in acc.iter_mut().enumerate() {
                    let b = _mm256_broadcast_ss(&*x[t].add(c));
                    *a = _mm256_fmadd_ps(col, b, *a);
                }
            }
        }
    }
}

/// The fused kernels' sums of units `u0..u0 + P` (those below `n` rows) stored into `out`, or
/// added with `add`.
///
/// # Safety
/// As [`fused_avx2`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fused_put<const T: usize, const P: usize>(
    acc: &[[__m256; T]; 4],
    u0: usize,
    n: usize,
    out: [*mut f32; T],
    add: bool,
) {
    let units = n.div_ceil(8);
    for (j, acc) in acc.iter().enumerate().take(P) {
        let u = u0 + j;
        if u >= units {
            break;
        }
        let valid = (n - 8 * u).min(8);
        for (&o, &a) in out.iter().zip(acc) {
            // SAFETY: the first `valid` values of unit `u` of `out[t]`, below `n`.
            unsafe { put8(o.add(8 * u), valid, a, add) };
        }
    }
}
