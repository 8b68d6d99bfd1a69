//! AVX2 + FMA dot products of Q4_K, Q5_K and Q6_K rows with Q8_K activations, after the
//! `__AVX2__` branches of ggml's `ggml_vec_dot_q{4,5,6}_K_q8_K` (ggml-cpu/arch/x86/quants.c).
//!
//! The integer sums of every super-block are exactly those of the scalar versions in
//! [`super::dot`]; only the `f32` accumulation order differs (8 lanes with FMA). The functions
//! here are private to the crate and reached only through the safe dispatchers in
//! [`super`], which check the CPU features first.

use std::arch::x86_64::*;

use super::layout::{f16_at, q4_k, q5_k, q6_k, scales_mins_k4};
use super::BlockQ8K;

/// Whether this CPU can run the functions of this module.
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// Sum of the 8 lanes of `x`, in ggml's `hsum_float_8` order.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum_f32x8(x: __m256) -> f32 {
    // SAFETY: register-only intrinsics; the caller guarantees the CPU features. (The block is
    // required by Rust versions before 1.87, where these intrinsics were unsafe everywhere.)
    #[allow(unused_unsafe)]
    unsafe {
        let mut res = _mm256_extractf128_ps::<1>(x);
        res = _mm_add_ps(res, _mm256_castps256_ps128(x));
        res = _mm_add_ps(res, _mm_movehl_ps(res, res));
        res = _mm_add_ss(res, _mm_movehdup_ps(res));
        _mm_cvtss_f32(res)
    }
}

/// Loads 32 bytes from `b[at..at + 32]`.
///
/// # Safety
/// The CPU must support AVX2; the range is bounds-checked.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load32(b: &[u8], at: usize) -> __m256i {
    let s = &b[at..at + 32];
    // SAFETY: `s` is exactly 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
}

/// Loads Q8_K quants `qs[at..at + 32]`.
///
/// # Safety
/// The CPU must support AVX2; the range is bounds-checked.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load32_i8(q: &[i8], at: usize) -> __m256i {
    let s = &q[at..at + 32];
    // SAFETY: `s` is exactly 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
}

/// Integer sums of one Q4_K (`high` = `None`) or Q5_K (`high` = its `qh` plane) block:
/// 8 i32 lanes summing to Σ_j sc_j · Σ q·q8.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn k4_block_sumi(qs: &[u8], high: Option<&[u8]>, scales: &[u8; 8], y: &BlockQ8K) -> __m256i {
    // SAFETY: loads go through the bounds-checked helpers; the caller guarantees the CPU
    // features.
    unsafe {
        let m4 = _mm256_set1_epi8(0xF);
        let one = _mm256_set1_epi8(1);
        let hbits = match high {
            Some(qh) => load32(qh, 0),
            None => _mm256_setzero_si256(),
        };
        let mut sumi = _mm256_setzero_si256();
        for j in 0..4 {
            let scale_l = _mm256_set1_epi16(scales[2 * j] as i16);
            let scale_h = _mm256_set1_epi16(scales[2 * j + 1] as i16);
            let q4bits = load32(qs, 32 * j);
            let mut q4l = _mm256_and_si256(q4bits, m4);
            let mut q4h = _mm256_and_si256(_mm256_srli_epi16::<4>(q4bits), m4);
            if high.is_some() {
                // Bit 2j of qh[l] is the fifth bit of value l of the low nibbles of chunk j,
                // bit 2j + 1 that of the high nibbles. Shift it to bit 0 of each byte, then
                // to bit 4.
                let shift = _mm_cvtsi32_si128(2 * j as i32);
                let hl = _mm256_and_si256(_mm256_srl_epi16(hbits, shift), one);
                let shift1 = _mm_cvtsi32_si128(2 * j as i32 + 1);
                let hh = _mm256_and_si256(_mm256_srl_epi16(hbits, shift1), one);
                q4l = _mm256_or_si256(q4l, _mm256_slli_epi16::<4>(hl));
                q4h = _mm256_or_si256(q4h, _mm256_slli_epi16::<4>(hh));
            }
            let q8l = load32_i8(&y.qs, 64 * j);
            let q8h = load32_i8(&y.qs, 64 * j + 32);
            let p16l = _mm256_madd_epi16(scale_l, _mm256_maddubs_epi16(q4l, q8l));
            let p16h = _mm256_madd_epi16(scale_h, _mm256_maddubs_epi16(q4h, q8h));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16l, p16h));
        }
        sumi
    }
}

/// Σ_j bsums_j · mins_{j/2}, the min correction of a Q4_K / Q5_K block (exact integers).
#[inline]
fn mins_sum(y: &BlockQ8K, mins: &[u8; 8]) -> i32 {
    y.bsums
        .iter()
        .enumerate()
        .map(|(j, &b)| b as i32 * mins[j / 2] as i32)
        .sum()
}

/// Shared body of the Q4_K and Q5_K dots.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_k4(
    row: &[u8],
    act: &[BlockQ8K],
    block_bytes: usize,
    scales_at: usize,
    qs_at: usize,
    qh_at: Option<usize>,
) -> f32 {
    // SAFETY: the helpers bounds-check every load; the caller guarantees the CPU features.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut acc_m = 0f32;
        for (x, y) in row.chunks_exact(block_bytes).zip(act) {
            // Q4_K and Q5_K both start with f16 d, f16 dmin.
            let d = y.d * f16_at(x, q4_k::D);
            let dmin = y.d * f16_at(x, q4_k::DMIN);
            let (scales, mins) = scales_mins_k4(&x[scales_at..scales_at + 12]);
            acc_m -= dmin * mins_sum(y, &mins) as f32;
            let high = qh_at.map(|at| &x[at..at + 32]);
            let sumi = k4_block_sumi(&x[qs_at..qs_at + 128], high, &scales, y);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum_f32x8(acc) + acc_m
    }
}

