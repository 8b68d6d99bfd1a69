//! Scalar dot products of one stored weight row with one activation row: the kernels of
//! [`crate::Isa::Scalar`], and the twins every SIMD row kernel (`avx2_dot.rs`,
//! `avx512_dot.rs`) is tested against.
//!
//! Float rows meet `f32` activations; Q8_0 / Q4_0 rows meet Q8_0-quantized activations
//! (`act_q8.rs`): per block an exact integer sum `S = Σ w·a`, then `Σ_blocks S · (d_w · d_a)` in
//! `f32`, as llama.cpp's reference `ggml_vec_dot_q8_0_q8_0` / `ggml_vec_dot_q4_0_q8_0`.

use half::{bf16, f16};

use crate::act_q8::QK;

/// Bytes of a Q8_0 block (f16 scale + 32 × i8).
pub(crate) const Q8_0_BYTES: usize = 34;
/// Bytes of a Q4_0 block (f16 scale + 16 bytes of nibbles).
pub(crate) const Q4_0_BYTES: usize = 18;

/// The f16 at `bytes[at..at + 2]`, as `f32`.
#[inline]
pub(crate) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// `Σ w[i] · x[i]` with eight partial sums (the order `vec::dot` uses).
fn dot_by<F: Fn(usize) -> f32>(n: usize, w: F, x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let n8 = n / 8 * 8;
    for i in (0..n8).step_by(8) {
        for (k, a) in acc.iter_mut().enumerate() {
            *a += w(i + k) * x[i + k];
        }
    }
    let mut sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (i, xi) in x.iter().enumerate().take(n).skip(n8) {
        sum += w(i) * xi;
    }
    sum
}

/// F32 row (little-endian bytes) · `x`.
pub(crate) fn dot_f32(w: &[u8], x: &[f32]) -> f32 {
    assert_eq!(w.len(), 4 * x.len());
    let w = |i: usize| f32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]]);
    dot_by(x.len(), w, x)
}

/// F16 row · `x`.
pub(crate) fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    assert_eq!(w.len(), 2 * x.len());
    dot_by(x.len(), |i| f16_at(w, 2 * i), x)
}

/// BF16 row · `x`.
pub(crate) fn dot_bf16(w: &[u8], x: &[f32]) -> f32 {
    assert_eq!(w.len(), 2 * x.len());
    let w = |i: usize| bf16::from_le_bytes([w[2 * i], w[2 * i + 1]]).to_f32();
    dot_by(x.len(), w, x)
}

/// Q8_0 row · Q8_0 activations (`qs`, `d` of one token, natural layout).
pub(crate) fn dot_q8_0(w: &[u8], qs: &[i8], d: &[f32]) -> f32 {
    let nb = d.len();
    assert!(w.len() == nb * Q8_0_BYTES && qs.len() == nb * QK);
    let mut sum = 0f32;
    for (b, (blk, a)) in w
        .chunks_exact(Q8_0_BYTES)
        .zip(qs.chunks_exact(QK))
        .enumerate()
    {
        sum += q8_0_block_sum(blk, a) as f32 * (f16_at(blk, 0) * d[b]);
    }
    sum
}

/// Q4_0 row · Q8_0 activations: nibble `j` of byte `i` is value `i + 16·j`, minus 8.
pub(crate) fn dot_q4_0(w: &[u8], qs: &[i8], d: &[f32]) -> f32 {
    let nb = d.len();
    assert!(w.len() == nb * Q4_0_BYTES && qs.len() == nb * QK);
    let mut sum = 0f32;
    for (b, (blk, a)) in w
        .chunks_exact(Q4_0_BYTES)
        .zip(qs.chunks_exact(QK))
        .enumerate()
    {
        sum += q4_0_block_sum(blk, a) as f32 * (f16_at(blk, 0) * d[b]);
    }
    sum
}

/// `Σ w·a` of one stored Q8_0 block and its 32 activations, exact.
pub(crate) fn q8_0_block_sum(blk: &[u8], a: &[i8]) -> i32 {
    blk[2..Q8_0_BYTES]
        .iter()
        .zip(a)
        .map(|(&w, &a)| w as i8 as i32 * a as i32)
        .sum()
}

/// `Σ w·a` of one stored Q4_0 block and its 32 activations, exact.
pub(crate) fn q4_0_block_sum(blk: &[u8], a: &[i8]) -> i32 {
    let mut s = 0i32;
    for (i, &byte) in blk[2..Q4_0_BYTES].iter().enumerate() {
        s += ((byte & 0x0f) as i32 - 8) * a[i] as i32;
        s += ((byte >> 4) as i32 - 8) * a[i + 16] as i32;
    }
    s
}
