//! AVX-512 VNNI decode kernel for repacked Q4_0 / Q8_0 rows (`qx16.rs`): `R` rows against one
//! token of interleaved Q8_0 activations; twin `qx16::dot_lanes`, bitwise.
//!
//! Per group of 16 blocks and row: Q4_0 four 64-byte loads, each split into low and high
//! nibbles (two ANDs and a shift); Q8_0 eight loads; eight `vpdpbusd` into two int32
//! accumulators started at `−offset · Σa` and `0` (integer sums: their order does not matter),
//! then one conversion, one multiply of the 16 weight scales by the 16 activation scales and
//! one FMA into the row's 16 lanes.

use std::arch::x86_64::*;

use crate::act_q8::{GROUP_BLOCKS, GROUP_BYTES};
use crate::avx2_dot::{hsum_ps, PREFETCH_BYTES};
use crate::cpu::Avx512;
use crate::qx16::X16;

/// Rows per call of the wide kernel.
pub(crate) const ROWS: usize = 4;

/// Rows [`dot_matrix`] reads side by side: [`ROWS`], sharing each activation load between them;
/// one on AMD's cores, where four rows are four streams from memory and one stream read 12–22%
/// faster (Q8_0 and Q4_0 decode, one and two threads, `matvec` and `herd bench` alternating;
/// BENCHMARKS.md), though it loads the activations once per row (in cache, Q4_0 76 against 61–67
/// GB/s, far above what memory gives). Each row's arithmetic is the same either way.
fn rows_per_step() -> usize {
    if crate::cpu::vendor_is_amd() {
        1
    } else {
        ROWS
    }
}

/// `R` repacked rows of `kind` (`ng` groups each) · one token: `qs` `ng · 512` interleaved
/// values, `d` and `sums` `ng · 16`.
pub(crate) fn dot_rows<const R: usize>(
    _: Avx512,
    kind: X16,
    w: [&[u8]; R],
    qs: &[i8],
    d: &[f32],
    sums: &[i32],
) -> [f32; R] {
    let len = w[0].len();
    assert!(w.iter().all(|r| r.len() == len));
    let (ng, _, last) = crate::qx16::matrix_shape(kind, len, 1, qs, d, sums);
    let (w, qs, d, sums) = (
        w.map(|r| r.as_ptr()),
        qs.as_ptr(),
        d.as_ptr(),
        sums.as_ptr(),
    );
    // SAFETY: the token proves the features; lengths checked above.
    let v = unsafe {
        match kind {
            X16::Q4_0 => dot_rows_avx512::<R, 1, false>(w, ([qs], [d], [sums]), (ng, last)),
            X16::Q8_0 => dot_rows_avx512::<R, 1, true>(w, ([qs], [d], [sums]), (ng, last)),
        }
    };
    v.map(|[x]| x)
}

/// Every row of `w` (`out.len()` rows of `ng` groups of `kind`, back to back) · one token, four
/// rows per step (one on AMD, [`rows_per_step`]), the last ones one at a time: bitwise
/// [`dot_rows`] of each row, without its per-call checks (decode calls this once per task, not
/// once per four rows).
pub(crate) fn dot_matrix(
    k: Avx512,
    kind: X16,
    w: &[u8],
    qs: &[i8],
    d: &[f32],
    sums: &[i32],
    out: &mut [f32],
) {
    dot_matrix_tokens(k, kind, w, &[(qs, d, sums)], &mut [out]);
}

/// One token's interleaved activations: (values, scales, sums).
pub(crate) type TokenAct<'a> = (&'a [i8], &'a [f32], &'a [i32]);

