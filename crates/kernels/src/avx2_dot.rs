//! AVX2 + FMA + F16C dot products of one stored weight row with one activation row (the decode
//! kernels); twins of `dot_scalar.rs`.
//!
//! Float rows: 8 lanes, four accumulators, weights converted on the fly (F16 with `vcvtph2ps`,
//! BF16 by a 16-bit shift). Q8_0 / Q4_0 rows, one 256-bit vector per block:
//! - Q8_0 · Q8_0 with llama.cpp's sign trick, `maddubs(|w|, sign(a, w))`: `|w| ≤ 128` keeps the
//!   pairwise i16 sums below saturation;
//! - Q4_0 · Q8_0 as `maddubs(nibble, a)` (nibbles are already unsigned) plus the activation's
//!   lane correction `−8 · Σa` (`act_q8.rs`), which is `Σ (nibble − 8) · a`.
//!
//! Each block gives eight exact int32 lane sums; they are scaled by `d_w · d_a` (the weight's f16
//! scale looked up in a table, `f16_table.rs`) and accumulated in `f32`, four accumulators
//! round-robin over blocks.

use std::arch::x86_64::*;

use crate::act_q8::{LANES, QK};
use crate::cpu::Avx2;
use crate::dot_scalar::{Q4_0_BYTES, Q8_0_BYTES};
use crate::f16_table::f16_table;

pub(crate) use crate::par::PREFETCH_BYTES;

/// Weight encodings of the float kernels (const-generic selector).
pub(crate) const F32: u8 = 0;
pub(crate) const F16: u8 = 1;
pub(crate) const BF16: u8 = 2;

/// Bytes per value of a float encoding.
pub(crate) const fn float_bytes(kind: u8) -> usize {
    if kind == F32 {
        4
    } else {
        2
    }
}

/// Float row (`F32`, `F16` or `BF16` bytes) · `x`.
pub(crate) fn dot_float<const KIND: u8>(_: Avx2, w: &[u8], x: &[f32]) -> f32 {
    assert_eq!(w.len(), float_bytes(KIND) * x.len());
    // SAFETY: the token proves the features; `w` holds `x.len()` values.
    unsafe { dot_float_avx2::<KIND, 1>([w.as_ptr()], x)[0] }
}

/// Q8_0 row · Q8_0 activations (natural layout).
pub(crate) fn dot_q8_0(_: Avx2, w: &[u8], qs: &[i8], d: &[f32]) -> f32 {
    let nb = d.len();
    assert!(w.len() == nb * Q8_0_BYTES && qs.len() == nb * QK);
    // SAFETY: the token proves the features; lengths checked above.
    unsafe {
        dot_quant_avx2::<false>(
            f16_table(),
            w.as_ptr(),
            qs.as_ptr(),
            d.as_ptr(),
            std::ptr::null(),
            nb,
        )
    }
}

/// Q4_0 row · Q8_0 activations with lane corrections for `k = 8`.
pub(crate) fn dot_q4_0(_: Avx2, w: &[u8], qs: &[i8], d: &[f32], corr: &[i32]) -> f32 {
    let nb = d.len();
    assert!(w.len() == nb * Q4_0_BYTES && qs.len() == nb * QK && corr.len() == nb * LANES);
    // SAFETY: the token proves the features; lengths checked above.
    unsafe {
        dot_quant_avx2::<true>(
            f16_table(),
            w.as_ptr(),
            qs.as_ptr(),
            d.as_ptr(),
            corr.as_ptr(),
            nb,
        )
    }
}

/// Eight weights from `w` (value index `i`) as `f32`.
///
/// # Safety
/// AVX2/FMA/F16C available; values `i..i + 8` readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn load8<const KIND: u8>(w: *const u8, i: usize) -> __m256 {
    // SAFETY: the caller guarantees the bytes are readable; loads are unaligned.
    unsafe {
        match KIND {
            F32 => _mm256_loadu_ps(w.add(4 * i) as *const f32),
            F16 => _mm256_cvtph_ps(_mm_loadu_si128(w.add(2 * i) as *const __m128i)),
            _ => {
                let h = _mm_loadu_si128(w.add(2 * i) as *const __m128i);
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            }
        }
    }
}

/// One weight (value index `i`) as `f32`.
///
/// # Safety
/// Value `i` readable.
#[inline]
pub(crate) unsafe fn load1<const KIND: u8>(w: *const u8, i: usize) -> f32 {
    // SAFETY: the caller guarantees the bytes are readable.
    unsafe {
        match KIND {
            F32 => (w.add(4 * i) as *const f32).read_unaligned(),
            F16 => half::f16::from_bits((w.add(2 * i) as *const u16).read_unaligned()).to_f32(),
            _ => half::bf16::from_bits((w.add(2 * i) as *const u16).read_unaligned()).to_f32(),
        }
    }
}

