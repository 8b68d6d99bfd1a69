//! AVX-512 VNNI decode kernels for repacked K-quant matrices (`x16.rs`): one group of 16
//! rows against one token's Q8_K blocks, a row in each 32-bit lane; twin
//! [`super::x16::dot_block_scalar`], bitwise.
//!
//! Q4_K, per super-block of 16 rows: the packed scales unpacked with ggml's word trick on 16 rows
//! at once (nine instructions); per sub-block four 64-byte loads, each split into low nibbles
//! and high nibbles kept 16 times too large (two ANDs), eight `vpdpbusd` against activation
//! words broadcast from memory, the high sum shifted back (exact: it is a multiple of 16), one
//! `vpmulld` by the sub-block's scales; four `vpdpwssd` for the mins; two FMAs in `f32`.
//!
//! Q6_K, per 16 values of 16 rows: three 64-byte loads (two of low nibbles, one of high bit
//! pairs) put together into four vectors of 6-bit values (a shift, an AND and a ternary-logic
//! OR each), four `vpdpbusd`, the offset's `32·Σa` subtracted, one `vpmulld` by the scales.
//!
//! Q3_K and Q2_K, per 16 values of 16 rows: one 64-byte load of low bit pairs made into four
//! vectors (a shift and an AND; Q3_K's third bit from its high-bit run by a shift, an AND and a
//! ternary-logic OR), four `vpdpbusd`, one `vpmulld` by the scales; Q2_K's mins by `vpdpwssd`.

use std::arch::x86_64::*;

use super::x16::q4::{D, DMIN, GROUP_BLOCK, QS, SCALES};
use super::x16::{low_bits_shape, q5, q6, ROWS};
use super::BlockQ8K;
use crate::avx2_dot::PREFETCH_BYTES;
use crate::cpu::Avx512;
use crate::WeightType;

/// One group of repacked `ty` (`act.len()` super-blocks of 16 rows, back to back in `group`)
/// · one token.
pub(crate) fn dot_group(_: Avx512, ty: WeightType, group: &[u8], act: &[BlockQ8K]) -> [f32; ROWS] {
    assert!(ty.is_grouped(), "{ty:?} is not a repacked K-quant type");
    assert!(group.len() >= act.len() * super::x16::group_block(ty));
    // SAFETY: the token proves the features; every block read is inside `group` (checked).
    unsafe {
        let acc = match ty {
            WeightType::Q4_Kx16 => dot_group_avx512::<false>(group.as_ptr(), act),
            WeightType::Q5_Kx16 => dot_group_avx512::<true>(group.as_ptr(), act),
            WeightType::Q6_Kx16 => dot_group_q6_avx512(group.as_ptr(), act),
            WeightType::Q3_Kx16 => dot_group_low_avx512::<true>(group.as_ptr(), act),
            WeightType::Q2_Kx16 => dot_group_low_avx512::<false>(group.as_ptr(), act),
            _ => unreachable!("{ty:?} is grouped"),
        };
        // A plain copy: an intrinsic store here, outside the features, is a call per vector.
        std::mem::transmute::<__m512, [f32; ROWS]>(acc)
    }
}

/// `vpshufb` indices for `W` words (lanes of 16 bytes): each word `w` takes bytes `4 (w % 4) +
/// pick[i]` of its lane, or zero where `pick[i]` is negative. The AVX2 kernels load the first
/// 8 words of these tables (the pattern repeats every lane).
pub(super) const fn shuffle_index<const W: usize>(pick: [i32; 4]) -> [u32; W] {
    let mut idx = [0u32; W];
    let mut w = 0;
    while w < W {
        let mut i = 0;
        while i < 4 {
            let b = if pick[i] < 0 {
                0x80
            } else {
                (pick[i] + 4 * (w as i32 % 4)) as u32
            };
            idx[w] |= b << (8 * i);
            i += 1;
        }
        w += 1;
    }
    idx
}

/// Byte `k` of each word, zero-extended to the word.
pub(super) static BYTE_INDEX: [[u32; 16]; 4] = [
    shuffle_index([0, -1, -1, -1]),
    shuffle_index([1, -1, -1, -1]),
    shuffle_index([2, -1, -1, -1]),
    shuffle_index([3, -1, -1, -1]),
];
/// Bytes `2p` and `2p + 1` of each word, each zero-extended to 16 bits.
pub(super) static PAIR_INDEX: [[u32; 16]; 2] =
    [shuffle_index([0, -1, 1, -1]), shuffle_index([2, -1, 3, -1])];

/// The constants of [`block_step`].
#[derive(Clone, Copy)]
struct Consts {
    low: __m512i,
    high: __m512i,
    m10: __m512i,
    k1: __m512i,
    k2: __m512i,
    k30: __m512i,
    /// `vpshufb` indices: byte `k` of each word, zero-extended to the word.
    bytes: [__m512i; 4],
    /// Bytes `2p`, `2p + 1` of each word, each zero-extended to 16 bits.
    pairs: [__m512i; 2],
}

