//! Scalar dot products of a K-quant row with Q8_K activations, transcribed from ggml's
//! generic `ggml_vec_dot_q{2,3,4,5,6}_K_q8_K` (ggml-cpu/quants.c): integer sums per
//! super-block, then the same `f32` accumulation (including the 8-lane `sums` array of the
//! Q3_K ... Q6_K versions). These are the test oracles of the SIMD versions.
//!
//! Each takes a row of whole super-blocks and one [`BlockQ8K`] per super-block; with
//! mismatched lengths only the common prefix of blocks is used.

use super::layout::{f16_at, q2_k, q3_k, q4_k, q5_k, q6_k, scales_mins_k4, scales_q3_k};
use super::{BlockQ8K, QK_K};

/// Σ row·act for a Q2_K row.
pub fn vec_dot_q2_k_q8_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in row.chunks_exact(q2_k::BYTES).zip(act) {
        let (isum, summs) = q2_k_block_ints(x, y);
        let dall = y.d * f16_at(x, q2_k::D);
        let dmin = y.d * f16_at(x, q2_k::DMIN);
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

/// Adds Σ_j scale_j · Σ_l q8·a over the 16-value sub-blocks of one super-block into the 8
/// lanes of `aux32`, as the generic ggml code does (lane = position mod 8).
#[inline]
fn accumulate_16(aux32: &mut [i32; 8], scales: impl Iterator<Item = i32>, q8: &[i8], a: &[i8]) {
    for ((scale, q8), a) in scales.zip(q8.chunks_exact(16)).zip(a.chunks_exact(16)) {
        for (q8, a) in q8.chunks_exact(8).zip(a.chunks_exact(8)) {
            for l in 0..8 {
                let aux16 = (q8[l] as i16 * a[l] as i16) as i32;
                aux32[l] += scale * aux16;
            }
        }
    }
}

/// Q3_K values of one block as signed integers −4..3 in storage order.
fn q3_k_values(x: &[u8]) -> [i8; QK_K] {
    let mut aux8 = [0i8; QK_K];
    let hm = &x[q3_k::HMASK..q3_k::HMASK + 32];
    let mut m: u8 = 1;
    let mut a = aux8.chunks_exact_mut(32);
    for q3 in x[q3_k::QS..q3_k::QS + 64].chunks_exact(32) {
        for shift in [0, 2, 4, 6] {
            if let Some(a) = a.next() {
                for ((a, &q), &h) in a.iter_mut().zip(q3).zip(hm) {
                    *a = ((q >> shift) & 3) as i8 - if h & m != 0 { 0 } else { 4 };
                }
            }
            m <<= 1;
        }
    }
    aux8
}

/// Σ row·act for a Q3_K row.
pub fn vec_dot_q3_k_q8_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let mut sums = [0f32; 8];
    for (x, y) in row.chunks_exact(q3_k::BYTES).zip(act) {
        let aux8 = q3_k_values(x);
        let scales = scales_q3_k(&x[q3_k::SCALES..q3_k::SCALES + 12]);
        let mut aux32 = [0i32; 8];
        accumulate_16(
            &mut aux32,
            scales.iter().map(|&s| s as i32 - 32),
            &y.qs,
            &aux8,
        );
        let d = f16_at(x, q3_k::D) * y.d;
        for (s, &a) in sums.iter_mut().zip(&aux32) {
            *s += d * a as f32;
        }
    }
    sums.iter().fold(0f32, |acc, &s| acc + s)
}

/// Adds Σ_j scale_j · Σ_l q8·a over the 32-value sub-blocks of one Q4_K / Q5_K super-block
/// into the 8 lanes of `aux32`.
#[inline]
fn accumulate_32(aux32: &mut [i32; 8], scales: &[u8; 8], q8: &[i8], a: &[i8]) {
    for ((&scale, q8), a) in scales
        .iter()
        .zip(q8.chunks_exact(32))
        .zip(a.chunks_exact(32))
    {
        for (q8, a) in q8.chunks_exact(8).zip(a.chunks_exact(8)) {
            for l in 0..8 {
                let aux16 = (q8[l] as i16 * a[l] as i16) as i32;
                aux32[l] += scale as i32 * aux16;
            }
        }
    }
}

/// Σ_j bsums_j · mins_{j/2}: the min correction of a Q4_K / Q5_K super-block.
#[inline]
fn mins_sum(y: &BlockQ8K, mins: &[u8; 8]) -> i32 {
    y.bsums
        .iter()
        .enumerate()
        .map(|(j, &b)| b as i32 * mins[j / 2] as i32)
        .sum()
}

