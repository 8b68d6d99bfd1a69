//! One form for every K-quant super-block, read by the SIMD dot kernels (`avx2.rs`,
//! `avx512.rs`): 256 unsigned values in order, one scale and one min per 16 values, an offset.
//!
//! Value `i` of sub-block `j = i / 16` decodes to `d · sc_j · (u_i − k) − dmin · mn_j`:
//!
//! | type | `u` | `sc_j` | `k` | `mn_j` |
//! |---|---|---|---|---|
//! | Q2_K | 2-bit q | low nibble of scale byte j | 0 | its high nibble |
//! | Q3_K | 2-bit q + 4 · mask bit | 6-bit scale − 32 | 4 | 0 |
//! | Q4_K | 4-bit q | 6-bit scale of 32 values `j / 2` | 0 | 6-bit min `j / 2` |
//! | Q5_K | 4-bit q + 16 · fifth bit | as Q4_K | 0 | as Q4_K |
//! | Q6_K | 6-bit q | i8 scale | 32 | 0 |
//!
//! So against a Q8_K block `a` the dot product is `d · a.d · S − dmin · a.d · M`, with the exact
//! integers `S = Σ_j sc_j · (Σ_{i∈j} u_i · a_i − k · bsums_j)` and `M = Σ_j mn_j · bsums_j`,
//! the same integers ggml's dot products compute (tested against them in `tests.rs`).

use super::layout::{f16_at, q2_k, q3_k, q4_k, q5_k, q6_k, scales_mins_k4, scales_q3_k};
use super::BlockQ8K;
use super::QK_K;
use crate::WeightType;

/// One super-block in the common form.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
pub(crate) struct Unpacked {
    /// Unsigned values (at most 63), in order.
    pub u: [u8; QK_K],
    /// Scale of each 16 values.
    pub sc: [i8; 16],
    /// `k · sc_j`: the offset's correction per 16 values.
    pub sck: [i16; 16],
    /// Min of each 16 values (0 for types without mins).
    pub mn: [i16; 16],
    pub d: f32,
    pub dmin: f32,
}

impl Default for Unpacked {
    fn default() -> Unpacked {
        Unpacked::ZERO
    }
}

impl Unpacked {
    pub(crate) const ZERO: Unpacked = Unpacked {
        u: [0; QK_K],
        sc: [0; 16],
        sck: [0; 16],
        mn: [0; 16],
        d: 0.0,
        dmin: 0.0,
    };
}

/// The offset `k` of `ty`'s unsigned values.
pub(crate) fn offset(ty: WeightType) -> i16 {
    match ty {
        WeightType::Q3_K => 4,
        WeightType::Q6_K => 32,
        _ => 0,
    }
}