/// The 32-bit word at `p`, broadcast to every lane.
///
/// # Safety
/// `p` readable for 4 bytes; AVX-512 F available.
#[inline(always)]
unsafe fn word(p: *const i8) -> __m512i {
    // SAFETY: the caller's.
    unsafe { _mm512_set1_epi32(std::ptr::read_unaligned(p as *const i32)) }
}

/// # Safety
/// The features available; `group` holds `act.len()` group blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_group_avx512<const FIVE: bool>(group: *const u8, act: &[BlockQ8K]) -> __m512 {
    // SAFETY: loads of 64 bytes from 16-word arrays.
    let index = |idx: &[u32; 16]| unsafe { _mm512_loadu_si512(idx.as_ptr() as *const _) };
    let c = Consts {
        low: _mm512_set1_epi8(0x0f),
        high: _mm512_set1_epi8(0xf0u8 as i8),
        m10: _mm512_set1_epi8(0x10),
        k1: _mm512_set1_epi32(0x3f3f_3f3f),
        k2: _mm512_set1_epi32(0x0f0f_0f0f),
        k30: _mm512_set1_epi32(0x3030_3030),
        bytes: [0, 1, 2, 3].map(|k| index(&BYTE_INDEX[k])),
        pairs: [0, 1].map(|p| index(&PAIR_INDEX[p])),
    };
    let mut acc = _mm512_setzero_ps();
    for (b, y) in act.iter().enumerate() {
        // SAFETY: block b < act.len() is inside the group (the caller's).
        let gbb = if FIVE { q5::GROUP_BLOCK } else { GROUP_BLOCK };
        unsafe { acc = block_step::<FIVE>(&c, group.add(b * gbb), y, acc) };
    }
    acc
}

/// `acc` plus one super-block `gb` of 16 rows · `y`. Always inlined (into
/// [`dot_group_avx512`], whose features it needs), so the constants stay in registers.
///
/// # Safety
/// Called only from functions with the AVX-512 features enabled; `gb` holds one group block.
#[inline(always)]
unsafe fn block_step<const FIVE: bool>(
    c: &Consts,
    gb: *const u8,
    y: &BlockQ8K,
    mut acc: __m512,
) -> __m512 {
    let Consts {
        low,
        high,
        m10,
        k1,
        k2,
        k30,
        bytes,
        pairs,
    } = *c;
    // SAFETY (loads): inside `gb` (the caller's) and `y.qs`; prefetches are hints, never
    // dereferenced.
    unsafe {
        let ahead = gb.wrapping_add(PREFETCH_BYTES);
        let qs = if FIVE { q5::QS } else { QS };
        crate::stream::prefetch_stream(ahead as usize, qs / 64);
        let (sc, mn) = scales_mins(gb, k1, k2, k30);
        let a = y.qs.as_ptr();
        let mut s = _mm512_setzero_si512();
        for j in 0..8 {
            let (mut lo, mut hi) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            let mut qh = if FIVE {
                _mm512_loadu_si512(gb.add(q5::QH + 64 * j) as *const _)
            } else {
                _mm512_setzero_si512()
            };
            for q in 0..4 {
                let at = qs + 64 * (4 * j + q);
                crate::stream::prefetch_stream(ahead.wrapping_add(at) as usize, 1);
                let v = _mm512_loadu_si512(gb.add(at) as *const _);
                let al = word(a.add(32 * j + 4 * q));
                let ah = word(a.add(32 * j + 16 + 4 * q));
                if FIVE {
                    let (l, h) = five_bit_values(v, &mut qh, low, m10);
                    lo = _mm512_dpbusd_epi32(lo, l, al);
                    hi = _mm512_dpbusd_epi32(hi, h, ah);
                } else {
                    lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(v, low), al);
                    hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(v, high), ah);
                }
            }
            // Q4_K's high nibbles were multiplied 16 times too large (exact: shifted back).
            let sum = if FIVE {
                _mm512_add_epi32(lo, hi)
            } else {
                _mm512_add_epi32(lo, _mm512_srai_epi32::<4>(hi))
            };
            let scale = _mm512_shuffle_epi8(sc[j / 4], bytes[j % 4]);
            s = _mm512_add_epi32(s, _mm512_mullo_epi32(sum, scale));
        }
        // M: mins of sub-blocks 2i, 2i + 1 against their activation sums, as i16 pairs.
        let bs = &y.bsums;
        let mut m = _mm512_setzero_si512();
        for i in 0..4 {
            let lo = bs[4 * i].wrapping_add(bs[4 * i + 1]) as u16 as u32;
            let hi = bs[4 * i + 2].wrapping_add(bs[4 * i + 3]) as u16 as u32;
            let sums = _mm512_set1_epi32((lo | hi << 16) as i32);
            let mins = _mm512_shuffle_epi8(mn[i / 2], pairs[i % 2]);
            m = _mm512_dpwssd_epi32(m, mins, sums);
        }
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(gb.add(D) as *const _));
        let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(gb.add(DMIN) as *const _));
        let dy = _mm512_set1_ps(y.d);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d, dy), acc);
        acc = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(dmin, dy), acc);
    }
    acc
}