/// Sum of the eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Float rows `w` (each `x.len()` values of `KIND`) · `x`, the rows read side by side: each
/// row's sum is bitwise [`dot_float`]'s (the same operations on its own accumulators; the
/// one-row kernel is this one for one row). Two rows are two streams from memory at once: one
/// core of a Zen 3 read TinyLlama F16 decode faster so (BENCHMARKS.md).
pub(crate) fn dot_float_rows<const KIND: u8, const R: usize>(
    _: Avx2,
    w: [&[u8]; R],
    x: &[f32],
) -> [f32; R] {
    assert!(w.iter().all(|w| w.len() == float_bytes(KIND) * x.len()));
    // SAFETY: the token proves the features; each row holds `x.len()` values.
    unsafe { dot_float_avx2::<KIND, R>(w.map(|w| w.as_ptr()), x) }
}

/// # Safety
/// AVX2/FMA/F16C available; each of `w` holds `x.len()` values of `KIND`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_float_avx2<const KIND: u8, const R: usize>(w: [*const u8; R], x: &[f32]) -> [f32; R] {
    // SAFETY: the caller's contract (one token).
    unsafe { dot_float_tokens_avx2::<KIND, R, 1>(w, &[x]) }.map(|[v]| v)
}

/// Tokens a call of [`dot_float_rows_tokens`] takes at most.
pub(crate) const FLOAT_TOKENS: usize = 3;

/// Float rows `w` (each `n` values of `KIND`) · each of the token rows `xs` (1 to
/// [`FLOAT_TOKENS`]) into `out[r][t]`, the rows read side by side (two streams from memory)
/// and each converted once for all the tokens; each result bitwise [`dot_float`]'s.
pub(crate) fn dot_float_rows_tokens<const KIND: u8, const R: usize>(
    _: Avx2,
    w: [&[u8]; R],
    xs: &[&[f32]],
    out: &mut [[f32; FLOAT_TOKENS]; R],
) {
    let n = xs.first().map_or(0, |x| x.len());
    assert!(!xs.is_empty() && xs.len() <= FLOAT_TOKENS);
    assert!(xs.iter().all(|x| x.len() == n));
    assert!(w.iter().all(|w| w.len() == float_bytes(KIND) * n));
    let w = w.map(|w| w.as_ptr());
    // SAFETY: the token proves the features; the rows and every token hold `n` values.
    unsafe {
        match xs.len() {
            1 => put(out, dot_float_tokens_avx2::<KIND, R, 1>(w, xs)),
            2 => put(out, dot_float_tokens_avx2::<KIND, R, 2>(w, xs)),
            _ => put(out, dot_float_tokens_avx2::<KIND, R, 3>(w, xs)),
        }
    }
    fn put<const R: usize, const T: usize>(out: &mut [[f32; FLOAT_TOKENS]; R], v: [[f32; T]; R]) {
        for (o, v) in out.iter_mut().zip(v) {
            o[..T].copy_from_slice(&v);
        }
    }
}

/// # Safety
/// AVX2/FMA/F16C available; `xs` holds `T` rows of `n` values, each of `w` `n` values of `KIND`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_float_tokens_avx2<const KIND: u8, const R: usize, const T: usize>(
    w: [*const u8; R],
    xs: &[&[f32]],
) -> [[f32; T]; R] {
    let n = xs[0].len();
    let xp: [*const f32; T] = std::array::from_fn(|t| xs[t].as_ptr());
    let mut acc = [[[_mm256_setzero_ps(); 4]; T]; R];
    let mut i = 0;
    // SAFETY (all loads): indices stay below n, which every operand holds.
    unsafe {
        while i + 32 <= n {
            for w in &w {
                // 32 values are 64 or 128 bytes: one or two lines, fetched PREFETCH_BYTES ahead.
                let ahead = w.wrapping_add(i * float_bytes(KIND) + PREFETCH_BYTES);
                crate::stream::prefetch_stream(ahead as usize, if KIND == F32 { 2 } else { 1 });
            }
            for j in 0..4 {
                let xv: [__m256; T] =
                    std::array::from_fn(|t| _mm256_loadu_ps(xp[t].add(i + 8 * j)));
                for (w, acc) in w.iter().zip(acc.iter_mut()) {
                    let wv = load8::<KIND>(*w, i + 8 * j);
                    for (x, acc) in xv.iter().zip(acc.iter_mut()) {
                        acc[j] = _mm256_fmadd_ps(wv, *x, acc[j]);
                    }
                }
            }
            i += 32;
        }
        while i + 8 <= n {
            for (w, acc) in w.iter().zip(acc.iter_mut()) {
                let wv = load8::<KIND>(*w, i);
                for (x, acc) in xp.iter().zip(acc.iter_mut()) {
                    acc[0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.add(i)), acc[0]);
                }
            }
            i += 8;
        }
    }
    std::array::from_fn(|r| {
        std::array::from_fn(|t| {
            let acc = &acc[r][t];
            let mut sum = hsum_ps(_mm256_add_ps(
                _mm256_add_ps(acc[0], acc[1]),
                _mm256_add_ps(acc[2], acc[3]),
            ));
            for (j, xv) in xs[t].iter().enumerate().skip(i) {
                // SAFETY: j < n.
                sum += unsafe { load1::<KIND>(w[r], j) } * xv;
            }
            sum
        })
    })
}

