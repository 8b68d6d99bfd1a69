//! `kernels` owns the numeric work of herd on plain buffers: dequantization of every weight
//! type, matrix multiplication against stored weights, RMSNorm, RoPE, softmax and the small
//! vector operations of attention and the MLP.
//!
//! It must never know about files, models or requests: inputs are slices and a [`WeightView`]
//! (bytes + type + shape), outputs are `f32` slices.
//!
//! This first version is the plain, correct path (dequantize a row, dot in `f32`, rows spread
//! over threads); faster SIMD kernels will sit beside it with this one as their test oracle.

#![forbid(unsafe_code)]

mod dequant;
mod matmul;
mod norm;
mod rope;
mod vec;

pub use dequant::{dequantize, WeightType};
pub use matmul::{matmul, WeightView};
pub use norm::rms_norm;
pub use rope::{rope_interleaved, rope_inv_freqs, RopeFreqs};
pub use vec::{add_assign, dot, silu_mul, softmax};