/// # Safety
/// The features available; `group` holds `act.len()` Q6_K group blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_group_q6_avx512(group: *const u8, act: &[BlockQ8K]) -> __m512 {
    let low = _mm512_set1_epi8(0x0f);
    let m30 = _mm512_set1_epi8(0x30);
    let mut acc = _mm512_setzero_ps();
    for (b, y) in act.iter().enumerate() {
        // SAFETY (loads): block b < act.len() is inside `group` (the caller's); activation
        // reads stay inside `y.qs`; prefetches are hints, never dereferenced.
        unsafe {
            let gb = group.add(b * q6::GROUP_BLOCK);
            let ahead = gb.wrapping_add(PREFETCH_BYTES);
            crate::stream::prefetch_stream(ahead as usize, q6::QS / 64);
            let a = y.qs.as_ptr();
            let mut s = _mm512_setzero_si512();
            for g in 0..16 {
                let at = q6::QS + 192 * g;
                for v in 0..3 {
                    crate::stream::prefetch_stream(ahead.wrapping_add(at + 64 * v) as usize, 1);
                }
                let u = six_bit_values(gb.add(at), low, m30);
                let mut dot = _mm512_set1_epi32(-32 * y.bsums[g] as i32);
                for (step, &u) in u.iter().enumerate() {
                    dot = _mm512_dpbusd_epi32(dot, u, word(a.add(16 * g + 4 * step)));
                }
                let sc =
                    _mm512_cvtepi8_epi32(_mm_loadu_si128(gb.add(q6::SCALES + 16 * g) as *const _));
                s = _mm512_add_epi32(s, _mm512_mullo_epi32(dot, sc));
            }
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(gb.add(q6::D) as *const _));
            acc = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(s),
                _mm512_mul_ps(d, _mm512_set1_ps(y.d)),
                acc,
            );
        }
    }
    acc
}

/// 6-bit values: bits 0..4 from the low nibbles of `n`, bits 4..6 from bits 4, 5 of `hi`.
///
/// # Safety
/// Called only from functions with AVX-512 F enabled.
#[inline(always)]
unsafe fn join6(n: __m512i, hi: __m512i, low: __m512i, m30: __m512i) -> __m512i {
    // SAFETY: register-only intrinsics; the caller has the features.
    unsafe { _mm512_ternarylogic_epi32::<0xEA>(n, low, _mm512_and_si512(hi, m30)) }
}

/// `T` tokens (lanes `n..n + T` of a token group) against one group of repacked `ty` (16 rows,
/// `group.len() / group_block` super-blocks) read where it lies, the weights loaded once for
/// all `T`, by the arithmetic of the block tiles in the VNNI layout
/// (`block_tile_kquant.rs`, `avx512_blocks.rs`): per tile (a block of 32 values, or of 16 for Q6_K),
/// the exact int32 sum of `u · a`, then `v += s · (d_a · d_w)`, `v −= m_w · (d_a · Σa)`, with
/// `d_w` and `m_w` made as the packer makes them. `qs`, `ad`, `am`: the token group's
/// activation tiles, scales and sums (`block_tiles::TileAct`, groups of `lanes` tokens). Each token's result is bitwise the
/// packed tiles', whatever `T` and the other tokens.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile_tokens<const T: usize>(
    _: Avx512,
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
        let (g, q, d, m) = (
            group.as_ptr(),
            qs.as_ptr().add(4 * n),
            ad.as_ptr().add(n),
            am.as_ptr().add(n),
        );
        let v = match ty {
            WeightType::Q4_Kx16 => tile_tokens_q4::<T, false>(g, nsb, q, d, m, lanes),
            WeightType::Q5_Kx16 => tile_tokens_q4::<T, true>(g, nsb, q, d, m, lanes),
            WeightType::Q3_Kx16 => tile_tokens_low::<T, true>(g, nsb, q, d, m, lanes),
            WeightType::Q2_Kx16 => tile_tokens_low::<T, false>(g, nsb, q, d, m, lanes),
            _ => tile_tokens_q6::<T>(g, nsb, q, d, m, lanes),
        };
        for (o, v) in out.iter_mut().zip(v) {
            // A plain copy: an intrinsic store here, outside the features, is a call per vector.
            *o = std::mem::transmute::<__m512, [f32; ROWS]>(v);
        }
    }
    out
}

