//! Random inputs shared by the kernels' integration tests, the criterion benchmarks and the
//! `matvec` example (each includes this file with `#[path]`): a small deterministic generator and
//! random matrices of every weight type, in the layouts a model file or the load-time repacking
//! gives.

#![allow(dead_code)]

use half::{bf16, f16};
use kernels::{WeightType, WeightView};

/// xorshift64: small, deterministic, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
}

/// How a random matrix's values are drawn: float weights uniform in `±amplitude`; quantized
/// blocks random bytes with f16 scales uniform in `scales` (a single value when both ends are
/// equal, e.g. 1.0 for exact integer products).
#[derive(Clone, Copy)]
pub struct Values {
    pub amplitude: f32,
    pub scales: (f32, f32),
}

/// Values of the size a trained model's weights have (benchmarks).
pub const MODEL_LIKE: Values = Values {
    amplitude: 0.02,
    scales: (0.001, 0.002),
};

/// Values of order one (tests: larger sums, so rounding shows).
pub const UNIT_RANGE: Values = Values {
    amplitude: 1.0,
    scales: (0.001, 0.1),
};

/// `n_rows` rows of `n_cols` values of `ty` in `bytes`.
pub fn view(ty: WeightType, n_rows: usize, n_cols: usize, bytes: &[u8]) -> WeightView<'_> {
    WeightView {
        ty,
        n_rows,
        n_cols,
        bytes,
    }
}

/// Byte offsets of the f16 scales in one block of `ty` (ggml's block layouts).
fn f16_fields(ty: WeightType) -> &'static [usize] {
    match ty {
        WeightType::Q8_0 | WeightType::Q4_0 => &[0],
        WeightType::Q2_K => &[80, 82],
        WeightType::Q3_K => &[108],
        WeightType::Q4_K | WeightType::Q5_K => &[0, 2],
        WeightType::Q6_K => &[208],
        _ => &[],
    }
}

/// A random `[n_rows, n_cols]` matrix of `ty` drawn as `v` says; the repacked layouts made from
/// a random stored matrix, as a model makes them at load.
pub fn matrix(rng: &mut Rng, ty: WeightType, n_rows: usize, n_cols: usize, v: Values) -> Vec<u8> {
    let n = n_rows * n_cols;
    match ty {
        WeightType::F32 => (0..n)
            .flat_map(|_| (rng.f32() * v.amplitude).to_le_bytes())
            .collect(),
        WeightType::F16 => (0..n)
            .flat_map(|_| f16::from_f32(rng.f32() * v.amplitude).to_le_bytes())
            .collect(),
        WeightType::BF16 => (0..n)
            .flat_map(|_| bf16::from_f32(rng.f32() * v.amplitude).to_le_bytes())
            .collect(),
        WeightType::Q4_0x16
        | WeightType::Q8_0x16
        | WeightType::Q2_Kx16
        | WeightType::Q3_Kx16
        | WeightType::Q4_Kx16
        | WeightType::Q5_Kx16
        | WeightType::Q6_Kx16 => {
            let from = ty.stored();
            let stored = matrix(rng, from, n_rows, n_cols, v);
            kernels::repack(&view(from, n_rows, n_cols, &stored))
        }
        _ => {
            let mut bytes: Vec<u8> = (0..ty.row_bytes(n_cols) * n_rows)
                .map(|_| rng.byte())
                .collect();
            let (lo, hi) = v.scales;
            for block in bytes.chunks_exact_mut(ty.block_bytes()) {
                for &at in f16_fields(ty) {
                    let d = lo + (hi - lo) * (rng.f32() + 1.0) / 2.0;
                    block[at..at + 2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                }
            }
            bytes
        }
    }
}