/// [`dot_matrix`] for one or two tokens (`acts`, results in `outs`) at once: each row read
/// once for both, each token's outputs bitwise what [`dot_matrix`] gives it alone.
pub(crate) fn dot_matrix_tokens(
    k: Avx512,
    kind: X16,
    w: &[u8],
    acts: &[TokenAct<'_>],
    outs: &mut [&mut [f32]],
) {
    assert!(acts.len() == outs.len() && (1..=2).contains(&acts.len()));
    match (kind, acts.len()) {
        (X16::Q4_0, 1) => dot_matrix_of::<1, false>(k, w, acts, outs),
        (X16::Q8_0, 1) => dot_matrix_of::<1, true>(k, w, acts, outs),
        (X16::Q4_0, _) => dot_matrix_of::<2, false>(k, w, acts, outs),
        (X16::Q8_0, _) => dot_matrix_of::<2, true>(k, w, acts, outs),
    }
}

/// [`dot_matrix_tokens`] for one kind (`Q8`: Q8_0, else Q4_0) and `T` tokens.
fn dot_matrix_of<const T: usize, const Q8: bool>(
    _: Avx512,
    w: &[u8],
    acts: &[TokenAct<'_>],
    outs: &mut [&mut [f32]],
) {
    let n = outs[0].len();
    assert!(outs.iter().all(|o| o.len() == n));
    let mut shape = None;
    for &(qs, d, sums) in acts {
        let s = crate::qx16::matrix_shape(kind::<Q8>(), w.len(), n, qs, d, sums);
        assert!(shape.is_none_or(|x| x == s), "tokens of another width");
        shape = Some(s);
    }
    let (ng, stride, last) = shape.expect("a token");
    let a = (
        std::array::from_fn::<_, T, _>(|t| acts[t].0.as_ptr()),
        std::array::from_fn(|t| acts[t].1.as_ptr()),
        std::array::from_fn(|t| acts[t].2.as_ptr()),
    );
    // SAFETY: the token proves the features; every row is inside `w` (checked above).
    unsafe {
        let p = w.as_ptr();
        let mut r = 0;
        let wide = rows_per_step() == ROWS;
        while wide && r + ROWS <= n {
            let rows = std::array::from_fn(|j| p.add((r + j) * stride));
            let v = dot_rows_avx512::<ROWS, T, Q8>(rows, a, (ng, last));
            for (j, row) in v.iter().enumerate() {
                for (o, &x) in outs.iter_mut().zip(row) {
                    o[r + j] = x;
                }
            }
            r += ROWS;
        }
        while r < n {
            let row = [p.add(r * stride)];
            let [v] = dot_rows_avx512::<1, T, Q8>(row, a, (ng, last));
            for (o, &x) in outs.iter_mut().zip(&v) {
                o[r] = x;
            }
            r += 1;
        }
    }
}

/// The kind a kernel's `Q8` parameter names.
const fn kind<const Q8: bool>() -> X16 {
    if Q8 {
        X16::Q8_0
    } else {
        X16::Q4_0
    }
}

/// Lanes summed as `qx16::reduce16` does.
///
/// # Safety
/// AVX-512 F available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn reduce16(v: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    hsum_ps(_mm256_add_ps(lo, hi))
}

/// Activations of `T` tokens as pointers: (values, scales, sums) per token.
type ActPtrs<const T: usize> = ([*const i8; T], [*const f32; T], [*const i32; T]);

/// # Safety
/// The features available; each `w[r]` holds `ng` groups of [`kind`]`::<Q8>()`, the last of
/// `last` blocks (1 to 16), each token's values `ng · 512`, scales and sums `ng · 16`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_rows_avx512<const R: usize, const T: usize, const Q8: bool>(
    w: [*const u8; R],
    a: ActPtrs<T>,
    (ng, last): (usize, usize),
) -> [[f32; T]; R] {
    let mut facc = [[_mm512_setzero_ps(); T]; R];
    let whole = if last == GROUP_BLOCKS {
        ng
    } else {
        ng.saturating_sub(1)
    };
    for g in 0..whole {
        // SAFETY: group g < ng is inside every row and the activations.
        unsafe { group_avx512::<R, T, Q8, false>(w, a, g, GROUP_BLOCKS, &mut facc) };
    }
    if whole < ng {
        // SAFETY: as above; the partial group's `last` blocks are inside every row, its
        // loads masked to them.
        unsafe { group_avx512::<R, T, Q8, true>(w, a, whole, last, &mut facc) };
    }
    // SAFETY: the features are enabled in this function.
    facc.map(|row| row.map(|v| unsafe { reduce16(v) }))
}