/// Σ row·act for a Q4_K row.
///
/// # Safety
/// The CPU must support AVX2 and FMA (see [`available`]).
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn vec_dot_q4_k_q8_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    // SAFETY: same CPU features as this function.
    unsafe { dot_k4(row, act, q4_k::BYTES, q4_k::SCALES, q4_k::QS, None) }
}

/// Σ row·act for a Q5_K row.
///
/// # Safety
/// The CPU must support AVX2 and FMA (see [`available`]).
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn vec_dot_q5_k_q8_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    // SAFETY: same CPU features as this function.
    unsafe {
        dot_k4(
            row,
            act,
            q5_k::BYTES,
            q5_k::SCALES,
            q5_k::QS,
            Some(q5_k::QH),
        )
    }
}

/// The i8 scales of sub-blocks 2k (i16 lanes 0..8) and 2k + 1 (lanes 8..16) of the 32-value
/// chunk k of a Q6_K block, widened to i16.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn q6_k_scale_pair(sc: &[u8], k: usize) -> __m256i {
    let (lo, hi) = (sc[2 * k] as i8 as i16, sc[2 * k + 1] as i8 as i16);
    // SAFETY: register-only intrinsics; the caller guarantees the CPU features. (The block is
    // required by Rust versions before 1.87.)
    #[allow(unused_unsafe)]
    unsafe {
        _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo))
    }
}

/// Integer sums of one Q6_K block: 8 i32 lanes summing to Σ_j sc_j · Σ (q − 32)·q8.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn q6_k_block_sumi(x: &[u8], y: &BlockQ8K) -> __m256i {
    // SAFETY: loads go through the bounds-checked helpers; the caller guarantees the CPU
    // features.
    unsafe {
        let m4 = _mm256_set1_epi8(0xF);
        let m2 = _mm256_set1_epi8(3);
        let m32s = _mm256_set1_epi8(32);
        let sc = &x[q6_k::SCALES..q6_k::SCALES + 16];
        let mut sumi = _mm256_setzero_si256();
        for j in 0..2 {
            let q4bits1 = load32(x, q6_k::QL + 64 * j);
            let q4bits2 = load32(x, q6_k::QL + 64 * j + 32);
            let q4bits_h = load32(x, q6_k::QH + 32 * j);
            let q4h_0 = _mm256_slli_epi16::<4>(_mm256_and_si256(q4bits_h, m2));
            let q4h_1 =
                _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<2>(q4bits_h), m2));
            let q4h_2 =
                _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<4>(q4bits_h), m2));
            let q4h_3 =
                _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(q4bits_h), m2));
            let q = [
                _mm256_or_si256(_mm256_and_si256(q4bits1, m4), q4h_0),
                _mm256_or_si256(_mm256_and_si256(q4bits2, m4), q4h_1),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q4bits1), m4), q4h_2),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q4bits2), m4), q4h_3),
            ];
            for (k, &q) in q.iter().enumerate() {
                let q8 = load32_i8(&y.qs, 128 * j + 32 * k);
                // (q − 32)·q8 = q·q8 − 32·q8, both through the unsigned × signed multiply.
                let p16 =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(q, q8), _mm256_maddubs_epi16(m32s, q8));
                let scale = q6_k_scale_pair(sc, 4 * j + k);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale, p16));
            }
        }
        sumi
    }
}

/// Σ row·act for a Q6_K row.
///
/// # Safety
/// The CPU must support AVX2 and FMA (see [`available`]).
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn vec_dot_q6_k_q8_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    // SAFETY: register-only intrinsics plus the bounds-checked block helper; the caller
    // guarantees the CPU features.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for (x, y) in row.chunks_exact(q6_k::BYTES).zip(act) {
            let d = y.d * f16_at(x, q6_k::D);
            let sumi = q6_k_block_sumi(x, y);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum_f32x8(acc)
    }
}

/// Horizontal sum of 8 i32 lanes (tests only).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(test)]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum_i32x8(v: __m256i) -> i32 {
    let mut lanes = [0i32; 8];
    // SAFETY: `lanes` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) };
    lanes.iter().sum()
}

/// Integer sums of one block by the AVX2 kernels, `None` without AVX2 + FMA: (scale part, min
/// part) for Q4_K / Q5_K, (scale part, 0) for Q6_K.
#[cfg(test)]
pub(crate) fn block_ints(ty: crate::WeightType, x: &[u8], y: &BlockQ8K) -> Option<(i32, i32)> {
    use crate::WeightType;
    if !available() {
        return None;
    }
    // SAFETY: AVX2 and FMA were just detected.
    unsafe {
        Some(match ty {
            WeightType::Q4_K => {
                let (scales, mins) = scales_mins_k4(&x[q4_k::SCALES..q4_k::SCALES + 12]);
                let v = k4_block_sumi(&x[q4_k::QS..q4_k::QS + 128], None, &scales, y);
                (hsum_i32x8(v), mins_sum(y, &mins))
            }
            WeightType::Q5_K => {
                let (scales, mins) = scales_mins_k4(&x[q5_k::SCALES..q5_k::SCALES + 12]);
                let qh = &x[q5_k::QH..q5_k::QH + 32];
                let v = k4_block_sumi(&x[q5_k::QS..q5_k::QS + 128], Some(qh), &scales, y);
                (hsum_i32x8(v), mins_sum(y, &mins))
            }
            WeightType::Q6_K => (hsum_i32x8(q6_k_block_sumi(x, y)), 0),
            _ => return None,
        })
    }
}
