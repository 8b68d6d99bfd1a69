//! AVX-512 (F/BW/VL/VNNI) dot products of one stored weight row with one activation row (the
//! decode kernels); twins of `dot_scalar.rs`.
//!
//! Float rows: 16 lanes, four accumulators, masked loads for the tail. Q8_0 / Q4_0 rows: one
//! 256-bit VNNI `vpdpbusd` (unsigned × signed bytes, four products per int32 lane) per block:
//! - Q8_0: the weights offset to unsigned, `w + 128` (an xor), against the signed activations,
//!   with the accumulator started at the activation's lane correction `−128 · Σa`;
//! - Q4_0: the nibbles (already unsigned) against the activations, started at `−8 · Σa`.
//!
//! Both leave the exact `Σ w·a` of each 4-value group in its lane, which is then scaled by
//! `d_w · d_a` and accumulated in `f32`. (Two blocks per 512-bit vector would halve the
//! conversions but cost more than that in shuffles and scale patterns; 256-bit runs on three
//! ports, 512-bit on two.)

use std::arch::x86_64::*;

use crate::act_q8::{LANES, QK};
use crate::avx2_dot::{block_scale, float_bytes, nibbles, F16, F32, PREFETCH_BYTES};
use crate::cpu::Avx512;
use crate::dot_scalar::{Q4_0_BYTES, Q8_0_BYTES};
use crate::f16_table::f16_table;

/// Float row (`F32`, `F16` or `BF16` bytes, see `avx2_dot.rs`) · `x`.
pub(crate) fn dot_float<const KIND: u8>(_: Avx512, w: &[u8], x: &[f32]) -> f32 {
    assert_eq!(w.len(), float_bytes(KIND) * x.len());
    // SAFETY: the token proves the features; `w` holds `x.len()` values.
    unsafe { dot_float_avx512::<KIND>(w.as_ptr(), x) }
}

/// Float row · each of the token rows `xs` (up to [`FLOAT_TOKENS`]), each result bitwise
/// [`dot_float`]'s for that token: the row is read and converted once for all of them (the
/// prefetch too), each token keeping its own four accumulators in the same order.
pub(crate) fn dot_float_tokens<const KIND: u8>(
    _: Avx512,
    w: &[u8],
    xs: &[&[f32]],
    out: &mut [f32],
) {
    assert!(xs.len() == out.len() && !xs.is_empty() && xs.len() <= FLOAT_TOKENS);
    let n = xs[0].len();
    assert!(xs.iter().all(|x| x.len() == n) && w.len() == float_bytes(KIND) * n);
    let p: [*const f32; FLOAT_TOKENS] = std::array::from_fn(|t| xs[t.min(xs.len() - 1)].as_ptr());
    // SAFETY: the token proves the features; every row holds `n` values.
    unsafe {
        match xs.len() {
            1 => out.copy_from_slice(&dot_float_tokens_avx512::<KIND, 1>(w.as_ptr(), n, [p[0]])),
            2 => out.copy_from_slice(&dot_float_tokens_avx512::<KIND, 2>(
                w.as_ptr(),
                n,
                [p[0], p[1]],
            )),
            3 => out.copy_from_slice(&dot_float_tokens_avx512::<KIND, 3>(
                w.as_ptr(),
                n,
                [p[0], p[1], p[2]],
            )),
            _ => out.copy_from_slice(&dot_float_tokens_avx512::<KIND, 4>(w.as_ptr(), n, p)),
        }
    }
}

/// Tokens of one call of [`dot_float_tokens`]: four accumulators each, sixteen in all.
pub(crate) const FLOAT_TOKENS: usize = 4;

/// Float row · `T` token rows of `n` values: 16 lanes, four accumulators per token, masked
/// loads for the tail; the row prefetched [`PREFETCH_BYTES`] ahead and each 16 values loaded
/// and converted once for all tokens.
///
/// # Safety
/// AVX-512 F/BW/VL available; `w` holds `n` values of `KIND`, each `x[t]` `n` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_float_tokens_avx512<const KIND: u8, const T: usize>(
    w: *const u8,
    n: usize,
    x: [*const f32; T],
) -> [f32; T] {
    let all = !0 as __mmask16;
    let mut acc = [[_mm512_setzero_ps(); 4]; T];
    let mut i = 0;
    // SAFETY (all loads): indices (or masked lanes) stay below n, which every operand holds.
    unsafe {
        while i + 64 <= n {
            let ahead = w.wrapping_add(i * float_bytes(KIND) + PREFETCH_BYTES);
            crate::stream::prefetch_stream(ahead as usize, float_bytes(KIND));
            for j in 0..4 {
                let wv = load16::<KIND>(w, i + 16 * j, all);
                for (a, xt) in acc.iter_mut().zip(x) {
                    let xv = _mm512_loadu_ps(xt.add(i + 16 * j));
                    a[j] = _mm512_fmadd_ps(wv, xv, a[j]);
                }
            }
            i += 64;
        }
        while i < n {
            let m = if n - i >= 16 {
                all
            } else {
                (1u16 << (n - i)) - 1
            };
            let wv = load16::<KIND>(w, i, m);
            for (a, xt) in acc.iter_mut().zip(x) {
                let xv = _mm512_maskz_loadu_ps(m, xt.add(i));
                a[0] = _mm512_fmadd_ps(wv, xv, a[0]);
            }
            i += 16;
        }
    }
    acc.map(|a| {
        let s = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
        _mm512_reduce_add_ps(s)
    })
}

