//! AVX2 decode kernels for repacked K-quant matrices (`x16.rs`): one group of 16 rows
//! against one token's Q8_K blocks, as two halves of 8 rows (the low and high 32 bytes of each
//! 64-byte run of the layout), a row in each 32-bit lane; twin
//! [`super::x16::dot_block_scalar`], bitwise (the AVX-512 kernels' arithmetic: the same exact
//! integers `S` and `M` per super-block and row, then the same two fused multiply-adds).
//!
//! Without `vpdpbusd`, `vpmaddubsw` multiplies unsigned weights by signed activations (|a| ≤
//! 127) and adds pairs in i16; what fits is summed in i16, then `vpmaddwd` widens to int32 and
//! multiplies by the sub-block's scale in one instruction (the scale in both halves of each
//! lane):
//!
//! - Q4_K, per sub-block of 32 values: four 32-byte loads, each split into low and high
//!   nibbles, eight `vpmaddubsw` summed in i16 (each pair at most 2 · 15 · 127 = 3810, eight
//!   of them 30480 < 2¹⁵), one `vpmaddwd` by the scales; four `vpmaddwd` for the mins.
//! - Q6_K, per 16 values: three 32-byte loads put together into four vectors of 6-bit values,
//!   four `vpmaddubsw` summed two by two (2 · 2 · 63 · 127 = 32004 < 2¹⁵), two `vpmaddwd` by
//!   the scales; the offset's `32 · Σ_g sc_g · Σa_g` by eight `vpmaddwd` per super-block.
//! - Q3_K and Q2_K, per 16 values: one 32-byte load of low bit pairs (and Q3_K's high bits)
//!   made into four vectors, four `vpmaddubsw` summed in i16 (at most 7112; Q3_K's `4 · Σa`
//!   taken off one half of each lane), one `vpmaddwd` by the scales; Q2_K's mins by eight
//!   `vpmaddwd` per super-block.

use std::arch::x86_64::*;

use super::avx512_x16::{shuffle_index, BYTE_INDEX, PAIR_INDEX};
use super::x16::q4::{D, DMIN, GROUP_BLOCK, QS, SCALES};
use super::x16::{low_bits_shape, q5, q6, ROWS};
use super::BlockQ8K;
use crate::avx2_dot::PREFETCH_BYTES;
use crate::cpu::Avx2;
use crate::WeightType;

/// One group of repacked `ty` (`act.len()` super-blocks of 16 rows, back to back in `group`)
/// · one token.
pub(crate) fn dot_group(_: Avx2, ty: WeightType, group: &[u8], act: &[BlockQ8K]) -> [f32; ROWS] {
    assert!(ty.is_grouped(), "{ty:?} is not a repacked K-quant type");
    assert!(group.len() >= act.len() * super::x16::group_block(ty));
    // SAFETY: the token proves the features; every block read is inside `group` (checked).
    unsafe {
        let acc = match ty {
            WeightType::Q4_Kx16 => dot_group_q4_avx2::<false>(group.as_ptr(), act),
            WeightType::Q5_Kx16 => dot_group_q4_avx2::<true>(group.as_ptr(), act),
            WeightType::Q6_Kx16 => dot_group_q6_avx2(group.as_ptr(), act),
            WeightType::Q3_Kx16 => dot_group_low_avx2::<true>(group.as_ptr(), act),
            WeightType::Q2_Kx16 => dot_group_low_avx2::<false>(group.as_ptr(), act),
            _ => unreachable!("{ty:?} is grouped"),
        };
        // Plain copies: intrinsic stores here, outside the features, are a call per vector.
        std::mem::transmute::<[__m256; 2], [f32; ROWS]>(acc)
    }
}

/// Byte `k` of each word, zero-extended, in both 16-bit halves of the word.
static SCALE_INDEX: [[u32; 8]; 4] = [
    shuffle_index([0, -1, 0, -1]),
    shuffle_index([1, -1, 1, -1]),
    shuffle_index([2, -1, 2, -1]),
    shuffle_index([3, -1, 3, -1]),
];

/// Word `w` (0..8) takes byte `w` of its lane (a broadcast 8-byte run: row `w`'s Q6_K scale)
/// into the high byte of both its 16-bit halves, for a sign-extending shift.
static Q6_SCALE_INDEX: [u32; 8] = {
    let mut idx = [0u32; 8];
    let mut w = 0;
    while w < 8 {
        idx[w] = 0x80 | (w as u32) << 8 | 0x80 << 16 | (w as u32) << 24;
        w += 1;
    }
    idx
};

