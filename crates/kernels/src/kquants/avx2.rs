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

use super::layout::{q2_k, q3_k, q4_k, q5_k, q6_k, scales_mins_k4};
use super::unpack::Unpacked;
use super::BlockQ8K;
use crate::avx2_dot::PREFETCH_BYTES;

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
/// Called only from functions with AVX2 enabled (the range is bounds-checked).
#[inline(always)]
pub(crate) unsafe fn load32(b: &[u8], at: usize) -> __m256i {
    let s = &b[at..at + 32];
    // SAFETY: `s` is 32 readable bytes; unaligned load.
    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
}

/// 16 bytes at `b[at..at + 16]`.
///
/// # Safety
/// Called only from functions with AVX2 enabled (the range is bounds-checked).
#[inline(always)]
unsafe fn load16(b: &[u8], at: usize) -> __m128i {
    let s = &b[at..at + 16];
    // SAFETY: `s` is 16 readable bytes; unaligned load.
    unsafe { _mm_loadu_si128(s.as_ptr().cast()) }
}

/// `v >> n` in each 16-bit lane, for a run-time `n`.
///
/// # Safety
/// Called only from functions with AVX2 enabled (it is always inlined into them).
#[inline(always)]
unsafe fn srl16(v: __m256i, n: i32) -> __m256i {
    // SAFETY: the caller has AVX2.
    unsafe { _mm256_srl_epi16(v, _mm_cvtsi32_si128(n)) }
}

/// The two f16 values at `x[at..at + 4]`, widened exactly to `f32` by F16C (`half` would check
/// the CPU's features at every call).
///
/// # Safety
/// Called only from functions with F16C enabled (the range is bounds-checked).
#[inline(always)]
unsafe fn f16_pair(x: &[u8], at: usize) -> (f32, f32) {
    let b = &x[at..at + 4];
    let bits = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    // SAFETY: register-only intrinsics; the caller has F16C.
    unsafe {
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits));
        (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
    }
}

/// One super-block of `unpack.rs`'s form in registers: `u` in eight vectors of 32 values, the
/// 16 scales as bytes, `k · sc` and the mins as i16 lanes.
#[derive(Clone, Copy)]
pub(crate) struct Regs {
    pub u: [__m256i; 8],
    pub sc: __m128i,
    pub sck: __m256i,
    pub mn: __m256i,
    pub d: f32,
    pub dmin: f32,
}

/// `w` loaded into registers.
///
/// # Safety
/// Called only from functions with AVX2 enabled.
#[cfg(test)]
#[inline(always)]
pub(crate) unsafe fn load_regs(w: &Unpacked) -> Regs {
    // SAFETY: loads of whole fixed-size arrays; the caller has AVX2.
    unsafe {
        Regs {
            u: std::array::from_fn(|c| _mm256_loadu_si256(w.u.as_ptr().add(32 * c).cast())),
            sc: _mm_loadu_si128(w.sc.as_ptr().cast()),
            sck: _mm256_loadu_si256(w.sck.as_ptr().cast()),
            mn: _mm256_loadu_si256(w.mn.as_ptr().cast()),
            d: w.d,
            dmin: w.dmin,
        }
    }
}

/// `r` stored into `out`.
///
/// # Safety
/// Called only from functions with AVX2 enabled.
#[inline(always)]
unsafe fn store_regs(r: &Regs, out: &mut Unpacked) {
    // SAFETY: stores into whole fixed-size arrays; the caller has AVX2.
    unsafe {
        for (c, &v) in r.u.iter().enumerate() {
            _mm256_storeu_si256(out.u.as_mut_ptr().add(32 * c).cast(), v);
        }
        _mm_storeu_si128(out.sc.as_mut_ptr().cast(), r.sc);
        _mm256_storeu_si256(out.sck.as_mut_ptr().cast(), r.sck);
        _mm256_storeu_si256(out.mn.as_mut_ptr().cast(), r.mn);
    }
    out.d = r.d;
    out.dmin = r.dmin;
}

/// A `Regs` of zeros.
///
/// # Safety
/// Called only from functions with AVX2 enabled.
#[inline(always)]
pub(crate) unsafe fn empty_regs() -> Regs {
    // SAFETY: register-only intrinsics; the caller has AVX2.
    unsafe {
        Regs {
            u: [_mm256_setzero_si256(); 8],
            sc: _mm_setzero_si128(),
            sck: _mm256_setzero_si256(),
            mn: _mm256_setzero_si256(),
            d: 0.0,
            dmin: 0.0,
        }
    }
}

