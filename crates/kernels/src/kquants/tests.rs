//! Unit tests of the K-quant kernels on random blocks: Q8_K rounding, scalar dots against an
//! `f64` dot of the decoded values, and the AVX2 integer sums against the scalar ones.

use half::f16;

use super::layout::{q2_k, q3_k, q4_k, q5_k, q6_k};
use super::*;

/// Largest |scalar dot − f64 dot of the decoded values| allowed, relative to the sum of the
/// magnitudes of the terms (scale part and min part): only `f32` rounding differs.
const DOT_REL_TOL: f64 = 1e-5;
/// Largest |AVX2 dot − scalar dot| allowed, on the same scale: identical integer sums, only
/// the `f32` accumulation order differs.
const AVX2_REL_TOL: f64 = 1e-6;

const K_TYPES: [WeightType; 5] = [
    WeightType::Q2_K,
    WeightType::Q3_K,
    WeightType::Q4_K,
    WeightType::Q5_K,
    WeightType::Q6_K,
];

/// Deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn byte(&mut self) -> u8 {
        (self.next() >> 24) as u8
    }
    /// Uniform in [−1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Byte offsets of the f16 fields of one block of `ty`.
fn f16_fields(ty: WeightType) -> &'static [usize] {
    match ty {
        WeightType::Q2_K => &[q2_k::D, q2_k::DMIN],
        WeightType::Q3_K => &[q3_k::D],
        WeightType::Q4_K => &[q4_k::D, q4_k::DMIN],
        WeightType::Q5_K => &[q5_k::D, q5_k::DMIN],
        WeightType::Q6_K => &[q6_k::D],
        _ => &[],
    }
}

/// A row of `n_blocks` random blocks of `ty` with f16 scales in [1e-3, 1e-1).
fn random_row(ty: WeightType, n_blocks: usize, rng: &mut Rng) -> Vec<u8> {
    let bb = ty.block_bytes();
    let mut row: Vec<u8> = (0..n_blocks * bb).map(|_| rng.byte()).collect();
    for block in row.chunks_exact_mut(bb) {
        for &at in f16_fields(ty) {
            let v = 1e-3 + 0.099 * (rng.unit() + 1.0) / 2.0;
            block[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
        }
    }
    row
}

/// Random activations with a few large values.
fn random_act(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = rng.unit();
            if i % 97 == 5 {
                v * 40.0
            } else {
                v
            }
        })
        .collect()
}

/// (f64 dot of the decoded row and activations, sum of the magnitudes of its terms).
fn reference(ty: WeightType, row: &[u8], act: &[BlockQ8K]) -> (f64, f64) {
    let n = act.len() * QK_K;
    let mut w = vec![0f32; n];
    dequantize(ty, row, &mut w);
    // The min part of each value: the same row with every d zeroed decodes to −dmin·m.
    let mut no_d = row.to_vec();
    let mut mins = vec![0f32; n];
    if f16_fields(ty).len() == 2 {
        let d_at = f16_fields(ty)[0];
        for b in no_d.chunks_exact_mut(ty.block_bytes()) {
            b[d_at..d_at + 2].copy_from_slice(&[0, 0]);
        }
        dequantize(ty, &no_d, &mut mins);
    }
    let mut a = vec![0f32; n];
    dequantize_q8_k(act, &mut a);
    let mut dot = 0f64;
    let mut mag = 0f64;
    for ((&w, &m), &a) in w.iter().zip(&mins).zip(&a) {
        dot += w as f64 * a as f64;
        mag += (w.abs() as f64 + 2.0 * m.abs() as f64) * a.abs() as f64;
    }
    (dot, mag)
}

