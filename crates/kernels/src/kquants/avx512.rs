//! AVX-512 (BW/VNNI) dot products of K-quant rows with the Q8_K activations of `T` tokens: the
//! super-blocks unpacked by `avx2.rs` (once for all tokens), then per 64 values one 512-bit
//! `maddubs` (u ≤ 63 against signed bytes: pairs within ±16128, no saturation) and one VNNI
//! `vpdpwssd` that multiplies the pairs by their sub-block scales and accumulates in i32. Offset
//! and min corrections come from `bsums` as in `avx2.rs`; every integer is exact, and the `f32`
//! work per (row, token) is the same whatever `T` is.
//!
//! Reached only through the dispatchers of `super`, which hold the CPU-feature proof.

use std::arch::x86_64::*;

use super::avx2::{
    block_bytes, empty_regs, has_mins, has_offset, hsum_ps, load32, prefetch_ahead, q2_scales,
    q3_scales, unpack, Regs, Q2, Q3,
};
use super::layout::{q2_k, q3_k};
use super::BlockQ8K;

/// The scales of `w` as i16 lanes for each 64 values: sub-blocks `4c..4c + 4`, eight lanes each.
///
/// # Safety
/// The AVX-512 features available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn scale_lanes(w: &Regs) -> [__m512i; 4] {
    // The 16 scales widened once, then each vector's four picked eight times each.
    let sc = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(w.sc));
    std::array::from_fn(|c| {
        // SAFETY: a load of the 64 bytes of one row of the table.
        let pick = unsafe { _mm512_loadu_si512(SCALE_PICKS[c].as_ptr().cast()) };
        _mm512_permutexvar_epi16(pick, sc)
    })
}

/// [`scale_lanes`]' word indices: lane `l` of vector `c` takes scale `4c + l / 8`.
static SCALE_PICKS: [[i16; 32]; 4] = {
    let mut t = [[0i16; 32]; 4];
    let mut c = 0;
    while c < 4 {
        let mut l = 0;
        while l < 32 {
            t[c][l] = (4 * c + l / 8) as i16;
            l += 1;
        }
        c += 1;
    }
    t
};

/// The values of `w` as four vectors of 64 (sub-blocks `4c..4c + 4`: `u[2c]`, then
/// `u[2c + 1]`).
///
/// # Safety
/// The AVX-512 features available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn value_vectors(w: &Regs) -> [__m512i; 4] {
    std::array::from_fn(|c| {
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(w.u[2 * c]), w.u[2 * c + 1])
    })
}

/// Two 16-bit shift counts as a vector: `lo` for the low 256 bits, `hi` for the high ones.
///
/// # Safety
/// The AVX-512 features available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn half_counts(lo: i16, hi: i16) -> __m512i {
    _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_set1_epi16(lo)),
        _mm256_set1_epi16(hi),
    )
}

/// The 2-bit fields of the two 32-byte runs at `x[at..]` (Q2_K's values, Q3_K's low bits) as
/// [`value_vectors`]' four vectors: run `c / 2` broadcast to both halves, shifted right by bit
/// pair `2(c % 2)` in the low half and the next pair in the high one, masked to two bits.
///
/// # Safety
/// The AVX-512 features available; `x[at..at + 64]` inside `x` (bounds-checked).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn two_bit_vectors(x: &[u8], at: usize) -> [__m512i; 4] {
    // SAFETY: the loads go through the bounds-checked `load32`.
    unsafe {
        let m3 = _mm512_set1_epi8(3);
        let q = [
            _mm512_broadcast_i64x4(load32(x, at)),
            _mm512_broadcast_i64x4(load32(x, at + 32)),
        ];
        std::array::from_fn(|c| {
            let s = 2 * (c % 2) as i16;
            _mm512_and_si512(
                _mm512_srlv_epi16(q[c / 2], half_counts(2 * s, 2 * s + 2)),
                m3,
            )
        })
    }
}

