//! AVX2 + FMA + F16C dot products of one stored weight row with one activation row (the decode
//! kernels); twins of `dot_scalar.rs`.
//!
//! Float rows: one 8-lane accumulator per row and token, rows read side by side, weights
//! converted on the fly (F16 with `vcvtph2ps`, BF16 by a 16-bit shift); for several tokens, a
//! block of four rows read once for up to 16 tokens, in chunks of columns that keep the tokens'
//! values in L1 (`dot_float_block`), each sum bitwise the one-token kernel's. Q8_0 / Q4_0 rows,
//! one 256-bit vector per block:
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
pub(crate) fn dot_float<const KIND: u8>(k: Avx2, w: &[u8], x: &[f32]) -> f32 {
    let [v] = dot_float_rows::<KIND, 1>(k, [w], x);
    v
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

/// Float rows `w` (each `x.len()` values of `KIND`) · `x`, the rows read side by side (streams
/// from memory at once): each row's sum is bitwise [`dot_float`]'s, which is this kernel for
/// one row.
pub(crate) fn dot_float_rows<const KIND: u8, const R: usize>(
    _: Avx2,
    w: [&[u8]; R],
    x: &[f32],
) -> [f32; R] {
    let n = x.len();
    assert!(w.iter().all(|w| w.len() == float_bytes(KIND) * n));
    // SAFETY: the token proves the features; each row and `x` hold `n` values.
    unsafe { rows_avx2::<KIND, R>(w.map(|w| w.as_ptr()), x) }
}

/// # Safety
/// AVX2/FMA/F16C available; each of `w` holds `x.len()` values of `KIND`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_avx2<const KIND: u8, const R: usize>(w: [*const u8; R], x: &[f32]) -> [f32; R] {
    let (n, x) = (x.len(), [x.as_ptr()]);
    let mut acc = [[_mm256_setzero_ps(); R]; 1];
    // SAFETY: the caller's contract.
    unsafe {
        float_steps::<KIND, R, 1>(w, x, 0, n / 8 * 8, 8, PREFETCH_BYTES, &mut acc);
        float_sums::<KIND, R>(w, x[0], n, &acc[0])
    }
}

/// Most tokens a call of [`dot_float_block`] takes.
pub(crate) const BLOCK_TOKENS: usize = 16;

/// Tokens of the block kernel's step that starts at token `t` of `nt`: three (four rows and
/// three tokens are twelve accumulators; with three tokens' values and one row's, the sixteen
/// registers), two and two for the last four (two passes over the rows either way, and a pass
/// of one token converts a row's values for a single product), else what is left.
pub(crate) fn step_tokens(nt: usize, t: usize) -> usize {
    match nt - t {
        4 => 2,
        left => left.min(3),
    }
}

/// Float rows `w` (each `n` values of `KIND`) · each of the `x.len() / n` token rows of `x` (at
/// most [`BLOCK_TOKENS`]) into `out(row, token, sum)`, each sum bitwise [`dot_float`]'s. The
/// rows are read side by side from memory once for all the tokens: in chunks of columns that
/// keep every token's values of the chunk in L1 (16 KiB of them) while the rows' chunk passes
/// by each step's tokens in turn ([`step_tokens`]), the first step asking for the next block's
/// chunk. `xi` is `x` laid out by [`interleave_tokens`].
pub(crate) fn dot_float_block<const KIND: u8, const R: usize>(
    _: Avx2,
    w: [&[u8]; R],
    x: &[f32],
    xi: &[f32],
    n: usize,
    mut out: impl FnMut(usize, usize, f32),
) {
    assert!(n > 0 && x.len().is_multiple_of(n));
    assert!(xi.len() == x.len() / n * (n / 8 * 8));
    let nt = x.len() / n;
    assert!(nt <= BLOCK_TOKENS);
    assert!(w.iter().all(|w| w.len() == float_bytes(KIND) * n));
    // SAFETY: the token proves the features; every row and token holds `n` values.
    unsafe { block_avx2::<KIND, R>(w.map(|w| w.as_ptr()), x, xi, n, nt, &mut out) }
}

