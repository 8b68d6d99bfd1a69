//! `matmul` at every instruction-set level this CPU supports, against the plain path
//! (`matmul_reference`) as the oracle, for every weight type with kernels of its own, decode
//! (one token) and prefill (several), on fresh pseudo-random inputs.
//!
//! Q8_0 / Q4_0 weights meet activations quantized to Q8_0 blocks (as llama.cpp does), so their
//! oracle is the plain path fed the activations after that same rounding (quantized with a
//! transcription of llama.cpp's `quantize_row_q8_0`, then decoded).

#[path = "support/random.rs"]
mod random;

use half::f16;
use kernels::{matmul_reference, matmul_with, Isa, WeightType, WeightView};
use random::{Rng, Values, UNIT_RANGE};

/// Two `f32` sums of the same `n` products in different orders each err by at most
/// `γ_n · Σ|a·b| ≈ n · ε · Σ|a·b|` (Higham's bound for recursive summation), so they differ by at
/// most `2 · n · ε · Σ|a·b|`: this is the allowance per term, to multiply by `n · Σ|a·b|`.
const SUM_ORDER_TOL_PER_TERM: f32 = 2.0 * f32::EPSILON;

/// The AMX level multiplies quantized weights by several tokens on BF16 tiles, both operands
/// rounded to `bf16` (8 significant bits: each within 2⁻⁹ of itself), the activations not
/// rounded to Q8_0 first: each product within about 2⁻⁸ of the exact one, relative to `Σ|w·x|`
/// (plus the sums' order, far below).
const BF16_PRODUCT_TOL: f32 = 1.0 / 256.0;

const TOKEN_COUNTS: [usize; 5] = [1, 2, 3, 5, 17];

fn supported() -> Vec<Isa> {
    let isas: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.is_supported()).collect();
    eprintln!("levels tested: {isas:?}");
    isas
}

/// A random `[n_rows, n_cols]` matrix of `ty`, values of order one; quantized scales 1.0 when
/// `unit`.
fn matrix(rng: &mut Rng, ty: WeightType, n_rows: usize, n_cols: usize, unit: bool) -> Vec<u8> {
    let v = if unit {
        Values {
            scales: (1.0, 1.0),
            ..UNIT_RANGE
        }
    } else {
        UNIT_RANGE
    };
    random::matrix(rng, ty, n_rows, n_cols, v)
}

/// llama.cpp's `quantize_row_q8_0`, then decoded: the activations integer kernels really see.
fn q8_0_round_trip(x: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for xb in x.chunks_exact(32) {
        let amax = xb
            .iter()
            .fold(0f32, |m, v| if m > v.abs() { m } else { v.abs() });
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let d16 = f16::from_f32(d).to_f32();
        out.extend(xb.iter().map(|v| d16 * (v * id).round()));
    }
    out
}

fn is_quant(ty: WeightType) -> bool {
    matches!(ty, WeightType::Q8_0 | WeightType::Q4_0)
}

/// `matmul_with(isa)` against the oracle for one matrix and token count.
fn check(
    isa: Isa,
    ty: WeightType,
    bytes: &[u8],
    n_rows: usize,
    n_cols: usize,
    x: &[f32],
    n_tokens: usize,
) {
    let w = WeightView {
        ty,
        n_rows,
        n_cols,
        bytes,
    };
    let mut got = vec![f32::NAN; n_tokens * n_rows];
    matmul_with(isa, &w, x, n_tokens, &mut got);
    let bf16_tiles = isa == Isa::Amx && is_quant(ty) && n_tokens > 1;
    let xo = if is_quant(ty) && !bf16_tiles {
        q8_0_round_trip(x)
    } else {
        x.to_vec()
    };
    let mut want = vec![0f32; n_tokens * n_rows];
    matmul_reference(&w, &xo, n_tokens, &mut want);
    // Σ|w·x| of each output, for the tolerance.
    let mut wd = vec![0f32; n_rows * n_cols];
    kernels::dequantize(ty, bytes, &mut wd);
    for t in 0..n_tokens {
        for r in 0..n_rows {
            let abs: f32 = (0..n_cols)
                .map(|c| (wd[r * n_cols + c] * xo[t * n_cols + c]).abs())
                .sum();
            let (g, e) = (got[t * n_rows + r], want[t * n_rows + r]);
            let tol = if bf16_tiles {
                BF16_PRODUCT_TOL * abs
            } else {
                SUM_ORDER_TOL_PER_TERM * n_cols as f32 * abs
            };
            assert!(
                (g - e).abs() <= tol,
                "{isa} {ty:?} {n_rows}x{n_cols}, {n_tokens} tokens, out[{t}, {r}]: {g} vs {e} (Σ|w·x| {abs})"
            );
        }
    }
}

#[test]
fn float_weights_match_the_plain_path() {
    let mut rng = Rng(0x6a09e667f3bcc908);
    for isa in supported() {
        for ty in [WeightType::F32, WeightType::F16, WeightType::BF16] {
            for (n_rows, n_cols) in [(1, 1), (37, 64), (9, 172), (70, 33), (130, 2048)] {
                let bytes = matrix(&mut rng, ty, n_rows, n_cols, false);
                for n_tokens in TOKEN_COUNTS {
                    let x: Vec<f32> = (0..n_tokens * n_cols).map(|_| rng.f32()).collect();
                    check(isa, ty, &bytes, n_rows, n_cols, &x, n_tokens);
                }
            }
        }
    }
}