/// The f16 scale at the start of a block, as `f32`, looked up in `table` ([`f16_table`]).
///
/// # Safety
/// Two bytes readable at `blk`.
#[inline]
pub(crate) unsafe fn block_scale(table: &[f32; 1 << 16], blk: *const u8) -> f32 {
    // SAFETY: the caller guarantees two readable bytes; any u16 indexes the table.
    unsafe { *table.get_unchecked((blk as *const u16).read_unaligned() as usize) }
}

/// The 32 nibbles of a Q4_0 block's 16 bytes, in value order (low nibbles, then high ones):
/// the bytes loaded into both halves, the upper half shifted by 4, then masked.
///
/// # Safety
/// AVX2 available; 16 bytes readable at `q`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn nibbles(q: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes.
    let both = unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(q as *const __m128i)) };
    let shifted = _mm256_srlv_epi32(both, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    _mm256_and_si256(shifted, _mm256_set1_epi8(0x0f))
}

/// Eight exact lane sums of one block (`Q4` selects Q4_0, else Q8_0).
///
/// # Safety
/// AVX2 available; the block, its 32 activations and (for Q4_0) 8 lane corrections readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block_lanes<const Q4: bool>(blk: *const u8, a: *const i8, corr: *const i32) -> __m256i {
    let ones = _mm256_set1_epi16(1);
    // SAFETY: the caller guarantees the reads.
    unsafe {
        let av = _mm256_loadu_si256(a as *const __m256i);
        if Q4 {
            let pairs = _mm256_maddubs_epi16(nibbles(blk.add(2)), av);
            let c = _mm256_loadu_si256(corr as *const __m256i);
            _mm256_add_epi32(_mm256_madd_epi16(pairs, ones), c)
        } else {
            let wv = _mm256_loadu_si256(blk.add(2) as *const __m256i);
            let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv));
            _mm256_madd_epi16(pairs, ones)
        }
    }
}

/// `acc + lanes(block b) · d_w · d_a`.
///
/// # Safety
/// AVX2/FMA/F16C available; block `b` of `w`, its activations, scale and (Q4_0) corrections
/// readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block_step<const Q4: bool>(
    table: &[f32; 1 << 16],
    w: *const u8,
    qs: *const i8,
    d: *const f32,
    corr: *const i32,
    b: usize,
    acc: __m256,
) -> __m256 {
    let bytes = if Q4 { Q4_0_BYTES } else { Q8_0_BYTES };
    // SAFETY: the caller guarantees the reads.
    unsafe {
        let blk = w.add(b * bytes);
        let c = if Q4 { corr.add(b * LANES) } else { corr };
        let lanes = block_lanes::<Q4>(blk, qs.add(b * QK), c);
        let scale = _mm256_set1_ps(block_scale(table, blk) * *d.add(b));
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), scale, acc)
    }
}

/// # Safety
/// AVX2/FMA/F16C available; `w` holds `nb` blocks, `qs` `32·nb` values, `d` `nb` scales and
/// (Q4_0) `corr` `8·nb` lane corrections.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_quant_avx2<const Q4: bool>(
    table: &[f32; 1 << 16],
    w: *const u8,
    qs: *const i8,
    d: *const f32,
    corr: *const i32,
    nb: usize,
) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut b = 0;
    // SAFETY (whole loop): b < nb, so block b, its activations and corrections are in bounds.
    unsafe {
        let bytes = if Q4 { Q4_0_BYTES } else { Q8_0_BYTES };
        while b + 4 <= nb {
            // The weights stream from memory: ask for them PREFETCH_BYTES ahead (a hint, never
            // dereferenced, so running past the row is harmless).
            let ahead = w.wrapping_add(b * bytes + PREFETCH_BYTES);
            crate::stream::prefetch_stream(ahead as usize, (4 * bytes).div_ceil(64));
            acc[0] = block_step::<Q4>(table, w, qs, d, corr, b, acc[0]);
            acc[1] = block_step::<Q4>(table, w, qs, d, corr, b + 1, acc[1]);
            acc[2] = block_step::<Q4>(table, w, qs, d, corr, b + 2, acc[2]);
            acc[3] = block_step::<Q4>(table, w, qs, d, corr, b + 3, acc[3]);
            b += 4;
        }
        while b < nb {
            acc[0] = block_step::<Q4>(table, w, qs, d, corr, b, acc[0]);
            b += 1;
        }
    }
    hsum_ps(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ))
}
