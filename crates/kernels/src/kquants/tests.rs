//! Unit tests of the K-quant kernels on random blocks: Q8_K rounding, scalar dots against an
//! `f64` dot of the decoded values, the unpacked form against ggml's integers, and the SIMD
//! unpacking, integer sums and dots against their scalar twins.

use half::f16;

use super::layout::{q2_k, q3_k, q4_k, q5_k, q6_k};
use super::*;
use crate::cpu::Level;
use crate::kernel_tests::Rng;

/// Largest |scalar dot − f64 dot of the decoded values| allowed, relative to the sum of the
/// magnitudes of the terms (scale part and min part): only `f32` rounding differs.
const DOT_REL_TOL: f64 = 1e-5;
/// Largest |SIMD dot − scalar dot| allowed, on the same scale: identical integer sums, only
/// the `f32` accumulation order differs.
const SIMD_REL_TOL: f64 = 1e-6;

const K_TYPES: [WeightType; 5] = [
    WeightType::Q2_K,
    WeightType::Q3_K,
    WeightType::Q4_K,
    WeightType::Q5_K,
    WeightType::Q6_K,
];

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
            let v = 1e-3 + 0.099 * (rng.f32() + 1.0) / 2.0;
            block[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
        }
    }
    row
}

/// Random activations with a few large values.
fn random_act(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = rng.f32();
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

/// Super-blocks that probe every branch of the Q8_K quantizer: random, zero, one value,
/// magnitude ties of both signs, NaN and infinite values, subnormal and huge scales.
fn q8_k_cases(rng: &mut Rng) -> Vec<Vec<f32>> {
    let random = |rng: &mut Rng, scale: f32| (0..QK_K).map(|_| rng.f32() * scale).collect();
    let mut cases: Vec<Vec<f32>> = vec![
        random(rng, 1.0),
        random(rng, 3e4),
        random(rng, 1e-38),
        vec![0.0; QK_K],
        vec![-0.0; QK_K],
    ];
    let mut one = vec![0f32; QK_K];
    one[200] = -1e-3;
    cases.push(one);
    for (first, second) in [(2.5f32, -2.5f32), (-2.5, 2.5)] {
        let mut tie: Vec<f32> = random(rng, 1.0);
        tie[37] = first;
        tie[190] = second;
        cases.push(tie);
    }
    for special in [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE / 4.0,
    ] {
        let mut x: Vec<f32> = random(rng, 1.0);
        x[rng.byte() as usize] = special;
        cases.push(x);
        let mut lone = vec![0f32; QK_K];
        lone[rng.byte() as usize] = special;
        lone[5] = 1e-40;
        cases.push(lone);
    }
    cases
}

#[test]
fn q8_k_simd_quantizer_matches_the_scalar_bitwise() {
    let mut rng = Rng(0x5eed_0008);
    let levels = simd_levels();
    for _ in 0..20 {
        let cases = q8_k_cases(&mut rng);
        let x: Vec<f32> = cases.concat();
        let want = quantize_q8_k(&x);
        for &level in &levels {
            let mut got = vec![BlockQ8K::ZERO; want.len()];
            quantize_row_q8_k_at(level, &x, &mut got);
            for (b, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.d.to_bits(), w.d.to_bits(), "{level:?} block {b}: d");
                assert_eq!(g.qs, w.qs, "{level:?} block {b}: quants");
                assert_eq!(g.bsums, w.bsums, "{level:?} block {b}: sums");
            }
        }
    }
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

/// The SIMD levels this CPU has.
fn simd_levels() -> Vec<Level> {
    [crate::Isa::Avx2, crate::Isa::Avx512]
        .into_iter()
        .filter_map(Level::new)
        .collect()
}

/// A Q8_K block of random activations, or (one time in eight) of ±127 quants: the largest
/// products the kernels see.
fn random_q8_k(rng: &mut Rng) -> BlockQ8K {
    if rng.byte() < 32 {
        let mut b = BlockQ8K::ZERO;
        for q in b.qs.iter_mut() {
            *q = if rng.byte() & 1 == 0 { 127 } else { -127 };
        }
        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i16).sum();
        }
        b.d = 0.01;
        b
    } else {
        quantize_q8_k(&random_act(QK_K, rng))[0]
    }
}