/// The block tiles' epilogue for one tile of `T` tokens, as the packed-tile kernels do it:
/// `v += s · (d_a · d_w)`, then `v −= m_w · Σ_a` (`Σ_a` the token's activation sum of the
/// tile times its scale), `ad` and `am` the tokens' scales and sums of the tile, a token
/// after another.
///
/// # Safety
/// Called only from functions with AVX-512 F enabled; `ad` and `am` readable for `T` values.
#[inline(always)]
unsafe fn fold_tile<const T: usize>(
    v: &mut [__m512; T],
    s: [__m512i; T],
    dw: __m512,
    mw: __m512,
    ad: *const f32,
    am: *const f32,
) {
    // SAFETY: the caller's.
    unsafe {
        for (i, (v, s)) in v.iter_mut().zip(s).enumerate() {
            let scale = _mm512_mul_ps(_mm512_set1_ps(*ad.add(i)), dw);
            *v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, *v);
            *v = _mm512_fnmadd_ps(mw, _mm512_set1_ps(*am.add(i)), *v);
        }
    }
}

/// # Safety
/// The features available; `group` holds `nsb` Q4_K group blocks; `qs` (at the first token's
/// lane) `8 · nsb` activation tiles, `ad` and `am` `8 · nsb` runs of 16, `T` lanes readable.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tile_tokens_q4<const T: usize, const FIVE: bool>(
    group: *const u8,
    nsb: usize,
    qs: *const u8,
    ad: *const f32,
    am: *const f32,
    lanes: usize,
) -> [__m512; T] {
    // Activation tiles of `lanes` tokens: rows of 4 bytes a token, eight rows a block.
    let (row, tile) = (4 * lanes, 32 * lanes);
    // SAFETY: loads of 64 bytes from 16-word arrays.
    let index = |idx: &[u32; 16]| unsafe { _mm512_loadu_si512(idx.as_ptr() as *const _) };
    let bytes = [0, 1, 2, 3].map(|k| index(&BYTE_INDEX[k]));
    let (low, k1, k2, k30) = (
        _mm512_set1_epi8(0x0f),
        _mm512_set1_epi32(0x3f3f_3f3f),
        _mm512_set1_epi32(0x0f0f_0f0f),
        _mm512_set1_epi32(0x3030_3030),
    );
    let (zero, m10) = (_mm512_setzero_ps(), _mm512_set1_epi8(0x10));
    let (gbb, qs_at) = if FIVE {
        (q5::GROUP_BLOCK, q5::QS)
    } else {
        (GROUP_BLOCK, QS)
    };
    let mut v = [_mm512_setzero_ps(); T];
    // SAFETY (loads): inside the caller's bounds; prefetches are hints, never dereferenced.
    unsafe {
        for sb in 0..nsb {
            let gb = group.add(sb * gbb);
            let ahead = gb.wrapping_add(PREFETCH_BYTES);
            crate::stream::prefetch_stream(ahead as usize, qs_at / 64);
            let (sc, mn) = scales_mins(gb, k1, k2, k30);
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(gb.add(D) as *const _));
            let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(gb.add(DMIN) as *const _));
            for j in 0..8 {
                let b = 8 * sb + j;
                let at = qs.add(b * tile) as *const i8;
                let mut s = [_mm512_setzero_si512(); T];
                let mut qh = if FIVE {
                    _mm512_loadu_si512(gb.add(q5::QH + 64 * j) as *const _)
                } else {
                    _mm512_setzero_si512()
                };
                for q in 0..4 {
                    let off = qs_at + 64 * (4 * j + q);
                    crate::stream::prefetch_stream(ahead.wrapping_add(off) as usize, 1);
                    let x = _mm512_loadu_si512(gb.add(off) as *const _);
                    let (lo, hi) = if FIVE {
                        five_bit_values(x, &mut qh, low, m10)
                    } else {
                        (
                            _mm512_and_si512(x, low),
                            _mm512_and_si512(_mm512_srli_epi16::<4>(x), low),
                        )
                    };
                    for (i, s) in s.iter_mut().enumerate() {
                        let a = at.add(4 * i);
                        *s = _mm512_dpbusd_epi32(*s, lo, word(a.add(row * q)));
                        *s = _mm512_dpbusd_epi32(*s, hi, word(a.add(row * (4 + q))));
                    }
                }
                // `d · sc_j` and `dmin · mn_j + 0 · (d · sc_j)`, as the packer makes them.
                let pick = |w: __m512i| _mm512_cvtepi32_ps(_mm512_shuffle_epi8(w, bytes[j % 4]));
                let dw = _mm512_mul_ps(d, pick(sc[j / 4]));
                let mw = _mm512_add_ps(
                    _mm512_mul_ps(dmin, pick(mn[j / 4])),
                    _mm512_mul_ps(zero, dw),
                );
                fold_tile(&mut v, s, dw, mw, ad.add(b * lanes), am.add(b * lanes));
            }
        }
    }
    v
}

