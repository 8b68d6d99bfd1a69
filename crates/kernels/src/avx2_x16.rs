//! AVX2 decode kernel of repacked Q4_0 / Q8_0 rows (`qx16.rs`): bitwise
//! `qx16::dot_lanes` with AVX2's 8 lanes, as the prefill tiles (`avx2_tile.rs`) are.
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
//! both halves into one accumulator (lane `i` takes block `i`, then `i + 8`), its lanes summed
//! in `qx16::reduce8`'s tree at the end: per block about 4
//! vector instructions (Q4_0) instead of the stored-row kernel's 12 or so (`avx2_dot.rs`), so
//! one core reads Q4_0 weights as fast as memory gives them.

use std::arch::x86_64::*;

use crate::act_q8::{GROUP_BLOCKS, GROUP_BYTES};
use crate::avx2_dot::hsum_ps;
use crate::cpu::Avx2;
use crate::par::PREFETCH_BYTES;
use crate::qx16::{QUANTS_AT, X16};

/// Every row of `w` (`out.len()` rows of `ng` groups of `kind`, back to back) · one token of
/// interleaved activations (`qs` `ng · 512` values, `d` and `sums` `ng · 16`): bitwise
/// `qx16::dot_lanes` (8 lanes) of each row.
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
        // SAFETY: the token proves the features; `row` is a whole row of `ng` groups, the last
        // of `last` blocks, and the activations hold `ng` groups (checked above).
        unsafe {
            let row = row.as_ptr();
            *o = match kind {
                X16::Q4_0 => dot_row_avx2::<false>(row, qs, d, sums, (ng, last)),
                X16::Q8_0 => dot_row_avx2::<true>(row, qs, d, sums, (ng, last)),
            };
        }
    }
}

/// One repacked row (`Q8`: Q8_0, else Q4_0) · one token: its `ng` groups at `w`, the last of
/// `last` blocks (1 to 16).
///
/// # Safety
/// AVX2/FMA/F16C available; `w` holds `ng` groups, the last of `last` blocks, `qs` `ng · 512`
/// values, `d` and `sums` `ng · 16`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_row_avx2<const Q8: bool>(
    w: *const u8,
    qs: *const i8,
    d: *const f32,
    sums: *const i32,
    (ng, last): (usize, usize),
) -> f32 {
    let mut facc = _mm256_setzero_ps();
    let whole = if last == GROUP_BLOCKS {
        ng
    } else {
        ng.saturating_sub(1)
    };
    for g in 0..whole {
        // SAFETY: group g < ng is inside the row and the activations.
        unsafe { group_avx2::<Q8, false>(w, qs, d, sums, g, GROUP_BLOCKS, &mut facc) };
    }
    if whole < ng {
        // SAFETY: as above; the partial group's `last` blocks are inside the row, its loads
        // masked to them.
        unsafe { group_avx2::<Q8, true>(w, qs, d, sums, whole, last, &mut facc) };
    }
    // reduce8: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
    hsum_ps(facc)
}

