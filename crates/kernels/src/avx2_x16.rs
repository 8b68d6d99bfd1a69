//! AVX2 decode kernel of repacked Q4_0 / Q8_0 rows (`qx16.rs`): bitwise
//! `qx16::dot_lanes`, as the AVX-512 kernel (`avx512_x16.rs`) is.
//!
//! A 256-bit vector holds half of a 64-byte step of a group: the same four bytes of eight
//! blocks, one 32-bit lane per block (blocks 0–7 in the first half, 8–15 in the second), as the
//! interleaved activations hold them. Per half, each block's exact integer sum then forms in its
//! own lane:
//!
//! - Q4_0: `vpmaddubsw` of the unsigned nibbles by the signed activations gives 16-bit sums of
//!   two products (at most 2 · 15 · 128 = 3840 in size); the eight steps of a block add up in
//!   16 bits (at most 30720, exact), one `vpmaddwd` by ones makes the lanes' 32-bit sums, and the
//!   nibbles' offset comes off as `−8 · Σa`.
//! - Q8_0: the stored `q + 128` bytes flipped back to `q`, then `|q|` by the activations with
//!   `q`'s sign (16-bit pair sums at most 2 · 128 · 128 = 32768 in size, exact), widened to 32
//!   bits each step: `Σ q · a` directly, the same integer as `−128 · Σa + Σ (q + 128) · a`.
//!
//! Then one conversion, one multiply (`d_w · d_a`) and one fused multiply-add per eight blocks,
//! and the two halves' lanes summed in `qx16::reduce16`'s tree: per block about 4
//! vector instructions (Q4_0) instead of the stored-row kernel's 12 or so (`avx2_dot.rs`), so
//! one core reads Q4_0 weights as fast as memory gives them.

use std::arch::x86_64::*;

use crate::act_q8::{GROUP_BLOCKS, GROUP_BYTES};
use crate::avx2_dot::hsum_ps;
use crate::cpu::Avx2;
use crate::par::PREFETCH_BYTES;
use crate::qx16::{MAX_GROUP_BYTES, QUANTS_AT, X16};

/// Every row of `w` (`out.len()` rows of `ng` groups of `kind`, back to back) · one token of
/// interleaved activations (`qs` `ng · 512` values, `d` and `sums` `ng · 16`): bitwise
/// `qx16::dot_lanes` of each row.
pub(crate) fn dot_matrix(
    _: Avx2,
    kind: X16,
    w: &[u8],
    qs: &[i8],
    d: &[f32],
    sums: &[i32],
    out: &mut [f32],
) {
    let (ng, stride, last) = crate::qx16::matrix_shape(kind, w.len(), out.len(), qs, d, sums);
    let (qs, d, sums) = (qs.as_ptr(), d.as_ptr(), sums.as_ptr());
    for (o, row) in out.iter_mut().zip(w.chunks_exact(stride)) {
        // A partial last group read as the whole group it stands for (zero blocks after its
        // own), from a copy.
        let pad = (ng > 0 && last < GROUP_BLOCKS).then(|| {
            let at = (ng - 1) * kind.group_bytes();
            crate::qx16::padded_group(kind, &row[at..], last)
        });
        let whole = if pad.is_some() { ng - 1 } else { ng };
        // SAFETY: the token proves the features; `row` is a whole row and the activations
        // hold `ng` groups (checked above), the copy a whole group.
        unsafe {
            let row = row.as_ptr();
            *o = match kind {
                X16::Q4_0 => dot_row_avx2::<false>(row, qs, d, sums, whole, pad.as_ref()),
                X16::Q8_0 => dot_row_avx2::<true>(row, qs, d, sums, whole, pad.as_ref()),
            };
        }
    }
}

/// One repacked row (`Q8`: Q8_0, else Q4_0) · one token: its `whole` groups at `w`, then `pad`
/// (its partial last group made whole) if there is one.
///
/// # Safety
/// AVX2/FMA/F16C available; `w` holds `whole` groups, `qs` as many values as the groups have
/// (512 each), `d` and `sums` 16 each.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_row_avx2<const Q8: bool>(
    w: *const u8,
    qs: *const i8,
    d: *const f32,
    sums: *const i32,
    whole: usize,
    pad: Option<&[u8; MAX_GROUP_BYTES]>,
) -> f32 {
    let ng = whole + usize::from(pad.is_some());
    let group = if Q8 { X16::Q8_0 } else { X16::Q4_0 }.group_bytes();
    let (low, ones, flip) = (
        _mm256_set1_epi8(0x0f),
        _mm256_set1_epi16(1),
        _mm256_set1_epi8(-128),
    );
    let mut facc = [_mm256_setzero_ps(); 2];
    for g in 0..ng {
        // SAFETY (loads): group g < ng is inside the row and the activations; the prefetch is a
        // hint, never dereferenced, so running past the row is harmless.
        unsafe {
            let grp = match pad {
                Some(p) if g == whole => p.as_ptr(),
                _ => w.add(g * group),
            };
            crate::stream::prefetch_stream(
                grp.wrapping_add(PREFETCH_BYTES) as usize,
                group.div_ceil(64),
            );
            let a = qs.add(g * GROUP_BYTES);
            for (h, acc) in facc.iter_mut().enumerate() {
                let at = |step: usize| a.add(64 * step + 32 * h) as *const __m256i;
                let isum = if Q8 {
                    let mut s = _mm256_setzero_si256();
                    for step in 0..8 {
                        let u =
                            _mm256_loadu_si256(grp.add(QUANTS_AT + 64 * step + 32 * h) as *const _);
                        let q = _mm256_xor_si256(u, flip);
                        let av = _mm256_sign_epi8(_mm256_loadu_si256(at(step)), q);
                        let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(q), av);
                        s = _mm256_add_epi32(s, _mm256_madd_epi16(pairs, ones));
                    }
                    s
                } else {
                    let mut s16 = _mm256_setzero_si256();
                    for k in 0..4 {
                        let v =
                            _mm256_loadu_si256(grp.add(QUANTS_AT + 64 * k + 32 * h) as *const _);
                        let lo = _mm256_and_si256(v, low);
                        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low);
                        let pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256(at(k)));
                        let ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256(at(k + 4)));
                        s16 = _mm256_add_epi16(s16, _mm256_add_epi16(pl, ph));
                    }
                    let s = _mm256_loadu_si256(sums.add(g * GROUP_BLOCKS + 8 * h) as *const _);
                    _mm256_sub_epi32(_mm256_madd_epi16(s16, ones), _mm256_slli_epi32::<3>(s))
                };
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(grp.add(16 * h) as *const __m128i));
                let da = _mm256_loadu_ps(d.add(g * GROUP_BLOCKS + 8 * h));
                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, da), *acc);
            }
        }
    }
    // reduce16: the halves lane by lane, then ((h0 + h4) + (h2 + h6)) + ((h1 + h5) + (h3 + h7)).
    hsum_ps(_mm256_add_ps(facc[0], facc[1]))
}
