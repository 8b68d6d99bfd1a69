//! Cached f16 key rows widened to `f32` and transposed for attention's score kernel
//! (`attn.rs` reads a block of keys dimension by dimension): [`f16_rows_transposed`].

use half::f16;

/// `out[d · out_stride + r]` = value `d` (of `width`) of f16 row `r` (of `n_rows`, row `r` at
/// `src[r · stride..]`), exactly widened. Blocks of 16 rows and 16 values go through AVX-512
/// (16 conversions and a 16 × 16 transpose in registers) at the AVX-512 levels of
/// [`crate::isa`], blocks of 8 × 8 through AVX2 / F16C at the AVX2 level; the rest value by
/// value.
///
/// # Panics
/// When `src` or `out` is too short for the shape.
pub fn f16_rows_transposed(
    src: &[u8],
    stride: usize,
    n_rows: usize,
    width: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    if n_rows == 0 || width == 0 {
        return;
    }
    assert!(
        src.len() >= (n_rows - 1) * stride + 2 * width,
        "f16 rows out of bounds"
    );
    assert!(n_rows <= out_stride && out.len() >= (width - 1) * out_stride + n_rows);
    let (mut r0, mut d_done) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if let Some(v) = Vectors::of_isa() {
        let l = v.lanes();
        d_done = width / l * l;
        while r0 + l <= n_rows {
            for d0 in (0..d_done).step_by(l) {
                v.block(src, stride, r0, d0, out, out_stride);
            }
            r0 += l;
        }
    }
    let value = |r: usize, d: usize| {
        let at = r * stride + 2 * d;
        f16::from_le_bytes([src[at], src[at + 1]]).to_f32()
    };
    for d in 0..width {
        // Rows the 16-row blocks covered only for their dimensions.
        let first = if d < d_done { r0 } else { 0 };
        for r in first..n_rows {
            out[d * out_stride + r] = value(r, d);
        }
    }
}

/// `out[r · width + d]` = value `d` (of `width`) of f16 row `r` (of `n_rows`, row `r` at
/// `src[r · stride..]`), exactly widened: cached value rows for attention. Sixteen values at a
/// time through AVX-512 at the AVX-512 levels of [`crate::isa`], eight through F16C at the AVX2
/// level; the rest value by value.
///
/// # Panics
/// When `src` or `out` is too short for the shape.
pub fn f16_rows(src: &[u8], stride: usize, n_rows: usize, width: usize, out: &mut [f32]) {
    if n_rows == 0 || width == 0 {
        return;
    }
    assert!(
        src.len() >= (n_rows - 1) * stride + 2 * width,
        "f16 rows out of bounds"
    );
    assert!(out.len() >= n_rows * width, "f16 rows: output too short");
    let mut d_done = 0;
    #[cfg(target_arch = "x86_64")]
    if let Some(v) = Vectors::of_isa() {
        d_done = width / v.lanes() * v.lanes();
        for r in 0..n_rows {
            v.row(
                &src[r * stride..r * stride + 2 * d_done],
                &mut out[r * width..][..d_done],
            );
        }
    }
    for r in 0..n_rows {
        for d in d_done..width {
            let at = r * stride + 2 * d;
            out[r * width + d] = f16::from_le_bytes([src[at], src[at + 1]]).to_f32();
        }
    }
}

/// The SIMD widening of the level [`crate::isa`] chose: 16 values a conversion and 16 × 16
/// blocks at AVX-512, 8 and 8 × 8 at AVX2 / F16C (value by value through the `half` crate's
/// conversion, AVX2 took about 8% of a TinyLlama Q4_0 decode to depth 256 at two threads and 3%
/// of a 512-token prompt). Every f16 widening is exact, so all give the same values.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum Vectors {
    Avx512(crate::cpu::Avx512),
    Avx2(crate::cpu::Avx2),
}

#[cfg(target_arch = "x86_64")]
impl Vectors {
    fn of_isa() -> Option<Vectors> {
        match crate::cpu::Level::new(crate::isa())? {
            crate::cpu::Level::Avx512(k) => Some(Vectors::Avx512(k)),
            crate::cpu::Level::Avx2(k) => Some(Vectors::Avx2(k)),
            crate::cpu::Level::Scalar => None,
        }
    }

    /// Values per conversion, and rows and values of a transposed block.
    fn lanes(self) -> usize {
        match self {
            Vectors::Avx512(_) => 16,
            Vectors::Avx2(_) => 8,
        }
    }

