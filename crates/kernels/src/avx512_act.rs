//! AVX-512 twin of [`crate::act_q8::quantize_row_scalar`] followed by
//! [`crate::act_q8::interleave`]: one row of activations quantized to Q8_0 blocks straight into
//! the interleaved layout the tile and repacked-row kernels read. Each lane does the scalar
//! arithmetic (max of magnitudes, the scale and its inverse of [`crate::avx2_act`]'s
//! `block_scale`, `x · id` rounded half away from zero), so the bits are the scalar path's. A
//! block's 32 values take two registers; a group's 16 blocks, quantized into a natural-order
//! buffer, are gathered step by step into the interleaved order, and each step's 64 bytes
//! also give the 16 blocks' sums one `vpdpbusd` at a time.

use std::arch::x86_64::*;

use crate::act_q8::{GROUP_BLOCKS, GROUP_BYTES, QK};
use crate::cpu::Avx512;

/// Quantizes one row (`x.len()` a multiple of 32) into `qs` in the interleaved layout (whole
/// groups; the bytes of padding blocks left as they are, zero in a fresh buffer), `d` and
/// `sums` (one per block of `x`).
pub(crate) fn quantize_row_interleaved(
    _: Avx512,
    x: &[f32],
    qs: &mut [i8],
    d: &mut [f32],
    sums: &mut [i32],
) {
    let nb = x.len() / QK;
    assert!(x.len() == nb * QK && d.len() == nb && sums.len() == nb);
    assert_eq!(qs.len(), nb.div_ceil(GROUP_BLOCKS) * GROUP_BYTES);
    // SAFETY: the token proves the features; every length was checked above.
    unsafe { quantize_avx512(x, qs, d, sums) }
}

/// # Safety
/// The features of the token available; the lengths of [`quantize_row_interleaved`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn quantize_avx512(x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
    #[repr(align(64))]
    struct Natural([i8; GROUP_BYTES]);
    // Dword `i · 8` of the natural buffer is block i's first four values.
    let first_quads = _mm512_setr_epi32(
        0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120,
    );
    let ones = _mm512_set1_epi8(1);
    for (g, (group_qs, group_x)) in qs
        .chunks_exact_mut(GROUP_BYTES)
        .zip(x.chunks(GROUP_BLOCKS * QK))
        .enumerate()
    {
        let blocks = group_x.len() / QK;
        let mut nat = Natural([0; GROUP_BYTES]);
        for (i, xb) in group_x.chunks_exact(QK).enumerate() {
            // SAFETY: a block is 32 values, and block i's 32 bytes lie inside `nat`.
            unsafe {
                let v = [
                    _mm512_loadu_ps(xb.as_ptr()),
                    _mm512_loadu_ps(xb.as_ptr().add(16)),
                ];
                let amax =
                    _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
                let (db, id) = crate::avx2_act::block_scale(amax);
                d[g * GROUP_BLOCKS + i] = db;
                let idv = _mm512_set1_ps(id);
                for (h, v) in v.into_iter().enumerate() {
                    let q = round_half_away(_mm512_mul_ps(v, idv));
                    // |q| ≤ 127: the narrowing never saturates.
                    let bytes = _mm512_cvtepi32_epi8(q);
                    _mm_storeu_si128(
                        nat.0.as_mut_ptr().add(i * QK + 16 * h) as *mut __m128i,
                        bytes,
                    );
                }
            }
        }
        let mut acc = _mm512_setzero_si512();
        for step in 0..QK / 4 {
            // SAFETY: the gathered dwords lie inside `nat`; the step's 64 bytes inside the group.
            unsafe {
                let idx = _mm512_add_epi32(first_quads, _mm512_set1_epi32(step as i32));
                let quads = _mm512_i32gather_epi32::<4>(idx, nat.0.as_ptr() as *const i32);
                _mm512_storeu_si512(group_qs.as_mut_ptr().add(64 * step) as *mut _, quads);
                acc = _mm512_dpbusd_epi32(acc, ones, quads);
            }
        }
        let mask = ((1u32 << blocks) - 1) as u16;
        // SAFETY: the first `blocks` sums of this group lie inside `sums`.
        unsafe { _mm512_mask_storeu_epi32(sums.as_mut_ptr().add(g * GROUP_BLOCKS), mask, acc) };
    }
}

/// C's `roundf` on each lane (|v| < 2³¹), as integers: `avx2_act`'s steps on 16 lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn round_half_away(v: __m512) -> __m512i {
    let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
    let frac = _mm512_sub_ps(v, t); // exact
    let away = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_abs_ps(frac), _mm512_set1_ps(0.5));
    let sign = _mm512_set1_epi32(i32::MIN);
    let step = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_and_si512(_mm512_castps_si512(v), sign),
        _mm512_castps_si512(_mm512_set1_ps(1.0)),
    )); // ±1, v's sign
    _mm512_cvttps_epi32(_mm512_mask_add_ps(t, away, t, step))
}