/// Scalar twin of the SIMD unpackers: one block `x` of `ty` into `out`.
pub(crate) fn unpack_scalar(ty: WeightType, x: &[u8], out: &mut Unpacked) {
    let k = offset(ty);
    match ty {
        WeightType::Q2_K => {
            let sc = &x[q2_k::SCALES..q2_k::SCALES + 16];
            for ((o, m), &b) in out.sc.iter_mut().zip(&mut out.mn).zip(sc) {
                *o = (b & 0xF) as i8;
                *m = (b >> 4) as i16;
            }
            for (c, q2) in x[q2_k::QS..q2_k::QS + 64].chunks_exact(32).enumerate() {
                for s in 0..4 {
                    for (i, &q) in q2.iter().enumerate() {
                        out.u[128 * c + 32 * s + i] = (q >> (2 * s)) & 3;
                    }
                }
            }
            out.d = f16_at(x, q2_k::D);
            out.dmin = f16_at(x, q2_k::DMIN);
        }
        WeightType::Q3_K => {
            let sc = scales_q3_k(&x[q3_k::SCALES..q3_k::SCALES + 12]);
            for (o, &b) in out.sc.iter_mut().zip(&sc) {
                *o = b - 32;
            }
            out.mn = [0; 16];
            let hm = &x[q3_k::HMASK..q3_k::HMASK + 32];
            for (c, q3) in x[q3_k::QS..q3_k::QS + 64].chunks_exact(32).enumerate() {
                for s in 0..4 {
                    for (i, (&q, &h)) in q3.iter().zip(hm).enumerate() {
                        let high = (h >> (4 * c + s)) & 1;
                        out.u[128 * c + 32 * s + i] = ((q >> (2 * s)) & 3) | (high << 2);
                    }
                }
            }
            out.d = f16_at(x, q3_k::D);
            out.dmin = 0.0;
        }
        WeightType::Q4_K | WeightType::Q5_K => {
            let (scales_at, qs_at) = if ty == WeightType::Q4_K {
                (q4_k::SCALES, q4_k::QS)
            } else {
                (q5_k::SCALES, q5_k::QS)
            };
            let (scales, mins) = scales_mins_k4(&x[scales_at..scales_at + 12]);
            for j in 0..16 {
                out.sc[j] = scales[j / 2] as i8;
                out.mn[j] = mins[j / 2] as i16;
            }
            for (c, q4) in x[qs_at..qs_at + 128].chunks_exact(32).enumerate() {
                for (i, &q) in q4.iter().enumerate() {
                    let (mut lo, mut hi) = (q & 0xF, q >> 4);
                    if ty == WeightType::Q5_K {
                        let h = x[q5_k::QH + i];
                        lo |= ((h >> (2 * c)) & 1) << 4;
                        hi |= ((h >> (2 * c + 1)) & 1) << 4;
                    }
                    out.u[64 * c + i] = lo;
                    out.u[64 * c + 32 + i] = hi;
                }
            }
            out.d = f16_at(x, q4_k::D);
            out.dmin = f16_at(x, q4_k::DMIN);
        }
        WeightType::Q6_K => {
            let sc = &x[q6_k::SCALES..q6_k::SCALES + 16];
            for (o, &b) in out.sc.iter_mut().zip(sc) {
                *o = b as i8;
            }
            out.mn = [0; 16];
            let (ql, qh) = (&x[q6_k::QL..q6_k::QL + 128], &x[q6_k::QH..q6_k::QH + 64]);
            for c in 0..2 {
                let (ql, qh, u) = (&ql[64 * c..], &qh[32 * c..], &mut out.u[128 * c..]);
                for i in 0..32 {
                    u[i] = (ql[i] & 0xF) | ((qh[i] & 3) << 4);
                    u[i + 32] = (ql[i + 32] & 0xF) | (((qh[i] >> 2) & 3) << 4);
                    u[i + 64] = (ql[i] >> 4) | (((qh[i] >> 4) & 3) << 4);
                    u[i + 96] = (ql[i + 32] >> 4) | (((qh[i] >> 6) & 3) << 4);
                }
            }
            out.d = f16_at(x, q6_k::D);
            out.dmin = 0.0;
        }
        _ => panic!("not a K-quant type: {ty:?}"),
    }
    for j in 0..16 {
        out.sck[j] = k * out.sc[j] as i16;
    }
}

/// The exact integers `(S, M)` of one unpacked block against one Q8_K block (the tests' oracle
/// of the SIMD block sums, and the repacked rows' scalar twin, `x16::dot_block_scalar`).
pub(crate) fn block_ints_scalar(w: &Unpacked, a: &BlockQ8K) -> (i32, i32) {
    let (mut s, mut m) = (0i32, 0i32);
    for j in 0..16 {
        let dot: i32 = (16 * j..16 * j + 16)
            .map(|i| w.u[i] as i32 * a.qs[i] as i32)
            .sum();
        s += w.sc[j] as i32 * dot - w.sck[j] as i32 * a.bsums[j] as i32;
        m += w.mn[j] as i32 * a.bsums[j] as i32;
    }
    (s, m)
}