/// Q2_K block `x`'s scales (low nibbles), mins (high nibbles), `d` and `dmin` into `r`.
///
/// # Safety
/// Called only from functions with AVX2 and F16C enabled; `x` one whole Q2_K block.
#[inline(always)]
pub(crate) unsafe fn q2_scales(x: &[u8], r: &mut Regs) {
    // SAFETY: the bounds-checked loads above; the caller has the features.
    unsafe {
        let sc = load16(x, q2_k::SCALES);
        let nib = _mm_set1_epi8(0xF);
        r.sc = _mm_and_si128(sc, nib);
        r.mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(sc), nib));
        r.sck = _mm256_setzero_si256();
        (r.d, r.dmin) = f16_pair(x, q2_k::D);
    }
}

/// Q3_K block `x`'s scales (the offset 32 taken off), their `k · sc` corrections and `d` into
/// `r`.
///
/// # Safety
/// Called only from functions with AVX2 and F16C enabled; `x` one whole Q3_K block.
#[inline(always)]
pub(crate) unsafe fn q3_scales(x: &[u8], r: &mut Regs) {
    // SAFETY: register-only intrinsics on bounds-checked data; the caller has the features.
    unsafe {
        let sc = _mm_sub_epi8(q3_scale_bytes(x), _mm_set1_epi8(32));
        r.sc = sc;
        r.sck = _mm256_slli_epi16::<2>(_mm256_cvtepi8_epi16(sc));
        r.mn = _mm256_setzero_si256();
        r.d = f16_pair(x, q3_k::D - 2).1;
        r.dmin = 0.0;
    }
}

/// The 16 6-bit scales of Q3_K block `x` (`layout::scales_q3_k`'s bytes) in a few vector
/// instructions: scale `j`'s low four bits are the low (`j < 8`) or high nibble of byte `j % 8`,
/// its high two bits bits `2(j / 4)` of byte `8 + j % 4`. The packed bytes come in through
/// general registers: `scales_q3_k`'s array, stored a byte at a time and loaded as one vector,
/// stalled every block on the store forwarding (Q3_K_M decode at one thread, alternating: 28.0
/// → 47.8 t/s).
///
/// # Safety
/// Called only from functions with AVX2 enabled; `x` one whole Q3_K block (bounds-checked).
#[inline(always)]
pub(crate) unsafe fn q3_scale_bytes(x: &[u8]) -> __m128i {
    let b = &x[q3_k::SCALES..q3_k::SCALES + 12];
    let first = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let last = u32::from_le_bytes(b[8..].try_into().expect("4 bytes"));
    // SAFETY: register-only intrinsics; the caller has AVX2.
    unsafe {
        let b = _mm_insert_epi32::<2>(_mm_cvtsi64_si128(first as i64), last as i32);
        let nib = _mm_set1_epi8(0x0f);
        // Bytes 0..8 twice; the second copy's 64-bit lane shifted by 4 (its high nibbles).
        let pick_low = _mm_set_epi8(7, 6, 5, 4, 3, 2, 1, 0, 7, 6, 5, 4, 3, 2, 1, 0);
        let low_src = _mm_shuffle_epi8(b, pick_low);
        let low = _mm_and_si128(_mm_srlv_epi64(low_src, _mm_set_epi64x(4, 0)), nib);
        // Bytes 8..12 in every 32-bit lane, lane q shifted by 2q.
        let pick_high = _mm_set_epi8(11, 10, 9, 8, 11, 10, 9, 8, 11, 10, 9, 8, 11, 10, 9, 8);
        let high_src = _mm_shuffle_epi8(b, pick_high);
        let high = _mm_srlv_epi32(high_src, _mm_set_epi32(6, 4, 2, 0));
        let high = _mm_and_si128(high, _mm_set1_epi8(3));
        _mm_or_si128(low, _mm_slli_epi16::<4>(high))
    }
}