/// # Safety
/// The features available; `group` holds `nsb` Q6_K group blocks; `qs` (at the first token's
/// lane) `8 · nsb` activation tiles, `ad` `8 · nsb` runs of 16, `am` `16 · nsb`, `T` lanes
/// readable.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tile_tokens_q6<const T: usize>(
    group: *const u8,
    nsb: usize,
    qs: *const u8,
    ad: *const f32,
    am: *const f32,
    lanes: usize,
) -> [__m512; T] {
    // Activation tiles of `lanes` tokens: rows of 4 bytes a token, eight rows a block.
    let (row, tile) = (4 * lanes, 32 * lanes);
    let low = _mm512_set1_epi8(0x0f);
    let m30 = _mm512_set1_epi8(0x30);
    let (zero, offset) = (_mm512_setzero_ps(), _mm512_set1_ps(32.0));
    let mut v = [_mm512_setzero_ps(); T];
    // SAFETY (loads): inside the caller's bounds; prefetches are hints, never dereferenced.
    unsafe {
        for sb in 0..nsb {
            let gb = group.add(sb * q6::GROUP_BLOCK);
            let ahead = gb.wrapping_add(PREFETCH_BYTES);
            crate::stream::prefetch_stream(ahead as usize, q6::QS / 64);
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(gb.add(q6::D) as *const _));
            for g in 0..16 {
                let at = q6::QS + 192 * g;
                for k in 0..3 {
                    crate::stream::prefetch_stream(ahead.wrapping_add(at + 64 * k) as usize, 1);
                }
                let u = six_bit_values(gb.add(at), low, m30);
                // Tile t = 16 sb + g: half g % 2 of activation block 8 sb + g / 2.
                let (t, ab) = (16 * sb + g, 8 * sb + g / 2);
                let a = qs.add(ab * tile + 4 * row * (g % 2)) as *const i8;
                let mut s = [_mm512_setzero_si512(); T];
                for (k, &u) in u.iter().enumerate() {
                    for (i, s) in s.iter_mut().enumerate() {
                        *s = _mm512_dpbusd_epi32(*s, u, word(a.add(row * k + 4 * i)));
                    }
                }
                // `d · sc_g` and `0 + 32 · (d · sc_g)`, as the packer makes them.
                let sc =
                    _mm512_cvtepi8_epi32(_mm_loadu_si128(gb.add(q6::SCALES + 16 * g) as *const _));
                let dw = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
                let mw = _mm512_add_ps(zero, _mm512_mul_ps(offset, dw));
                fold_tile(&mut v, s, dw, mw, ad.add(ab * lanes), am.add(t * lanes));
            }
        }
    }
    v
}

/// The scales (sub-blocks 0..4 / 4..8) and mins (0..4 / 4..8) of the 16 rows of Q4_K group
/// block `gb`, a byte each in the rows' words: ggml's word trick (`k1`, `k2`, `k30` its masks).
///
/// # Safety
/// Called only from functions with AVX-512 F enabled; `gb` one group block.
#[inline(always)]
unsafe fn scales_mins(
    gb: *const u8,
    k1: __m512i,
    k2: __m512i,
    k30: __m512i,
) -> ([__m512i; 2], [__m512i; 2]) {
    // SAFETY: the caller's.
    unsafe {
        let w0 = _mm512_loadu_si512(gb.add(SCALES) as *const _);
        let w1 = _mm512_loadu_si512(gb.add(SCALES + 64) as *const _);
        let w2 = _mm512_loadu_si512(gb.add(SCALES + 128) as *const _);
        let hi_bits = |w: __m512i| _mm512_and_si512(_mm512_srli_epi32::<2>(w), k30);
        let sc = [
            _mm512_and_si512(w0, k1),
            _mm512_ternarylogic_epi32::<0xEA>(w2, k2, hi_bits(w0)),
        ];
        let mn = [
            _mm512_and_si512(w1, k1),
            _mm512_ternarylogic_epi32::<0xEA>(_mm512_srli_epi32::<4>(w2), k2, hi_bits(w1)),
        ];
        (sc, mn)
    }
}

