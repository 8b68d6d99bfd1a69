//! AVX2 K-quant kernels: SIMD unpacking of every K-quant super-block into the common form of
//! `unpack.rs`, and the dot products of an unpacked row with the Q8_K activations of `T` tokens
//! (each super-block unpacked once for all of them).
//!
//! Per 32 values: `maddubs(u, a)` (u ≤ 63 and |a| ≤ 128 keep each pair within ±16128, no
//! saturation), then `madd` by the scales of the two 16-value sub-blocks; the offset and min
//! corrections come from the activations' `bsums` in one more `madd` each. Every integer is
//! exact; per (row, token) the `f32` work is one FMA of the eight lane sums per super-block (and
//! one for the mins), the same whatever `T` is, so results do not depend on the batch.
//!
//! Reached only through the dispatchers of `super`, which hold the CPU-feature proof.

use std::arch::x86_64::*;

use super::layout::{f16_at, q2_k, q3_k, q4_k, q5_k, q6_k, scales_mins_k4, scales_q3_k};
use super::unpack::Unpacked;
use super::BlockQ8K;

/// Const-generic names of the K-quant types.
pub(crate) const Q2: u8 = 2;
pub(crate) const Q3: u8 = 3;
pub(crate) const Q4: u8 = 4;
pub(crate) const Q5: u8 = 5;
pub(crate) const Q6: u8 = 6;

/// Block bytes of a const-generic type.
pub(crate) const fn block_bytes(ty: u8) -> usize {
    match ty {
        Q2 => q2_k::BYTES,
        Q3 => q3_k::BYTES,
        Q4 => q4_k::BYTES,
        Q5 => q5_k::BYTES,
        _ => q6_k::BYTES,
    }
}

/// Whether a const-generic type has an offset (`k ≠ 0`) / mins.
pub(crate) const fn has_offset(ty: u8) -> bool {
    matches!(ty, Q3 | Q6)
}
pub(crate) const fn has_mins(ty: u8) -> bool {
    matches!(ty, Q2 | Q4 | Q5)
}

/// 32 bytes at `b[at..at + 32]`.
///
/// # Safety
/// AVX2 available (the range is bounds-checked).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn load32(b: &[u8], at: usize) -> __m256i {
    let s = &b[at..at + 32];
    // SAFETY: `s` is 32 readable bytes; unaligned load.
    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
}

/// 16 bytes at `b[at..at + 16]`.
///
/// # Safety
/// AVX2 available (the range is bounds-checked).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load16(b: &[u8], at: usize) -> __m128i {
    let s = &b[at..at + 16];
    // SAFETY: `s` is 16 readable bytes; unaligned load.
    unsafe { _mm_loadu_si128(s.as_ptr().cast()) }
}

/// Stores `v` at `out[at..at + 32]`.
///
/// # Safety
/// AVX2 available (the range is bounds-checked).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store32(out: &mut [u8], at: usize, v: __m256i) {
    let s = &mut out[at..at + 32];
    // SAFETY: `s` is 32 writable bytes; unaligned store.
    unsafe { _mm256_storeu_si256(s.as_mut_ptr().cast(), v) }
}

/// Stores 16 i16 lanes into `out`.
///
/// # Safety
/// AVX2 available.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store_i16(out: &mut [i16; 16], v: __m256i) {
    // SAFETY: `out` is 32 writable bytes; unaligned store.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) }
}

/// `v >> n` in each 16-bit lane, for a run-time `n`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn srl16(v: __m256i, n: i32) -> __m256i {
    _mm256_srl_epi16(v, _mm_cvtsi32_si128(n))
}