fn scalar_dot(ty: WeightType, row: &[u8], act: &[BlockQ8K]) -> f32 {
    match ty {
        WeightType::Q2_K => vec_dot_q2_k_q8_k(row, act),
        WeightType::Q3_K => vec_dot_q3_k_q8_k(row, act),
        WeightType::Q4_K => vec_dot_q4_k_q8_k(row, act),
        WeightType::Q5_K => vec_dot_q5_k_q8_k(row, act),
        WeightType::Q6_K => vec_dot_q6_k_q8_k(row, act),
        _ => unreachable!("not a K-quant type"),
    }
}

#[test]
fn q8_k_rounds_like_ggml() {
    // Largest magnitude −2 → iscale 63.5: 1.0 → 63.5 rounds to 64 (ties to even), −2 → −127,
    // 0.5 → 31.75 → 32, 2/127 → 1.
    let mut x = vec![0f32; QK_K];
    x[0] = 1.0;
    x[1] = -2.0;
    x[2] = 0.5;
    x[3] = 2.0 / 127.0;
    x[17] = 1.5; // 95.25 → 95
    let b = quantize_q8_k(&x);
    assert_eq!(b.len(), 1);
    assert_eq!(&b[0].qs[..4], &[64, -127, 32, 1]);
    assert_eq!(b[0].qs[17], 95);
    assert_eq!(b[0].d, 1.0 / 63.5);
    assert_eq!(b[0].bsums[0], 64 - 127 + 32 + 1);
    assert_eq!(b[0].bsums[1], 95);
    assert!(b[0].bsums[2..].iter().all(|&s| s == 0));

    // A positive extreme gives a negative scale and negated quants; 127 is the clamp.
    let mut x = vec![0f32; 2 * QK_K];
    x[300] = 4.0;
    x[301] = -4.0;
    let b = quantize_q8_k(&x);
    assert_eq!(b[0], BlockQ8K::ZERO);
    assert_eq!((b[1].qs[44], b[1].qs[45]), (-127, 127));
    assert_eq!(b[1].d, -4.0 / 127.0);
}

#[test]
fn q8_k_is_nan_and_inf_safe() {
    let mut x = vec![1f32; QK_K];
    x[3] = f32::NAN;
    x[4] = f32::INFINITY;
    let b = quantize_q8_k(&x);
    assert_eq!(b.len(), 1);
    assert_eq!(quantize_q8_k(&x[..100]).len(), 0);
}

#[test]
fn scalar_dots_match_the_decoded_values() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for ty in K_TYPES {
        for n_blocks in [1, 2, 3] {
            for _ in 0..20 {
                let row = random_row(ty, n_blocks, &mut rng);
                let act = quantize_q8_k(&random_act(n_blocks * QK_K, &mut rng));
                let got = scalar_dot(ty, &row, &act) as f64;
                let (want, mag) = reference(ty, &row, &act);
                assert!(
                    (got - want).abs() <= DOT_REL_TOL * mag,
                    "{ty:?} x{n_blocks}: {got} vs {want} (scale {mag})"
                );
            }
        }
    }
}

#[test]
fn dispatch_uses_the_kquant_dots() {
    let mut rng = Rng(77);
    for ty in K_TYPES {
        let row = random_row(ty, 2, &mut rng);
        let act = quantize_q8_k(&random_act(2 * QK_K, &mut rng));
        let (want, mag) = reference(ty, &row, &act);
        let got = kquant_matvec_row(ty, &row, &act) as f64;
        assert!((got - want).abs() <= DOT_REL_TOL * mag, "{ty:?}");
        let scalar = kquant_matvec_row_with(KQuantPath::Scalar, ty, &row, &act);
        assert_eq!(scalar, scalar_dot(ty, &row, &act), "{ty:?}");
        let avx2 = kquant_matvec_row_with(KQuantPath::Avx2, ty, &row, &act) as f64;
        assert!((avx2 - want).abs() <= DOT_REL_TOL * mag, "{ty:?}");
    }
    // Non-K types fall back to decoding; a wrong length gives NaN rather than a panic.
    let act = quantize_q8_k(&[0.5f32; QK_K]);
    let row: Vec<u8> = (0..QK_K).flat_map(|_| 2f32.to_le_bytes()).collect();
    assert_eq!(kquant_matvec_row(WeightType::F32, &row, &act), 256.0);
    assert!(kquant_matvec_row(WeightType::F32, &row[..8], &act).is_nan());
}