/// Q8_0 row · Q8_0 activations with lane corrections for `k = 128`.
pub(crate) fn dot_q8_0(_: Avx512, w: &[u8], qs: &[i8], d: &[f32], corr: &[i32]) -> f32 {
    let nb = d.len();
    assert!(w.len() == nb * Q8_0_BYTES && qs.len() == nb * QK && corr.len() == nb * LANES);
    // SAFETY: the token proves the features; lengths checked above.
    unsafe {
        dot_quant_avx512::<false>(
            f16_table(),
            w.as_ptr(),
            qs.as_ptr(),
            d.as_ptr(),
            corr.as_ptr(),
            nb,
        )
    }
}

/// Q4_0 row · Q8_0 activations with lane corrections for `k = 8`.
pub(crate) fn dot_q4_0(_: Avx512, w: &[u8], qs: &[i8], d: &[f32], corr: &[i32]) -> f32 {
    let nb = d.len();
    assert!(w.len() == nb * Q4_0_BYTES && qs.len() == nb * QK && corr.len() == nb * LANES);
    // SAFETY: the token proves the features; lengths checked above.
    unsafe {
        dot_quant_avx512::<true>(
            f16_table(),
            w.as_ptr(),
            qs.as_ptr(),
            d.as_ptr(),
            corr.as_ptr(),
            nb,
        )
    }
}

/// Sixteen weights from value index `i` as `f32`, the lanes past `mask` zero.
///
/// # Safety
/// AVX-512 F/BW/VL available; the values selected by `mask` readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn load16<const KIND: u8>(w: *const u8, i: usize, mask: __mmask16) -> __m512 {
    // SAFETY: masked loads touch only the selected, readable values.
    unsafe {
        match KIND {
            F32 => _mm512_maskz_loadu_ps(mask, w.add(4 * i) as *const f32),
            F16 => _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, w.add(2 * i) as *const i16)),
            _ => {
                let h = _mm256_maskz_loadu_epi16(mask, w.add(2 * i) as *const i16);
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
            }
        }
    }
}

/// # Safety
/// AVX-512 F/BW/VL available; `w` holds `x.len()` values of `KIND`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_float_avx512<const KIND: u8>(w: *const u8, x: &[f32]) -> f32 {
    // SAFETY: the caller's promise.
    unsafe { dot_float_tokens_avx512::<KIND, 1>(w, x.len(), [x.as_ptr()])[0] }
}

/// `acc + lanes(block b) · d_w · d_a` for a single block: the token's activations, lane
/// corrections and scale of block `b` loaded, then [`row_step`].
///
/// # Safety
/// The features available; block `b` of `w`, its activations, corrections and scale readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn block_step<const Q4: bool>(
    table: &[f32; 1 << 16],
    w: *const u8,
    qs: *const i8,
    d: *const f32,
    corr: *const i32,
    b: usize,
    acc: __m256,
) -> __m256 {
    // SAFETY: the caller guarantees the reads.
    unsafe {
        let (av, c, da) = token_block(qs, d, corr, b);
        row_step::<Q4>(table, w, av, c, da, b, acc)
    }
}

/// Block `b` of the token: its 32 activations, 8 lane corrections and scale.
///
/// # Safety
/// AVX-512 F/VL available; block `b` of `qs`, `corr` and `d` readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn token_block(
    qs: *const i8,
    d: *const f32,
    corr: *const i32,
    b: usize,
) -> (__m256i, __m256i, f32) {
    // SAFETY: the caller guarantees the reads.
    unsafe {
        (
            _mm256_loadu_si256(qs.add(b * QK) as *const __m256i),
            _mm256_loadu_si256(corr.add(b * LANES) as *const __m256i),
            *d.add(b),
        )
    }
}

/// # Safety
/// The features available; `w` holds `nb` blocks, `qs` `32·nb` values, `d` `nb` scales and
/// `corr` `8·nb` lane corrections.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_quant_avx512<const Q4: bool>(
    table: &[f32; 1 << 16],
    w: *const u8,
    qs: *const i8,
    d: *const f32,
    corr: *const i32,
    nb: usize,
) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut b = 0;
    // SAFETY (whole loop): b < nb, so block b, its activations and corrections are in bounds.
    unsafe {
        let bytes = if Q4 { Q4_0_BYTES } else { Q8_0_BYTES };
        let pf = crate::par::quant_rows_prefetch_bytes();
        while b + 4 <= nb {
            // The weights stream from memory: ask for them `pf` bytes ahead (a hint, never
            // dereferenced, so running past the row is harmless).
            let ahead = w.wrapping_add(b * bytes + pf);
            crate::stream::prefetch_stream(ahead as usize, (4 * bytes).div_ceil(64));
            acc[0] = block_step::<Q4>(table, w, qs, d, corr, b, acc[0]);
            acc[1] = block_step::<Q4>(table, w, qs, d, corr, b + 1, acc[1]);
            acc[2] = block_step::<Q4>(table, w, qs, d, corr, b + 2, acc[2]);
            acc[3] = block_step::<Q4>(table, w, qs, d, corr, b + 3, acc[3]);
            b += 4;
        }
        while b < nb {
            acc[0] = block_step::<Q4>(table, w, qs, d, corr, b, acc[0]);
            b += 1;
        }
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    crate::avx2_dot::hsum_ps(s)
}