/// Σ row·act for a Q4_K row.
pub fn vec_dot_q4_k_q8_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let mut sums = [0f32; 8];
    let mut sumf = 0f32;
    for (x, y) in row.chunks_exact(q4_k::BYTES).zip(act) {
        let mut aux8 = [0i8; QK_K];
        let qs = &x[q4_k::QS..q4_k::QS + 128];
        for (a, q4) in aux8.chunks_exact_mut(64).zip(qs.chunks_exact(32)) {
            let (lo, hi) = a.split_at_mut(32);
            for ((l, h), &q) in lo.iter_mut().zip(hi).zip(q4) {
                *l = (q & 0xF) as i8;
                *h = (q >> 4) as i8;
            }
        }
        let (scales, mins) = scales_mins_k4(&x[q4_k::SCALES..q4_k::SCALES + 12]);
        let sumi = mins_sum(y, &mins);
        let mut aux32 = [0i32; 8];
        accumulate_32(&mut aux32, &scales, &y.qs, &aux8);
        let d = f16_at(x, q4_k::D) * y.d;
        for (s, &a) in sums.iter_mut().zip(&aux32) {
            *s += d * a as f32;
        }
        let dmin = f16_at(x, q4_k::DMIN) * y.d;
        sumf -= dmin * sumi as f32;
    }
    sums.iter().fold(sumf, |acc, &s| acc + s)
}

/// Σ row·act for a Q5_K row.
pub fn vec_dot_q5_k_q8_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let mut sums = [0f32; 8];
    let mut sumf = 0f32;
    for (x, y) in row.chunks_exact(q5_k::BYTES).zip(act) {
        let mut aux8 = [0i8; QK_K];
        let qs = &x[q5_k::QS..q5_k::QS + 128];
        let hm = &x[q5_k::QH..q5_k::QH + 32];
        let mut m: u8 = 1;
        for (a, q4) in aux8.chunks_exact_mut(64).zip(qs.chunks_exact(32)) {
            let (lo, hi) = a.split_at_mut(32);
            for ((l, &q), &h) in lo.iter_mut().zip(q4).zip(hm) {
                *l = (q & 0xF) as i8 + if h & m != 0 { 16 } else { 0 };
            }
            m <<= 1;
            for ((h_out, &q), &h) in hi.iter_mut().zip(q4).zip(hm) {
                *h_out = (q >> 4) as i8 + if h & m != 0 { 16 } else { 0 };
            }
            m <<= 1;
        }
        let (scales, mins) = scales_mins_k4(&x[q5_k::SCALES..q5_k::SCALES + 12]);
        let sumi = mins_sum(y, &mins);
        let mut aux32 = [0i32; 8];
        accumulate_32(&mut aux32, &scales, &y.qs, &aux8);
        let d = f16_at(x, q5_k::D) * y.d;
        for (s, &a) in sums.iter_mut().zip(&aux32) {
            *s += d * a as f32;
        }
        let dmin = f16_at(x, q5_k::DMIN) * y.d;
        sumf -= dmin * sumi as f32;
    }
    sums.iter().fold(sumf, |acc, &s| acc + s)
}