/// A block whose bytes are all random but for its f16 scales, or (one time in eight) all 0xFF:
/// the largest unsigned values and scales.
fn random_block(ty: WeightType, rng: &mut Rng) -> Vec<u8> {
    let mut x = random_row(ty, 1, rng);
    if rng.byte() < 32 {
        let fields = f16_fields(ty);
        for (i, b) in x.iter_mut().enumerate() {
            if !fields.iter().any(|&at| i == at || i == at + 1) {
                *b = 0xFF;
            }
        }
    }
    x
}

#[test]
fn unpacked_integers_equal_ggml() {
    let mut rng = Rng(1234);
    for _ in 0..300 {
        let y = random_q8_k(&mut rng);
        for ty in K_TYPES {
            let x = random_block(ty, &mut rng);
            let mut w = Unpacked::ZERO;
            unpack::unpack_scalar(ty, &x, &mut w);
            let want = match ty {
                WeightType::Q2_K => dot::q2_k_block_ints(&x, &y),
                WeightType::Q3_K => (dot::q3_k_block_int(&x, &y), 0),
                WeightType::Q4_K => dot::q4_k_block_ints(&x, &y),
                WeightType::Q5_K => dot::q5_k_block_ints(&x, &y),
                _ => (dot::q6_k_block_int(&x, &y), 0),
            };
            assert_eq!(unpack::block_ints_scalar(&w, &y), want, "{ty:?}");
        }
    }
}

#[test]
fn simd_unpacking_equals_scalar() {
    let mut rng = Rng(99);
    for level in simd_levels() {
        for ty in K_TYPES {
            for _ in 0..50 {
                let row = random_row(ty, 3, &mut rng);
                let (mut got, mut want) = ([Unpacked::ZERO; 3], [Unpacked::ZERO; 3]);
                got[1].u[7] = 1; // every field must be overwritten
                unpack_row(level, ty, &row, &mut got);
                unpack_row(Level::Scalar, ty, &row, &mut want);
                assert_eq!(got, want, "{level:?} {ty:?}");
            }
        }
    }
}