#[test]
fn mismatched_lengths_use_the_common_blocks() {
    let mut rng = Rng(5);
    let row = random_row(WeightType::Q4_K, 2, &mut rng);
    let act = quantize_q8_k(&random_act(3 * QK_K, &mut rng));
    let two = vec_dot_q4_k_q8_k(&row, &act[..2]);
    assert_eq!(vec_dot_q4_k_q8_k(&row, &act), two);
    assert_eq!(
        vec_dot_q4_k_q8_k(&row[..200], &act),
        vec_dot_q4_k_q8_k(&row[..144], &act[..1])
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_integer_sums_equal_scalar() {
    if kquant_path() != KQuantPath::Avx2 {
        eprintln!("skip: avx2_integer_sums_equal_scalar: no AVX2 + FMA on this CPU");
        return;
    }
    let mut rng = Rng(1234);
    for _ in 0..300 {
        // Extreme activations too: every quant ±127.
        let act = if rng.byte() < 32 {
            let mut b = BlockQ8K::ZERO;
            for q in b.qs.iter_mut() {
                *q = if rng.byte() & 1 == 0 { 127 } else { -127 };
            }
            for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
                *s = q.iter().map(|&v| v as i16).sum();
            }
            b.d = 0.01;
            vec![b]
        } else {
            quantize_q8_k(&random_act(QK_K, &mut rng))
        };
        let y = &act[0];
        let x = random_row(WeightType::Q4_K, 1, &mut rng);
        assert_eq!(
            avx2::block_ints(WeightType::Q4_K, &x, y),
            Some(dot::q4_k_block_ints(&x, y))
        );
        let x = random_row(WeightType::Q5_K, 1, &mut rng);
        assert_eq!(
            avx2::block_ints(WeightType::Q5_K, &x, y),
            Some(dot::q5_k_block_ints(&x, y))
        );
        let x = random_row(WeightType::Q6_K, 1, &mut rng);
        assert_eq!(
            avx2::block_ints(WeightType::Q6_K, &x, y),
            Some((dot::q6_k_block_int(&x, y), 0))
        );
    }
}

#[test]
fn avx2_dots_match_scalar() {
    if kquant_path() != KQuantPath::Avx2 {
        eprintln!("skip: avx2_dots_match_scalar: no AVX2 + FMA on this CPU");
        return;
    }
    let mut rng = Rng(42);
    for ty in [WeightType::Q4_K, WeightType::Q5_K, WeightType::Q6_K] {
        for n_blocks in [1, 2, 5] {
            for _ in 0..20 {
                let row = random_row(ty, n_blocks, &mut rng);
                let act = quantize_q8_k(&random_act(n_blocks * QK_K, &mut rng));
                let simd = vec_dot_avx2(ty, &row, &act).expect("AVX2 detected") as f64;
                let scalar = scalar_dot(ty, &row, &act) as f64;
                let (_, mag) = reference(ty, &row, &act);
                assert!(
                    (simd - scalar).abs() <= AVX2_REL_TOL * mag,
                    "{ty:?} x{n_blocks}: {simd} vs {scalar} (scale {mag})"
                );
            }
        }
    }
    assert_eq!(vec_dot_avx2(WeightType::Q2_K, &[], &[]), None);
}

#[test]
fn zero_rows_give_zero() {
    let act = quantize_q8_k(&[1.0f32; QK_K]);
    for ty in K_TYPES {
        let row = vec![0u8; ty.block_bytes()];
        assert_eq!(kquant_matvec_row(ty, &row, &act), 0.0, "{ty:?}");
        assert_eq!(scalar_dot(ty, &row, &act), 0.0, "{ty:?}");
    }
}
