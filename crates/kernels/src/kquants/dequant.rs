//! Decoding of K-quant super-blocks to `f32`, transcribed from ggml's `dequantize_row_q2_K`
//! ... `dequantize_row_q6_K`. Each value is computed with the same `f32` operations in the same
//! order as the reference, so results are bit-identical to it.
//!
//! Each function decodes `dst.len()` values (a multiple of 256) from `src`; a shorter `src`
//! decodes only its whole blocks.

use super::layout::{f16_at, q2_k, q3_k, q4_k, q5_k, q6_k, scale_min_k4, scales_q3_k};
use super::QK_K;

/// Q2_K: per sub-block of 16, value = (d·sc)·q − (dmin·m), q the 2-bit value.
pub fn dequantize_q2_k(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst
        .chunks_exact_mut(QK_K)
        .zip(src.chunks_exact(q2_k::BYTES))
    {
        let d = f16_at(b, q2_k::D);
        let min = f16_at(b, q2_k::DMIN);
        let scales = &b[q2_k::SCALES..q2_k::SCALES + 16];
        let mut is = 0;
        for q in b[q2_k::QS..q2_k::QS + 64].chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for half in q.chunks_exact(16) {
                    let sc = scales[is];
                    let out = &mut y[16 * is..16 * is + 16];
                    is += 1;
                    let dl = d * (sc & 0xF) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for (o, &v) in out.iter_mut().zip(half) {
                        *o = dl * ((v >> shift) & 3) as f32 - ml;
                    }
                }
            }
        }
    }
}

/// Q3_K: per sub-block of 16, value = (d·(sc − 32))·(q − 4 if the mask bit is clear).
pub fn dequantize_q3_k(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst
        .chunks_exact_mut(QK_K)
        .zip(src.chunks_exact(q3_k::BYTES))
    {
        let d_all = f16_at(b, q3_k::D);
        let scales = scales_q3_k(&b[q3_k::SCALES..q3_k::SCALES + 12]);
        let hm = &b[q3_k::HMASK..q3_k::HMASK + 32];
        let mut is = 0;
        let mut m: u8 = 1;
        for q in b[q3_k::QS..q3_k::QS + 64].chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for (q, h) in q.chunks_exact(16).zip(hm.chunks_exact(16)) {
                    let dl = d_all * (scales[is] as i32 - 32) as f32;
                    let out = &mut y[16 * is..16 * is + 16];
                    is += 1;
                    for ((o, &v), &hb) in out.iter_mut().zip(q).zip(h) {
                        let low = ((v >> shift) & 3) as i32;
                        let sub = if hb & m != 0 { 0 } else { 4 };
                        *o = dl * (low - sub) as f32;
                    }
                }
                m <<= 1;
            }
        }
    }
}

/// Q4_K: per sub-block of 32, value = (d·sc)·q − (dmin·m), q the 4-bit value.
pub fn dequantize_q4_k(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst
        .chunks_exact_mut(QK_K)
        .zip(src.chunks_exact(q4_k::BYTES))
    {
        let d = f16_at(b, q4_k::D);
        let min = f16_at(b, q4_k::DMIN);
        let packed = &b[q4_k::SCALES..q4_k::SCALES + 12];
        let qs = &b[q4_k::QS..q4_k::QS + 128];
        for (j, (y, q)) in y.chunks_exact_mut(64).zip(qs.chunks_exact(32)).enumerate() {
            let (sc, m) = scale_min_k4(2 * j, packed);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = scale_min_k4(2 * j + 1, packed);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            let (lo, hi) = y.split_at_mut(32);
            for ((l, h), &v) in lo.iter_mut().zip(hi).zip(q) {
                *l = d1 * (v & 0xF) as f32 - m1;
                *h = d2 * (v >> 4) as f32 - m2;
            }
        }
    }
}

/// Q5_K: as Q4_K with a fifth bit from `qh` (bit 2j for the low nibbles of chunk j, bit
/// 2j + 1 for the high ones).
pub fn dequantize_q5_k(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst
        .chunks_exact_mut(QK_K)
        .zip(src.chunks_exact(q5_k::BYTES))
    {
        let d = f16_at(b, q5_k::D);
        let min = f16_at(b, q5_k::DMIN);
        let packed = &b[q5_k::SCALES..q5_k::SCALES + 12];
        let qh = &b[q5_k::QH..q5_k::QH + 32];
        let ql = &b[q5_k::QS..q5_k::QS + 128];
        let (mut u1, mut u2) = (1u8, 2u8);
        for (j, (y, q)) in y.chunks_exact_mut(64).zip(ql.chunks_exact(32)).enumerate() {
            let (sc, m) = scale_min_k4(2 * j, packed);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = scale_min_k4(2 * j + 1, packed);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            let (lo, hi) = y.split_at_mut(32);
            for (((l, h), &v), &hb) in lo.iter_mut().zip(hi).zip(q).zip(qh) {
                let b1 = if hb & u1 != 0 { 16 } else { 0 };
                let b2 = if hb & u2 != 0 { 16 } else { 0 };
                *l = d1 * ((v & 0xF) + b1) as f32 - m1;
                *h = d2 * ((v >> 4) + b2) as f32 - m2;
            }
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

/// Q6_K: per sub-block of 16, value = (d·sc)·(q − 32), q the 6-bit value.
pub fn dequantize_q6_k(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst
        .chunks_exact_mut(QK_K)
        .zip(src.chunks_exact(q6_k::BYTES))
    {
        let d = f16_at(b, q6_k::D);
        let ql = &b[q6_k::QL..q6_k::QL + 128];
        let qh = &b[q6_k::QH..q6_k::QH + 64];
        let sc = &b[q6_k::SCALES..q6_k::SCALES + 16];
        for (n, y) in y.chunks_exact_mut(128).enumerate() {
            let ql = &ql[64 * n..64 * n + 64];
            let qh = &qh[32 * n..32 * n + 32];
            let sc = &sc[8 * n..8 * n + 8];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * sc[is] as i8 as f32 * q1 as f32;
                y[l + 32] = d * sc[is + 2] as i8 as f32 * q2 as f32;
                y[l + 64] = d * sc[is + 4] as i8 as f32 * q3 as f32;
                y[l + 96] = d * sc[is + 6] as i8 as f32 * q4 as f32;
            }
        }
    }
}