/// Rows at a time in [`dot_quant_rows`].
pub(crate) const ROWS: usize = 4;

/// Four Q8_0 / Q4_0 rows · one token of Q8_0 activations with lane corrections: each row gets
/// exactly the operations of [`dot_q8_0`] / [`dot_q4_0`] (the same four accumulators, blocks and
/// final sum), so its result is bitwise the one-row result; the token's activations, corrections
/// and scales are loaded once for the four rows.
pub(crate) fn dot_quant_rows(
    _: Avx512,
    q4: bool,
    w: [&[u8]; ROWS],
    qs: &[i8],
    d: &[f32],
    corr: &[i32],
) -> [f32; ROWS] {
    let nb = d.len();
    let bytes = if q4 { Q4_0_BYTES } else { Q8_0_BYTES };
    assert!(w.iter().all(|r| r.len() == nb * bytes));
    assert!(qs.len() == nb * QK && corr.len() == nb * LANES);
    let w = w.map(|r| r.as_ptr());
    let kernel = if q4 {
        dot_quant_rows_avx512::<true>
    } else {
        dot_quant_rows_avx512::<false>
    };
    // SAFETY: the token proves the features; lengths checked above.
    unsafe { kernel(f16_table(), w, qs.as_ptr(), d.as_ptr(), corr.as_ptr(), nb) }
}

/// `acc + lanes · d_w · d_a` of block `b` of row `w`, the token's block given: one VNNI dot
/// product leaves the exact `Σ w·a` of each 4-value group in its lane.
///
/// # Safety
/// The features available; block `b` of `w` readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn row_step<const Q4: bool>(
    table: &[f32; 1 << 16],
    w: *const u8,
    av: __m256i,
    c: __m256i,
    da: f32,
    b: usize,
    acc: __m256,
) -> __m256 {
    // SAFETY: the caller guarantees the reads.
    unsafe {
        let blk = w.add(b * if Q4 { Q4_0_BYTES } else { Q8_0_BYTES });
        let wu = if Q4 {
            nibbles(blk.add(2))
        } else {
            let wv = _mm256_loadu_si256(blk.add(2) as *const __m256i);
            _mm256_xor_si256(wv, _mm256_set1_epi8(-128))
        };
        let lanes = _mm256_dpbusd_epi32(c, wu, av);
        let scale = _mm256_set1_ps(block_scale(table, blk) * da);
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), scale, acc)
    }
}

/// # Safety
/// The features available; each `w[r]` holds `nb` blocks, `qs` `32·nb` values, `d` `nb` scales
/// and `corr` `8·nb` lane corrections.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_quant_rows_avx512<const Q4: bool>(
    table: &[f32; 1 << 16],
    w: [*const u8; ROWS],
    qs: *const i8,
    d: *const f32,
    corr: *const i32,
    nb: usize,
) -> [f32; ROWS] {
    let mut acc = [[_mm256_setzero_ps(); 4]; ROWS];
    let mut b = 0;
    // SAFETY (whole loop): b < nb, so block b of every row, its activations and corrections are
    // in bounds; prefetches are hints, never dereferenced.
    unsafe {
        let bytes = if Q4 { Q4_0_BYTES } else { Q8_0_BYTES };
        let load = |b: usize| token_block(qs, d, corr, b);
        let pf = crate::par::quant_rows_prefetch_bytes();
        while b + 4 <= nb {
            for &row in &w {
                let ahead = row.wrapping_add(b * bytes + pf);
                crate::stream::prefetch_stream(ahead as usize, (4 * bytes).div_ceil(64));
            }
            // Block b + j of every row: the accumulators go down the columns of `acc`.
            #[allow(clippy::needless_range_loop)]
            for j in 0..4 {
                let (av, c, da) = load(b + j);
                for (r, &row) in w.iter().enumerate() {
                    acc[r][j] = row_step::<Q4>(table, row, av, c, da, b + j, acc[r][j]);
                }
            }
            b += 4;
        }
        while b < nb {
            let (av, c, da) = load(b);
            for (r, &row) in w.iter().enumerate() {
                acc[r][0] = row_step::<Q4>(table, row, av, c, da, b, acc[r][0]);
            }
            b += 1;
        }
    }
    acc.map(|a| {
        let s = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
        crate::avx2_dot::hsum_ps(s)
    })
}
