use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::kquants;

/// Storage type of a weight matrix, in ggml's block layouts for the quantized kinds.
// ggml's type names (Q4_K, not Q4K), as every tool and file header spells them.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    F32,
    F16,
    BF16,
    /// Blocks of 32: f16 scale `d`, then 32 × i8 `q`; value = d · q.
    Q8_0,
    /// Blocks of 32: f16 scale `d`, then 16 bytes; byte j holds value j (low nibble) and value
    /// j + 16 (high nibble); value = d · (nibble − 8).
    Q4_0,
    /// Q4_0 blocks repacked for the decode kernels (`qx16.rs`): each row a run of groups of 16
    /// blocks (the last padded with zero blocks), a group's 16 scales first, then its nibbles
    /// interleaved four bytes at a time. Never in a file: [`crate::repack`] makes it from Q4_0.
    Q4_0x16,
    /// Q8_0 blocks repacked for the decode kernels (`qx16.rs`): as [`WeightType::Q4_0x16`],
    /// 32 bytes of a block's values, stored `q ^ 0x80`, interleaved four bytes at a time.
    /// Never in a file: [`crate::repack`] makes it from Q8_0.
    Q8_0x16,
    /// Super-blocks of 256 (84 bytes): 16 scale bytes (low nibble scale, high nibble min), 64
    /// bytes of 2-bit values, f16 `d`, f16 `dmin`; value = d·sc·q − dmin·m.
    Q2_K,
    /// Super-blocks of 256 (110 bytes): 32-byte high-bit mask, 64 bytes of 2-bit values, 16
    /// 6-bit scales packed in 12 bytes, f16 `d`; value = d·(sc − 32)·(q − 4·!hbit).
    Q3_K,
    /// Q2_K matrices repacked for the decode kernel, as [`WeightType::Q4_Kx16`] (1344 bytes per
    /// super-block of 16 rows).
    Q2_Kx16,
    /// Q3_K matrices repacked for the decode kernel, as [`WeightType::Q4_Kx16`] (1760 bytes per
    /// super-block of 16 rows).
    Q3_Kx16,
    /// Super-blocks of 256 (144 bytes): f16 `d`, f16 `dmin`, 8 6-bit scales and mins packed in
    /// 12 bytes, 128 bytes of 4-bit values; value = d·sc·q − dmin·m per sub-block of 32.
    Q4_K,
    /// Q4_K matrices repacked for the decode kernel (`kquants/x16.rs`): groups of 16 rows
    /// side by side, each super-block of the 16 rows 2304 bytes (the same bytes rearranged), so
    /// a row's bytes are not contiguous: [`crate::WeightView::row_f32`] decodes one row and
    /// [`dequantize`] takes one whole group (16 rows). Never in a file: [`crate::repack`] makes it from Q4_K
    /// matrices of whole groups.
    Q4_Kx16,
    /// Super-blocks of 256 (176 bytes): as Q4_K with a 32-byte fifth-bit plane before the
    /// 4-bit values.
    Q5_K,
    /// Q5_K matrices repacked for the decode kernel, as [`WeightType::Q4_Kx16`] with the
    /// fifth bits in runs of their own (2816 bytes per super-block of 16 rows).
    Q5_Kx16,
    /// Q6_K matrices repacked for the decode kernel, as [`WeightType::Q4_Kx16`] (3360 bytes per
    /// super-block of 16 rows).
    Q6_Kx16,
    /// Super-blocks of 256 (210 bytes): 128 bytes of low 4 bits, 64 bytes of high 2 bits, 16
    /// i8 scales, f16 `d`; value = d·sc·(q − 32) per sub-block of 16.
    Q6_K,
}

impl WeightType {
    /// Values per block.
    pub fn block_elems(self) -> usize {
        match self {
            WeightType::F32 | WeightType::F16 | WeightType::BF16 => 1,
            WeightType::Q8_0 | WeightType::Q8_0x16 | WeightType::Q4_0 | WeightType::Q4_0x16 => 32,
            WeightType::Q2_K
            | WeightType::Q2_Kx16
            | WeightType::Q3_K
            | WeightType::Q3_Kx16
            | WeightType::Q4_K
            | WeightType::Q4_Kx16
            | WeightType::Q5_K
            | WeightType::Q5_Kx16
            | WeightType::Q6_K
            | WeightType::Q6_Kx16 => kquants::QK_K,
        }
    }
    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            WeightType::F32 => 4,
            WeightType::F16 | WeightType::BF16 => 2,
            WeightType::Q8_0 | WeightType::Q8_0x16 => 34,
            WeightType::Q4_0 | WeightType::Q4_0x16 => 18,
            WeightType::Q2_K | WeightType::Q2_Kx16 => 84,
            WeightType::Q3_K | WeightType::Q3_Kx16 => 110,
            WeightType::Q4_K | WeightType::Q4_Kx16 => 144,
            WeightType::Q5_K | WeightType::Q5_Kx16 => 176,
            WeightType::Q6_K | WeightType::Q6_Kx16 => 210,
        }
    }
    /// Whether this is one of the K-quant super-block types (dot products against Q8_K
    /// activations in [`crate::kquants`]).
    pub fn is_k_quant(self) -> bool {
        matches!(
            self,
            WeightType::Q2_K
                | WeightType::Q3_K
                | WeightType::Q4_K
                | WeightType::Q5_K
                | WeightType::Q6_K
        )
    }
    /// The stored (file) type this type is a layout of: itself, or for the layouts made at load
    /// ([`crate::repack`]) the type they were made from.
    pub fn stored(self) -> WeightType {
        match self {
            WeightType::Q4_0x16 => WeightType::Q4_0,
            WeightType::Q8_0x16 => WeightType::Q8_0,
            WeightType::Q2_Kx16 => WeightType::Q2_K,
            WeightType::Q3_Kx16 => WeightType::Q3_K,
            WeightType::Q4_Kx16 => WeightType::Q4_K,
            WeightType::Q5_Kx16 => WeightType::Q5_K,
            WeightType::Q6_Kx16 => WeightType::Q6_K,
            ty => ty,
        }
    }
    /// Whether rows of this type lie sixteen side by side instead of one after another
    /// ([`WeightType::Q2_Kx16`] ... [`WeightType::Q6_Kx16`]).
    pub fn is_grouped(self) -> bool {
        matches!(
            self,
            WeightType::Q2_Kx16
                | WeightType::Q3_Kx16
                | WeightType::Q4_Kx16
                | WeightType::Q5_Kx16
                | WeightType::Q6_Kx16
        )
    }
    /// Bytes of a row of `n` values (`n` a multiple of the block size).
    pub fn row_bytes(self, n: usize) -> usize {
        match self {
            WeightType::Q4_0x16 => crate::qx16::row_bytes(crate::qx16::X16::Q4_0, n),
            WeightType::Q8_0x16 => crate::qx16::row_bytes(crate::qx16::X16::Q8_0, n),
            _ => n / self.block_elems() * self.block_bytes(),
        }
    }
}