/// The `vpshufb` tables [`SCALE_INDEX`] and [`PAIR_INDEX`], loaded.
///
/// # Safety
/// Called only from functions with AVX2 enabled.
#[inline(always)]
unsafe fn scale_pair_index() -> ([__m256i; 4], [__m256i; 2]) {
    // SAFETY: 32 bytes of tables of at least 8 words each. Plain loads: a closure would not
    // inherit the caller's features, and its load compiled to a call.
    unsafe {
        let t = |i: &[u32]| i.as_ptr() as *const u8;
        (
            [
                load(t(&SCALE_INDEX[0])),
                load(t(&SCALE_INDEX[1])),
                load(t(&SCALE_INDEX[2])),
                load(t(&SCALE_INDEX[3])),
            ],
            [load(t(&PAIR_INDEX[0])), load(t(&PAIR_INDEX[1]))],
        )
    }
}

/// The 32-bit word at `p`, broadcast to every lane.
///
/// # Safety
/// `p` readable for 4 bytes; AVX available.
#[inline(always)]
unsafe fn word(p: *const i8) -> __m256i {
    // SAFETY: the caller's.
    unsafe { _mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32)) }
}

/// # Safety
/// `p` readable for 32 bytes; AVX available.
#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    // SAFETY: the caller's.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// Asks for the lines `PREFETCH_BYTES` after `len` bytes from `p` (hints, never dereferenced).
/// The kernels ask for a block's lines a few at a time as they go: a burst of a whole block's
/// requests fills the core's miss buffers and stalls the loads behind them.
#[inline(always)]
fn prefetch_run(p: *const u8, len: usize) {
    crate::stream::prefetch_stream(p.wrapping_add(PREFETCH_BYTES) as usize, len.div_ceil(64));
}

/// # Safety
/// AVX2/FMA/F16C available; `group` holds `act.len()` Q4_K group blocks.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_group_q4_avx2<const FIVE: bool>(group: *const u8, act: &[BlockQ8K]) -> [__m256; 2] {
    // SAFETY: the caller's features.
    let (scale_index, pair_index) = unsafe { scale_pair_index() };
    let (gbb, qs) = if FIVE {
        (q5::GROUP_BLOCK, q5::QS)
    } else {
        (GROUP_BLOCK, QS)
    };
    let mut acc = [_mm256_setzero_ps(); 2];
    for (b, y) in act.iter().enumerate() {
        // SAFETY (loads): block b < act.len() is inside `group` (the caller's); activation
        // reads stay inside `y.qs`.
        unsafe {
            let gb = group.add(b * gbb);
            prefetch_run(gb, qs);
            let a = y.qs.as_ptr();
            // The mins' activation sums, sub-blocks 2i and 2i + 1 as an i16 pair.
            let bs = &y.bsums;
            let sums: [__m256i; 4] = std::array::from_fn(|i| {
                let lo = bs[4 * i].wrapping_add(bs[4 * i + 1]) as u16 as u32;
                let hi = bs[4 * i + 2].wrapping_add(bs[4 * i + 3]) as u16 as u32;
                _mm256_set1_epi32((lo | hi << 16) as i32)
            });
            let dy = _mm256_set1_ps(y.d);
            for (h, acc) in acc.iter_mut().enumerate() {
                let half = 32 * h;
                let (sc, mn) = scales_mins(gb, half);
                let mut s = _mm256_setzero_si256();
                for j in 0..8 {
                    if h == 0 {
                        prefetch_run(gb.add(qs + 256 * j), 256);
                    }
                    // Q5_K's values reach 31: its high-nibble products in an i16 sum of their own.
                    let (mut p, mut p5) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                    let mut qh = if FIVE {
                        load(gb.add(q5::QH + 64 * j + half))
                    } else {
                        _mm256_setzero_si256()
                    };
                    for q in 0..4 {
                        let v = load(gb.add(qs + 64 * (4 * j + q) + half));
                        let (lo, hi) = nibble_values::<FIVE>(v, &mut qh);
                        let al = word(a.add(32 * j + 4 * q));
                        let ah = word(a.add(32 * j + 16 + 4 * q));
                        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(lo, al));
                        if FIVE {
                            p5 = _mm256_add_epi16(p5, _mm256_maddubs_epi16(hi, ah));
                        } else {
                            p = _mm256_add_epi16(p, _mm256_maddubs_epi16(hi, ah));
                        }
                    }
                    let scale = _mm256_shuffle_epi8(sc[j / 4], scale_index[j % 4]);
                    s = _mm256_add_epi32(s, _mm256_madd_epi16(p, scale));
                    if FIVE {
                        s = _mm256_add_epi32(s, _mm256_madd_epi16(p5, scale));
                    }
                }
                let mut m = _mm256_setzero_si256();
                for (i, &sums) in sums.iter().enumerate() {
                    let mins = _mm256_shuffle_epi8(mn[i / 2], pair_index[i % 2]);
                    m = _mm256_add_epi32(m, _mm256_madd_epi16(mins, sums));
                }
                let d = _mm256_cvtph_ps(_mm_loadu_si128(gb.add(D + 16 * h) as *const _));
                let dmin = _mm256_cvtph_ps(_mm_loadu_si128(gb.add(DMIN + 16 * h) as *const _));
                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(d, dy), *acc);
                *acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(m), _mm256_mul_ps(dmin, dy), *acc);
            }
        }
    }
    acc
}