/// Group `g` (of `n` blocks) of a row at `w` into the lane sums `facc`, its first half then its
/// second. `MASKED`: a
/// partial group, whose steps are `4n` bytes long and its scales `n` (`qx16::step_at`), read
/// by loads masked to its blocks: the zeros that a whole group's padding would give
/// (`qx16::padded_group`), so the same bits, without a copy.
///
/// # Safety
/// AVX2/FMA/F16C available; group `g` of `n` blocks inside the row, group `g` of the
/// activations inside theirs.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group_avx2<const Q8: bool, const MASKED: bool>(
    w: *const u8,
    qs: *const i8,
    d: *const f32,
    sums: *const i32,
    g: usize,
    n: usize,
    facc: &mut __m256,
) {
    let group = if Q8 { X16::Q8_0 } else { X16::Q4_0 }.group_bytes();
    let (low, ones, flip) = (
        _mm256_set1_epi8(0x0f),
        _mm256_set1_epi16(1),
        _mm256_set1_epi8(-128),
    );
    // SAFETY (loads): the caller's promise; masked-off lanes are never read, and the prefetch
    // is a hint, never dereferenced, so running past the row is harmless.
    unsafe {
        let grp = w.add(g * group);
        crate::stream::prefetch_stream(
            grp.wrapping_add(PREFETCH_BYTES) as usize,
            group.div_ceil(64),
        );
        let a = qs.add(g * GROUP_BYTES);
        for h in 0..2 {
            // Blocks of this half in the group: 8, or fewer in a partial group.
            let nh = n.saturating_sub(8 * h).min(8);
            let at = |step: usize| a.add(64 * step + 32 * h) as *const __m256i;
            let step = |k: usize| x16_half::<MASKED>(grp, n, k, h, nh);
            let isum = if Q8 {
                let mut s = _mm256_setzero_si256();
                for k in 0..8 {
                    let q = _mm256_xor_si256(step(k), flip);
                    let av = _mm256_sign_epi8(_mm256_loadu_si256(at(k)), q);
                    let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(q), av);
                    s = _mm256_add_epi32(s, _mm256_madd_epi16(pairs, ones));
                }
                s
            } else {
                let mut s16 = _mm256_setzero_si256();
                for k in 0..4 {
                    let v = step(k);
                    let lo = _mm256_and_si256(v, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low);
                    let pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256(at(k)));
                    let ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256(at(k + 4)));
                    s16 = _mm256_add_epi16(s16, _mm256_add_epi16(pl, ph));
                }
                let s = _mm256_loadu_si256(sums.add(g * GROUP_BLOCKS + 8 * h) as *const _);
                _mm256_sub_epi32(_mm256_madd_epi16(s16, ones), _mm256_slli_epi32::<3>(s))
            };
            let dw = _mm256_cvtph_ps(x16_half_scales::<MASKED>(grp, h, nh));
            let da = _mm256_loadu_ps(d.add(g * GROUP_BLOCKS + 8 * h));
            *facc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, da), *facc);
        }
    }
}

/// Half `h` of step `k` of a repacked group of `n` blocks at `grp`: 32 bytes, four of each of
/// blocks `8h ..`; masked, the `4 · nh` bytes of the half's `nh` blocks and zeros after them.
///
/// # Safety
/// AVX2 available; the half's bytes (masked: its `nh` blocks') inside the group.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn x16_half<const MASKED: bool>(
    grp: *const u8,
    n: usize,
    k: usize,
    h: usize,
    nh: usize,
) -> __m256i {
    // SAFETY: the caller's promise; a masked load reads none of the lanes it leaves out.
    unsafe {
        if MASKED {
            let p = grp.wrapping_add(crate::qx16::step_at(n, k) + 32 * h);
            _mm256_maskload_epi32(p as *const i32, lanes32(nh))
        } else {
            _mm256_loadu_si256(grp.add(QUANTS_AT + 64 * k + 32 * h) as *const _)
        }
    }
}

/// The eight f16 scales of half `h` of a repacked group at `grp` (masked: its `nh` scales, then
/// zeros; an odd count's last 32-bit load carries the next scale or quant, cleared by a 16-bit
/// mask).
///
/// # Safety
/// AVX2 available; the half's scales (masked: its `nh`) inside the group.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn x16_half_scales<const MASKED: bool>(grp: *const u8, h: usize, nh: usize) -> __m128i {
    let p = grp.wrapping_add(16 * h);
    // SAFETY: the caller's promise; a masked load reads none of the lanes it leaves out.
    unsafe {
        if MASKED {
            let pairs = _mm_maskload_epi32(
                p as *const i32,
                _mm256_castsi256_si128(lanes32(nh.div_ceil(2))),
            );
            let words = _mm_cmpgt_epi16(
                _mm_set1_epi16(nh as i16),
                _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7),
            );
            _mm_and_si128(pairs, words)
        } else {
            _mm_loadu_si128(p as *const __m128i)
        }
    }
}

/// A mask of the first `n` (0 to 8) 32-bit lanes.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn lanes32(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}