/// Unpacks block `x` of type `TY` into registers (twin: `unpack::unpack_scalar`).
///
/// Always inlined (as are the helpers it uses), so that a block streamed through a row kernel
/// never goes through memory.
///
/// # Safety
/// Called only from functions with AVX2 enabled, on a CPU that has it; `x` holds one whole
/// block (lengths are bounds-checked).
#[inline(always)]
pub(crate) unsafe fn unpack<const TY: u8>(x: &[u8]) -> Regs {
    let x = &x[..block_bytes(TY)];
    // SAFETY: the caller has AVX2; every load and store goes through the bounds-checked
    // helpers above.
    unsafe {
        let m4 = _mm256_set1_epi8(0xF);
        let m3 = _mm256_set1_epi8(3);
        let one = _mm256_set1_epi8(1);
        let mut r = empty_regs();
        match TY {
            Q2 => {
                q2_scales(x, &mut r);
                for c in 0..2 {
                    let q2 = load32(x, q2_k::QS + 32 * c);
                    for s in 0..4 {
                        let u = _mm256_and_si256(srl16(q2, 2 * s as i32), m3);
                        r.u[4 * c + s] = u;
                    }
                }
            }
            Q3 => {
                q3_scales(x, &mut r);
                let hm = load32(x, q3_k::HMASK);
                for c in 0..2 {
                    let q3 = load32(x, q3_k::QS + 32 * c);
                    for s in 0..4 {
                        let low = _mm256_and_si256(srl16(q3, 2 * s as i32), m3);
                        let high = _mm256_and_si256(srl16(hm, (4 * c + s) as i32), one);
                        let u = _mm256_or_si256(low, _mm256_slli_epi16::<2>(high));
                        r.u[4 * c + s] = u;
                    }
                }
            }
            Q4 | Q5 => {
                let (scales_at, qs_at) = if TY == Q4 {
                    (q4_k::SCALES, q4_k::QS)
                } else {
                    (q5_k::SCALES, q5_k::QS)
                };
                let (scales, mins) = scales_mins_k4(&x[scales_at..scales_at + 12]);
                let s8 = _mm_set_epi64x(0, u64::from_le_bytes(scales) as i64);
                r.sc = _mm_unpacklo_epi8(s8, s8);
                let m8 = _mm_set_epi64x(0, u64::from_le_bytes(mins) as i64);
                let m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
                r.mn = m16;
                r.sck = _mm256_setzero_si256();
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
                    r.u[2 * c] = lo;
                    r.u[2 * c + 1] = hi;
                }
                (r.d, r.dmin) = f16_pair(x, q4_k::D);
            }
            _ => {
                let sc = load16(x, q6_k::SCALES);
                r.sc = sc;
                r.sck = _mm256_slli_epi16::<5>(_mm256_cvtepi8_epi16(sc));
                r.mn = _mm256_setzero_si256();
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
                        r.u[4 * c + s] = v;
                    }
                }
                r.d = f16_pair(x, q6_k::D - 2).1;
                r.dmin = 0.0;
            }
        }
        r
    }
}

/// [`unpack`] as a function of its own (for unpacking whole panels).
///
/// # Safety
/// AVX2 available; `x` holds one whole block (lengths are bounds-checked).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn unpack_block<const TY: u8>(x: &[u8], out: &mut Unpacked) {
    // SAFETY: AVX2 is enabled here.
    unsafe { store_regs(&unpack::<TY>(x), out) }
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
    w: &Regs,
    scales: &[__m256i; 8],
    y: &BlockQ8K,
) -> (__m256i, __m256i) {
    // SAFETY: loads of whole fixed-size arrays (`qs` 256 bytes, `bsums` 32).
    unsafe {
        let mut s = _mm256_setzero_si256();
        for (c, (sc, &u)) in scales.iter().zip(&w.u).enumerate() {
            let a = _mm256_loadu_si256(y.qs.as_ptr().add(32 * c).cast());
            s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), *sc));
        }
        let bs = _mm256_loadu_si256(y.bsums.as_ptr().cast());
        if has_offset(TY) {
            s = _mm256_sub_epi32(s, _mm256_madd_epi16(bs, w.sck));
        }
        let m = if has_mins(TY) {
            _mm256_madd_epi16(bs, w.mn)
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
pub(crate) fn scale_lanes(w: &Regs) -> [__m256i; 8] {
    let sc = w.sc;
    std::array::from_fn(|c| {
        let (lo, hi) = (2 * c as i64, 2 * c as i64 + 1);
        let pick = _mm_set_epi64x(hi * 0x0101_0101_0101_0101, lo * 0x0101_0101_0101_0101);
        _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, pick))
    })
}