/// # Safety
/// AVX2/FMA/F16C available; `x` holds `nt` (at most [`BLOCK_TOKENS`]) rows of `n` values, each
/// of `w` `n` values of `KIND`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block_avx2<const KIND: u8, const R: usize>(
    w: [*const u8; R],
    x: &[f32],
    xi: &[f32],
    n: usize,
    nt: usize,
    out: &mut impl FnMut(usize, usize, f32),
) {
    let xp = |t: usize| x[t * n..].as_ptr();
    let n8 = n / 8 * 8;
    // A step's tokens lie side by side from its first token's place.
    let xi = |t: usize, j: usize| xi[t * n8 + 8 * j..].as_ptr();
    let mut acc = [[_mm256_setzero_ps(); R]; BLOCK_TOKENS];
    let chunk = (4096 / nt.max(1)).clamp(32, 4096) / 32 * 32;
    for k0 in (0..n8).step_by(chunk) {
        let k1 = (k0 + chunk).min(n8);
        let mut t0 = 0;
        while t0 < nt {
            // The first step's tokens ask for the next block's rows (rows lie one after
            // another), the same columns: a block ahead.
            let ahead = if t0 == 0 {
                R * n * float_bytes(KIND)
            } else {
                0
            };
            let m = step_tokens(nt, t0);
            let acc = &mut acc[t0..t0 + m];
            // SAFETY: the caller's contract; `k1 <= n`.
            unsafe {
                match m {
                    1 => {
                        let acc = acc.try_into().unwrap();
                        float_steps::<KIND, R, 1>(w, [xi(t0, 0)], k0, k1, 8, ahead, acc);
                    }
                    2 => {
                        let acc = acc.try_into().unwrap();
                        let xs = [xi(t0, 0), xi(t0, 1)];
                        float_steps::<KIND, R, 2>(w, xs, k0, k1, 16, ahead, acc);
                    }
                    _ => {
                        let acc = acc.try_into().unwrap();
                        let xs = [xi(t0, 0), xi(t0, 1), xi(t0, 2)];
                        float_steps::<KIND, R, 3>(w, xs, k0, k1, 24, ahead, acc);
                    }
                }
            }
            t0 += m;
        }
    }
    for (t, acc) in acc[..nt].iter().enumerate() {
        // SAFETY: the caller's contract.
        let sums = unsafe { float_sums::<KIND, R>(w, xp(t), n, acc) };
        for (r, v) in sums.into_iter().enumerate() {
            out(r, t, v);
        }
    }
}

/// Token rows `x` (each `n` values) laid out as [`dot_float_block`] reads them, one line per
/// step: block by block of [`BLOCK_TOKENS`] tokens, each step's tokens ([`step_tokens`]) with
/// their groups of eight values side by side in token order, from the place of the step's first
/// token; the values past the last whole group left out.
pub(crate) fn interleave_tokens(x: &[f32], n: usize, xi: &mut [f32]) {
    let n8 = n / 8 * 8;
    assert!(n > 0 && x.len().is_multiple_of(n) && xi.len() == x.len() / n * n8);
    if n8 == 0 {
        return;
    }
    for (x, xi) in x
        .chunks(BLOCK_TOKENS * n)
        .zip(xi.chunks_mut(BLOCK_TOKENS * n8))
    {
        let nt = x.len() / n;
        let mut t = 0;
        while t < nt {
            let m = step_tokens(nt, t);
            for j in 0..m {
                let x = &x[(t + j) * n..][..n8];
                for (s, v) in x.chunks_exact(8).enumerate() {
                    xi[t * n8 + (s * m + j) * 8..][..8].copy_from_slice(v);
                }
            }
            t += m;
        }
    }
}