    /// Rows `r0..r0 + L`, values `d0..d0 + L` of [`f16_rows_transposed`] (`L` = [`Self::lanes`]).
    fn block(
        self,
        src: &[u8],
        stride: usize,
        r0: usize,
        d0: usize,
        out: &mut [f32],
        out_stride: usize,
    ) {
        let l = self.lanes();
        assert!(src.len() >= (r0 + l - 1) * stride + 2 * (d0 + l));
        assert!(out.len() >= (d0 + l - 1) * out_stride + r0 + l);
        let (src, out) = (src.as_ptr(), out.as_mut_ptr());
        // SAFETY: the token proves the features; every load and store is inside the slices
        // (checked above).
        unsafe {
            match self {
                Vectors::Avx512(k) => {
                    avx512::block16_avx512(k, src, stride, r0, d0, out, out_stride)
                }
                Vectors::Avx2(k) => avx2::block8_avx2(k, src, stride, r0, d0, out, out_stride),
            }
        }
    }

    /// `src` (f16 values, a multiple of [`Self::lanes`]) widened into `out`, of the same count.
    fn row(self, src: &[u8], out: &mut [f32]) {
        assert!(src.len() == 2 * out.len() && out.len().is_multiple_of(self.lanes()));
        let (n, src, out) = (out.len() / self.lanes(), src.as_ptr(), out.as_mut_ptr());
        // SAFETY: the token proves the features; the lengths were checked above.
        unsafe {
            match self {
                Vectors::Avx512(k) => avx512::row16s_avx512(k, src, out, n),
                Vectors::Avx2(k) => avx2::row8s_avx2(k, src, out, n),
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX-512 F available; `16 · n` values in `src` and `out`.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) unsafe fn row16s_avx512(
        _: crate::cpu::Avx512,
        src: *const u8,
        out: *mut f32,
        n: usize,
    ) {
        // SAFETY: the caller's bounds.
        unsafe {
            for i in 0..n {
                let v = _mm256_loadu_si256(src.add(32 * i) as *const __m256i);
                _mm512_storeu_ps(out.add(16 * i), _mm512_cvtph_ps(v));
            }
        }
    }

    /// # Safety
    /// AVX-512 F available; the 16 × 16 block inside `src` and `out`.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) unsafe fn block16_avx512(
        _: crate::cpu::Avx512,
        src: *const u8,
        stride: usize,
        r0: usize,
        d0: usize,
        out: *mut f32,
        out_stride: usize,
    ) {
        // SAFETY: the caller's bounds.
        unsafe {
            // A plain loop: a closure would not inherit this function's features.
            let mut r = [_mm512_setzero_ps(); 16];
            for (i, v) in r.iter_mut().enumerate() {
                let p = src.add((r0 + i) * stride + 2 * d0) as *const __m256i;
                *v = _mm512_cvtph_ps(_mm256_loadu_si256(p));
            }
            for (i, w) in transpose16(r).into_iter().enumerate() {
                _mm512_storeu_ps(out.add((d0 + i) * out_stride + r0), w);
            }
        }
    }

    /// The 16 × 16 transpose of `r` (row `i` of the result holds lane `i` of every input).
    ///
    /// # Safety
    /// Called only from functions with AVX-512 F enabled.
    #[inline(always)]
    pub(crate) unsafe fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        // SAFETY: register-only intrinsics; the caller has the features.
        unsafe {
            // Pairs, then quads within 128-bit lanes, then lanes across registers (plain loops:
            // closures would not inherit the caller's features, and their intrinsics would not
            // be inlined).
            let z = _mm512_setzero_ps();
            let mut t = [z; 16];
            for i in (0..16).step_by(2) {
                t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
            }
            let mut u = [z; 16];
            for base in (0..16).step_by(4) {
                u[base] = _mm512_shuffle_ps::<0x44>(t[base], t[base + 2]);
                u[base + 1] = _mm512_shuffle_ps::<0xEE>(t[base], t[base + 2]);
                u[base + 2] = _mm512_shuffle_ps::<0x44>(t[base + 1], t[base + 3]);
                u[base + 3] = _mm512_shuffle_ps::<0xEE>(t[base + 1], t[base + 3]);
            }
            let mut v = [z; 16];
            for base in [0, 8] {
                for j in 0..4 {
                    v[base + j] = _mm512_shuffle_f32x4::<0x88>(u[base + j], u[base + 4 + j]);
                    v[base + 4 + j] = _mm512_shuffle_f32x4::<0xDD>(u[base + j], u[base + 4 + j]);
                }
            }
            let mut w = [z; 16];
            for j in 0..8 {
                w[j] = _mm512_shuffle_f32x4::<0x88>(v[j], v[8 + j]);
                w[8 + j] = _mm512_shuffle_f32x4::<0xDD>(v[j], v[8 + j]);
            }
            w
        }
    }
}