/// # Safety
/// AVX2/FMA/F16C available; `group` holds `act.len()` Q6_K group blocks.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_group_q6_avx2(group: *const u8, act: &[BlockQ8K]) -> [__m256; 2] {
    // SAFETY: a load of 32 bytes from an 8-word array.
    let scale_index = unsafe { load(Q6_SCALE_INDEX.as_ptr() as *const u8) };
    let mut acc = [_mm256_setzero_ps(); 2];
    for (b, y) in act.iter().enumerate() {
        // SAFETY (loads): block b < act.len() is inside `group` (the caller's); activation
        // reads stay inside `y.qs` and `y.bsums`.
        unsafe {
            let gb = group.add(b * q6::GROUP_BLOCK);
            prefetch_run(gb, q6::QS);
            let a = y.qs.as_ptr();
            let dy = _mm256_set1_ps(y.d);
            // Activation sums of values 16g..16g + 16, two g at a time as an i16 pair.
            let bs: [__m256i; 8] = std::array::from_fn(|p| {
                let pair = y.bsums[2 * p] as u16 as u32 | (y.bsums[2 * p + 1] as u16 as u32) << 16;
                _mm256_set1_epi32(pair as i32)
            });
            for (h, acc) in acc.iter_mut().enumerate() {
                let half = 8 * h;
                let mut s = _mm256_setzero_si256();
                for g in 0..16 {
                    if h == 0 {
                        prefetch_run(gb.add(q6::QS + 192 * g), 192);
                    }
                    let at = q6::QS + 192 * g + 32 * h;
                    let u = six_bit_values(gb.add(at));
                    let p: [__m256i; 4] = std::array::from_fn(|k| {
                        _mm256_maddubs_epi16(u[k], word(a.add(16 * g + 4 * k)))
                    });
                    let (p01, p23) = (_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3]));
                    // Row l's i8 scale, sign-extended, in both 16-bit halves of lane l.
                    let raw = (gb.add(q6::SCALES + 16 * g + half) as *const i64).read_unaligned();
                    let sc = _mm256_srai_epi16::<8>(_mm256_shuffle_epi8(
                        _mm256_set1_epi64x(raw),
                        scale_index,
                    ));
                    let dot =
                        _mm256_add_epi32(_mm256_madd_epi16(p01, sc), _mm256_madd_epi16(p23, sc));
                    s = _mm256_add_epi32(s, dot);
                }
                // The offset: 32 · Σ_g sc_g · Σa_g, scales of g and g + 1 as an i16 pair.
                let mut off = _mm256_setzero_si256();
                for (p, &bs) in bs.iter().enumerate() {
                    let at = q6::SCALES + 32 * p + half;
                    let (s0, s1) = (
                        _mm_loadl_epi64(gb.add(at) as *const _),
                        _mm_loadl_epi64(gb.add(at + 16) as *const _),
                    );
                    let pairs = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(s0, s1));
                    off = _mm256_add_epi32(off, _mm256_madd_epi16(pairs, bs));
                }
                s = _mm256_sub_epi32(s, _mm256_slli_epi32::<5>(off));
                let d = _mm256_cvtph_ps(_mm_loadu_si128(gb.add(q6::D + 16 * h) as *const _));
                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(d, dy), *acc);
            }
        }
    }
    acc
}

/// [`super::avx512_x16::tile_tokens`] at AVX2: the same operations on two halves of 8 rows,
/// each tile's exact sum made by `vpmaddubsw` summed in i16 (Q4_K: eight, at most 30480;
/// Q6_K: two, at most 32004) and widened by `vpmaddwd` by ones. Bitwise the packed tiles'
/// results.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile_tokens<const T: usize>(
    _: Avx2,
    ty: WeightType,
    group: &[u8],
    qs: &[u8],
    ad: &[f32],
    am: &[f32],
    lanes: usize,
    n: usize,
) -> [[f32; ROWS]; T] {
    let nsb = super::x16::checked_tile_tokens(ty, group, qs, ad, am, lanes, n + T - 1);
    let mut out = [[0f32; ROWS]; T];
    // SAFETY: the token proves the features; every length is checked above.
    unsafe {
        let (q, d, m) = (
            qs.as_ptr().add(4 * n),
            ad.as_ptr().add(n),
            am.as_ptr().add(n),
        );
        for h in 0..2 {
            let v = match ty {
                WeightType::Q4_Kx16 => {
                    tile_tokens_q4::<T, false>(group.as_ptr(), nsb, h, q, d, m, lanes)
                }
                WeightType::Q5_Kx16 => {
                    tile_tokens_q4::<T, true>(group.as_ptr(), nsb, h, q, d, m, lanes)
                }
                WeightType::Q3_Kx16 => {
                    tile_tokens_low::<T, true>(group.as_ptr(), nsb, h, q, d, m, lanes)
                }
                WeightType::Q2_Kx16 => {
                    tile_tokens_low::<T, false>(group.as_ptr(), nsb, h, q, d, m, lanes)
                }
                _ => tile_tokens_q6::<T>(group.as_ptr(), nsb, h, q, d, m, lanes),
            };
            for (o, v) in out.iter_mut().zip(v) {
                // A plain copy: an intrinsic store here, outside the features, is a call.
                o[8 * h..8 * h + 8].copy_from_slice(&std::mem::transmute::<__m256, [f32; 8]>(v));
            }
        }
    }
    out
}