/// The four vectors of 6-bit values (16 values of 16 rows) of a Q6_K group block's run at `p`:
/// two 64-byte loads of low nibbles and one of high bit pairs, put together.
///
/// # Safety
/// Called only from functions with AVX-512 F enabled; `p` readable for 192 bytes.
#[inline(always)]
unsafe fn six_bit_values(p: *const u8, low: __m512i, m30: __m512i) -> [__m512i; 4] {
    // SAFETY: the caller's.
    unsafe {
        let n0 = _mm512_loadu_si512(p as *const _);
        let n1 = _mm512_loadu_si512(p.add(64) as *const _);
        let h = _mm512_loadu_si512(p.add(128) as *const _);
        [
            join6(n0, _mm512_slli_epi16::<4>(h), low, m30),
            join6(
                _mm512_srli_epi16::<4>(n0),
                _mm512_slli_epi16::<2>(h),
                low,
                m30,
            ),
            join6(n1, h, low, m30),
            join6(
                _mm512_srli_epi16::<4>(n1),
                _mm512_srli_epi16::<2>(h),
                low,
                m30,
            ),
        ]
    }
}

/// The 5-bit values of one Q5_K nibble run `x` (its low nibbles, then its high nibbles), the
/// fifth bits from the sub-block's bit run `qh` (bit 0 of each byte for the low nibbles, bit 4
/// for the high ones), which then moves on to the next run's bits.
///
/// # Safety
/// Called only from functions with AVX-512 F/BW enabled.
#[inline(always)]
unsafe fn five_bit_values(
    x: __m512i,
    qh: &mut __m512i,
    low: __m512i,
    m10: __m512i,
) -> (__m512i, __m512i) {
    // SAFETY: register-only intrinsics; the caller has the features.
    unsafe {
        let lo = _mm512_ternarylogic_epi32::<0xEA>(
            x,
            low,
            _mm512_and_si512(_mm512_slli_epi16::<4>(*qh), m10),
        );
        let hi = _mm512_ternarylogic_epi32::<0xEA>(
            _mm512_srli_epi16::<4>(x),
            low,
            _mm512_and_si512(*qh, m10),
        );
        *qh = _mm512_srli_epi16::<1>(*qh);
        (lo, hi)
    }
}

/// The parts of Q2_Kx16 and Q3_Kx16 (`x16::q2`, `x16::q3`) their kernels share: blocks of 16
/// values, the low two bits of every value in one 64-byte run per block.
mod low_bits {
    use super::*;
    use crate::kquants::x16::{q2, q3};

    /// The four vectors of values (16 values of 16 rows: values `4s..4s + 4` of every row in
    /// vector `s`) of block `g` of a group block, from its run of low bits `x` and, for Q3_K,
    /// the high-bit run `hm` of its pair of blocks (`H = g % 2`: bit `4H + s` of each byte).
    ///
    /// # Safety
    /// Called only from functions with AVX-512 F/BW enabled.
    #[inline(always)]
    pub(super) unsafe fn values<const Q3: bool, const H: usize>(
        x: __m512i,
        hm: __m512i,
        m03: __m512i,
        m04: __m512i,
    ) -> [__m512i; 4] {
        // SAFETY: register-only intrinsics; the caller has the features.
        unsafe {
            let lo = [
                x,
                _mm512_srli_epi16::<2>(x),
                _mm512_srli_epi16::<4>(x),
                _mm512_srli_epi16::<6>(x),
            ];
            if !Q3 {
                return lo.map(|v| _mm512_and_si512(v, m03));
            }
            // Each high bit moved to bit 2 of its byte.
            let hi = if H == 0 {
                [
                    _mm512_slli_epi16::<2>(hm),
                    _mm512_slli_epi16::<1>(hm),
                    hm,
                    _mm512_srli_epi16::<1>(hm),
                ]
            } else {
                [
                    _mm512_srli_epi16::<2>(hm),
                    _mm512_srli_epi16::<3>(hm),
                    _mm512_srli_epi16::<4>(hm),
                    _mm512_srli_epi16::<5>(hm),
                ]
            };
            std::array::from_fn(|s| {
                _mm512_ternarylogic_epi32::<0xEA>(lo[s], m03, _mm512_and_si512(hi[s], m04))
            })
        }
    }

    /// Calls `f(g, values)` for the 16 blocks of 16 values of group block `gb` in order, the
    /// four vectors of values made by [`values`]; each block's run of low bits asked for
    /// `PREFETCH_BYTES` ahead first.
    ///
    /// # Safety
    /// Called only from functions with AVX-512 F/BW enabled; `gb` one group block of the type.
    #[inline(always)]
    pub(super) unsafe fn blocks<const Q3: bool>(
        gb: *const u8,
        mut f: impl FnMut(usize, [__m512i; 4]),
    ) {
        let (_, qs) = low_bits_shape::<Q3>();
        let ahead = gb.wrapping_add(PREFETCH_BYTES);
        // SAFETY (loads): inside the group block (the caller's); prefetches are hints.
        unsafe {
            let (m03, m04) = (_mm512_set1_epi8(3), _mm512_set1_epi8(4));
            for p in 0..8 {
                let hm = if Q3 {
                    _mm512_loadu_si512(gb.add(q3::HM + 64 * p) as *const _)
                } else {
                    _mm512_setzero_si512()
                };
                for h in 0..2 {
                    let g = 2 * p + h;
                    let at = qs + 64 * g;
                    crate::stream::prefetch_stream(ahead.wrapping_add(at) as usize, 1);
                    let x = _mm512_loadu_si512(gb.add(at) as *const _);
                    let u = if h == 0 {
                        values::<Q3, 0>(x, hm, m03, m04)
                    } else {
                        values::<Q3, 1>(x, hm, m03, m04)
                    };
                    f(g, u);
                }
            }
        }
    }

