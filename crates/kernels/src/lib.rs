//! `kernels` owns the numeric work of herd on plain buffers: dequantization of every weight
//! type, matrix multiplication against stored weights, RMSNorm, RoPE, softmax and the small
//! vector operations of attention and the MLP.
//!
//! It must never know about files, models or requests: inputs are slices and a [`WeightView`]
//! (bytes + type + shape), outputs are `f32` slices.
//!
//! [`matmul`] runs SIMD kernels (AVX2, AVX-512 VNNI, AMX BF16 tiles) chosen at run time by [`isa`], each with a
//! scalar twin; the plain path ([`matmul_reference`]: dequantize a row, dot in `f32`) is their
//! test oracle and the fallback for weight types without kernels of their own. `unsafe` code
//! (SIMD intrinsics, disjoint output writes) lives in this crate only.

#![deny(unsafe_op_in_unsafe_fn)]

mod act_q8;
#[cfg(target_arch = "x86_64")]
mod amx_bf16;
mod attn;
#[cfg(target_arch = "x86_64")]
mod avx2_act;
#[cfg(target_arch = "x86_64")]
mod avx2_blocks;
#[cfg(target_arch = "x86_64")]
mod avx2_dot;
#[cfg(target_arch = "x86_64")]
mod avx2_pack;
#[cfg(target_arch = "x86_64")]
mod avx2_panel;
#[cfg(target_arch = "x86_64")]
mod avx2_tile;
#[cfg(target_arch = "x86_64")]
mod avx2_x16;
#[cfg(target_arch = "x86_64")]
mod avx512_act;
#[cfg(target_arch = "x86_64")]
mod avx512_blocks;
#[cfg(target_arch = "x86_64")]
mod avx512_dot;
#[cfg(target_arch = "x86_64")]
mod avx512_panel;
#[cfg(target_arch = "x86_64")]
mod avx512_tile;
#[cfg(target_arch = "x86_64")]
mod avx512_x16;
#[cfg(target_arch = "x86_64")]
mod block_tile_kquant;
#[cfg(target_arch = "x86_64")]
mod block_tile_shape;
#[cfg(target_arch = "x86_64")]
mod block_tiles;
mod cpu;
mod dequant;
mod dot_scalar;
#[cfg(target_arch = "x86_64")]
mod f16_table;
#[cfg(test)]
mod kernel_tests;
pub mod kquants;
mod kv_f16;
mod matmul;
mod matmul_float;
mod matmul_kquant;
mod matmul_quant;
mod matmul_reference;
mod norm;
mod pack;
mod par;
mod quantize;
mod qx16;
mod repack;
mod rope;
mod scratch;
mod stream;
mod team;
mod tile_scalar;
mod tiles;
mod vec;

pub use attn::{attend_block_rows, SoftmaxState, ATTN_BLOCK};
pub use cpu::{cap_isa, detected, isa, Isa};
pub use dequant::{dequantize, WeightType};
pub use kquants::{kquant_matvec_row, quantize_q8_k, BlockQ8K, QK_K};
pub use kv_f16::{f16_rows, f16_rows_transposed};
pub use matmul::{
    matmul, matmul_many, matmul_many_with, matmul_path, matmul_path_with, matmul_with, MatmulPath,
    WeightView, BULK_TOKENS, BULK_TOKENS_Q8_0, BULK_TOKENS_SHORT, BULK_TOKENS_SHORT_Q8_0,
    ROWS_FLOAT_TOKENS, ROWS_FLOAT_TOKENS_AVX2,
};
pub use matmul_reference::matmul_reference;
pub use norm::rms_norm;
pub use par::read_ahead;
pub use quantize::{
    block_q4_0_fitted, can_quantize, quantize_into, quantize_q4_0, quantize_q8_0, quantize_rows,
    quantize_rows_fitted, K_QUANTIZE_TYPES, QUANTIZE_TYPES,
};
pub use repack::{repack, repack_into, repacked_type};
pub use rope::{
    rope_cos_sin, rope_interleaved, rope_inv_freqs, RopeFreqs, RopeTable, ROPE_TABLE_POSITIONS,
};
pub use stream::{prefetch_range, sum_words};
pub use team::{for_each_item, for_each_task};
pub use vec::{add_assign, dot, silu_mul, softmax};