/// `avx512_x16`'s `fold_tile` on 8 rows.
///
/// # Safety
/// Called only from functions with AVX2/FMA enabled; `ad` and `am` readable for `T` values.
#[inline(always)]
unsafe fn fold_tile<const T: usize>(
    v: &mut [__m256; T],
    s: [__m256i; T],
    dw: __m256,
    mw: __m256,
    ad: *const f32,
    am: *const f32,
) {
    // SAFETY: the caller's.
    unsafe {
        for (i, (v, s)) in v.iter_mut().zip(s).enumerate() {
            let scale = _mm256_mul_ps(_mm256_set1_ps(*ad.add(i)), dw);
            *v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, *v);
            *v = _mm256_fnmadd_ps(mw, _mm256_set1_ps(*am.add(i)), *v);
        }
    }
}

/// Rows `8h..8h + 8`.
///
/// # Safety
/// AVX2/FMA/F16C available; `group` holds `nsb` Q4_K group blocks; `qs` (at the token's lane)
/// `8 · nsb` activation tiles, `ad` and `am` `8 · nsb` runs of 16.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_tokens_q4<const T: usize, const FIVE: bool>(
    group: *const u8,
    nsb: usize,
    h: usize,
    qs: *const u8,
    ad: *const f32,
    am: *const f32,
    lanes: usize,
) -> [__m256; T] {
    // Activation tiles of `lanes` tokens: rows of 4 bytes a token, eight rows a block.
    let (row, tile) = (4 * lanes, 32 * lanes);
    // SAFETY: loads of 32 bytes from 8-word arrays.
    let bytes = [0, 1, 2, 3].map(|k| unsafe { load(BYTE_INDEX[k].as_ptr() as *const u8) });
    let ones = _mm256_set1_epi16(1);
    let zero = _mm256_setzero_ps();
    let half = 32 * h;
    let (gbb, qs_at) = if FIVE {
        (q5::GROUP_BLOCK, q5::QS)
    } else {
        (GROUP_BLOCK, QS)
    };
    let mut v = [_mm256_setzero_ps(); T];
    // SAFETY (loads): inside the caller's bounds; prefetches are hints, never dereferenced.
    unsafe {
        for sb in 0..nsb {
            let gb = group.add(sb * gbb);
            prefetch_run(gb, qs_at);
            let (sc, mn) = scales_mins(gb, half);
            let d = _mm256_cvtph_ps(_mm_loadu_si128(gb.add(D + 16 * h) as *const _));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(gb.add(DMIN + 16 * h) as *const _));
            for j in 0..8 {
                if h == 0 {
                    prefetch_run(gb.add(qs_at + 256 * j), 256);
                }
                let b = 8 * sb + j;
                let at = qs.add(b * tile) as *const i8;
                // Q5_K's values reach 31: its high-nibble products in an i16 sum of their own.
                let (mut p, mut p5) = ([_mm256_setzero_si256(); T], [_mm256_setzero_si256(); T]);
                let mut qh = if FIVE {
                    load(gb.add(q5::QH + 64 * j + half))
                } else {
                    _mm256_setzero_si256()
                };
                for q in 0..4 {
                    let x = load(gb.add(qs_at + 64 * (4 * j + q) + half));
                    let (lo, hi) = nibble_values::<FIVE>(x, &mut qh);
                    for (i, (p, p5)) in p.iter_mut().zip(&mut p5).enumerate() {
                        let a = at.add(4 * i);
                        *p = _mm256_add_epi16(*p, _mm256_maddubs_epi16(lo, word(a.add(row * q))));
                        let h = _mm256_maddubs_epi16(hi, word(a.add(row * (4 + q))));
                        if FIVE {
                            *p5 = _mm256_add_epi16(*p5, h);
                        } else {
                            *p = _mm256_add_epi16(*p, h);
                        }
                    }
                }
                let scj = _mm256_cvtepi32_ps(_mm256_shuffle_epi8(sc[j / 4], bytes[j % 4]));
                let mnj = _mm256_cvtepi32_ps(_mm256_shuffle_epi8(mn[j / 4], bytes[j % 4]));
                let dw = _mm256_mul_ps(d, scj);
                let mw = _mm256_add_ps(_mm256_mul_ps(dmin, mnj), _mm256_mul_ps(zero, dw));
                let mut s = [_mm256_setzero_si256(); T];
                for (s, (p, p5)) in s.iter_mut().zip(p.into_iter().zip(p5)) {
                    *s = _mm256_madd_epi16(p, ones);
                    if FIVE {
                        *s = _mm256_add_epi32(*s, _mm256_madd_epi16(p5, ones));
                    }
                }
                fold_tile(&mut v, s, dw, mw, ad.add(b * lanes), am.add(b * lanes));
            }
        }
    }
    v
}