/// Unpacks block `x` of type `TY` into `out` (twin: `unpack::unpack_scalar`).
///
/// # Safety
/// AVX2 available; `x` holds one whole block (lengths are bounds-checked).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn unpack<const TY: u8>(x: &[u8], out: &mut Unpacked) {
    let x = &x[..block_bytes(TY)];
    let m4 = _mm256_set1_epi8(0xF);
    let m3 = _mm256_set1_epi8(3);
    let one = _mm256_set1_epi8(1);
    // SAFETY: every load and store goes through the bounds-checked helpers above.
    unsafe {
        match TY {
            Q2 => {
                let sc = load16(x, q2_k::SCALES);
                let low = _mm_and_si128(sc, _mm_set1_epi8(0xF));
                _mm_storeu_si128(out.sc.as_mut_ptr().cast(), low);
                let high = _mm_and_si128(_mm_srli_epi16::<4>(sc), _mm_set1_epi8(0xF));
                store_i16(&mut out.mn, _mm256_cvtepu8_epi16(high));
                store_i16(&mut out.sck, _mm256_setzero_si256());
                for c in 0..2 {
                    let q2 = load32(x, q2_k::QS + 32 * c);
                    for s in 0..4 {
                        let u = _mm256_and_si256(srl16(q2, 2 * s as i32), m3);
                        store32(&mut out.u, 128 * c + 32 * s, u);
                    }
                }
                out.d = f16_at(x, q2_k::D);
                out.dmin = f16_at(x, q2_k::DMIN);
            }
            Q3 => {
                let sc = scales_q3_k(&x[q3_k::SCALES..q3_k::SCALES + 12]);
                let sc = _mm_sub_epi8(_mm_loadu_si128(sc.as_ptr().cast()), _mm_set1_epi8(32));
                _mm_storeu_si128(out.sc.as_mut_ptr().cast(), sc);
                store_i16(
                    &mut out.sck,
                    _mm256_slli_epi16::<2>(_mm256_cvtepi8_epi16(sc)),
                );
                store_i16(&mut out.mn, _mm256_setzero_si256());
                let hm = load32(x, q3_k::HMASK);
                for c in 0..2 {
                    let q3 = load32(x, q3_k::QS + 32 * c);
                    for s in 0..4 {
                        let low = _mm256_and_si256(srl16(q3, 2 * s as i32), m3);
                        let high = _mm256_and_si256(srl16(hm, (4 * c + s) as i32), one);
                        let u = _mm256_or_si256(low, _mm256_slli_epi16::<2>(high));
                        store32(&mut out.u, 128 * c + 32 * s, u);
                    }
                }
                out.d = f16_at(x, q3_k::D);
                out.dmin = 0.0;
            }
            Q4 | Q5 => {
                let (scales_at, qs_at) = if TY == Q4 {
                    (q4_k::SCALES, q4_k::QS)
                } else {
                    (q5_k::SCALES, q5_k::QS)
                };
                let (scales, mins) = scales_mins_k4(&x[scales_at..scales_at + 12]);
                let s8 = _mm_set_epi64x(0, u64::from_le_bytes(scales) as i64);
                _mm_storeu_si128(out.sc.as_mut_ptr().cast(), _mm_unpacklo_epi8(s8, s8));
                let m8 = _mm_set_epi64x(0, u64::from_le_bytes(mins) as i64);
                let m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
                store_i16(&mut out.mn, m16);
                store_i16(&mut out.sck, _mm256_setzero_si256());
                let hbits = if TY == Q5 {
                    load32(x, q5_k::QH)
                } else {
                    _mm256_setzero_si256()
                };
                for c in 0..4 {
                    let q = load32(x, qs_at + 32 * c);
                    let mut lo = _mm256_and_si256(q, m4);
                    let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                    if TY == Q5 {
                        let hl = _mm256_and_si256(srl16(hbits, 2 * c as i32), one);
                        let hh = _mm256_and_si256(srl16(hbits, 2 * c as i32 + 1), one);
                        lo = _mm256_or_si256(lo, _mm256_slli_epi16::<4>(hl));
                        hi = _mm256_or_si256(hi, _mm256_slli_epi16::<4>(hh));
                    }
                    store32(&mut out.u, 64 * c, lo);
                    store32(&mut out.u, 64 * c + 32, hi);
                }
                out.d = f16_at(x, q4_k::D);
                out.dmin = f16_at(x, q4_k::DMIN);
            }
            _ => {
                let sc = load16(x, q6_k::SCALES);
                _mm_storeu_si128(out.sc.as_mut_ptr().cast(), sc);
                store_i16(
                    &mut out.sck,
                    _mm256_slli_epi16::<5>(_mm256_cvtepi8_epi16(sc)),
                );
                store_i16(&mut out.mn, _mm256_setzero_si256());
                for c in 0..2 {
                    let ql1 = load32(x, q6_k::QL + 64 * c);
                    let ql2 = load32(x, q6_k::QL + 64 * c + 32);
                    let qh = load32(x, q6_k::QH + 32 * c);
                    let high = |s: i32| _mm256_slli_epi16::<4>(_mm256_and_si256(srl16(qh, s), m3));
                    let nib_hi = |v: __m256i| _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
                    let u = [
                        _mm256_or_si256(_mm256_and_si256(ql1, m4), high(0)),
                        _mm256_or_si256(_mm256_and_si256(ql2, m4), high(2)),
                        _mm256_or_si256(nib_hi(ql1), high(4)),
                        _mm256_or_si256(nib_hi(ql2), high(6)),
                    ];
                    for (s, &v) in u.iter().enumerate() {
                        store32(&mut out.u, 128 * c + 32 * s, v);
                    }
                }
                out.d = f16_at(x, q6_k::D);
                out.dmin = 0.0;
            }
        }
    }
}

/// Sum of the eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_ps(v: __m256) -> f32 {
    crate::avx2_dot::hsum_ps(v)
}