/// Columns `k0..k1` (whole groups of eight, in order) of rows `w` · tokens `xs` added to `acc`:
/// one 8-lane accumulator per token and row, so each (row, token) takes the same operations
/// whatever `R`, `T` and the chunks, and the `R × T` chains hide the latency. Each row's lines
/// are asked for `ahead` bytes ahead (none for 0).
///
/// # Safety
/// AVX2/FMA/F16C available; `k0` and `k1` multiples of 8; each of `w` holds at least `k1`
/// values of `KIND`; token `t`'s group of eight values `g` lies at `xs[t] + g · xstride`, for
/// every group below `k1 / 8` (four rows and three tokens take the tokens' groups side by side:
/// `xs[t] = xs[0] + 8t`, `xstride` 24, checked).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn float_steps<const KIND: u8, const R: usize, const T: usize>(
    w: [*const u8; R],
    xs: [*const f32; T],
    k0: usize,
    k1: usize,
    xstride: usize,
    ahead: usize,
    acc: &mut [[__m256; R]; T],
) {
    // Locals, reached only by iterators (constant trip counts, unrolled), so that they stay in
    // registers; row-major, as each step takes them.
    let mut a: [[__m256; T]; R] = std::array::from_fn(|r| std::array::from_fn(|t| acc[t][r]));
    let mut i = k0;
    // SAFETY (all loads): indices stay below k1, which every operand holds.
    unsafe {
        if R == 4 && T == 3 {
            // The three tokens' groups of eight lie side by side (`interleave_tokens`).
            assert!(
                xstride == 24 && xs[1] == xs[0].wrapping_add(8) && xs[2] == xs[0].wrapping_add(16)
            );
            let w4: [*const u8; 4] = std::array::from_fn(|r| w[r]);
            let a43: [[__m256; 3]; 4] = std::array::from_fn(|r| std::array::from_fn(|t| a[r][t]));
            let a43 = steps_4x3::<KIND>(w4, xs[0], k0, k1, ahead, a43);
            for (a, b) in a.iter_mut().zip(&a43) {
                for (a, b) in a.iter_mut().zip(b) {
                    *a = *b;
                }
            }
            i = k1;
        }
        while i + 32 <= k1 {
            if ahead > 0 {
                for w in &w {
                    // 32 values are 64 or 128 bytes: one or two lines.
                    let ahead = w.wrapping_add(i * float_bytes(KIND) + ahead);
                    crate::stream::prefetch_stream(ahead as usize, if KIND == F32 { 2 } else { 1 });
                }
            }
            for j in (i..i + 32).step_by(8) {
                float_step::<KIND, R, T>(w, xs, j, j / 8 * xstride, &mut a);
            }
            i += 32;
        }
        while i < k1 {
            float_step::<KIND, R, T>(w, xs, i, i / 8 * xstride, &mut a);
            i += 8;
        }
    }
    for (t, acc) in acc.iter_mut().enumerate() {
        for (acc, a) in acc.iter_mut().zip(&a) {
            *acc = a[t];
        }
    }
}

/// One step of [`float_steps`]: values `i..i + 8` of the rows, `xi..xi + 8` of the tokens. The
/// tokens' values are loaded first, then each row's converted values meet every token in turn:
/// `R × T` accumulators, `T` token values and one row's values in registers (four rows and
/// three tokens fill the sixteen).
///
/// # Safety
/// As [`float_steps`].
#[inline(always)]
unsafe fn float_step<const KIND: u8, const R: usize, const T: usize>(
    w: [*const u8; R],
    xs: [*const f32; T],
    i: usize,
    xi: usize,
    a: &mut [[__m256; T]; R],
) {
    // SAFETY: the caller's contract.
    unsafe {
        let xv: [__m256; T] = std::array::from_fn(|t| _mm256_loadu_ps(xs[t].add(xi)));
        for (a, w) in a.iter_mut().zip(w) {
            let wv = load8::<KIND>(w, i);
            for (a, xv) in a.iter_mut().zip(&xv) {
                *a = _mm256_fmadd_ps(wv, *xv, *a);
            }
        }
    }
}

