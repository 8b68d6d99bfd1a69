//! Weight panels: a few rows of a stored matrix rewritten, once per matmul call, into the layout
//! the prefill tile kernels (`tile_*.rs`) read for every group of tokens.
//!
//! - Float types (F32, F16, BF16) become `f32` rows padded with zeros to [`F32_ALIGN`] values.
//! - Q8_0 / Q4_0 become unsigned bytes `u = w + offset` ([`Q8_0_OFFSET`]: `q8 ^ 0x80`;
//!   [`Q4_0_OFFSET`]: the nibble as is) in groups of 16 blocks, four values of block `i` at
//!   step `k` sitting at bytes `(k · 16 + i) · 4` of the group — the layout of
//!   [`crate::act_q8::ActLayout::Interleaved`], so one 64-byte load gives the same four
//!   positions of 16 blocks and a VNNI dot product sums a block per int32 lane — plus the
//!   block scales as `f32` (zero for the padding blocks of the last group).

use crate::act_q8::{GROUP_BLOCKS, GROUP_BYTES, QK};
use crate::cpu::Level;
use crate::dot_scalar::{f16_at, Q4_0_BYTES, Q8_0_BYTES};
use crate::WeightType;

/// Float panel rows are padded to a multiple of this many values.
pub(crate) const F32_ALIGN: usize = 16;
/// What packed Q8_0 bytes add to the stored value.
pub(crate) const Q8_0_OFFSET: i32 = 128;
/// What packed Q4_0 bytes add to the stored value.
pub(crate) const Q4_0_OFFSET: i32 = 8;

/// Values of a padded float panel row.
pub(crate) fn f32_row_len(n_cols: usize) -> usize {
    n_cols.div_ceil(F32_ALIGN) * F32_ALIGN
}

/// Groups of 16 blocks of a packed quantized row.
pub(crate) fn n_groups(n_cols: usize) -> usize {
    (n_cols / QK).div_ceil(GROUP_BLOCKS)
}

/// The offset of packed bytes of `ty` (Q8_0 or Q4_0).
pub(crate) fn offset_of(ty: WeightType) -> i32 {
    if ty.stored() == WeightType::Q4_0 {
        Q4_0_OFFSET
    } else {
        Q8_0_OFFSET
    }
}

/// Converts one stored float row (`ty` F32, F16 or BF16) into `out` (`f32_row_len` values).
pub(crate) fn pack_float_row(level: Level, ty: WeightType, row: &[u8], out: &mut [f32]) {
    match level {
        Level::Scalar => pack_float_row_scalar(ty, row, out),
        #[cfg(target_arch = "x86_64")]
        Level::Avx2(t) => crate::avx2_pack::pack_float_row(t, ty, row, out),
        #[cfg(target_arch = "x86_64")]
        Level::Avx512(t) => crate::avx2_pack::pack_float_row(t.avx2(), ty, row, out),
    }
}

/// Packs one stored (or repacked, `qx16.rs`) Q8_0 / Q4_0 row into `qs` (`n_groups · 512`
/// bytes) and `d` (`n_groups · 16` scales).
pub(crate) fn pack_quant_row(
    level: Level,
    ty: WeightType,
    row: &[u8],
    qs: &mut [u8],
    d: &mut [f32],
) {
    if let Some(kind) = crate::qx16::X16::of(ty) {
        // Already in groups of 16 blocks: a copy, or splitting the nibbles.
        return match level {
            Level::Scalar => crate::qx16::pack_tiles_row(kind, row, qs, d),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2(t) => crate::avx2_pack::pack_x16_row(t, kind, row, qs, d),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512(t) => crate::avx2_pack::pack_x16_row(t.avx2(), kind, row, qs, d),
        };
    }
    match level {
        Level::Scalar => pack_quant_row_scalar(ty, row, qs, d),
        #[cfg(target_arch = "x86_64")]
        Level::Avx2(t) => crate::avx2_pack::pack_quant_row(t, ty, row, qs, d),
        #[cfg(target_arch = "x86_64")]
        Level::Avx512(t) => crate::avx2_pack::pack_quant_row(t.avx2(), ty, row, qs, d),
    }
}

/// Scalar twin of the float packers.
pub(crate) fn pack_float_row_scalar(ty: WeightType, row: &[u8], out: &mut [f32]) {
    let n = row.len() / ty.block_bytes();
    assert!(row.len() == ty.row_bytes(n) && out.len() == f32_row_len(n));
    crate::dequantize(ty, row, &mut out[..n]);
    out[n..].fill(0.0);
}

/// Scalar twin of the quantized packers.
pub(crate) fn pack_quant_row_scalar(ty: WeightType, row: &[u8], qs: &mut [u8], d: &mut [f32]) {
    let (bytes, nb) = quant_shape(ty, row);
    let ng = nb.div_ceil(GROUP_BLOCKS);
    assert!(qs.len() == ng * GROUP_BYTES && d.len() == ng * GROUP_BLOCKS);
    qs.fill(0);
    d.fill(0.0);
    for (b, blk) in row.chunks_exact(bytes).enumerate() {
        let mut u = [0u8; QK];
        if ty == WeightType::Q4_0 {
            for (j, &byte) in blk[2..].iter().enumerate() {
                u[j] = byte & 0x0f;
                u[j + 16] = byte >> 4;
            }
        } else {
            for (o, &q) in u.iter_mut().zip(&blk[2..]) {
                *o = q ^ 0x80;
            }
        }
        let (g, i) = (b / GROUP_BLOCKS, b % GROUP_BLOCKS);
        for (k, four) in u.chunks_exact(4).enumerate() {
            let at = g * GROUP_BYTES + (k * GROUP_BLOCKS + i) * 4;
            qs[at..at + 4].copy_from_slice(four);
        }
        d[b] = f16_at(blk, 0);
    }
}

/// Block size in bytes and block count of a Q8_0 / Q4_0 row.
pub(crate) fn quant_shape(ty: WeightType, row: &[u8]) -> (usize, usize) {
    let bytes = match ty {
        WeightType::Q8_0 => Q8_0_BYTES,
        WeightType::Q4_0 => Q4_0_BYTES,
        _ => panic!("not a Q8_0 / Q4_0 type: {ty:?}"),
    };
    assert_eq!(row.len() % bytes, 0);
    (bytes, row.len() / bytes)
}
