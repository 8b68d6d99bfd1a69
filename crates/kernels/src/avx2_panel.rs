//! AVX2 kernels of float prefill: the outer products of `avx512_panel.rs` with 256-bit vectors,
//! on the same packed groups (`[group][column][16]`, rows converted to `f32` once per pass),
//! reached through that module's `pack_groups` and `tile`. A 16-row column is two loads; a
//! token's value is broadcast and two FMAs move 16 (row, token) sums: 12 accumulators for 6
//! tokens, and per column 2 loads and 6 broadcasts for 12 FMAs (the dot-product tiles this
//! replaced spent a reduction per (row, token) and a load per FMA pair). A call's groups are
//! multiplied one after the other.
//!
//! Each (row, token) sum is the same chain of fused multiply-adds over the same columns as at
//! the AVX-512 level, so the results are bitwise those of [`crate::tile_scalar::panel_f32`] and
//! of the AVX-512 kernel.

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
            let mut block = [_mm256_setzero_si256(); 8];
            for (i, v) in block.iter_mut().enumerate() {
                if lanes.start + i < n {
                    // SAFETY: columns c..c + 8 ≤ kw of a row the caller vouches for.
                    *v = _mm256_castps_si256(unsafe { load8::<KIND>(rows[lanes.start + i], c) });
                }
            }
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

/// The AVX2 kernel of [`crate::avx512_panel::tile`]: the `rows.div_ceil(16)` groups of `gs`
/// values from `w`, one after the other, against the first `t` tokens.
///
/// # Safety
/// AVX2/FMA available; group `g` at `w + g·gs` readable for `16·n` values, each of the first `t`
/// of `x` for `n` values, each of the first `t` of `out` writable for `rows` values.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile(
    w: *const f32,
    gs: usize,
    x: [*const f32; TOKENS],
    t: usize,
    n: usize,
    out: [*mut f32; TOKENS],
    rows: usize,
    add: bool,
) {
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
                        unsafe { tile_avx2::<$t>(w.add(g * gs), x, n, o, rows, add) }
                    }
                })*
                _ => unreachable!("at most {TOKENS} tokens"),
            }
        };
    }
    call!(1 2 3 4 5 6)
}

/// # Safety
/// AVX2/FMA available; `w` readable for `16·n` values, each `x[t]` for `n` values, each
/// `out[t]` writable for `rows ≤ 16` values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_avx2<const T: usize>(
    w: *const f32,
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
                _mm256_loadu_ps(w.add(GROUP_ROWS * k)),
                _mm256_loadu_ps(w.add(GROUP_ROWS * k + 8)),
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
/// one for more (sixteen registers: eight columns and the accumulators). Each (row, token) sum is the chain of [`tile`] on the packed groups of the
/// same rows.
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
    x: [*const f32; T],
    out: [*mut f32; T],
) {
    use crate::avx512_panel::{FUSED_AHEAD_BYTES, K_CHUNK};
    let vb = crate::avx2_dot::float_bytes(KIND);
    let units = n.div_ceil(8);
    // Unit `u` (rows 8u..8u + 8): every one below 2G has pointers (past `n`: row 0 again).
    let ptr = |u: usize, i: usize| rows[u / 2][8 * (u % 2) + i];
    for ks in (0..n_cols).step_by(K_CHUNK) {
        let ke = n_cols.min(ks + K_CHUNK);
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
