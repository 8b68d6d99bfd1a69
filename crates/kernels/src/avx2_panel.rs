//! AVX2 prefill kernel for float weights: the outer products of `avx512_panel.rs` with 256-bit
//! vectors, on the same packed groups (`[group][column][16]`, rows converted to `f32` once per
//! pass). A 16-row column is two loads; a token's value is broadcast and two FMAs move 16
//! (row, token) sums. A call covers one group and up to [`TOKENS`] tokens: 12 accumulators, and
//! per column 2 loads and 6 broadcasts for 12 FMAs (the dot-product tiles this replaced spent a
//! reduction per (row, token) and a load per FMA pair).
//!
//! Each (row, token) sum is the same chain of fused multiply-adds over the same columns as at
//! the AVX-512 level, so the results are bitwise those of [`crate::tile_scalar::panel_f32`] and
//! of the AVX-512 kernel.

use std::arch::x86_64::*;
use std::ops::Range;

use crate::avx2_dot::{load1, load8, BF16, F16, F32};
use crate::avx2_pack::transpose8x8;
use crate::avx512_panel::{float_kind, group_rows, GROUP_ROWS};
use crate::cpu::Avx2;
use crate::WeightType;

/// Groups of one call (multiplied one after the other: the calls around the kernel cost less).
pub(crate) const MAX_GROUPS: usize = 4;
/// Tokens of one call.
pub(crate) const TOKENS: usize = 6;

/// [`crate::avx512_panel::pack_groups`] with AVX2: the `n` rows `row(i)` (`kw` values of `ty`
/// each) converted to `f32` into `n.div_ceil(16)` groups of `kw` columns of 16 rows, rows past
/// `n` zero; eight values of eight rows at a time, converted in registers and transposed.
pub(crate) fn pack_groups<'a>(
    _: Avx2,
    ty: WeightType,
    row: impl Fn(usize) -> &'a [u8],
    n: usize,
    kw: usize,
    out: &mut [f32],
) {
    let groups = n.div_ceil(GROUP_ROWS);
    assert!(out.len() >= groups * kw * GROUP_ROWS);
    let kind = float_kind(ty);
    for g in 0..groups {
        let (ptrs, in_group) = group_rows(ty, &row, n, kw, g);
        let group = &mut out[g * kw * GROUP_ROWS..][..kw * GROUP_ROWS];
        // SAFETY: the token proves the features; each of the first `in_group` pointers reads
        // `kw` values of `ty` (checked), the group holds `kw · 16` values.
        unsafe {
            match kind {
                F32 => pack_group_avx2::<F32>(&ptrs, in_group, kw, group),
                F16 => pack_group_avx2::<F16>(&ptrs, in_group, kw, group),
                _ => pack_group_avx2::<BF16>(&ptrs, in_group, kw, group),
            }
        }
    }
}

/// # Safety
/// AVX2/FMA/F16C available; `rows[l]` reads `kw` values of `KIND` for `l < n`; `out` holds
/// `kw · 16` values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_group_avx2<const KIND: u8>(
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

/// [`crate::avx512_panel::tile`] with AVX2: for each token `t` and row `r < out[t].len()` (up
/// to [`MAX_GROUPS`] groups of 16), `out[t][r] = s` (`add` false) or `out[t][r] + s`, where `s`
/// sums the columns `cols` of row `r` times `x[t]` in order by fused multiply-adds from zero.
pub(crate) fn tile(
    _: Avx2,
    groups: &[f32],
    kw: usize,
    cols: Range<usize>,
    x: &[&[f32]],
    out: &mut [&mut [f32]],
    add: bool,
) {
    let rows = out.first().map_or(0, |o| o.len());
    let t = x.len();
    assert!((1..=GROUP_ROWS * MAX_GROUPS).contains(&rows) && (1..=TOKENS).contains(&t));
    assert!(out.len() == t && out.iter().all(|o| o.len() == rows));
    let g = rows.div_ceil(GROUP_ROWS);
    assert!(cols.start <= cols.end && cols.end <= kw && groups.len() >= g * kw * GROUP_ROWS);
    assert!(x.iter().all(|x| x.len() >= cols.len()));
    let w = groups[cols.start * GROUP_ROWS..].as_ptr();
    let xp: [*const f32; TOKENS] = std::array::from_fn(|i| x.get(i).map_or(w, |x| x.as_ptr()));
    let mut op = [std::ptr::null_mut(); TOKENS];
    for (p, o) in op.iter_mut().zip(out.iter_mut()) {
        *p = o.as_mut_ptr();
    }
    let n = cols.len();
    macro_rules! call {
        ($($t:literal)*) => {
            match t {
                $($t => {
                    let x: [*const f32; $t] = std::array::from_fn(|i| xp[i]);
                    for gi in 0..g {
                        let o: [*mut f32; $t] =
                            std::array::from_fn(|i| op[i].wrapping_add(GROUP_ROWS * gi));
                        let rows = (rows - GROUP_ROWS * gi).min(GROUP_ROWS);
                        // SAFETY: the token proves the features; the checks above bound every
                        // read (16 · n weights of group gi, n values of each token) and write
                        // (this group's rows of each token).
                        unsafe { tile_avx2::<$t>(w.add(gi * kw * GROUP_ROWS), x, n, o, rows, add) }
                    }
                })*
                _ => unreachable!("checked above"),
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
    // Lanes `i` of each half with `i + 8 · half < rows`.
    let lane = |half: usize| {
        let valid = rows.saturating_sub(8 * half).min(8) as i32;
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(valid),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    };
    let masks = [lane(0), lane(1)];
    for (t, &o) in out.iter().enumerate() {
        for (half, &mask) in masks.iter().enumerate() {
            // SAFETY: lanes past `rows` are masked off, the rest of `out[t]` (the caller's
            // promise).
            unsafe {
                let p = o.add(8 * half);
                let v = if add {
                    _mm256_add_ps(_mm256_maskload_ps(p, mask), acc[half][t])
                } else {
                    acc[half][t]
                };
                _mm256_maskstore_ps(p, mask, v);
            }
        }
    }
}