/// Rows `8h..8h + 8`.
///
/// # Safety
/// AVX2/FMA/F16C available; `group` holds `nsb` Q6_K group blocks; `qs` (at the token's lane)
/// `8 · nsb` activation tiles, `ad` `8 · nsb` runs of 16, `am` `16 · nsb`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_tokens_q6<const T: usize>(
    group: *const u8,
    nsb: usize,
    h: usize,
    qs: *const u8,
    ad: *const f32,
    am: *const f32,
    lanes: usize,
) -> [__m256; T] {
    // Activation tiles of `lanes` tokens: rows of 4 bytes a token, eight rows a block.
    let (row, tile) = (4 * lanes, 32 * lanes);
    let ones = _mm256_set1_epi16(1);
    let (zero, offset) = (_mm256_setzero_ps(), _mm256_set1_ps(32.0));
    let mut v = [_mm256_setzero_ps(); T];
    // SAFETY (loads): inside the caller's bounds; prefetches are hints, never dereferenced.
    unsafe {
        for sb in 0..nsb {
            let gb = group.add(sb * q6::GROUP_BLOCK);
            prefetch_run(gb, q6::QS);
            let d = _mm256_cvtph_ps(_mm_loadu_si128(gb.add(q6::D + 16 * h) as *const _));
            for g in 0..16 {
                if h == 0 {
                    prefetch_run(gb.add(q6::QS + 192 * g), 192);
                }
                let at = q6::QS + 192 * g + 32 * h;
                let u = six_bit_values(gb.add(at));
                // Tile t = 16 sb + g: half g % 2 of activation block 8 sb + g / 2.
                let (t, ab) = (16 * sb + g, 8 * sb + g / 2);
                let a = qs.add(ab * tile + 4 * row * (g % 2)) as *const i8;
                let s: [__m256i; T] = std::array::from_fn(|i| {
                    let a = a.add(4 * i);
                    let p01 = _mm256_add_epi16(
                        _mm256_maddubs_epi16(u[0], word(a)),
                        _mm256_maddubs_epi16(u[1], word(a.add(row))),
                    );
                    let p23 = _mm256_add_epi16(
                        _mm256_maddubs_epi16(u[2], word(a.add(2 * row))),
                        _mm256_maddubs_epi16(u[3], word(a.add(3 * row))),
                    );
                    _mm256_add_epi32(_mm256_madd_epi16(p01, ones), _mm256_madd_epi16(p23, ones))
                });
                let sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64(
                    gb.add(q6::SCALES + 16 * g + 8 * h) as *const _
                ));
                let dw = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc));
                let mw = _mm256_add_ps(zero, _mm256_mul_ps(offset, dw));
                fold_tile(&mut v, s, dw, mw, ad.add(ab * lanes), am.add(t * lanes));
            }
        }
    }
    v
}

/// The scales (sub-blocks 0..4 / 4..8) and mins (0..4 / 4..8) of rows `8h..8h + 8` of Q4_K
/// group block `gb` (`half` = 32h), a byte each in the rows' words: ggml's word trick.
///
/// # Safety
/// Called only from functions with AVX2 enabled; `gb` one group block.
#[inline(always)]
unsafe fn scales_mins(gb: *const u8, half: usize) -> ([__m256i; 2], [__m256i; 2]) {
    // SAFETY: the caller's.
    unsafe {
        let (k1, k2, k30) = (
            _mm256_set1_epi32(0x3f3f_3f3f),
            _mm256_set1_epi32(0x0f0f_0f0f),
            _mm256_set1_epi32(0x3030_3030),
        );
        let w0 = load(gb.add(SCALES + half));
        let w1 = load(gb.add(SCALES + 64 + half));
        let w2 = load(gb.add(SCALES + 128 + half));
        let hi_bits = |w: __m256i| _mm256_and_si256(_mm256_srli_epi32::<2>(w), k30);
        let sc = [
            _mm256_and_si256(w0, k1),
            _mm256_or_si256(_mm256_and_si256(w2, k2), hi_bits(w0)),
        ];
        let mn = [
            _mm256_and_si256(w1, k1),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi32::<4>(w2), k2),
                hi_bits(w1),
            ),
        ];
        (sc, mn)
    }
}