/// The AVX2 / F16C kernels of [`Vectors`].
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX2 / F16C available; `8 · n` values in `src` and `out`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn row8s_avx2(_: crate::cpu::Avx2, src: *const u8, out: *mut f32, n: usize) {
        // SAFETY: the caller's bounds.
        unsafe {
            for i in 0..n {
                let v = _mm_loadu_si128(src.add(16 * i) as *const __m128i);
                _mm256_storeu_ps(out.add(8 * i), _mm256_cvtph_ps(v));
            }
        }
    }

    /// # Safety
    /// AVX2 / F16C available; the 8 × 8 block inside `src` and `out`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn block8_avx2(
        _: crate::cpu::Avx2,
        src: *const u8,
        stride: usize,
        r0: usize,
        d0: usize,
        out: *mut f32,
        out_stride: usize,
    ) {
        // SAFETY: the caller's bounds.
        unsafe {
            let mut r = [_mm256_setzero_ps(); 8];
            for (i, v) in r.iter_mut().enumerate() {
                let p = src.add((r0 + i) * stride + 2 * d0) as *const __m128i;
                *v = _mm256_cvtph_ps(_mm_loadu_si128(p));
            }
            // Pairs, then quads within 128-bit lanes, then the lanes across registers.
            let z = _mm256_setzero_ps();
            let mut t = [z; 8];
            for i in (0..8).step_by(2) {
                t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
            }
            let mut u = [z; 8];
            for base in [0, 4] {
                u[base] = _mm256_shuffle_ps::<0x44>(t[base], t[base + 2]);
                u[base + 1] = _mm256_shuffle_ps::<0xEE>(t[base], t[base + 2]);
                u[base + 2] = _mm256_shuffle_ps::<0x44>(t[base + 1], t[base + 3]);
                u[base + 3] = _mm256_shuffle_ps::<0xEE>(t[base + 1], t[base + 3]);
            }
            for j in 0..4 {
                let lo = _mm256_permute2f128_ps::<0x20>(u[j], u[4 + j]);
                let hi = _mm256_permute2f128_ps::<0x31>(u[j], u[4 + j]);
                _mm256_storeu_ps(out.add((d0 + j) * out_stride + r0), lo);
                _mm256_storeu_ps(out.add((d0 + 4 + j) * out_stride + r0), hi);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widened_rows_equal_the_values() {
        let mut rng = crate::kernel_tests::Rng(0x1234_5678_9abc_def1);
        let mut next = || rng.next();
        for (n_rows, width, stride) in [
            (16, 64, 512),
            (16, 128, 256),
            (7, 64, 130),
            (33, 40, 96),
            (1, 16, 32),
            (8, 8, 16),
            (13, 20, 40),
            (24, 72, 150),
        ] {
            let src: Vec<u8> = (0..n_rows * stride)
                .flat_map(|_| f16::from_f32((next() >> 40) as f32 / 1e5 - 80.0).to_le_bytes())
                .take(n_rows * stride)
                .collect();
            let out_stride = n_rows + 3;
            let mut out = vec![f32::NAN; width * out_stride];
            f16_rows_transposed(&src, stride, n_rows, width, &mut out, out_stride);
            let mut rows = vec![f32::NAN; n_rows * width];
            f16_rows(&src, stride, n_rows, width, &mut rows);
            for r in 0..n_rows {
                for d in 0..width {
                    let at = r * stride + 2 * d;
                    let want = f16::from_le_bytes([src[at], src[at + 1]]).to_f32();
                    for (got, how) in [
                        (out[d * out_stride + r], "transposed"),
                        (rows[r * width + d], "rows"),
                    ] {
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{how} {n_rows}x{width} r={r} d={d}"
                        );
                    }
                }
            }
        }
    }
}
