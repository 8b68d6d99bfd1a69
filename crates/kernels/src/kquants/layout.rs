//! Byte layouts of ggml's K-quant super-blocks (`block_q2_K` ... `block_q6_K` in
//! ggml-common.h) and the unpacking of their packed scales.
//!
//! Every block holds [`QK_K`](super::QK_K) = 256 values. Offsets are in bytes from the start
//! of a block; f16 fields are little-endian.

use half::f16;

/// Q2_K: `scales[16]` (low nibble scale, high nibble min), `qs[64]`, f16 `d`, f16 `dmin`.
pub(crate) mod q2_k {
    pub const BYTES: usize = 84;
    pub const SCALES: usize = 0;
    pub const QS: usize = 16;
    pub const D: usize = 80;
    pub const DMIN: usize = 82;
}

/// Q3_K: `hmask[32]`, `qs[64]`, `scales[12]` (16 packed 6-bit scales), f16 `d`.
pub(crate) mod q3_k {
    pub const BYTES: usize = 110;
    pub const HMASK: usize = 0;
    pub const QS: usize = 32;
    pub const SCALES: usize = 96;
    pub const D: usize = 108;
}

/// Q4_K: f16 `d`, f16 `dmin`, `scales[12]` (8 packed 6-bit scales and mins), `qs[128]`.
pub(crate) mod q4_k {
    pub const BYTES: usize = 144;
    pub const D: usize = 0;
    pub const DMIN: usize = 2;
    pub const SCALES: usize = 4;
    pub const QS: usize = 16;
}

/// Q5_K: f16 `d`, f16 `dmin`, `scales[12]` (as Q4_K), `qh[32]` (fifth bits), `qs[128]`.
pub(crate) mod q5_k {
    pub const BYTES: usize = 176;
    pub const D: usize = 0;
    pub const DMIN: usize = 2;
    pub const SCALES: usize = 4;
    pub const QH: usize = 16;
    pub const QS: usize = 48;
}

/// Q6_K: `ql[128]` (low 4 bits), `qh[64]` (high 2 bits), `scales[16]` (i8), f16 `d`.
pub(crate) mod q6_k {
    pub const BYTES: usize = 210;
    pub const QL: usize = 0;
    pub const QH: usize = 128;
    pub const SCALES: usize = 192;
    pub const D: usize = 208;
}

/// The little-endian f16 at byte `at` of `b`, widened exactly to f32.
#[inline]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8) from the 12
/// packed bytes of a Q4_K / Q5_K block. Sub-blocks 0..3 keep their low 6 bits in bytes j and
/// j + 4; 4..7 take 4 bits from byte j + 4 and their top 2 bits from the spare high bits of
/// bytes j − 4 (scale) and j (min).
#[inline]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The 8 scales and 8 mins of a Q4_K / Q5_K block, unpacked with the `utmp` word trick of
/// ggml's `ggml_vec_dot_q4_K_q8_K` (equal to [`scale_min_k4`] for every j).
#[inline]
pub(crate) fn scales_mins_k4(packed: &[u8]) -> ([u8; 8], [u8; 8]) {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let word = |i: usize| {
        u32::from_le_bytes([
            packed[4 * i],
            packed[4 * i + 1],
            packed[4 * i + 2],
            packed[4 * i + 3],
        ])
    };
    let mut utmp = [word(0), word(1), word(2), 0];
    utmp[3] = ((utmp[2] >> 4) & KMASK2) | (((utmp[1] >> 6) & KMASK3) << 4);
    let uaux = utmp[1] & KMASK1;
    utmp[1] = (utmp[2] & KMASK2) | (((utmp[0] >> 6) & KMASK3) << 4);
    utmp[2] = uaux;
    utmp[0] &= KMASK1;
    let mut scales = [0u8; 8];
    let mut mins = [0u8; 8];
    scales[..4].copy_from_slice(&utmp[0].to_le_bytes());
    scales[4..].copy_from_slice(&utmp[1].to_le_bytes());
    mins[..4].copy_from_slice(&utmp[2].to_le_bytes());
    mins[4..].copy_from_slice(&utmp[3].to_le_bytes());
    (scales, mins)
}

/// The 16 6-bit scales (0..63, before the −32 offset) of a Q3_K block, unpacked from its 12
/// bytes with the `kmask` word trick of ggml's `dequantize_row_q3_K`: scale j keeps its low 4
/// bits in a nibble of byte j mod 8 (low nibble for j < 8) and its top 2 bits in bits
/// 2·(j / 4) of byte 8 + j mod 4.
#[inline]
pub(crate) fn scales_q3_k(packed: &[u8]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let word = |i: usize| {
        u32::from_le_bytes([
            packed[4 * i],
            packed[4 * i + 1],
            packed[4 * i + 2],
            packed[4 * i + 3],
        ])
    };
    let mut aux = [word(0), word(1), word(2), 0];
    let tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4);
    aux[3] = ((aux[1] >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4);
    aux[0] = (aux[0] & KMASK2) | ((tmp & KMASK1) << 4);
    aux[1] = (aux[1] & KMASK2) | (((tmp >> 2) & KMASK1) << 4);
    let mut out = [0i8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(aux) {
        for (d, b) in o.iter_mut().zip(w.to_le_bytes()) {
            *d = b as i8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic byte generator (xorshift) for layout tests.
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn utmp_trick_equals_get_scale_min_k4() {
        for seed in 0..200 {
            let packed = bytes(seed, 12);
            let (scales, mins) = scales_mins_k4(&packed);
            for j in 0..8 {
                assert_eq!(
                    (scales[j], mins[j]),
                    scale_min_k4(j, &packed),
                    "seed {seed} j {j}"
                );
            }
        }
    }

    #[test]
    fn q3_k_scales_match_the_bit_layout() {
        for seed in 0..200 {
            let p = bytes(seed, 12);
            let s = scales_q3_k(&p);
            for j in 0..16 {
                let low = if j < 8 { p[j] & 0xF } else { p[j - 8] >> 4 };
                let high = (p[8 + j % 4] >> (2 * (j / 4))) & 3;
                assert_eq!(s[j], (low | high << 4) as i8, "seed {seed} j {j}");
            }
        }
    }
}