/// The four vectors of 6-bit values (16 values of 8 rows) of a Q6_K group block's run at `p`:
/// two 32-byte loads of low nibbles and one of high bit pairs, put together.
///
/// # Safety
/// Called only from functions with AVX2 enabled; `p`, `p + 64` and `p + 128` readable for 32
/// bytes.
#[inline(always)]
unsafe fn six_bit_values(p: *const u8) -> [__m256i; 4] {
    // SAFETY: the caller's.
    unsafe {
        let (low, m30) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x30));
        let join6 = |n: __m256i, hi: __m256i| {
            _mm256_or_si256(_mm256_and_si256(n, low), _mm256_and_si256(hi, m30))
        };
        let (n0, n1, hb) = (load(p), load(p.add(64)), load(p.add(128)));
        [
            join6(n0, _mm256_slli_epi16::<4>(hb)),
            join6(_mm256_srli_epi16::<4>(n0), _mm256_slli_epi16::<2>(hb)),
            join6(n1, hb),
            join6(_mm256_srli_epi16::<4>(n1), _mm256_srli_epi16::<2>(hb)),
        ]
    }
}

/// The values of one nibble run `x` (8 rows of a Q4_K or Q5_K group block): its low nibbles,
/// then its high nibbles; with `FIVE`, each with its fifth bit from the sub-block's bit run
/// `qh` (bit 0 of each byte for the low nibbles, bit 4 for the high ones), which then moves on
/// to the next run's bits.
///
/// # Safety
/// Called only from functions with AVX2 enabled.
#[inline(always)]
unsafe fn nibble_values<const FIVE: bool>(x: __m256i, qh: &mut __m256i) -> (__m256i, __m256i) {
    // SAFETY: register-only intrinsics; the caller has the features.
    unsafe {
        let (low, m10) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x10));
        let lo = _mm256_and_si256(x, low);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), low);
        if !FIVE {
            return (lo, hi);
        }
        let lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16::<4>(*qh), m10));
        let hi = _mm256_or_si256(hi, _mm256_and_si256(*qh, m10));
        *qh = _mm256_srli_epi16::<1>(*qh);
        (lo, hi)
    }
}

/// The parts of the Q2_Kx16 and Q3_Kx16 kernels at AVX2: `avx512_x16`'s on rows `8h..8h + 8`
/// (the low or high 32 bytes of each 64-byte run).
mod low_bits {
    use super::*;
    use crate::kquants::x16::{q2, q3};

    /// As `avx512_x16::low_bits::values`, for 8 rows.
    ///
    /// # Safety
    /// Called only from functions with AVX2 enabled.
    #[inline(always)]
    pub(super) unsafe fn values<const Q3: bool, const H: usize>(
        x: __m256i,
        hm: __m256i,
    ) -> [__m256i; 4] {
        // SAFETY: register-only intrinsics; the caller has the features.
        unsafe {
            let (m03, m04) = (_mm256_set1_epi8(3), _mm256_set1_epi8(4));
            let lo = [
                x,
                _mm256_srli_epi16::<2>(x),
                _mm256_srli_epi16::<4>(x),
                _mm256_srli_epi16::<6>(x),
            ]
            .map(|v| _mm256_and_si256(v, m03));
            if !Q3 {
                return lo;
            }
            let hi = if H == 0 {
                [
                    _mm256_slli_epi16::<2>(hm),
                    _mm256_slli_epi16::<1>(hm),
                    hm,
                    _mm256_srli_epi16::<1>(hm),
                ]
            } else {
                [
                    _mm256_srli_epi16::<2>(hm),
                    _mm256_srli_epi16::<3>(hm),
                    _mm256_srli_epi16::<4>(hm),
                    _mm256_srli_epi16::<5>(hm),
                ]
            };
            std::array::from_fn(|s| _mm256_or_si256(lo[s], _mm256_and_si256(hi[s], m04)))
        }
    }