/// Asks for the lines of the block [`PREFETCH_BYTES`] after `block` (a hint, never
/// dereferenced, so running past the row is harmless): rows stream from memory.
#[inline(always)]
pub(crate) fn prefetch_ahead(block: &[u8]) {
    let ahead = block.as_ptr().wrapping_add(PREFETCH_BYTES);
    crate::stream::prefetch_stream(ahead as usize, block.len().div_ceil(64));
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
    for (b, x) in row.chunks_exact(block_bytes(TY)).enumerate() {
        // SAFETY: the CPU features are the caller's; `x` is one whole block.
        unsafe {
            prefetch_ahead(x);
            accumulate::<TY, T>(&unpack::<TY>(x), b, &act, &mut acc, &mut acc_m);
        }
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
    w: &Regs,
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

/// [`super::quantize_row_q8_k`] eight values at a time, the same bits (as the AVX-512 one:
/// `vmaxps` with NaNs losing, the first value of the largest magnitude for the sign, the same
/// multiply and magic-constant add); the quants' low bytes packed without saturation (masked
/// to `0..=255` first), which is the scalar `as i8`.
pub(crate) fn quantize_row_q8_k(_: crate::cpu::Avx2, x: &[f32], out: &mut [BlockQ8K]) {
    for (x, y) in x.chunks_exact(super::QK_K).zip(out.iter_mut()) {
        // SAFETY: the token proves the features; `x` holds one super-block.
        unsafe { quantize_block_q8_k(x.as_ptr(), y) }
    }
}

/// # Safety
/// AVX2 available; `x` readable for 256 values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_block_q8_k(x: *const f32, y: &mut BlockQ8K) {
    // SAFETY (loads and stores): inside the caller's 256 values and `y.qs`.
    unsafe {
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let mut v = [_mm256_setzero_ps(); 32];
        let mut amax = _mm256_setzero_ps();
        for (i, v) in v.iter_mut().enumerate() {
            *v = _mm256_loadu_ps(x.add(8 * i));
            // The second operand wins when either is NaN: a NaN value never becomes the max.
            amax = _mm256_max_ps(_mm256_and_ps(*v, abs), amax);
        }
        let m4 = _mm_max_ps(
            _mm256_castps256_ps128(amax),
            _mm256_extractf128_ps::<1>(amax),
        );
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_shuffle_ps::<1>(m2, m2)));
        if amax == 0.0 {
            *y = BlockQ8K::ZERO;
            return;
        }
        let wanted = _mm256_set1_ps(amax);
        let mut max = amax;
        for (i, &v) in v.iter().enumerate() {
            let hit =
                _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_and_ps(v, abs), wanted));
            if hit != 0 {
                max = *x.add(8 * i + hit.trailing_zeros() as usize);
                break;
            }
        }
        let iscale = -127.0 / max;
        let scale = _mm256_set1_ps(iscale);
        let magic = _mm256_set1_ps(12_582_912.0);
        let mantissa = _mm256_set1_epi32(0x007f_ffff);
        let offset = _mm256_set1_epi32(0x0040_0000);
        let top = _mm256_set1_epi32(127);
        let byte = _mm256_set1_epi32(0xff);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let mut q = [_mm256_setzero_si256(); 4];
        for c in 0..8 {
            for (j, q) in q.iter_mut().enumerate() {
                let r = _mm256_add_ps(_mm256_mul_ps(scale, v[4 * c + j]), magic);
                let i =
                    _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(r), mantissa), offset);
                *q = _mm256_min_epi32(i, top);
            }
            // Low bytes: 0..=255 packs to u16 and then to u8 unchanged; the lanes put back in
            // order by one permutation.
            let lo = q.map(|q| _mm256_and_si256(q, byte));
            let w01 = _mm256_packus_epi32(lo[0], lo[1]);
            let w23 = _mm256_packus_epi32(lo[2], lo[3]);
            let b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(w01, w23), order);
            _mm256_storeu_si256(y.qs.as_mut_ptr().add(32 * c) as *mut _, b);
            for h in 0..2 {
                let s = |q: __m256i| _mm256_srai_epi32::<24>(_mm256_slli_epi32::<24>(q));
                let t = _mm256_add_epi32(s(q[2 * h]), s(q[2 * h + 1]));
                let t4 = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256::<1>(t));
                let t2 = _mm_add_epi32(t4, _mm_unpackhi_epi64(t4, t4));
                let t1 = _mm_add_epi32(t2, _mm_shuffle_epi32::<1>(t2));
                y.bsums[2 * c + h] = _mm_cvtsi128_si32(t1) as i16;
            }
        }
        y.d = 1.0 / iscale;
    }
}