/// Integer lanes of one unpacked block against one Q8_K block: eight lanes summing to `S`, and
/// (for types with mins) eight lanes summing to `M` (see `unpack.rs`).
///
/// # Safety
/// AVX2 available.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn block_lanes<const TY: u8>(
    w: &Unpacked,
    scales: &[__m256i; 8],
    y: &BlockQ8K,
) -> (__m256i, __m256i) {
    // SAFETY: loads of whole fixed-size arrays (`u` 256 bytes, `qs` 256, `bsums`/`sck`/`mn` 32).
    unsafe {
        let mut s = _mm256_setzero_si256();
        for (c, sc) in scales.iter().enumerate() {
            let u = _mm256_loadu_si256(w.u.as_ptr().add(32 * c).cast());
            let a = _mm256_loadu_si256(y.qs.as_ptr().add(32 * c).cast());
            s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), *sc));
        }
        let bs = _mm256_loadu_si256(y.bsums.as_ptr().cast());
        if has_offset(TY) {
            let sck = _mm256_loadu_si256(w.sck.as_ptr().cast());
            s = _mm256_sub_epi32(s, _mm256_madd_epi16(bs, sck));
        }
        let m = if has_mins(TY) {
            _mm256_madd_epi16(bs, _mm256_loadu_si256(w.mn.as_ptr().cast()))
        } else {
            _mm256_setzero_si256()
        };
        (s, m)
    }
}

/// The scales of `w` as i16 lanes for each 32 values: sub-block `2c` in lanes 0..8, `2c + 1` in
/// lanes 8..16.
///
/// # Safety
/// AVX2 available.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn scale_lanes(w: &Unpacked) -> [__m256i; 8] {
    // SAFETY: `sc` is 16 readable bytes.
    let sc = unsafe { _mm_loadu_si128(w.sc.as_ptr().cast()) };
    std::array::from_fn(|c| {
        let (lo, hi) = (2 * c as i64, 2 * c as i64 + 1);
        let pick = _mm_set_epi64x(hi * 0x0101_0101_0101_0101, lo * 0x0101_0101_0101_0101);
        _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, pick))
    })
}

/// `row · act[t]` for `T` tokens (`row`: `nb` blocks of `TY`; each `act[t]`: `nb` blocks),
/// each block unpacked once for all tokens.
///
/// # Safety
/// The CPU features of this module available (lengths are bounds-checked).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_tokens<const TY: u8, const T: usize>(
    row: &[u8],
    act: [&[BlockQ8K]; T],
) -> [f32; T] {
    let mut acc = [_mm256_setzero_ps(); T];
    let mut acc_m = [_mm256_setzero_ps(); T];
    let mut w = Unpacked::ZERO;
    for (b, x) in row.chunks_exact(block_bytes(TY)).enumerate() {
        // SAFETY: the CPU features are the caller's; `x` is one whole block.
        unsafe {
            unpack::<TY>(x, &mut w);
            accumulate::<TY, T>(&w, b, &act, &mut acc, &mut acc_m);
        }
    }
    std::array::from_fn(|t| hsum_ps(acc[t]) - hsum_ps(acc_m[t]))
}

/// [`dot_tokens`] over blocks already unpacked (`row[b]` against `act[t][b]`): bitwise the
/// same results.
///
/// # Safety
/// The CPU features of this module available (lengths are bounds-checked).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_unpacked_tokens<const TY: u8, const T: usize>(
    row: &[Unpacked],
    act: [&[BlockQ8K]; T],
) -> [f32; T] {
    let mut acc = [_mm256_setzero_ps(); T];
    let mut acc_m = [_mm256_setzero_ps(); T];
    for (b, w) in row.iter().enumerate() {
        // SAFETY: the CPU features are the caller's.
        unsafe { accumulate::<TY, T>(w, b, &act, &mut acc, &mut acc_m) };
    }
    std::array::from_fn(|t| hsum_ps(acc[t]) - hsum_ps(acc_m[t]))
}

/// Adds block `b` of every token: `acc += (d_w · d_a) · S`, `acc_m += (dmin_w · d_a) · M`, in
/// lanes.
///
/// # Safety
/// The CPU features of this module available.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn accumulate<const TY: u8, const T: usize>(
    w: &Unpacked,
    b: usize,
    act: &[&[BlockQ8K]; T],
    acc: &mut [__m256; T],
    acc_m: &mut [__m256; T],
) {
    // SAFETY: the CPU features are the caller's.
    unsafe {
        let scales = scale_lanes(w);
        for t in 0..T {
            let y = &act[t][b];
            let (s, m) = block_lanes::<TY>(w, &scales, y);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(y.d * w.d), _mm256_cvtepi32_ps(s), acc[t]);
            if has_mins(TY) {
                let dm = _mm256_set1_ps(y.d * w.dmin);
                acc_m[t] = _mm256_fmadd_ps(dm, _mm256_cvtepi32_ps(m), acc_m[t]);
            }
        }
    }
}

/// Horizontal sum of eight i32 lanes.
#[cfg(test)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_i32(v: __m256i) -> i32 {
    let mut lanes = [0i32; 8];
    // SAFETY: `lanes` is 32 writable bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) };
    lanes.iter().sum()
}