    /// Calls `f(g, values)` for the 16 blocks of 16 values of rows `8h..8h + 8` (`half` =
    /// 32h) of group block `gb` in order, the four vectors of values made by [`values`]; with
    /// `prefetch` each block's run of low bits asked for `PREFETCH_BYTES` ahead first.
    ///
    /// # Safety
    /// Called only from functions with AVX2 enabled; `gb` one group block of the type.
    #[inline(always)]
    pub(super) unsafe fn blocks<const Q3: bool>(
        gb: *const u8,
        half: usize,
        prefetch: bool,
        mut f: impl FnMut(usize, [__m256i; 4]),
    ) {
        let (_, qs) = low_bits_shape::<Q3>();
        // SAFETY (loads): inside the group block (the caller's).
        unsafe {
            for p in 0..8 {
                let hm = if Q3 {
                    load(gb.add(q3::HM + 64 * p + half))
                } else {
                    _mm256_setzero_si256()
                };
                for hh in 0..2 {
                    let g = 2 * p + hh;
                    if prefetch {
                        prefetch_run(gb.add(qs + 64 * g), 64);
                    }
                    let x = load(gb.add(qs + 64 * g + half));
                    let u = if hh == 0 {
                        values::<Q3, 0>(x, hm)
                    } else {
                        values::<Q3, 1>(x, hm)
                    };
                    f(g, u);
                }
            }
        }
    }

    /// As `avx512_x16::low_bits::scale_bytes`, for rows `8h..8h + 8` (`half` = 32h).
    ///
    /// # Safety
    /// Called only from functions with AVX2 enabled; `gb` one group block.
    #[inline(always)]
    pub(super) unsafe fn scale_bytes<const Q3: bool>(gb: *const u8, half: usize) -> [__m256i; 4] {
        // SAFETY: the caller's.
        unsafe {
            if !Q3 {
                return [0, 1, 2, 3].map(|w| load(gb.add(q2::SCALES + 64 * w + half)));
            }
            let (k2, k30) = (
                _mm256_set1_epi32(0x0f0f_0f0f),
                _mm256_set1_epi32(0x3030_3030),
            );
            let w0 = load(gb.add(q3::SCALES + half));
            let w1 = load(gb.add(q3::SCALES + 64 + half));
            let w2 = load(gb.add(q3::SCALES + 128 + half));
            let join = |a: __m256i, hi: __m256i| {
                _mm256_or_si256(_mm256_and_si256(a, k2), _mm256_and_si256(hi, k30))
            };
            [
                join(w0, _mm256_slli_epi32::<4>(w2)),
                join(w1, _mm256_slli_epi32::<2>(w2)),
                join(_mm256_srli_epi32::<4>(w0), w2),
                join(_mm256_srli_epi32::<4>(w1), _mm256_srli_epi32::<2>(w2)),
            ]
        }
    }
}

/// `avx512_x16`'s `dot_group_low_avx512` at AVX2, on two halves of 8 rows: per block of 16
/// values four `vpmaddubsw` summed in i16 (at most 4 · 2 · 7 · 127 = 7112; Q3_K's offset `4·Σa`
/// subtracted from the low half of each lane, at most 8128 more), one `vpmaddwd` by the
/// scales; Q2_K's mins by eight `vpmaddwd` per super-block.
///
/// # Safety
/// AVX2/FMA/F16C available; `group` holds `act.len()` group blocks of the type.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_group_low_avx2<const Q3: bool>(group: *const u8, act: &[BlockQ8K]) -> [__m256; 2] {
    use crate::kquants::x16::q2;
    // SAFETY: the caller's features.
    let (scale_index, pair_index) = unsafe { scale_pair_index() };
    let (gbb, qs) = low_bits_shape::<Q3>();
    let (k32, m0f) = (_mm256_set1_epi16(32), _mm256_set1_epi16(0x0f));
    let mut acc = [_mm256_setzero_ps(); 2];
    for (b, y) in act.iter().enumerate() {
        // SAFETY (loads): block b < act.len() is inside `group` (the caller's); activation
        // reads stay inside `y.qs`.
        unsafe {
            let gb = group.add(b * gbb);
            prefetch_run(gb, qs);
            let a = y.qs.as_ptr();
            let dy = _mm256_set1_ps(y.d);
            for (h, acc) in acc.iter_mut().enumerate() {
                let half = 32 * h;
                let scb = low_bits::scale_bytes::<Q3>(gb, half);
                let mut s = _mm256_setzero_si256();
                low_bits::blocks::<Q3>(gb, half, h == 0, |g, u| {
                    let mut dot = _mm256_setzero_si256();
                    for (k, &u) in u.iter().enumerate() {
                        let p = _mm256_maddubs_epi16(u, word(a.add(16 * g + 4 * k)));
                        dot = _mm256_add_epi16(dot, p);
                    }
                    let raw = _mm256_shuffle_epi8(scb[g / 4], scale_index[g % 4]);
                    let sc = if Q3 {
                        let off = (4 * y.bsums[g] as i32) as u16 as i32;
                        dot = _mm256_sub_epi16(dot, _mm256_set1_epi32(off));
                        _mm256_sub_epi16(raw, k32)
                    } else {
                        _mm256_and_si256(raw, m0f)
                    };
                    s = _mm256_add_epi32(s, _mm256_madd_epi16(dot, sc));
                });
                let d = _mm256_cvtph_ps(_mm_loadu_si128(gb.add(q2::D + 16 * h) as *const _));
                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(d, dy), *acc);
                if !Q3 {
                    // M = Σ_g mn_g · Σa_g: mins of blocks 2q, 2q + 1 as an i16 pair.
                    let mut m = _mm256_setzero_si256();
                    for (w, &sb) in scb.iter().enumerate() {
                        for (p, &pick) in pair_index.iter().enumerate() {
                            let g = 4 * w + 2 * p;
                            let mins = _mm256_srli_epi16::<4>(_mm256_shuffle_epi8(sb, pick));
                            let sums =
                                y.bsums[g] as u16 as u32 | (y.bsums[g + 1] as u16 as u32) << 16;
                            let sums = _mm256_set1_epi32(sums as i32);
                            m = _mm256_add_epi32(m, _mm256_madd_epi16(mins, sums));
                        }
                    }
                    let dmin =
                        _mm256_cvtph_ps(_mm_loadu_si128(gb.add(q2::DMIN + 16 * h) as *const _));
                    *acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(m), _mm256_mul_ps(dmin, dy), *acc);
                }
            }
        }
    }
    acc
}

