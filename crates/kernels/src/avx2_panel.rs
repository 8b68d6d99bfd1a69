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
    let ptr = |u: usize, i: usize| rows[u / 2][8 * (u % 2) + i];
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
                for c in whole..ke {
                    for (j, acc) in acc.iter_mut().enumerate().take(P) {
                        let mut v = [0f32; 8];
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
            for (j, acc) in acc.iter().enumerate().take(P) {
                let u = u0 + j;
                if u >= units {
                    break;
                }
                let valid = (n - 8 * u).min(8);
                for (&o, &a) in out.iter().zip(acc) {
                    // SAFETY: the first `valid` values of unit `u` of `out[t]`, below `n`.
                    unsafe { put8(o.add(8 * u), valid, a, ks > 0) };
                }
            }
        }
    }
}
