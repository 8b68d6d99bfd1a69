/// Dot product in `f32` with eight independent partial sums (vectorizes well; the summation
/// order is fixed, so results are deterministic).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += x * y;
    }
    sum
}

/// Values per task of the elementwise steps spread over threads ([`add_assign`], [`silu_mul`]).
const PAR_CHUNK: usize = 1 << 15;

/// `x[i] += y[i]`.
pub fn add_assign(x: &mut [f32], y: &[f32]) {
    assert_eq!(x.len(), y.len());
    // A prompt's worth is spread over threads, as in `silu_mul`.
    if x.len() > PAR_CHUNK {
        let items = x.chunks_mut(PAR_CHUNK).zip(y.chunks(PAR_CHUNK)).collect();
        return crate::team::for_each_item(items, |(a, b)| add_assign(a, b));
    }
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// In place softmax over `x` (max-subtracted, `f32`).
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// SwiGLU's gate: `gate[i] = silu(gate[i]) * up[i]`, with `silu(x) = x / (1 + e^-x)`.
///
/// `e^-x` is the branch-free `exp` of the attention kernels (within 3 ulp; a libm call per
/// value cost more than the rest of the loop), so the loop vectorizes; its fused multiply-adds
/// make every instruction-set level give the same bits.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    // A prompt's worth is spread over threads (each value on its own, so the split does not
    // change the result).
    if gate.len() > PAR_CHUNK {
        let items = gate
            .chunks_mut(PAR_CHUNK)
            .zip(up.chunks(PAR_CHUNK))
            .collect();
        return crate::team::for_each_item(items, |(g, u)| silu_mul(g, u));
    }
    match crate::cpu::Level::new(crate::isa()).unwrap_or(crate::cpu::Level::Scalar) {
        #[cfg(target_arch = "x86_64")]
        crate::cpu::Level::Avx512(_) => {
            // SAFETY: the level proves AVX-512 F, AVX2 and FMA.
            unsafe { silu_mul_avx512(gate, up) }
        }
        #[cfg(target_arch = "x86_64")]
        crate::cpu::Level::Avx2(_) => {
            // SAFETY: the level proves AVX2 and FMA.
            unsafe { silu_mul_avx2(gate, up) }
        }
        _ => silu_mul_generic(gate, up),
    }
}

/// [`silu_mul_avx512`] eight values wide, `exp` by [`crate::attn::exp_avx2`] (compiled from
/// the plain loop, the clamp and conversions stayed scalar: a percent of a TinyLlama prompt at
/// AVX2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_mul_avx2(gate: &mut [f32], up: &[f32]) {
    use std::arch::x86_64::*;
    let n = gate.len().min(up.len()) / 8 * 8;
    let (one, sign) = (_mm256_set1_ps(1.0), _mm256_set1_ps(-0.0));
    for (g, u) in gate[..n].chunks_exact_mut(8).zip(up[..n].chunks_exact(8)) {
        // SAFETY: each chunk holds 8 values; the caller's level proves AVX2 and FMA.
        unsafe {
            let gv = _mm256_loadu_ps(g.as_ptr());
            let e = crate::attn::exp_avx2(_mm256_xor_ps(gv, sign));
            let r = _mm256_mul_ps(
                _mm256_div_ps(gv, _mm256_add_ps(one, e)),
                _mm256_loadu_ps(u.as_ptr()),
            );
            _mm256_storeu_ps(g.as_mut_ptr(), r);
        }
    }
    silu_mul_generic(&mut gate[n..], &up[n..])
}

/// The same arithmetic sixteen values wide, `exp` by [`crate::attn::exp_avx512`] (the scalar
/// `exp` operation for operation; left to the compiler, its clamp and conversions stayed scalar),
/// the tail by the plain loop. A decode step's SwiGLU runs on the caller alone, while the other
/// threads wait.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn silu_mul_avx512(gate: &mut [f32], up: &[f32]) {
    use std::arch::x86_64::*;
    let n = gate.len().min(up.len()) / 16 * 16;
    let (one, sign) = (_mm512_set1_ps(1.0), _mm512_set1_epi32(i32::MIN));
    for (g, u) in gate[..n].chunks_exact_mut(16).zip(up[..n].chunks_exact(16)) {
        // SAFETY: each chunk holds 16 values; the caller's level proves AVX-512 F.
        unsafe {
            let gv = _mm512_loadu_ps(g.as_ptr());
            let neg = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(gv), sign));
            let e = crate::attn::exp_avx512(neg);
            let r = _mm512_mul_ps(
                _mm512_div_ps(gv, _mm512_add_ps(one, e)),
                _mm512_loadu_ps(u.as_ptr()),
            );
            _mm512_storeu_ps(g.as_mut_ptr(), r);
        }
    }
    silu_mul_generic(&mut gate[n..], &up[n..])
}

#[inline(always)]
fn silu_mul_generic(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + crate::attn::exp(-*g)) * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_sequential_sum() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        assert!((dot(&a, &b) as f64 - want).abs() < 1e-5);
    }

    #[test]
    fn silu_mul_levels_give_the_same_bits() {
        use crate::Isa;
        let mut rng = crate::kernel_tests::Rng(0x9e37_79b9_7f4a_7c15);
        let mut next = || rng.f32() * 20.0;
        // Random values, the exp's clamp ends and beyond, zeros, a tail shorter than a vector.
        let mut gate: Vec<f32> = (0..1000).map(|_| next()).collect();
        gate.extend([-200.0, -88.0, -87.0, 0.0, -0.0, 88.0, 89.0, 200.0, 1e-30]);
        let up: Vec<f32> = gate.iter().map(|_| next()).collect();
        let mut want = gate.clone();
        silu_mul_generic(&mut want, &up);
        #[cfg(target_arch = "x86_64")]
        {
            if Isa::Avx2.is_supported() {
                let mut g = gate.clone();
                // SAFETY: AVX2 and FMA checked just above.
                unsafe { silu_mul_avx2(&mut g, &up) };
                assert!(g.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
            }
            if Isa::Avx512.is_supported() {
                let mut g = gate.clone();
                // SAFETY: AVX-512 F checked just above.
                unsafe { silu_mul_avx512(&mut g, &up) };
                assert!(g.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
            }
        }
        let mut g = gate.clone();
        silu_mul(&mut g, &up);
        assert!(g.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = vec![1.0, 2.0, 3.0, -1e9];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[3] == 0.0 && x[2] > x[1]);
    }
}
