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
//! oracles of the SIMD versions (`avx2.rs`, `avx512.rs`, over the common block form of
//! `unpack.rs`), which are used automatically at the level [`crate::isa`] picks.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2_x16;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512_x16;
mod dequant;
mod dot;
pub(crate) mod layout;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
mod quantize;
pub(crate) mod unpack;
pub(crate) mod x16;

/// Rows of a group of the repacked K-quant layouts ([`WeightType::Q4_Kx16`],
/// [`WeightType::Q5_Kx16`], [`WeightType::Q6_Kx16`]).
pub(crate) const X16_ROWS: usize = x16::ROWS;

pub(crate) use unpack::Unpacked;

pub use dequant::{
    dequantize_q2_k, dequantize_q3_k, dequantize_q4_k, dequantize_q5_k, dequantize_q6_k,
};
pub use dot::{
    vec_dot_q2_k_q8_k, vec_dot_q3_k_q8_k, vec_dot_q4_k_q8_k, vec_dot_q5_k_q8_k, vec_dot_q6_k_q8_k,
};
pub use quantize::{
    quantize_row_q2_k, quantize_row_q3_k, quantize_row_q4_k, quantize_row_q5_k, quantize_row_q6_k,
};

use crate::cpu::Level;
use crate::{dequantize, Isa, WeightType};

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

/// [`quantize_row_q8_k`] by the fastest code `level` has: the same bits.
pub(crate) fn quantize_row_q8_k_at(level: Level, x: &[f32], out: &mut [BlockQ8K]) {
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512(k) => avx512::quantize_row_q8_k(k, x, out),
        #[cfg(target_arch = "x86_64")]
        Level::Avx2(k) => avx2::quantize_row_q8_k(k, x, out),
        Level::Scalar => quantize_row_q8_k(x, out),
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
    /// AVX-512 BW + VNNI over super-blocks unpacked with AVX2.
    Avx512,
    /// AVX2 + FMA.
    Avx2,
    /// The scalar transcriptions of ggml's generic code.
    Scalar,
}

impl KQuantPath {
    /// The kernels of this path, or `None` when this CPU lacks its features.
    fn level(self) -> Option<Level> {
        Level::new(match self {
            KQuantPath::Avx512 => Isa::Avx512,
            KQuantPath::Avx2 => Isa::Avx2,
            KQuantPath::Scalar => Isa::Scalar,
        })
    }
}

/// The implementation this CPU gets (the level of [`crate::isa`]).
pub fn kquant_path() -> KQuantPath {
    match crate::isa() {
        // K-quants have no AMX kernels: the AMX level runs their AVX-512 ones.
        Isa::Amx | Isa::Avx512 => KQuantPath::Avx512,
        Isa::Avx2 => KQuantPath::Avx2,
        Isa::Scalar => KQuantPath::Scalar,
    }
}

/// The AVX2 dot product of a row of `ty` with Q8_K activations; `None` when this CPU lacks
/// AVX2 + FMA or `ty` is not a K-quant type. For testing the SIMD code against the scalar
/// oracles.
pub fn vec_dot_avx2(ty: WeightType, row: &[u8], act: &[BlockQ8K]) -> Option<f32> {
    simd_dot(KQuantPath::Avx2, ty, row, act)
}

/// The AVX-512 dot product, as [`vec_dot_avx2`].
pub fn vec_dot_avx512(ty: WeightType, row: &[u8], act: &[BlockQ8K]) -> Option<f32> {
    simd_dot(KQuantPath::Avx512, ty, row, act)
}

fn simd_dot(path: KQuantPath, ty: WeightType, row: &[u8], act: &[BlockQ8K]) -> Option<f32> {
    let level = path.level()?;
    if matches!(level, Level::Scalar) || !is_kquant(ty) {
        return None;
    }
    Some(dot_tokens(level, ty, row, [act])[0])
}

/// Whether `ty` is one of Q2_K..Q6_K.
pub(crate) fn is_kquant(ty: WeightType) -> bool {
    matches!(
        ty,
        WeightType::Q2_K
            | WeightType::Q3_K
            | WeightType::Q4_K
            | WeightType::Q5_K
            | WeightType::Q6_K
    )
}

