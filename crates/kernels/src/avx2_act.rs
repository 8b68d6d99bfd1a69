//! AVX2 twin of [`crate::act_q8::quantize_row_scalar`]: the same arithmetic lane by lane (max
//! of magnitudes, the scalar `d`/`id` of [`crate::act_q8::block_scale`], `x · id` rounded half away from zero),
//! so results are bit-identical.

use std::arch::x86_64::*;

use crate::act_q8::{LANES, QK};
use crate::cpu::Avx2;

/// Quantizes one row; see [`crate::act_q8::quantize_row`].
pub(crate) fn quantize_row(
    _: Avx2,
    x: &[f32],
    qs: &mut [i8],
    d: &mut [f32],
    sums: &mut [i32],
    lc: Option<(&mut [i32], i32)>,
) {
    let nb = x.len() / QK;
    assert!(x.len() == nb * QK && qs.len() == x.len() && d.len() == nb && sums.len() == nb);
    if let Some((lc, _)) = &lc {
        assert_eq!(lc.len(), nb * LANES);
    }
    // SAFETY: the token proves AVX2/FMA/F16C; every length was checked above.
    unsafe { quantize_row_avx2(x, qs, d, sums, lc) }
}

/// # Safety
/// AVX2, FMA and F16C must be available; `qs.len() == x.len()`, `d.len() == sums.len() ==
/// x.len() / 32`, and the lane-correction slice (if any) holds 8 values per block.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_row_avx2(
    x: &[f32],
    qs: &mut [i8],
    d: &mut [f32],
    sums: &mut [i32],
    mut lc: Option<(&mut [i32], i32)>,
) {
    let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for b in 0..x.len() / QK {
        // SAFETY: block b lies inside x (32 values), qs (32 bytes) and lc (8 values).
        let v: [__m256; 4] = unsafe {
            let p = x.as_ptr().add(b * QK);
            [
                _mm256_loadu_ps(p),
                _mm256_loadu_ps(p.add(8)),
                _mm256_loadu_ps(p.add(16)),
                _mm256_loadu_ps(p.add(24)),
            ]
        };
        let (db, id) = block_scale(max_abs(v));
        d[b] = db;
        let idv = _mm256_set1_ps(id);
        let q = [
            round_half_away(_mm256_mul_ps(v[0], idv)),
            round_half_away(_mm256_mul_ps(v[1], idv)),
            round_half_away(_mm256_mul_ps(v[2], idv)),
            round_half_away(_mm256_mul_ps(v[3], idv)),
        ];
        // i32 → i8 (no saturation happens: |q| ≤ 127); packs interleave 128-bit halves.
        let packed = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let packed = _mm256_permutevar8x32_epi32(packed, perm);
        // Sums of each 4-value group, in order.
        let lanes = _mm256_permutevar8x32_epi32(
            _mm256_hadd_epi32(_mm256_hadd_epi32(q[0], q[1]), _mm256_hadd_epi32(q[2], q[3])),
            perm,
        );
        sums[b] = hsum_epi32(lanes);
        // SAFETY: see above.
        unsafe {
            _mm256_storeu_si256(qs.as_mut_ptr().add(b * QK) as *mut __m256i, packed);
            if let Some((lc, k)) = lc.as_mut() {
                let corr = _mm256_mullo_epi32(lanes, _mm256_set1_epi32(-*k));
                _mm256_storeu_si256(lc.as_mut_ptr().add(b * LANES) as *mut __m256i, corr);
            }
        }
    }
}

/// [`crate::act_q8::block_scale`] with the f16 rounding of `d` done by F16C in line (the same
/// round-to-nearest-even, so the same bits; the generic conversion is a call per block).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn block_scale(amax: f32) -> (f32, f32) {
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let h = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(d));
    (_mm_cvtss_f32(_mm_cvtph_ps(h)), id)
}

/// `max |v|` over 32 values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn max_abs(v: [__m256; 4]) -> f32 {
    let sign = _mm256_set1_ps(-0.0);
    let m = _mm256_max_ps(
        _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
        _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])),
    );
    let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)))
}

/// C's `roundf` on each lane (|v| < 2³¹), as integers.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round_half_away(v: __m256) -> __m256i {
    let sign = _mm256_set1_ps(-0.0);
    let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
    let frac = _mm256_sub_ps(v, t); // exact
    let away = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_andnot_ps(sign, frac), _mm256_set1_ps(0.5));
    let step = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0)); // ±1, v's sign
    _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(away, step)))
}

/// Sum of the eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}