/// The load of a row's eight values into `{w}` as `f32`, per encoding.
macro_rules! load_row {
    (F32, $p:literal, $o:literal) => {
        concat!("vmovups {w}, ymmword ptr [", $p, $o, "]")
    };
    (F16, $p:literal, $o:literal) => {
        concat!("vcvtph2ps {w}, xmmword ptr [", $p, $o, "]")
    };
    (BF16, $p:literal, $o:literal) => {
        concat!(
            "vpmovzxwd {w}, xmmword ptr [",
            $p,
            $o,
            "]\n",
            "vpslld {w}, {w}, 16"
        )
    };
}

/// One row's part of a step of [`step_4x3_text`]: its eight values from `$p` + `$wo` into
/// `{w}`, times each token's values into the row's accumulators `$a0`..`$a2`.
macro_rules! row_3_text {
    ($kind:ident, $p:literal, $wo:literal, $a0:literal, $a1:literal, $a2:literal) => {
        concat!(
            load_row!($kind, $p, $wo),
            "\n",
            "vfmadd231ps ",
            $a0,
            ", {w}, {x0}\n",
            "vfmadd231ps ",
            $a1,
            ", {w}, {x1}\n",
            "vfmadd231ps ",
            $a2,
            ", {w}, {x2}\n",
        )
    };
}

/// One step of four rows and three tokens as text for [`steps_4x3`]: the tokens' values at
/// byte offsets `$x0`, `$x1`, `$x2` from `{q}`, the rows' at `$wo` from `{p0}`..`{p3}`.
macro_rules! step_4x3_text {
    ($kind:ident, $wo:literal, $x0:literal, $x1:literal, $x2:literal) => {
        concat!(
            "vmovups {x0}, ymmword ptr [{q} + ",
            $x0,
            "]\n",
            "vmovups {x1}, ymmword ptr [{q} + ",
            $x1,
            "]\n",
            "vmovups {x2}, ymmword ptr [{q} + ",
            $x2,
            "]\n",
            row_3_text!($kind, "{p0} + ", $wo, "{a00}", "{a01}", "{a02}"),
            row_3_text!($kind, "{p1} + ", $wo, "{a10}", "{a11}", "{a12}"),
            row_3_text!($kind, "{p2} + ", $wo, "{a20}", "{a21}", "{a22}"),
            row_3_text!($kind, "{p3} + ", $wo, "{a30}", "{a31}", "{a32}"),
        )
    };
}

/// Steps of four rows and three tokens in one block of assembly, the registers named: twelve
/// accumulators, three token values, one row's values (the compiler, left to itself, kept one
/// accumulator in memory, its scheduler loading every row first). `$steps` lists each step's
/// offsets: the rows' bytes, then the three tokens' bytes.
macro_rules! steps_4x3 {
    ($kind:ident, $p:ident, $q:ident,
     [$a00:ident, $a01:ident, $a02:ident, $a10:ident, $a11:ident, $a12:ident,
      $a20:ident, $a21:ident, $a22:ident, $a30:ident, $a31:ident, $a32:ident],
     [$($wo:literal $x0:literal $x1:literal $x2:literal),*]) => {
        std::arch::asm!(
            $(step_4x3_text!($kind, $wo, $x0, $x1, $x2),)*
            q = in(reg) $q,
            p0 = in(reg) $p[0],
            p1 = in(reg) $p[1],
            p2 = in(reg) $p[2],
            p3 = in(reg) $p[3],
            w = out(ymm_reg) _,
            x0 = out(ymm_reg) _,
            x1 = out(ymm_reg) _,
            x2 = out(ymm_reg) _,
            a00 = inout(ymm_reg) $a00,
            a01 = inout(ymm_reg) $a01,
            a02 = inout(ymm_reg) $a02,
            a10 = inout(ymm_reg) $a10,
            a11 = inout(ymm_reg) $a11,
            a12 = inout(ymm_reg) $a12,
            a20 = inout(ymm_reg) $a20,
            a21 = inout(ymm_reg) $a21,
            a22 = inout(ymm_reg) $a22,
            a30 = inout(ymm_reg) $a30,
            a31 = inout(ymm_reg) $a31,
            a32 = inout(ymm_reg) $a32,
            options(nostack, readonly, preserves_flags),
        )
    };
}