    /// A super-block's 16 scale bytes of each of 16 rows as four vectors (bytes `4w..4w + 4` of
    /// every row in vector `w`): Q3_K's 6-bit scales unpacked from their three packed words
    /// with ggml's `kmask` trick (before the −32), Q2_K's stored bytes (scale and min nibbles).
    ///
    /// # Safety
    /// Called only from functions with AVX-512 F enabled; `gb` one group block.
    #[inline(always)]
    pub(super) unsafe fn scale_bytes<const Q3: bool>(gb: *const u8) -> [__m512i; 4] {
        // SAFETY: the caller's.
        unsafe {
            if !Q3 {
                return [0, 1, 2, 3]
                    .map(|w| _mm512_loadu_si512(gb.add(q2::SCALES + 64 * w) as *const _));
            }
            let (k2, k30) = (
                _mm512_set1_epi32(0x0f0f_0f0f),
                _mm512_set1_epi32(0x3030_3030),
            );
            let w0 = _mm512_loadu_si512(gb.add(q3::SCALES) as *const _);
            let w1 = _mm512_loadu_si512(gb.add(q3::SCALES + 64) as *const _);
            let w2 = _mm512_loadu_si512(gb.add(q3::SCALES + 128) as *const _);
            let join = |a: __m512i, hi: __m512i| {
                _mm512_ternarylogic_epi32::<0xEA>(a, k2, _mm512_and_si512(hi, k30))
            };
            [
                join(w0, _mm512_slli_epi32::<4>(w2)),
                join(w1, _mm512_slli_epi32::<2>(w2)),
                join(_mm512_srli_epi32::<4>(w0), w2),
                join(_mm512_srli_epi32::<4>(w1), _mm512_srli_epi32::<2>(w2)),
            ]
        }
    }
}

/// One group of repacked Q3_K (`Q3`) or Q2_K · one token: per block `g` of 16 values, one
/// 64-byte run of low bits (and for Q3_K half a run of high bits) made into four vectors of
/// values, four `vpdpbusd` (Q3_K's offset `4·Σa` taken first), one `vpmulld` by the rows'
/// scales of `g`; Q2_K's mins by eight `vpdpwssd` per super-block.
///
/// # Safety
/// The features available; `group` holds `act.len()` group blocks of the type.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_group_low_avx512<const Q3: bool>(group: *const u8, act: &[BlockQ8K]) -> __m512 {
    use crate::kquants::x16::q2;
    // SAFETY: loads of 64 bytes from 16-word arrays.
    let index = |idx: &[u32; 16]| unsafe { _mm512_loadu_si512(idx.as_ptr() as *const _) };
    let bytes = [0, 1, 2, 3].map(|k| index(&BYTE_INDEX[k]));
    let pairs = [0, 1].map(|p| index(&PAIR_INDEX[p]));
    let m0f = _mm512_set1_epi32(0x0f);
    let (gbb, qs_at) = low_bits_shape::<Q3>();
    let mut acc = _mm512_setzero_ps();
    for (b, y) in act.iter().enumerate() {
        // SAFETY (loads): block b < act.len() is inside `group` (the caller's); activation
        // reads stay inside `y.qs`; prefetches are hints, never dereferenced.
        unsafe {
            let gb = group.add(b * gbb);
            let ahead = gb.wrapping_add(PREFETCH_BYTES);
            crate::stream::prefetch_stream(ahead as usize, qs_at / 64);
            let a = y.qs.as_ptr();
            let sb = low_bits::scale_bytes::<Q3>(gb);
            let mut s = _mm512_setzero_si512();
            low_bits::blocks::<Q3>(gb, |g, u| {
                let mut dot = if Q3 {
                    _mm512_set1_epi32(-4 * y.bsums[g] as i32)
                } else {
                    _mm512_setzero_si512()
                };
                for (step, &u) in u.iter().enumerate() {
                    dot = _mm512_dpbusd_epi32(dot, u, word(a.add(16 * g + 4 * step)));
                }
                let raw = _mm512_shuffle_epi8(sb[g / 4], bytes[g % 4]);
                let sc = if Q3 {
                    _mm512_sub_epi32(raw, _mm512_set1_epi32(32))
                } else {
                    _mm512_and_si512(raw, m0f)
                };
                s = _mm512_add_epi32(s, _mm512_mullo_epi32(dot, sc));
            });
            let dy = _mm512_set1_ps(y.d);
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(gb.add(q2::D) as *const _));
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d, dy), acc);
            if !Q3 {
                // M = Σ_g mn_g · Σa_g: mins of blocks 2q, 2q + 1 as an i16 pair.
                let mut m = _mm512_setzero_si512();
                for (w, &sb) in sb.iter().enumerate() {
                    for (p, &pick) in pairs.iter().enumerate() {
                        let g = 4 * w + 2 * p;
                        let mins = _mm512_srli_epi16::<4>(_mm512_shuffle_epi8(sb, pick));
                        let sums = y.bsums[g] as u16 as u32 | (y.bsums[g + 1] as u16 as u32) << 16;
                        m = _mm512_dpwssd_epi32(m, mins, _mm512_set1_epi32(sums as i32));
                    }
                }
                let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(gb.add(q2::DMIN) as *const _));
                acc = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(dmin, dy), acc);
            }
        }
    }
    acc
}