#[test]
fn quantized_weights_match_the_plain_path_on_rounded_activations() {
    let mut rng = Rng(0xbb67ae8584caa73b);
    for isa in supported() {
        for ty in [WeightType::Q8_0, WeightType::Q4_0] {
            for (n_rows, n_cols) in [(1, 32), (37, 64), (9, 544), (70, 96), (130, 2048)] {
                let bytes = matrix(&mut rng, ty, n_rows, n_cols, false);
                for n_tokens in TOKEN_COUNTS {
                    let x: Vec<f32> = (0..n_tokens * n_cols).map(|_| rng.f32() * 4.0).collect();
                    check(isa, ty, &bytes, n_rows, n_cols, &x, n_tokens);
                }
            }
        }
    }
}

/// With unit weight scales and integer activations that quantize to themselves (a ±127 in each
/// block gives a scale of exactly 1), every path computes exact integers: results must equal
/// the exact sum at every level, decode and prefill alike. (Partial sums stay below 2^24 for
/// rows of at most 1024 values, where `f32` is exact in any order.)
#[test]
fn integer_dot_products_are_exact() {
    let mut rng = Rng(0x3c6ef372fe94f82b);
    for isa in supported() {
        for ty in [WeightType::Q8_0, WeightType::Q4_0] {
            for (n_rows, n_cols) in [(3, 32), (21, 544), (66, 1024)] {
                let bytes = matrix(&mut rng, ty, n_rows, n_cols, true);
                let mut wd = vec![0f32; n_rows * n_cols];
                kernels::dequantize(ty, &bytes, &mut wd);
                for n_tokens in TOKEN_COUNTS {
                    let x: Vec<f32> = (0..n_tokens * n_cols)
                        .map(|i| {
                            if i % 32 == 5 {
                                127.0
                            } else {
                                (rng.byte() as i32 % 255 - 127) as f32
                            }
                        })
                        .collect();
                    let w = WeightView {
                        ty,
                        n_rows,
                        n_cols,
                        bytes: &bytes,
                    };
                    let mut got = vec![0f32; n_tokens * n_rows];
                    matmul_with(isa, &w, &x, n_tokens, &mut got);
                    for t in 0..n_tokens {
                        for r in 0..n_rows {
                            let exact: i64 = (0..n_cols)
                                .map(|c| wd[r * n_cols + c] as i64 * x[t * n_cols + c] as i64)
                                .sum();
                            assert_eq!(
                                got[t * n_rows + r] as i64,
                                exact,
                                "{isa} {ty:?} {n_rows}x{n_cols} t={t} r={r}"
                            );
                            assert_eq!(got[t * n_rows + r].fract(), 0.0);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn levels_agree_on_a_model_sized_matrix() {
    // One wider case, every level against the scalar one (same activation rounding).
    let mut rng = Rng(0xa54ff53a5f1d36f1);
    let (n_rows, n_cols) = (96, 5632);
    for ty in [WeightType::F16, WeightType::Q8_0, WeightType::Q4_0] {
        let bytes = matrix(&mut rng, ty, n_rows, n_cols, false);
        let w = WeightView {
            ty,
            n_rows,
            n_cols,
            bytes: &bytes,
        };
        for n_tokens in [1, 5] {
            let x: Vec<f32> = (0..n_tokens * n_cols).map(|_| rng.f32()).collect();
            let mut want = vec![0f32; n_tokens * n_rows];
            matmul_with(Isa::Scalar, &w, &x, n_tokens, &mut want);
            let xo = if is_quant(ty) {
                q8_0_round_trip(&x)
            } else {
                x.clone()
            };
            let mut wd = vec![0f32; n_rows * n_cols];
            kernels::dequantize(ty, &bytes, &mut wd);
            for isa in supported() {
                let mut got = vec![0f32; n_tokens * n_rows];
                matmul_with(isa, &w, &x, n_tokens, &mut got);
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    let (t, r) = (i / n_rows, i % n_rows);
                    let abs: f32 = (0..n_cols)
                        .map(|c| (wd[r * n_cols + c] * xo[t * n_cols + c]).abs())
                        .sum();
                    assert!(
                        (g - e).abs() <= SUM_ORDER_TOL_PER_TERM * n_cols as f32 * abs,
                        "{isa} {ty:?} {i}"
                    );
                }
            }
        }
    }
}

#[test]
fn empty_shapes() {
    for isa in supported() {
        let w = WeightView {
            ty: WeightType::F32,
            n_rows: 0,
            n_cols: 4,
            bytes: &[],
        };
        matmul_with(isa, &w, &[1.0; 8], 2, &mut []);
        let w = WeightView {
            ty: WeightType::Q8_0,
            n_rows: 2,
            n_cols: 0,
            bytes: &[],
        };
        let mut out = [f32::NAN; 6];
        matmul_with(isa, &w, &[], 3, &mut out);
        assert_eq!(out, [0.0; 6]);
    }
}