/// Q6_K values of one block as signed integers −32..31 in storage order.
fn q6_k_values(x: &[u8]) -> [i8; QK_K] {
    let mut aux8 = [0i8; QK_K];
    let ql = &x[q6_k::QL..q6_k::QL + 128];
    let qh = &x[q6_k::QH..q6_k::QH + 64];
    for ((a, q4), qh) in aux8
        .chunks_exact_mut(128)
        .zip(ql.chunks_exact(64))
        .zip(qh.chunks_exact(32))
    {
        for l in 0..32 {
            a[l] = ((q4[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            a[l + 32] = ((q4[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            a[l + 64] = ((q4[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            a[l + 96] = ((q4[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    aux8
}

/// Σ row·act for a Q6_K row.
pub fn vec_dot_q6_k_q8_k(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let mut sums = [0f32; 8];
    for (x, y) in row.chunks_exact(q6_k::BYTES).zip(act) {
        let aux8 = q6_k_values(x);
        let scales = &x[q6_k::SCALES..q6_k::SCALES + 16];
        let mut aux32 = [0i32; 8];
        accumulate_16(
            &mut aux32,
            scales.iter().map(|&s| s as i8 as i32),
            &y.qs,
            &aux8,
        );
        let d = f16_at(x, q6_k::D) * y.d;
        for (s, &a) in sums.iter_mut().zip(&aux32) {
            *s += d * a as f32;
        }
    }
    sums.iter().fold(0f32, |acc, &s| acc + s)
}

/// The integer part of one Q4_K block's dot product: (Σ_j sc_j·Σ q·q8, Σ_j bsums_j·m_{j/2}).
/// The SIMD versions must reproduce both exactly.
#[cfg(test)]
pub(crate) fn q4_k_block_ints(x: &[u8], y: &BlockQ8K) -> (i32, i32) {
    let (scales, mins) = scales_mins_k4(&x[q4_k::SCALES..q4_k::SCALES + 12]);
    let mut aux32 = [0i32; 8];
    let mut aux8 = [0i8; QK_K];
    for (a, q4) in aux8
        .chunks_exact_mut(64)
        .zip(x[q4_k::QS..q4_k::QS + 128].chunks_exact(32))
    {
        for l in 0..32 {
            a[l] = (q4[l] & 0xF) as i8;
            a[l + 32] = (q4[l] >> 4) as i8;
        }
    }
    accumulate_32(&mut aux32, &scales, &y.qs, &aux8);
    (aux32.iter().sum(), mins_sum(y, &mins))
}

/// The integer part of one Q5_K block's dot product, as [`q4_k_block_ints`].
#[cfg(test)]
pub(crate) fn q5_k_block_ints(x: &[u8], y: &BlockQ8K) -> (i32, i32) {
    let (scales, mins) = scales_mins_k4(&x[q5_k::SCALES..q5_k::SCALES + 12]);
    let qs = &x[q5_k::QS..q5_k::QS + 128];
    let hm = &x[q5_k::QH..q5_k::QH + 32];
    let mut aux8 = [0i8; QK_K];
    for (j, (a, q4)) in aux8
        .chunks_exact_mut(64)
        .zip(qs.chunks_exact(32))
        .enumerate()
    {
        for l in 0..32 {
            a[l] = (q4[l] & 0xF) as i8 + ((hm[l] >> (2 * j)) & 1) as i8 * 16;
            a[l + 32] = (q4[l] >> 4) as i8 + ((hm[l] >> (2 * j + 1)) & 1) as i8 * 16;
        }
    }
    let mut aux32 = [0i32; 8];
    accumulate_32(&mut aux32, &scales, &y.qs, &aux8);
    (aux32.iter().sum(), mins_sum(y, &mins))
}

/// The integer part of one Q6_K block's dot product: Σ_j sc_j·Σ (q − 32)·q8.
#[cfg(test)]
pub(crate) fn q6_k_block_int(x: &[u8], y: &BlockQ8K) -> i32 {
    let aux8 = q6_k_values(x);
    let scales = &x[q6_k::SCALES..q6_k::SCALES + 16];
    let mut aux32 = [0i32; 8];
    accumulate_16(
        &mut aux32,
        scales.iter().map(|&s| s as i8 as i32),
        &y.qs,
        &aux8,
    );
    aux32.iter().sum()
}

/// The integer parts of one Q2_K block's dot product, as ggml sums them: (Σ_j sc_j·Σ q·q8,
/// Σ_j bsums_j·m_j).
pub(crate) fn q2_k_block_ints(x: &[u8], y: &BlockQ8K) -> (i32, i32) {
    let sc = &x[q2_k::SCALES..q2_k::SCALES + 16];
    let summs: i32 = y
        .bsums
        .iter()
        .zip(sc)
        .map(|(&b, &s)| b as i32 * (s >> 4) as i32)
        .sum();
    let mut isum = 0i32;
    let mut is = 0;
    for q2 in x[q2_k::QS..q2_k::QS + 64].chunks_exact(32) {
        for shift in [0, 2, 4, 6] {
            for half in q2.chunks_exact(16) {
                let d = (sc[is] & 0xF) as i32;
                let q8 = &y.qs[16 * is..16 * is + 16];
                is += 1;
                let isuml: i32 = q8
                    .iter()
                    .zip(half)
                    .map(|(&a, &q)| a as i32 * ((q >> shift) & 3) as i32)
                    .sum();
                isum += d * isuml;
            }
        }
    }
    (isum, summs)
}

/// The integer part of one Q3_K block's dot product: Σ_j (sc_j − 32)·Σ q·q8.
#[cfg(test)]
pub(crate) fn q3_k_block_int(x: &[u8], y: &BlockQ8K) -> i32 {
    let aux8 = q3_k_values(x);
    let scales = scales_q3_k(&x[q3_k::SCALES..q3_k::SCALES + 12]);
    let mut aux32 = [0i32; 8];
    accumulate_16(
        &mut aux32,
        scales.iter().map(|&s| s as i32 - 32),
        &y.qs,
        &aux8,
    );
    aux32.iter().sum()
}