/// [`tile_tokens_q6`] for Q3_Kx16 (`Q3`) and Q2_Kx16: the same half tiles, the values made as
/// [`dot_group_low_avx512`] makes them; `d · sc_g` and `dmin · mn_g + k · (d · sc_g)` as the
/// packer makes them (`k` = 4 for Q3_K, whose `dmin` and mins are 0; 0 for Q2_K).
///
/// # Safety
/// The features available; `group` holds `nsb` group blocks of the type; `qs` (at the first
/// token's lane) `8 · nsb` activation tiles, `ad` `8 · nsb` runs of 16, `am` `16 · nsb`, `T`
/// lanes readable.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tile_tokens_low<const T: usize, const Q3: bool>(
    group: *const u8,
    nsb: usize,
    qs: *const u8,
    ad: *const f32,
    am: *const f32,
    lanes: usize,
) -> [__m512; T] {
    use crate::kquants::x16::q2;
    // Activation tiles of `lanes` tokens: rows of 4 bytes a token, eight rows a block.
    let (row, tile) = (4 * lanes, 32 * lanes);
    // SAFETY: loads of 64 bytes from 16-word arrays.
    let index = |idx: &[u32; 16]| unsafe { _mm512_loadu_si512(idx.as_ptr() as *const _) };
    let bytes = [0, 1, 2, 3].map(|k| index(&BYTE_INDEX[k]));
    let m0f = _mm512_set1_epi32(0x0f);
    let (zero, kf) = (
        _mm512_setzero_ps(),
        _mm512_set1_ps(if Q3 { 4.0 } else { 0.0 }),
    );
    let (gbb, qs_at) = low_bits_shape::<Q3>();
    let mut v = [_mm512_setzero_ps(); T];
    // SAFETY (loads): inside the caller's bounds; prefetches are hints, never dereferenced.
    unsafe {
        for sb in 0..nsb {
            let gb = group.add(sb * gbb);
            let ahead = gb.wrapping_add(PREFETCH_BYTES);
            crate::stream::prefetch_stream(ahead as usize, qs_at / 64);
            let scb = low_bits::scale_bytes::<Q3>(gb);
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(gb.add(q2::D) as *const _));
            let dmin = if Q3 {
                zero
            } else {
                _mm512_cvtph_ps(_mm256_loadu_si256(gb.add(q2::DMIN) as *const _))
            };
            low_bits::blocks::<Q3>(gb, |g, u| {
                // Tile t = 16 sb + g: half g % 2 of activation block 8 sb + g / 2.
                let (t, ab) = (16 * sb + g, 8 * sb + g / 2);
                let a = qs.add(ab * tile + 4 * row * (g % 2)) as *const i8;
                let mut s = [_mm512_setzero_si512(); T];
                for (k, &u) in u.iter().enumerate() {
                    for (i, s) in s.iter_mut().enumerate() {
                        *s = _mm512_dpbusd_epi32(*s, u, word(a.add(row * k + 4 * i)));
                    }
                }
                let raw = _mm512_shuffle_epi8(scb[g / 4], bytes[g % 4]);
                let (sc, mn) = if Q3 {
                    (_mm512_sub_epi32(raw, _mm512_set1_epi32(32)), raw)
                } else {
                    (_mm512_and_si512(raw, m0f), _mm512_srli_epi32::<4>(raw))
                };
                let dw = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
                let own = if Q3 {
                    zero
                } else {
                    _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(mn))
                };
                let mw = _mm512_add_ps(own, _mm512_mul_ps(kf, dw));
                fold_tile(&mut v, s, dw, mw, ad.add(ab * lanes), am.add(t * lanes));
            });
        }
    }
    v
}