/// Rows `8h..8h + 8` of `avx512_x16`'s `tile_tokens_low`: each tile's exact sum by four
/// `vpmaddubsw` summed in i16 (at most 7112) and widened by `vpmaddwd` by ones.
///
/// # Safety
/// AVX2/FMA/F16C available; `group` holds `nsb` group blocks of the type; `qs` (at the token's
/// lane) `8 · nsb` activation tiles, `ad` `8 · nsb` runs of 16, `am` `16 · nsb`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_tokens_low<const T: usize, const Q3: bool>(
    group: *const u8,
    nsb: usize,
    h: usize,
    qs: *const u8,
    ad: *const f32,
    am: *const f32,
    lanes: usize,
) -> [__m256; T] {
    use crate::kquants::x16::q2;
    // Activation tiles of `lanes` tokens: rows of 4 bytes a token, eight rows a block.
    let (row, tile) = (4 * lanes, 32 * lanes);
    let index = |idx: &[u32]| {
        assert!(idx.len() >= 8);
        // SAFETY: 32 bytes of a table of at least 8 words.
        unsafe { load(idx.as_ptr() as *const u8) }
    };
    let bytes = [0, 1, 2, 3].map(|k| index(&BYTE_INDEX[k]));
    let ones = _mm256_set1_epi16(1);
    let (k32, m0f) = (_mm256_set1_epi32(32), _mm256_set1_epi32(0x0f));
    let (zero, kf) = (
        _mm256_setzero_ps(),
        _mm256_set1_ps(if Q3 { 4.0 } else { 0.0 }),
    );
    let (gbb, qs_at) = low_bits_shape::<Q3>();
    let half = 32 * h;
    let mut v = [_mm256_setzero_ps(); T];
    // SAFETY (loads): inside the caller's bounds; prefetches are hints, never dereferenced.
    unsafe {
        for sb in 0..nsb {
            let gb = group.add(sb * gbb);
            prefetch_run(gb, qs_at);
            let scb = low_bits::scale_bytes::<Q3>(gb, half);
            let d = _mm256_cvtph_ps(_mm_loadu_si128(gb.add(q2::D + 16 * h) as *const _));
            let dmin = if Q3 {
                zero
            } else {
                _mm256_cvtph_ps(_mm_loadu_si128(gb.add(q2::DMIN + 16 * h) as *const _))
            };
            low_bits::blocks::<Q3>(gb, half, h == 0, |g, u| {
                // Tile t = 16 sb + g: half g % 2 of activation block 8 sb + g / 2.
                let (t, ab) = (16 * sb + g, 8 * sb + g / 2);
                let a = qs.add(ab * tile + 4 * row * (g % 2)) as *const i8;
                let s: [__m256i; T] = std::array::from_fn(|i| {
                    let a = a.add(4 * i);
                    let mut p = _mm256_setzero_si256();
                    for (k, &u) in u.iter().enumerate() {
                        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(u, word(a.add(row * k))));
                    }
                    _mm256_madd_epi16(p, ones)
                });
                let raw = _mm256_shuffle_epi8(scb[g / 4], bytes[g % 4]);
                let (sc, mn) = if Q3 {
                    (_mm256_sub_epi32(raw, k32), raw)
                } else {
                    (_mm256_and_si256(raw, m0f), _mm256_srli_epi32::<4>(raw))
                };
                let dw = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc));
                let own = if Q3 {
                    zero
                } else {
                    _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(mn))
                };
                let mw = _mm256_add_ps(own, _mm256_mul_ps(kf, dw));
                fold_tile(&mut v, s, dw, mw, ad.add(ab * lanes), am.add(t * lanes));
            });
        }
    }
    v
}
