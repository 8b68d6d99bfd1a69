//! ggml's K-quant weight formats (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K): decoding, the Q8_K
//! activation format and the dot products between them.
//!
//! A K-quant row is a run of super-blocks of [`QK_K`] = 256 values. ggml's CPU path multiplies
//! such a row with activations quantized to [`BlockQ8K`] (one per super-block) using integer
//! dot products; [`quantize_q8_k`] and [`kquant_matvec_row`] are that path here:
//!
//! ```
//! use kernels::kquants::{kquant_matvec_row, quantize_q8_k};
//! use kernels::WeightType;
//!
//! let row = vec![0u8; 144]; // one Q4_K super-block, all zero
//! let act = quantize_q8_k(&[1.0f32; 256]);
//! assert_eq!(kquant_matvec_row(WeightType::Q4_K, &row, &act), 0.0);
//! ```
//!
//! The scalar `vec_dot_*` functions are transcriptions of ggml's generic C code and the test
//! oracles of the AVX2 versions, which are used automatically where the CPU has AVX2 + FMA.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod dequant;
mod dot;
mod layout;
mod quantize;

pub use dequant::{
    dequantize_q2_k, dequantize_q3_k, dequantize_q4_k, dequantize_q5_k, dequantize_q6_k,
};
pub use dot::{
    vec_dot_q2_k_q8_k, vec_dot_q3_k_q8_k, vec_dot_q4_k_q8_k, vec_dot_q5_k_q8_k, vec_dot_q6_k_q8_k,
};
pub use quantize::{
    quantize_row_q2_k, quantize_row_q3_k, quantize_row_q4_k, quantize_row_q5_k, quantize_row_q6_k,
};

use crate::{dequantize, WeightType};

/// Values per K-quant super-block (and per [`BlockQ8K`]).
pub const QK_K: usize = 256;

/// One super-block of activations quantized to 8 bits (ggml's `block_q8_K`): value
/// = `d · qs[i]`; `bsums[j]` is the sum of `qs[16j..16j + 16]`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

impl BlockQ8K {
    /// A block of zeros.
    pub const ZERO: BlockQ8K = BlockQ8K {
        d: 0.0,
        qs: [0; QK_K],
        bsums: [0; QK_K / 16],
    };
}

/// ggml's `nearest_int`: round to nearest, ties to even, via the 1.5·2²³ magic constant
/// (exact for |x| ≤ 2²²; other inputs give an unspecified value, never a panic).
#[inline]
fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// Quantizes `x` (whole super-blocks of 256 values) into `out`, one block per 256 values, as
/// ggml's `quantize_row_q8_K_ref` (which its x86 CPU path uses): per block, `iscale` =
/// −127 / (the value of largest magnitude), `qs = min(127, nearest_int(iscale·x))`,
/// `d = 1 / iscale`; an all-zero block gets `d = 0` and zero quants. A trailing partial
/// block of `x`, or extra blocks of `out`, are left alone.
pub fn quantize_row_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    for (x, y) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let mut max = 0f32;
        let mut amax = 0f32;
        for &v in x {
            let ax = v.abs();
            if ax > amax {
                amax = ax;
                max = v;
            }
        }
        if amax == 0.0 {
            *y = BlockQ8K::ZERO;
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in y.qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, q) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i32).sum::<i32>() as i16;
        }
        y.d = 1.0 / iscale;
    }
}

/// `x` (a multiple of 256 values) quantized to Q8_K blocks; see [`quantize_row_q8_k`].
pub fn quantize_q8_k(x: &[f32]) -> Vec<BlockQ8K> {
    let mut out = vec![BlockQ8K::ZERO; x.len() / QK_K];
    quantize_row_q8_k(x, &mut out);
    out
}

/// Decodes Q8_K blocks (`d · q` in `f32`) into `out` (256 values per block).
pub fn dequantize_q8_k(blocks: &[BlockQ8K], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK_K).zip(blocks) {
        for (o, &q) in o.iter_mut().zip(&b.qs) {
            *o = b.d * q as f32;
        }
    }
}

/// Which implementation [`kquant_matvec_row`] uses for the K-quant types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KQuantPath {
    /// AVX2 + FMA for Q4_K, Q5_K and Q6_K; scalar for Q2_K and Q3_K.
    Avx2,
    /// The scalar transcriptions of ggml's generic code.
    Scalar,
}

/// The implementation this CPU gets.
pub fn kquant_path() -> KQuantPath {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        return KQuantPath::Avx2;
    }
    KQuantPath::Scalar
}

/// The AVX2 dot product of a row of `ty` with Q8_K activations; `None` when this CPU lacks
/// AVX2 + FMA or `ty` has no AVX2 version (only Q4_K, Q5_K and Q6_K do). For testing the
/// SIMD code against the scalar oracles.
pub fn vec_dot_avx2(ty: WeightType, row: &[u8], act: &[BlockQ8K]) -> Option<f32> {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: AVX2 and FMA were just detected.
        return unsafe {
            match ty {
                WeightType::Q4_K => Some(avx2::vec_dot_q4_k_q8_k(row, act)),
                WeightType::Q5_K => Some(avx2::vec_dot_q5_k_q8_k(row, act)),
                WeightType::Q6_K => Some(avx2::vec_dot_q6_k_q8_k(row, act)),
                _ => None,
            }
        };
    }
    let _ = (ty, row, act);
    None
}

/// Σ row·act for one weight row of `ty` (`act.len()` super-blocks, `row` exactly
/// `ty.row_bytes(256 · act.len())` bytes) against activations quantized with
/// [`quantize_q8_k`], by the fastest implementation this CPU has.
///
/// With mismatched lengths only the common prefix of super-blocks is used. For a type that is
/// not a K-quant the row and the activations are dequantized and dotted in `f32` (correct, not
/// fast: callers should use their own path for those types), and a row of the wrong length
/// gives NaN.
pub fn kquant_matvec_row(ty: WeightType, row: &[u8], act: &[BlockQ8K]) -> f32 {
    kquant_matvec_row_with(kquant_path(), ty, row, act)
}

/// [`kquant_matvec_row`] by the implementation `path` (for drivers that let the user force
/// the scalar code); [`KQuantPath::Avx2`] on a CPU without AVX2 + FMA runs the scalar code.
pub fn kquant_matvec_row_with(
    path: KQuantPath,
    ty: WeightType,
    row: &[u8],
    act: &[BlockQ8K],
) -> f32 {
    if path == KQuantPath::Avx2 {
        if let Some(v) = vec_dot_avx2(ty, row, act) {
            return v;
        }
    }
    match ty {
        WeightType::Q2_K => vec_dot_q2_k_q8_k(row, act),
        WeightType::Q3_K => vec_dot_q3_k_q8_k(row, act),
        WeightType::Q4_K => vec_dot_q4_k_q8_k(row, act),
        WeightType::Q5_K => vec_dot_q5_k_q8_k(row, act),
        WeightType::Q6_K => vec_dot_q6_k_q8_k(row, act),
        WeightType::F32
        | WeightType::F16
        | WeightType::BF16
        | WeightType::Q8_0
        | WeightType::Q4_0 => {
            let n = act.len() * QK_K;
            if row.len() != ty.row_bytes(n) {
                return f32::NAN;
            }
            let mut w = vec![0f32; n];
            let mut a = vec![0f32; n];
            dequantize(ty, row, &mut w);
            dequantize_q8_k(act, &mut a);
            crate::dot(&w, &a)
        }
    }
}

#[cfg(test)]
mod tests;