/// `row · act[t]` for `T` tokens by the kernels of `level`, over the blocks common to the row
/// and every token. Each result is bitwise the same whatever `T` and the other tokens are.
///
/// # Panics
/// When `ty` is not a K-quant type.
pub(crate) fn dot_tokens<const T: usize>(
    level: Level,
    ty: WeightType,
    row: &[u8],
    act: [&[BlockQ8K]; T],
) -> [f32; T] {
    let bb = ty.block_bytes();
    let nb = act.iter().fold(row.len() / bb, |n, a| n.min(a.len()));
    let row = &row[..nb * bb];
    match level {
        Level::Scalar => act.map(|a| scalar_dot(ty, row, a)),
        #[cfg(target_arch = "x86_64")]
        Level::Avx2(_) => {
            use avx2::{dot_tokens as d, Q2, Q3, Q4, Q5, Q6};
            // SAFETY: the token proves AVX2/FMA/F16C; lengths are checked inside.
            unsafe {
                match ty {
                    WeightType::Q2_K => d::<Q2, T>(row, act),
                    WeightType::Q3_K => d::<Q3, T>(row, act),
                    WeightType::Q4_K => d::<Q4, T>(row, act),
                    WeightType::Q5_K => d::<Q5, T>(row, act),
                    WeightType::Q6_K => d::<Q6, T>(row, act),
                    _ => panic!("not a K-quant type: {ty:?}"),
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Level::Avx512(_) => {
            use avx2::{Q2, Q3, Q4, Q5, Q6};
            use avx512::dot_tokens as d;
            // SAFETY: the token proves the AVX-512 features; lengths are checked inside.
            unsafe {
                match ty {
                    WeightType::Q2_K => d::<Q2, T>(row, act),
                    WeightType::Q3_K => d::<Q3, T>(row, act),
                    WeightType::Q4_K => d::<Q4, T>(row, act),
                    WeightType::Q5_K => d::<Q5, T>(row, act),
                    WeightType::Q6_K => d::<Q6, T>(row, act),
                    _ => panic!("not a K-quant type: {ty:?}"),
                }
            }
        }
    }
}

/// Unpacks the whole blocks of `row` (K-quant `ty`) into `out` (one per block) by the kernels
/// of `level`.
///
/// # Panics
/// When `ty` is not a K-quant type.
pub(crate) fn unpack_row(level: Level, ty: WeightType, row: &[u8], out: &mut [Unpacked]) {
    let blocks = row.chunks_exact(ty.block_bytes()).zip(out);
    match level {
        Level::Scalar => blocks.for_each(|(x, o)| unpack::unpack_scalar(ty, x, o)),
        #[cfg(target_arch = "x86_64")]
        Level::Avx2(_) | Level::Avx512(_) => blocks.for_each(|(x, o)| {
            use avx2::{unpack_block as unpack, Q2, Q3, Q4, Q5, Q6};
            // SAFETY: both levels' tokens prove AVX2; each `x` is one whole block.
            unsafe {
                match ty {
                    WeightType::Q2_K => unpack::<Q2>(x, o),
                    WeightType::Q3_K => unpack::<Q3>(x, o),
                    WeightType::Q4_K => unpack::<Q4>(x, o),
                    WeightType::Q5_K => unpack::<Q5>(x, o),
                    WeightType::Q6_K => unpack::<Q6>(x, o),
                    _ => panic!("not a K-quant type: {ty:?}"),
                }
            }
        }),
    }
}

/// ggml's scalar dot product for a K-quant `ty`.
fn scalar_dot(ty: WeightType, row: &[u8], act: &[BlockQ8K]) -> f32 {
    match ty {
        WeightType::Q2_K => vec_dot_q2_k_q8_k(row, act),
        WeightType::Q3_K => vec_dot_q3_k_q8_k(row, act),
        WeightType::Q4_K => vec_dot_q4_k_q8_k(row, act),
        WeightType::Q5_K => vec_dot_q5_k_q8_k(row, act),
        WeightType::Q6_K => vec_dot_q6_k_q8_k(row, act),
        _ => panic!("not a K-quant type: {ty:?}"),
    }
}

/// Σ row·act for one weight row of `ty` (`act.len()` super-blocks, `row` exactly
/// `ty.row_bytes(256 · act.len())` bytes) against activations quantized with
/// [`quantize_q8_k`], by the fastest implementation this CPU has.
///
/// With mismatched lengths only the common prefix of super-blocks is used. For a type that is
/// not a K-quant the row and the activations are dequantized and dotted in `f32` (correct, not
/// fast: callers should use their own path for those types), and a row of the wrong length
/// gives NaN, as do the repacked K-quant types (whose rows are not contiguous).
pub fn kquant_matvec_row(ty: WeightType, row: &[u8], act: &[BlockQ8K]) -> f32 {
    kquant_matvec_row_with(kquant_path(), ty, row, act)
}

/// [`kquant_matvec_row`] by the implementation `path` (for drivers that let the user force
/// the scalar code); a SIMD path this CPU lacks runs the scalar code.
pub fn kquant_matvec_row_with(
    path: KQuantPath,
    ty: WeightType,
    row: &[u8],
    act: &[BlockQ8K],
) -> f32 {
    match ty {
        WeightType::Q2_K
        | WeightType::Q3_K
        | WeightType::Q4_K
        | WeightType::Q5_K
        | WeightType::Q6_K => {
            let level = path.level().unwrap_or(Level::Scalar);
            dot_tokens(level, ty, row, [act])[0]
        }
        WeightType::F32
        | WeightType::F16
        | WeightType::BF16
        | WeightType::Q8_0
        | WeightType::Q8_0x16
        | WeightType::Q4_0
        | WeightType::Q4_0x16 => {
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
        // Their rows lie sixteen side by side: no byte run is one row.
        WeightType::Q2_Kx16
        | WeightType::Q3_Kx16
        | WeightType::Q4_Kx16
        | WeightType::Q5_Kx16
        | WeightType::Q6_Kx16 => f32::NAN,
    }
}

#[cfg(test)]
mod tests;