/// Group `g` (of `n` blocks) of `R` rows into their lane sums `facc`. `MASKED`: a partial
/// group, read by loads masked to its `n` blocks (the zeros a whole group's padding would
/// give, so the same bits).
///
/// # Safety
/// The features available; group `g` of `n` blocks inside every row, group `g` of the
/// activations inside theirs.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn group_avx512<const R: usize, const T: usize, const Q8: bool, const MASKED: bool>(
    w: [*const u8; R],
    (qs, d, sums): ActPtrs<T>,
    g: usize,
    n: usize,
    facc: &mut [[__m512; T]; R],
) {
    let group = kind::<Q8>().group_bytes();
    let low = _mm512_set1_epi8(0x0f);
    // SAFETY (loads): the caller's promise; prefetches are hints, never dereferenced, so
    // running past a row is harmless.
    unsafe {
        let a: [*const i8; T] = std::array::from_fn(|t| qs[t].add(g * GROUP_BYTES));
        let init: [__m512i; T] = std::array::from_fn(|t| {
            let s = _mm512_loadu_si512(sums[t].add(g * GROUP_BLOCKS) as *const _);
            // −offset · Σa: offset 128 (Q8_0) or 8 (Q4_0).
            let off = if Q8 {
                _mm512_slli_epi32::<7>(s)
            } else {
                _mm512_slli_epi32::<3>(s)
            };
            _mm512_sub_epi32(_mm512_setzero_si512(), off)
        });
        let da: [__m512; T] = std::array::from_fn(|t| _mm512_loadu_ps(d[t].add(g * GROUP_BLOCKS)));
        for (r, facc) in facc.iter_mut().enumerate() {
            let grp = w[r].add(g * group);
            let ahead = grp.wrapping_add(PREFETCH_BYTES) as usize;
            crate::stream::prefetch_stream(ahead, group.div_ceil(64));
            let (mut lo, mut hi) = (init, [_mm512_setzero_si512(); T]);
            for k in 0..4 {
                let (l, h) = if Q8 {
                    (
                        x16_step::<MASKED>(grp, n, k),
                        x16_step::<MASKED>(grp, n, k + 4),
                    )
                } else {
                    let v = x16_step::<MASKED>(grp, n, k);
                    (
                        _mm512_and_si512(v, low),
                        _mm512_and_si512(_mm512_srli_epi16::<4>(v), low),
                    )
                };
                for t in 0..T {
                    let al = _mm512_loadu_si512(a[t].add(64 * k) as *const _);
                    let ah = _mm512_loadu_si512(a[t].add(64 * (k + 4)) as *const _);
                    lo[t] = _mm512_dpbusd_epi32(lo[t], l, al);
                    hi[t] = _mm512_dpbusd_epi32(hi[t], h, ah);
                }
            }
            let dw = _mm512_cvtph_ps(x16_scales::<MASKED>(grp, n));
            for t in 0..T {
                let isum = _mm512_add_epi32(lo[t], hi[t]);
                let scale = _mm512_mul_ps(dw, da[t]);
                facc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, facc[t]);
            }
        }
    }
}

/// Step `k` of a repacked group of `n` blocks at `grp`: 64 bytes, four of each block; masked,
/// the `4n` bytes of a partial group and zeros after them.
///
/// # Safety
/// AVX-512 BW available; the step's bytes inside the group.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn x16_step<const MASKED: bool>(grp: *const u8, n: usize, k: usize) -> __m512i {
    // SAFETY: the caller's promise.
    unsafe {
        if MASKED {
            let m = (1u64 << (4 * n)) - 1;
            _mm512_maskz_loadu_epi8(m, grp.add(crate::qx16::step_at(n, k)) as *const i8)
        } else {
            _mm512_loadu_si512(grp.add(crate::qx16::QUANTS_AT + 64 * k) as *const _)
        }
    }
}

/// The 16 f16 scales of a repacked group of `n` blocks at `grp` (masked: zeros after `n`).
///
/// # Safety
/// AVX-512 BW/VL available; the scales inside the group.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn x16_scales<const MASKED: bool>(grp: *const u8, n: usize) -> __m256i {
    // SAFETY: the caller's promise.
    unsafe {
        if MASKED {
            _mm256_maskz_loadu_epi16(((1u32 << n) - 1) as u16, grp as *const i16)
        } else {
            _mm256_loadu_si256(grp as *const __m256i)
        }
    }
}