/// Decodes `dst.len()` values of type `ty` from `src` (exactly `ty.row_bytes(dst.len())` bytes).
pub fn dequantize(ty: WeightType, src: &[u8], dst: &mut [f32]) {
    debug_assert_eq!(src.len(), ty.row_bytes(dst.len()));
    match ty {
        WeightType::F32 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            }
        }
        WeightType::F16 => match bytemuck::try_cast_slice::<u8, f16>(src) {
            // Aligned (as the KV cache's and mapped tensors' bytes are): half's vector
            // conversion (F16C where the CPU has it), exact like the scalar one.
            Ok(h) if cfg!(target_endian = "little") => h.convert_to_f32_slice(dst),
            _ => {
                for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    *d = f16::from_le_bytes([s[0], s[1]]).to_f32();
                }
            }
        },
        WeightType::BF16 => match bytemuck::try_cast_slice::<u8, bf16>(src) {
            Ok(h) if cfg!(target_endian = "little") => h.convert_to_f32_slice(dst),
            _ => {
                for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    *d = bf16::from_le_bytes([s[0], s[1]]).to_f32();
                }
            }
        },
        WeightType::Q8_0 => {
            for (d, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(34)) {
                let scale = f16::from_le_bytes([b[0], b[1]]).to_f32();
                for (o, &q) in d.iter_mut().zip(&b[2..34]) {
                    *o = scale * (q as i8) as f32;
                }
            }
        }
        WeightType::Q4_0 => {
            for (d, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(18)) {
                let scale = f16::from_le_bytes([b[0], b[1]]).to_f32();
                let (lo, hi) = d.split_at_mut(16);
                for j in 0..16 {
                    let q = b[2 + j];
                    lo[j] = scale * ((q & 0x0f) as i32 - 8) as f32;
                    hi[j] = scale * ((q >> 4) as i32 - 8) as f32;
                }
            }
        }
        WeightType::Q4_0x16 => crate::qx16::dequantize_row(crate::qx16::X16::Q4_0, src, dst),
        WeightType::Q8_0x16 => crate::qx16::dequantize_row(crate::qx16::X16::Q8_0, src, dst),
        WeightType::Q2_K => kquants::dequantize_q2_k(src, dst),
        WeightType::Q3_K => kquants::dequantize_q3_k(src, dst),
        WeightType::Q4_K => kquants::dequantize_q4_k(src, dst),
        // `src` one group of 16 rows, `dst` its rows one after another.
        WeightType::Q2_Kx16
        | WeightType::Q3_Kx16
        | WeightType::Q4_Kx16
        | WeightType::Q5_Kx16
        | WeightType::Q6_Kx16 => kquants::x16::dequantize_group(ty, src, dst),
        WeightType::Q5_K => kquants::dequantize_q5_k(src, dst),
        WeightType::Q6_K => kquants::dequantize_q6_k(src, dst),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_nibble_order() {
        // Scale 1.0, byte j = (j+1)<<4 | j: low nibbles 0..16 give values j-8, high ones j+1-8.
        let mut block = vec![0u8; 18];
        block[..2].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
        for j in 0..16u8 {
            block[2 + j as usize] = ((j + 1) & 0x0f) << 4 | j;
        }
        let mut out = [0f32; 32];
        dequantize(WeightType::Q4_0, &block, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], j as f32 - 8.0);
            assert_eq!(out[16 + j], ((j + 1) % 16) as f32 - 8.0);
        }
    }

    #[test]
    fn q8_0_scale() {
        let mut block = vec![0u8; 34];
        block[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        for (j, q) in block[2..].iter_mut().enumerate() {
            *q = (j as i8 - 16) as u8;
        }
        let mut out = [0f32; 32];
        dequantize(WeightType::Q8_0, &block, &mut out);
        for (j, &v) in out.iter().enumerate() {
            assert_eq!(v, 0.5 * (j as f32 - 16.0));
        }
    }
}