/// A Q2_K or Q3_K block unpacked for the kernels here: its values straight into
/// [`value_vectors`]' four vectors by 512-bit shifts (Q3_K's high bits from its mask, broadcast
/// and shifted the same way), instead of eight 256-bit unpackings and four inserts; its scales,
/// mins and offsets as `avx2::unpack` makes them. The same bytes and numbers.
///
/// # Safety
/// The AVX-512 features available; `TY` is `Q2` or `Q3`; `x` one whole block of it
/// (bounds-checked).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn unpack_low_bit<const TY: u8>(x: &[u8]) -> ([__m512i; 4], Regs) {
    let x = &x[..block_bytes(TY)];
    // SAFETY: the loads go through bounds-checked helpers; the rest is registers.
    unsafe {
        let mut w = empty_regs();
        if TY == Q2 {
            q2_scales(x, &mut w);
            return (two_bit_vectors(x, q2_k::QS), w);
        }
        q3_scales(x, &mut w);
        // Vector c's halves: sub-blocks 2c and 2c + 1, high bits 4(c / 2) + 2(c % 2) and the
        // next of the mask.
        let one = _mm512_set1_epi8(1);
        let hm = _mm512_broadcast_i64x4(load32(x, q3_k::HMASK));
        let low = two_bit_vectors(x, q3_k::QS);
        let u = std::array::from_fn(|c| {
            let h = 4 * (c / 2) as i16 + 2 * (c % 2) as i16;
            let high = _mm512_and_si512(_mm512_srlv_epi16(hm, half_counts(h, h + 1)), one);
            _mm512_or_si512(low[c], _mm512_slli_epi16::<2>(high))
        });
        (u, w)
    }
}

/// Integer lanes of one unpacked block (its values `u`, [`value_vectors`]) against one Q8_K
/// block: sixteen lanes summing to `S`, eight summing to `M` (see `unpack.rs`).
///
/// # Safety
/// The AVX-512 features available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn block_lanes<const TY: u8>(
    u: &[__m512i; 4],
    w: &Regs,
    scales: &[__m512i; 4],
    y: &BlockQ8K,
) -> (__m512i, __m256i) {
    // SAFETY: loads of whole fixed-size arrays (`qs` 256 bytes, `bsums` 32).
    unsafe {
        let mut s = _mm512_setzero_si512();
        for (c, (sc, &u)) in scales.iter().zip(u).enumerate() {
            let a = _mm512_loadu_si512(y.qs.as_ptr().add(64 * c).cast());
            s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(u, a), *sc);
        }
        let bs = _mm256_loadu_si256(y.bsums.as_ptr().cast());
        if has_offset(TY) {
            let corr = _mm512_zextsi256_si512(_mm256_madd_epi16(bs, w.sck));
            s = _mm512_sub_epi32(s, corr);
        }
        let m = if has_mins(TY) {
            _mm256_madd_epi16(bs, w.mn)
        } else {
            _mm256_setzero_si256()
        };
        (s, m)
    }
}

/// The scale lanes of `w` (for tests of [`block_lanes`]).
///
/// # Safety
/// The AVX-512 features available.
#[cfg(test)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) fn scales_for_test(w: &Regs) -> [__m512i; 4] {
    scale_lanes(w)
}

/// `row · act[t]` for `T` tokens (`row`: `nb` blocks of `TY`; each `act[t]`: `nb` blocks),
/// each block unpacked once for all tokens.
///
/// # Safety
/// The CPU features of this module available (lengths are bounds-checked).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn dot_tokens<const TY: u8, const T: usize>(
    row: &[u8],
    act: [&[BlockQ8K]; T],
) -> [f32; T] {
    let mut acc = [_mm512_setzero_ps(); T];
    let mut acc_m = [_mm256_setzero_ps(); T];
    for (b, x) in row.chunks_exact(block_bytes(TY)).enumerate() {
        // SAFETY: the CPU features are the caller's; `x` is one whole block.
        unsafe {
            prefetch_ahead(x);
            let (u, w) = if TY == Q2 || TY == Q3 {
                unpack_low_bit::<TY>(x)
            } else {
                let w = unpack::<TY>(x);
                (value_vectors(&w), w)
            };
            accumulate::<TY, T>(&u, &w, b, &act, &mut acc, &mut acc_m);
        }
    }
    std::array::from_fn(|t| _mm512_reduce_add_ps(acc[t]) - hsum_ps(acc_m[t]))
}