/// [`float_steps`] for four rows and three tokens (their groups of eight side by side, 96
/// bytes a step, from `q`): the accumulators in locals that the assembly names.
///
/// # Safety
/// As [`float_steps`]; `q` holds three tokens' values side by side up to value `k1`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn steps_4x3<const KIND: u8>(
    w: [*const u8; 4],
    q: *const f32,
    k0: usize,
    k1: usize,
    ahead: usize,
    acc: [[__m256; 3]; 4],
) -> [[__m256; 3]; 4] {
    let [[mut a00, mut a01, mut a02], [mut a10, mut a11, mut a12], [mut a20, mut a21, mut a22], [mut a30, mut a31, mut a32]] =
        acc;
    let vb = float_bytes(KIND);
    let mut i = k0;
    // SAFETY: the caller's contract bounds every address (values below k1).
    unsafe {
        while i + 32 <= k1 {
            if ahead > 0 {
                for w in &w {
                    let ahead = w.wrapping_add(i * vb + ahead);
                    crate::stream::prefetch_stream(ahead as usize, if KIND == F32 { 2 } else { 1 });
                }
            }
            let p: [*const u8; 4] = w.map(|w| w.add(i * vb));
            let q = q.add(i * 3);
            match KIND {
                F32 => {
                    steps_4x3!(F32, p, q, [a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32],
                    ["0" "0" "32" "64", "32" "96" "128" "160", "64" "192" "224" "256", "96" "288" "320" "352"])
                }
                F16 => {
                    steps_4x3!(F16, p, q, [a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32],
                    ["0" "0" "32" "64", "16" "96" "128" "160", "32" "192" "224" "256", "48" "288" "320" "352"])
                }
                _ => {
                    steps_4x3!(BF16, p, q, [a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32],
                    ["0" "0" "32" "64", "16" "96" "128" "160", "32" "192" "224" "256", "48" "288" "320" "352"])
                }
            }
            i += 32;
        }
        while i < k1 {
            let p: [*const u8; 4] = w.map(|w| w.add(i * vb));
            let q = q.add(i * 3);
            match KIND {
                F32 => {
                    steps_4x3!(F32, p, q, [a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32], ["0" "0" "32" "64"])
                }
                F16 => {
                    steps_4x3!(F16, p, q, [a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32], ["0" "0" "32" "64"])
                }
                _ => {
                    steps_4x3!(BF16, p, q, [a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32], ["0" "0" "32" "64"])
                }
            }
            i += 8;
        }
    }
    [
        [a00, a01, a02],
        [a10, a11, a12],
        [a20, a21, a22],
        [a30, a31, a32],
    ]
}

/// The sums of [`float_steps`]' accumulators for rows `w` (each `n` values) and one token `x`:
/// each accumulator's lanes summed ([`hsum_ps`]), then the values past the last whole group of
/// eight added one by one.
///
/// # Safety
/// AVX2/FMA/F16C available; `x` and each of `w` hold `n` values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn float_sums<const KIND: u8, const R: usize>(
    w: [*const u8; R],
    x: *const f32,
    n: usize,
    acc: &[__m256; R],
) -> [f32; R] {
    let mut sums = [0f32; R];
    for ((s, a), w) in sums.iter_mut().zip(acc).zip(w) {
        *s = hsum_ps(*a);
        for j in n / 8 * 8..n {
            // SAFETY: j < n.
            *s += unsafe { load1::<KIND>(w, j) * *x.add(j) };
        }
    }
    sums
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