/// The integer sums of one block by the SIMD kernels of `level`: (Σ lanes of S, Σ lanes of M).
#[cfg(target_arch = "x86_64")]
fn simd_block_ints(level: Level, ty: WeightType, w: &Unpacked, y: &BlockQ8K) -> (i32, i32) {
    use avx2::{Q2, Q3, Q4, Q5, Q6};
    use std::arch::x86_64::*;
    match level {
        // SAFETY: the level's token proves AVX2.
        Level::Avx2(_) => unsafe {
            let w = &avx2::load_regs(w);
            let sc = avx2::scale_lanes(w);
            let (s, m) = match ty {
                WeightType::Q2_K => avx2::block_lanes::<Q2>(w, &sc, y),
                WeightType::Q3_K => avx2::block_lanes::<Q3>(w, &sc, y),
                WeightType::Q4_K => avx2::block_lanes::<Q4>(w, &sc, y),
                WeightType::Q5_K => avx2::block_lanes::<Q5>(w, &sc, y),
                _ => avx2::block_lanes::<Q6>(w, &sc, y),
            };
            (avx2::hsum_i32(s), avx2::hsum_i32(m))
        },
        // SAFETY: the level's token proves the AVX-512 features.
        Level::Avx512(_) => unsafe {
            let w = &avx2::load_regs(w);
            let sc = avx512::scales_for_test(w);
            let u = &avx512::value_vectors(w);
            let (s, m) = match ty {
                WeightType::Q2_K => avx512::block_lanes::<Q2>(u, w, &sc, y),
                WeightType::Q3_K => avx512::block_lanes::<Q3>(u, w, &sc, y),
                WeightType::Q4_K => avx512::block_lanes::<Q4>(u, w, &sc, y),
                WeightType::Q5_K => avx512::block_lanes::<Q5>(u, w, &sc, y),
                _ => avx512::block_lanes::<Q6>(u, w, &sc, y),
            };
            let mut lanes = [0i32; 16];
            _mm512_storeu_si512(lanes.as_mut_ptr().cast(), s);
            (lanes.iter().sum(), avx2::hsum_i32(m))
        },
        Level::Scalar => unpack::block_ints_scalar(w, y),
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn simd_integer_sums_equal_scalar() {
    let mut rng = Rng(4321);
    for level in simd_levels() {
        for _ in 0..300 {
            let y = random_q8_k(&mut rng);
            for ty in K_TYPES {
                let x = random_block(ty, &mut rng);
                let mut w = Unpacked::ZERO;
                unpack::unpack_scalar(ty, &x, &mut w);
                assert_eq!(
                    simd_block_ints(level, ty, &w, &y),
                    unpack::block_ints_scalar(&w, &y),
                    "{level:?} {ty:?}"
                );
            }
        }
    }
}

#[test]
fn simd_dots_match_scalar() {
    let mut rng = Rng(42);
    type SimdDot = fn(WeightType, &[u8], &[BlockQ8K]) -> Option<f32>;
    let dots: [(&str, SimdDot); 2] = [("AVX2", vec_dot_avx2), ("AVX-512", vec_dot_avx512)];
    for (name, dot) in dots {
        for ty in K_TYPES {
            for n_blocks in [1, 2, 5] {
                for _ in 0..20 {
                    let row = random_row(ty, n_blocks, &mut rng);
                    let act = quantize_q8_k(&random_act(n_blocks * QK_K, &mut rng));
                    let Some(simd) = dot(ty, &row, &act) else {
                        eprintln!("skip: simd_dots_match_scalar: no {name} on this CPU");
                        break;
                    };
                    let scalar = scalar_dot(ty, &row, &act) as f64;
                    let (_, mag) = reference(ty, &row, &act);
                    assert!(
                        (simd as f64 - scalar).abs() <= SIMD_REL_TOL * mag,
                        "{name} {ty:?} x{n_blocks}: {simd} vs {scalar} (scale {mag})"
                    );
                }
            }
        }
    }
    assert_eq!(vec_dot_avx2(WeightType::F32, &[], &[]), None);
}

#[test]
fn token_groups_do_not_change_results() {
    let mut rng = Rng(7);
    let nb = 3;
    for level in simd_levels() {
        for ty in K_TYPES {
            let row = random_row(ty, nb, &mut rng);
            let acts: Vec<Vec<BlockQ8K>> = (0..8)
                .map(|_| quantize_q8_k(&random_act(nb * QK_K, &mut rng)))
                .collect();
            let alone: Vec<f32> = acts
                .iter()
                .map(|a| dot_tokens(level, ty, &row, [&a[..]])[0])
                .collect();
            let a8: [&[BlockQ8K]; 8] = std::array::from_fn(|t| &acts[t][..]);
            let a2: [&[BlockQ8K]; 2] = [&acts[5], &acts[2]];
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let what = format!("{level:?} {ty:?}");
            assert_eq!(
                bits(&dot_tokens(level, ty, &row, a8)),
                bits(&alone),
                "{what}"
            );
            let two = dot_tokens(level, ty, &row, a2);
            assert_eq!(bits(&two), bits(&[alone[5], alone[2]]), "{what} pair");
        }
    }
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

/// A random matrix of repacked `ty`'s stored type, `n_rows` rows of `nb` blocks (every third
/// block all 0xFF but for its f16 scales: the largest values and scales), and the same matrix
/// repacked as `ty` (`x16.rs`).
fn x16_matrix(ty: WeightType, n_rows: usize, nb: usize, rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let from = ty.stored();
    let mut stored = random_row(from, n_rows * nb, rng);
    let d_at = *f16_fields(from).first().unwrap();
    for blk in stored.chunks_exact_mut(from.block_bytes()).step_by(3) {
        let d = [blk[d_at], blk[d_at + 1]];
        blk.fill(0xff);
        for &at in f16_fields(from) {
            blk[at..at + 2].copy_from_slice(&d);
        }
    }
    let w = crate::WeightView {
        ty: from,
        n_rows,
        n_cols: nb * QK_K,
        bytes: &stored,
    };
    assert_eq!(crate::repacked_type(from, n_rows).map_or(ty, |t| t), ty);
    let x16 = crate::repack(&w);
    (stored, x16)
}

const X16_TYPES: [WeightType; 5] = [
    WeightType::Q2_Kx16,
    WeightType::Q3_Kx16,
    WeightType::Q4_Kx16,
    WeightType::Q5_Kx16,
    WeightType::Q6_Kx16,
];

#[test]
fn repacked_k_quants_hold_the_stored_rows() {
    let mut rng = Rng(0x6a09e667f3bcc908);
    for ty in X16_TYPES {
        let from = ty.stored();
        for (n_rows, nb) in [(16, 1), (32, 3), (48, 8)] {
            let (stored, x16) = x16_matrix(ty, n_rows, nb, &mut rng);
            assert_eq!(x16.len(), stored.len());
            let n_cols = nb * QK_K;
            let w = crate::WeightView {
                ty,
                n_rows,
                n_cols,
                bytes: &x16,
            };
            let row_bytes = from.row_bytes(n_cols);
            let mut back = vec![0u8; row_bytes];
            let mut all = vec![0f32; n_rows * n_cols];
            for (src, dst) in x16
                .chunks_exact(16 * row_bytes)
                .zip(all.chunks_exact_mut(16 * n_cols))
            {
                dequantize(ty, src, dst);
            }
            for r in 0..n_rows {
                let want = &stored[r * row_bytes..(r + 1) * row_bytes];
                x16::stored_row(&w, r, &mut back);
                assert_eq!(back, want, "{ty:?} rows={n_rows} nb={nb} row {r}");
                let (mut a, mut b) = (vec![0f32; n_cols], vec![1f32; n_cols]);
                dequantize(from, want, &mut a);
                w.row_f32(r, &mut b);
                assert_eq!(a, b, "{ty:?} row_f32 row {r}");
                assert_eq!(
                    &all[r * n_cols..(r + 1) * n_cols],
                    &a[..],
                    "{ty:?} groups row {r}"
                );
            }
        }
    }
}

#[test]
fn repacked_k_quant_kernels_match_their_twin() {
    let mut rng = Rng(0xbb67ae8584caa73b);
    for ty in X16_TYPES {
        let from = ty.stored();
        for nb in [1, 2, 8, 22] {
            let (stored, x16) = x16_matrix(ty, 32, nb, &mut rng);
            let act: Vec<BlockQ8K> = (0..nb).map(|_| random_q8_k(&mut rng)).collect();
            let row_bytes = from.row_bytes(nb * QK_K);
            for (g, group) in x16.chunks_exact(nb * x16::group_block(ty)).enumerate() {
                let twin = x16::dot_group_scalar(ty, group, &act);
                for (l, &v) in twin.iter().enumerate() {
                    let r = 16 * g + l;
                    let row = &stored[r * row_bytes..(r + 1) * row_bytes];
                    // The twin over the stored row, and the f64 reference within rounding.
                    let own = x16::dot_stored_row(ty, row, &act);
                    assert_eq!(v.to_bits(), own.to_bits(), "{ty:?} nb={nb} row {r}");
                    let (want, mag) = reference(from, row, &act);
                    assert!(
                        (v as f64 - want).abs() <= DOT_REL_TOL * mag.max(1e-30),
                        "{ty:?} nb={nb} row {r}: {v} vs {want}"
                    );
                }
                #[cfg(target_arch = "x86_64")]
                for level in simd_levels() {
                    let got = match level {
                        Level::Avx512(k) => super::avx512_x16::dot_group(k, ty, group, &act),
                        Level::Avx2(k) => super::avx2_x16::dot_group(k, ty, group, &act),
                        Level::Scalar => continue,
                    };
                    for l in 0..16 {
                        let what = format!("{level:?} {ty:?} nb={nb} group {g} row {l}");
                        assert_eq!(got[l].to_bits(), twin[l].to_bits(), "{what}");
                    }
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "rows are not contiguous")]
fn grouped_rows_are_refused() {
    let bytes = vec![0u8; 16 * q6_k::BYTES];
    let w = crate::WeightView {
        ty: WeightType::Q6_Kx16,
        n_rows: 16,
        n_cols: QK_K,
        bytes: &bytes,
    };
    w.row(3);
}

/// `Σ_i w_i · x_i` in `f64` over one K-quant row `row` decoded and one token's Q8_0-rounded
/// activations (`qs`, block scales `d`), with the sum of the magnitudes of its terms, scale part
/// and min part apart: the oracle of the AMX tiles, whose activations are Q8_0 blocks.
#[cfg(target_arch = "x86_64")]
fn q8_0_oracle(ty: WeightType, row: &[u8], qs: &[i8], d: &[f32]) -> (f64, f64) {
    let n = qs.len();
    let mut w = vec![0f32; n];
    dequantize(ty, row, &mut w);
    let (mut exact, mut mag) = (0f64, 0f64);
    let mut u = Unpacked::ZERO;
    for (b, blk) in row.chunks_exact(ty.block_bytes()).enumerate() {
        unpack::unpack_scalar(ty, blk, &mut u);
        let k = unpack::offset(ty) as f64;
        for i in 0..QK_K {
            let at = b * QK_K + i;
            let x = (d[at / 32] * qs[at] as f32) as f64;
            exact += w[at] as f64 * x;
            let j = i / 16;
            let scaled = u.d as f64 * u.sc[j] as f64 * (u.u[i] as f64 - k);
            mag += (scaled.abs() + (u.dmin as f64 * u.mn[j] as f64).abs()) * x.abs();
        }
    }
    (exact, mag)
}

/// The block-tile driver (`block_tiles.rs`, `block_tile_kquant.rs`) on K-quant weights with the scalar twin of
/// the tile kernels at the best SIMD level this CPU has: every output against
/// [`q8_0_oracle`] within [`DOT_REL_TOL`], stored and repacked rows giving the same bits; the
/// AVX2 and AVX-512 VNNI kernels (`avx2_blocks.rs`, `avx512_blocks.rs`) give their twin's bits,
/// and the product by tiles at each of those levels is the driver's with that kernel (the AMX
/// level multiplies on BF16 tiles, `amx_bf16.rs`, tested there).
#[cfg(target_arch = "x86_64")]
#[test]
fn k_quant_tiles_match_the_decoded_values() {
    use crate::act_q8::{ActLayout, ActQ8};
    use crate::block_tiles::{matmul_tiles, ScalarTiles};
    use crate::{matmul_path_with, Isa, MatmulPath};
    let Some(&level) = simd_levels().last() else {
        eprintln!("skip: no SIMD level");
        return;
    };
    let mut rng = Rng(0x510e527fade682d1);
    let close =
        |got: f32, (exact, mag): (f64, f64)| (got as f64 - exact).abs() <= DOT_REL_TOL * mag;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let cases = K_TYPES
        .iter()
        .map(|&ty| (ty, 35, 3))
        .chain(X16_TYPES.iter().map(|&ty| (ty, 48, 2)));
    for (ty, n_rows, nbk) in cases {
        let from = ty.stored();
        let n_cols = nbk * QK_K;
        let (stored, x16) = if ty.is_grouped() {
            x16_matrix(ty, n_rows, nbk, &mut rng)
        } else {
            (random_row(ty, n_rows * nbk, &mut rng), Vec::new())
        };
        let rb = from.row_bytes(n_cols);
        for n_tokens in [1, 17, 33] {
            let x = random_act(n_tokens * n_cols, &mut rng);
            let nat = ActQ8::new(level, &x, n_tokens, n_cols, ActLayout::Natural, None);
            let mut forms = vec![(from, &stored)];
            if ty.is_grouped() {
                forms.push((ty, &x16));
            }
            {
                let mut first: Option<Vec<f32>> = None;
                for &(t, bytes) in &forms {
                    let w = crate::WeightView {
                        ty: t,
                        n_rows,
                        n_cols,
                        bytes,
                    };
                    let what = format!("{t:?} rows={n_rows} nb={nbk} tokens={n_tokens}");
                    let mut out = vec![f32::NAN; n_tokens * n_rows];
                    matmul_tiles(level, || ScalarTiles, &w, &x, n_tokens, &mut out);
                    for isa in [Isa::Avx2, Isa::Avx512]
                        .into_iter()
                        .filter(|i| i.is_supported())
                    {
                        let mut tiles = vec![f32::NAN; n_tokens * n_rows];
                        matmul_path_with(isa, MatmulPath::Tiles, &w, &x, n_tokens, &mut tiles);
                        assert_eq!(
                            bits(&tiles),
                            bits(&out),
                            "{what}: {isa} vs the scalar kernel"
                        );
                    }
                    for tok in 0..n_tokens {
                        for r in 0..n_rows {
                            let got = out[tok * n_rows + r];
                            let row = &stored[r * rb..(r + 1) * rb];
                            let oracle = q8_0_oracle(from, row, nat.qs(tok), nat.d(tok));
                            assert!(
                                close(got, oracle),
                                "{what}: row {r} token {tok}: {got} vs {oracle:?}"
                            );
                        }
                    }
                    match &first {
                        None => first = Some(out),
                        Some(f) => assert_eq!(bits(f), bits(&out), "{what}: repacked vs stored"),
                    }
                }
            }
        }
    }
}

/// Repacked Q4_K / Q6_K multiplied in place (`matmul_kquant::tiles_in_place`, the
/// `tile_token` kernels of each SIMD level) give the packed block tiles' bits (the driver with
/// the scalar twin, VNNI layout), for one token group and two, blocks of the largest values
/// included; and the level's product is the same on both sides of `in_place_tokens`.
#[cfg(target_arch = "x86_64")]
#[test]
fn in_place_tiles_match_the_packed_tiles() {
    use crate::block_tiles::{matmul_tiles, ScalarTiles};
    use crate::matmul_kquant::{in_place_tokens, tiles_in_place};
    use crate::{matmul_path_with, Isa, MatmulPath};
    let mut rng = Rng(0x1f83d9abfb41bd6b);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for ty in X16_TYPES {
        for (n_rows, nbk) in [(16, 1), (48, 3)] {
            let n_cols = nbk * QK_K;
            let (_, bytes) = x16_matrix(ty, n_rows, nbk, &mut rng);
            let w = crate::WeightView {
                ty,
                n_rows,
                n_cols,
                bytes: &bytes,
            };
            for level in simd_levels() {
                // Every pass width (1, 2, 4, 8 tokens), several token groups, and the level's
                // edge where it has one.
                let edge = in_place_tokens(level, ty);
                let mut counts = vec![1, 2, 3, 6, 8, 11, 17, 24, 40];
                if edge < 1024 {
                    counts.extend([edge - 1, edge, edge + 3]);
                }
                for n_tokens in counts {
                    let x = random_act(n_tokens * n_cols, &mut rng);
                    let what = format!("{level:?} {ty:?} rows={n_rows} nb={nbk} tokens={n_tokens}");
                    let mut want = vec![f32::NAN; n_tokens * n_rows];
                    matmul_tiles(level, || ScalarTiles, &w, &x, n_tokens, &mut want);
                    let mut got = vec![f32::NAN; n_tokens * n_rows];
                    tiles_in_place(level, &w, &x, n_tokens, &mut got);
                    assert_eq!(bits(&got), bits(&want), "{what}: in place vs packed");
                    let isa = match level {
                        Level::Avx512(_) => Isa::Avx512,
                        _ => Isa::Avx2,
                    };
                    let mut product = vec![f32::NAN; n_tokens * n_rows];
                    matmul_path_with(isa, MatmulPath::Tiles, &w, &x, n_tokens, &mut product);
                    assert_eq!(bits(&product), bits(&want), "{what}: the level's tiles");
                }
            }
        }
    }
}

/// Q3_K's scales unpacked by vector instructions (AVX2) against the scalar unpacking, on
/// random bytes (every bit of the 12 packed bytes in play).
#[cfg(target_arch = "x86_64")]
#[test]
fn q3_k_scales_by_vectors_match_the_scalar_unpacking() {
    use std::arch::x86_64::*;
    let Some(Level::Avx2(_) | Level::Avx512(_)) = Level::new(crate::Isa::Avx2) else {
        eprintln!("skip: AVX2 not available");
        return;
    };
    let mut rng = Rng(0x2545f4914f6cdd1d);
    for _ in 0..2000 {
        let block: Vec<u8> = (0..q3_k::BYTES).map(|_| rng.byte()).collect();
        let want = layout::scales_q3_k(&block[q3_k::SCALES..q3_k::SCALES + 12]);
        let mut got = [0i8; 16];
        // SAFETY: the level proves AVX2; `block` is one whole Q3_K block.
        unsafe { _mm_storeu_si128(got.as_mut_ptr().cast(), avx2::q3_scale_bytes(&block)) };
        assert_eq!(got, want, "{block:?}");
    }
}