/// Adds block `b` of every token: `acc += (d_w · d_a) · S`, `acc_m += (dmin_w · d_a) · M`, in
/// lanes.
///
/// # Safety
/// The CPU features of this module available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn accumulate<const TY: u8, const T: usize>(
    u: &[__m512i; 4],
    w: &Regs,
    b: usize,
    act: &[&[BlockQ8K]; T],
    acc: &mut [__m512; T],
    acc_m: &mut [__m256; T],
) {
    // SAFETY: the CPU features are the caller's.
    unsafe {
        let scales = scale_lanes(w);
        for t in 0..T {
            let y = &act[t][b];
            let (s, m) = block_lanes::<TY>(u, w, &scales, y);
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(y.d * w.d), _mm512_cvtepi32_ps(s), acc[t]);
            if has_mins(TY) {
                let dm = _mm256_set1_ps(y.d * w.dmin);
                acc_m[t] = _mm256_fmadd_ps(dm, _mm256_cvtepi32_ps(m), acc_m[t]);
            }
        }
    }
}

/// [`super::quantize_row_q8_k`] sixteen values at a time, the same bits: the largest
/// magnitude by `vmaxps` (NaNs lose, as they do in the scalar comparison), the first value of
/// that magnitude for the sign, the same `f32` multiply and magic-constant add per value, and
/// the quants truncated to bytes (`vpmovdb`) as the scalar `as i8` does.
pub(crate) fn quantize_row_q8_k(_: crate::cpu::Avx512, x: &[f32], out: &mut [BlockQ8K]) {
    for (x, y) in x.chunks_exact(super::QK_K).zip(out.iter_mut()) {
        // SAFETY: the token proves the features; `x` holds one super-block.
        unsafe { quantize_block_q8_k(x.as_ptr(), y) }
    }
}

/// # Safety
/// The AVX-512 features available; `x` readable for 256 values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn quantize_block_q8_k(x: *const f32, y: &mut BlockQ8K) {
    // SAFETY (loads): inside the caller's 256 values.
    unsafe {
        let mut v = [_mm512_setzero_ps(); 16];
        let mut amax = _mm512_setzero_ps();
        for (i, v) in v.iter_mut().enumerate() {
            *v = _mm512_loadu_ps(x.add(16 * i));
            // The second operand wins when either is NaN: a NaN value never becomes the max.
            amax = _mm512_max_ps(_mm512_abs_ps(*v), amax);
        }
        let amax = _mm512_reduce_max_ps(amax);
        if amax == 0.0 {
            *y = BlockQ8K::ZERO;
            return;
        }
        let wanted = _mm512_set1_ps(amax);
        let mut max = amax;
        for (i, &v) in v.iter().enumerate() {
            let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(v), wanted);
            if hit != 0 {
                max = *x.add(16 * i + hit.trailing_zeros() as usize);
                break;
            }
        }
        let iscale = -127.0 / max;
        let scale = _mm512_set1_ps(iscale);
        let magic = _mm512_set1_ps(12_582_912.0);
        let mantissa = _mm512_set1_epi32(0x007f_ffff);
        let offset = _mm512_set1_epi32(0x0040_0000);
        let top = _mm512_set1_epi32(127);
        for (i, &v) in v.iter().enumerate() {
            let r = _mm512_add_ps(_mm512_mul_ps(scale, v), magic);
            let q = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(r), mantissa), offset);
            let q = _mm512_min_epi32(q, top);
            _mm_storeu_si128(
                y.qs.as_mut_ptr().add(16 * i) as *mut _,
                _mm512_cvtepi32_epi8(q),
            );
            let bytes = _mm512_srai_epi32::<24>(_mm512_slli_epi32::<24>(q));
            y.bsums[i] = _mm512_reduce_add_epi32(bytes) as i16;
        }
        y.d = 1.0 / iscale;
    }
}
