//! [`WeightType::Q2_Kx16`] ... [`WeightType::Q6_Kx16`]: K-quant matrices repacked at load time
//! for the decode kernels (`avx512_x16.rs`, `avx2_x16.rs` beside this file). Q4_K first:
//!
//! A stored Q4_K super-block changes scale every 32 values, and its low and high nibbles
//! belong to different sub-blocks, so a row kernel over stored rows spends about 45 vector
//! instructions on each 144-byte block (nibbles put in order, scales spread to lanes and
//! multiplied pair by pair): on one core, slower than memory delivers the bytes. Repacked, the
//! rows go sixteen side by side, one per 32-bit lane, and every instruction works on sixteen
//! rows at once. A matrix is a run of groups of 16 rows; a group is a run of super-blocks of
//! all 16 rows, [`GROUP_BLOCK`] = 2304 bytes each (exactly the 16 stored blocks' bytes):
//!
//! - `D..D + 32`, `DMIN..DMIN + 32`: the rows' f16 `d` and `dmin`, row `l` at `2l`;
//! - `SCALES + 64·w + 4·l`: word `w` (0..3) of row `l`'s 12 packed scale bytes;
//! - `QS + 64·(4j + q) + 4·l + k` (sub-block `j` of 32 values, `q` and `k` in `0..4`): low
//!   nibble value `4q + k`, high nibble value `16 + 4q + k` of row `l`'s sub-block `j`.
//!
//! So a 64-byte load holds four values of one sub-block for each of 16 rows, all of them
//! against the same four activation bytes (broadcast to every lane): `vpdpbusd` leaves each
//! row's sub-block sum in its own lane, one multiply scales sixteen rows, and the scales are
//! unpacked sixteen rows at a time with ggml's word trick.
//!
//! Arithmetic, identical in the AVX-512 kernel and its twin [`dot_block_scalar`]: per row and
//! super-block the exact integers `S = Σ_j sc_j · Σ u·a` and `M = Σ_j mn_j · Σ_{i∈j} a` (the
//! ones `unpack.rs` names), then `acc = fma(S, d·d_a, acc)` and `acc = fma(−M, dmin·d_a, acc)`,
//! super-blocks in order. The stored row kernels split `S` over lanes and sum them at the end,
//! so the two layouts agree within rounding; the tile path (prefill) unpacks repacked rows
//! back into stored blocks and gives the stored results bit for bit.
//!
//! Q5_K ([`q5`], [`WeightType::Q5_Kx16`]) as Q4_K with the fifth bits in runs of their own.
//!
//! Q6_K the same way ([`q6`]): 16 rows side by side, each super-block 3360 bytes (the 16
//! stored blocks' bytes): the f16 `d`, the i8 scales of each 16 values for 16 rows, then per 16
//! values two runs of 64 bytes of low nibbles and one of high bit pairs. Its `S` includes the
//! offset (`Σ_j sc_j · (Σ u·a − 32·Σ a)`), and it has no `M`.
//!
//! Q2_K and Q3_K ([`q2`], [`q3`]) as Q6_K, per block of 16 values of 16 rows one 64-byte run
//! of the values' low two bits (four values of every row in each byte: a shift and a mask per
//! vector); Q2_K's scale bytes as stored, with its `d` and `dmin` where Q4_K has them; Q3_K's
//! packed scale words as Q4_K's and its high bits in runs of their own, a run per two blocks.
//! Q2_K's `S` and `M` as Q4_K's; Q3_K's `S` includes the offset (`Σ_j sc_j · (Σ u·a − 4·Σ a)`).
//!
//! Matrices whose row count is not a multiple of 16 keep their stored layout
//! ([`crate::repacked_type`]).

use super::layout::{f16_at, q4_k, q6_k};
use super::{BlockQ8K, QK_K};
use crate::{WeightType, WeightView};

/// Rows per group.
pub(crate) const ROWS: usize = 16;

/// Bytes of one super-block of a group's 16 rows of repacked `ty`.
pub(crate) fn group_block(ty: WeightType) -> usize {
    ROWS * ty.stored().block_bytes()
}

/// The Q4_K layout (see the module documentation).
pub(crate) mod q4 {
    use super::*;

    /// Bytes of one group block.
    pub(crate) const GROUP_BLOCK: usize = ROWS * q4_k::BYTES;
    /// Where the rows' f16 `d` start in a group block.
    pub(crate) const D: usize = 0;
    /// Where the rows' f16 `dmin` start.
    pub(crate) const DMIN: usize = 2 * ROWS;
    /// Where the rows' packed scale words start (three runs of 16 words).
    pub(crate) const SCALES: usize = 4 * ROWS;
    /// Where the nibbles start (32 runs of 64 bytes).
    pub(crate) const QS: usize = SCALES + 12 * ROWS;

    /// Repacks the 16 stored blocks `block(l)` (row `l` of a group, one super-block) into
    /// `out`.
    pub(super) fn repack_block<'a>(block: impl Fn(usize) -> &'a [u8], out: &mut [u8]) {
        assert_eq!(out.len(), GROUP_BLOCK);
        repack_parts(block, out, q4_k::BYTES, q4_k::QS, QS);
    }

    /// The parts Q4_K and Q5_K share: `d`, `dmin`, the scales and the nibbles (stored at
    /// `from_qs` of blocks of `bytes`, put at `to_qs`).
    pub(super) fn repack_parts<'a>(
        block: impl Fn(usize) -> &'a [u8],
        out: &mut [u8],
        bytes: usize,
        from_qs: usize,
        to_qs: usize,
    ) {
        for l in 0..ROWS {
            let x = &block(l)[..bytes];
            out[D + 2 * l..D + 2 * l + 2].copy_from_slice(&x[q4_k::D..q4_k::D + 2]);
            out[DMIN + 2 * l..DMIN + 2 * l + 2].copy_from_slice(&x[q4_k::DMIN..q4_k::DMIN + 2]);
            for w in 0..3 {
                let at = SCALES + 64 * w + 4 * l;
                let from = q4_k::SCALES + 4 * w;
                out[at..at + 4].copy_from_slice(&x[from..from + 4]);
            }
            // Stored byte 32c + i holds value i of sub-block 2c (low nibble) and of 2c + 1
            // (high); four bytes at a time.
            for c in 0..4 {
                for q in 0..4 {
                    let at = from_qs + 32 * c + 4 * q;
                    let (first, second) = (word_at(x, at), word_at(x, at + 16));
                    let even = (first & LOW) | (second & LOW) << 4;
                    let odd = (first >> 4 & LOW) | (second >> 4 & LOW) << 4;
                    for (j, w) in [(2 * c, even), (2 * c + 1, odd)] {
                        let to = to_qs + 64 * (4 * j + q) + 4 * l;
                        out[to..to + 4].copy_from_slice(&w.to_le_bytes());
                    }
                }
            }
        }
    }

    /// Row `l`'s stored block out of the group block `gb` into `x`: the inverse of
    /// [`repack_block`].
    pub(super) fn stored_block(gb: &[u8], l: usize, x: &mut [u8]) {
        assert!(gb.len() >= GROUP_BLOCK && l < ROWS && x.len() == q4_k::BYTES);
        stored_parts(gb, l, x, q4_k::QS, QS);
    }

    /// The inverse of [`repack_parts`] for row `l`.
    pub(super) fn stored_parts(gb: &[u8], l: usize, x: &mut [u8], to_qs: usize, from_qs: usize) {
        x[q4_k::D..q4_k::D + 2].copy_from_slice(&gb[D + 2 * l..D + 2 * l + 2]);
        x[q4_k::DMIN..q4_k::DMIN + 2].copy_from_slice(&gb[DMIN + 2 * l..DMIN + 2 * l + 2]);
        for w in 0..3 {
            let at = SCALES + 64 * w + 4 * l;
            x[q4_k::SCALES + 4 * w..q4_k::SCALES + 4 * w + 4].copy_from_slice(&gb[at..at + 4]);
        }
        let word = |j: usize, q: usize| word_at(gb, from_qs + 64 * (4 * j + q) + 4 * l);
        // Stored byte 32c + i holds value i of sub-block 2c (low nibble) and of 2c + 1 (high).
        for c in 0..4 {
            for q in 0..4 {
                let (even, odd) = (word(2 * c, q), word(2 * c + 1, q));
                let first = (even & LOW) | (odd & LOW) << 4;
                let second = (even >> 4 & LOW) | (odd >> 4 & LOW) << 4;
                let at = to_qs + 32 * c + 4 * q;
                x[at..at + 4].copy_from_slice(&first.to_le_bytes());
                x[at + 16..at + 20].copy_from_slice(&second.to_le_bytes());
            }
        }
    }
}

/// The Q5_K layout: Q4_K's (`q4::D`, `q4::DMIN`, `q4::SCALES`, then the nibbles at [`q5::QS`]) with the
/// fifth bits in runs of their own between the scales and the nibbles:
///
/// - `QH + 64·j + 4·l + k` (sub-block `j` of 32 values): bit `q` (0..4) the fifth bit of
///   value `4q + k`, bit `4 + q` that of value `16 + 4q + k`, of row `l`'s sub-block `j`.
///
/// So the 64-byte nibble run `4j + q` and the fifth-bit run `j` give the 5-bit values of one
/// sub-block's four values for all 16 rows (two shifts and two masks per run).
pub(crate) mod q5 {
    use super::*;
    use crate::kquants::layout::q5_k;

    /// Bytes of one group block.
    pub(crate) const GROUP_BLOCK: usize = ROWS * q5_k::BYTES;
    /// Where the fifth bits start (8 runs of 64 bytes).
    pub(crate) const QH: usize = super::q4::QS;
    /// Where the nibbles start (32 runs of 64 bytes).
    pub(crate) const QS: usize = QH + 8 * 64;

    /// The fifth bit of value `i` (0..32) of sub-block `j` (0..8) of the stored block `x`.
    #[inline]
    fn fifth_bit(x: &[u8], j: usize, i: usize) -> u8 {
        (x[q5_k::QH + i] >> j) & 1
    }

    /// Repacks the 16 stored blocks `block(l)` into `out`.
    pub(super) fn repack_block<'a>(block: impl Fn(usize) -> &'a [u8], out: &mut [u8]) {
        assert_eq!(out.len(), GROUP_BLOCK);
        super::q4::repack_parts(&block, out, q5_k::BYTES, q5_k::QS, QS);
        for l in 0..ROWS {
            let x = &block(l)[..q5_k::BYTES];
            for j in 0..8 {
                for k in 0..4 {
                    out[QH + 64 * j + 4 * l + k] = (0..4).fold(0u8, |b, q| {
                        b | fifth_bit(x, j, 4 * q + k) << q
                            | fifth_bit(x, j, 16 + 4 * q + k) << (4 + q)
                    });
                }
            }
        }
    }

    /// Row `l`'s stored block out of the group block `gb` into `x`: the inverse of
    /// [`repack_block`].
    pub(super) fn stored_block(gb: &[u8], l: usize, x: &mut [u8]) {
        assert!(gb.len() >= GROUP_BLOCK && l < ROWS && x.len() == q5_k::BYTES);
        super::q4::stored_parts(gb, l, x, q5_k::QS, QS);
        x[q5_k::QH..q5_k::QH + 32].fill(0);
        for j in 0..8 {
            for k in 0..4 {
                let b = gb[QH + 64 * j + 4 * l + k];
                for q in 0..4 {
                    x[q5_k::QH + 4 * q + k] |= (b >> q & 1) << j;
                    x[q5_k::QH + 16 + 4 * q + k] |= (b >> (4 + q) & 1) << j;
                }
            }
        }
    }
}

/// The Q6_K layout: per group block of 16 rows,
///
/// - `D + 2·l`: row `l`'s f16 `d`;
/// - `SCALES + 16·g + l`: row `l`'s i8 scale of values `16g..16g + 16`;
/// - `QS + 192·g + 64·v + 4·l + k` (`v` in `0..3`, `k` in `0..4`), for values `16g..16g + 16`
///   of row `l`: `v = 0` low nibble the low 4 bits of value `16g + k`, high nibble of
///   `16g + 4 + k`; `v = 1` the same for `16g + 8 + k` and `16g + 12 + k`; `v = 2` bits
///   `2s, 2s + 1` the high 2 bits of value `16g + 4s + k`.
pub(crate) mod q6 {
    use super::*;

    /// Bytes of one group block.
    pub(crate) const GROUP_BLOCK: usize = ROWS * q6_k::BYTES;
    /// Where the rows' f16 `d` start.
    pub(crate) const D: usize = 0;
    /// Where the scales start (16 runs of 16 rows).
    pub(crate) const SCALES: usize = 2 * ROWS;
    /// Where the values start (16 runs of 192 bytes).
    pub(crate) const QS: usize = SCALES + 16 * ROWS;

    /// Where value `i` of a stored block keeps its low 4 bits (byte of `ql`, shift) and its
    /// high 2 bits (byte of `qh`, shift).
    #[inline]
    fn places(i: usize) -> ((usize, u32), (usize, u32)) {
        let (c, r) = (i / 128, i % 128);
        let (quarter, j) = (r / 32, r % 32);
        let ql = (
            q6_k::QL + 64 * c + j + 32 * (quarter & 1),
            4 * (quarter >> 1) as u32,
        );
        let qh = (q6_k::QH + 32 * c + j, 2 * quarter as u32);
        (ql, qh)
    }

    /// Repacks the 16 stored blocks `block(l)` into `out`.
    pub(super) fn repack_block<'a>(block: impl Fn(usize) -> &'a [u8], out: &mut [u8]) {
        assert_eq!(out.len(), GROUP_BLOCK);
        for l in 0..ROWS {
            let x = &block(l)[..q6_k::BYTES];
            out[D + 2 * l..D + 2 * l + 2].copy_from_slice(&x[q6_k::D..q6_k::D + 2]);
            for g in 0..16 {
                out[SCALES + 16 * g + l] = x[q6_k::SCALES + g];
                // Values 16g..16g + 16: 16 consecutive bytes of `ql` (one nibble of each) and
                // of `qh` (one bit pair of each), four at a time.
                let ((ql, ls), (qh, hs)) = places(16 * g);
                let low = |s: usize| word_at(x, ql + 4 * s) >> ls & LOW;
                let high = |s: usize| word_at(x, qh + 4 * s) >> hs & 0x0303_0303;
                let n0 = low(0) | low(1) << 4;
                let n1 = low(2) | low(3) << 4;
                let h = high(0) | high(1) << 2 | high(2) << 4 | high(3) << 6;
                let at = QS + 192 * g + 4 * l;
                for (v, w) in [n0, n1, h].into_iter().enumerate() {
                    out[at + 64 * v..at + 64 * v + 4].copy_from_slice(&w.to_le_bytes());
                }
            }
        }
    }

    /// Row `l`'s stored block out of the group block `gb` into `x`: the inverse of
    /// [`repack_block`].
    pub(super) fn stored_block(gb: &[u8], l: usize, x: &mut [u8]) {
        assert!(gb.len() >= GROUP_BLOCK && l < ROWS && x.len() == q6_k::BYTES);
        x[q6_k::D..q6_k::D + 2].copy_from_slice(&gb[D + 2 * l..D + 2 * l + 2]);
        x[q6_k::QL..q6_k::SCALES].fill(0);
        for g in 0..16 {
            x[q6_k::SCALES + g] = gb[SCALES + 16 * g + l];
            let at = QS + 192 * g + 4 * l;
            let (n0, n1, h) = (word_at(gb, at), word_at(gb, at + 64), word_at(gb, at + 128));
            // Values 16g..16g + 16 share one quarter of one half: their low bits go to 16
            // consecutive bytes of `ql` (one nibble of each), their high bits to 16 of `qh`.
            let ((ql, ls), (qh, hs)) = places(16 * g);
            for s in 0..4 {
                let n = [n0, n1][s / 2];
                let low = (if s % 2 == 0 { n } else { n >> 4 }) & LOW;
                let high = h >> (2 * s) & 0x0303_0303;
                let (a, b) = (ql + 4 * s, qh + 4 * s);
                let put = |x: &mut [u8], at: usize, v: u32| {
                    let old = word_at(x, at);
                    x[at..at + 4].copy_from_slice(&(old | v).to_le_bytes());
                };
                put(x, a, low << ls);
                put(x, b, high << hs);
            }
        }
    }
}

/// The Q2_K layout: per group block of 16 rows,
///
/// - `D + 2·l`, `DMIN + 2·l`: row `l`'s f16 `d` and `dmin`;
/// - `SCALES + 64·w + 4·l + k`: row `l`'s stored scale byte `4w + k` (scale of values
///   `16(4w + k)..` in its low nibble, min in its high nibble);
/// - `QS + 64·g + 4·l + k` (`g` in `0..16`, `k` in `0..4`): bits `2s, 2s + 1` the value
///   `16g + 4s + k` of row `l` (`s` in `0..4`).
///
/// So one 64-byte load holds 16 values of one block of 16 for all 16 rows, and a shift and an
/// AND give each of the four vectors the dot products take.
pub(crate) mod q2 {
    use super::*;
    use crate::kquants::layout::q2_k;

    /// Bytes of one group block.
    pub(crate) const GROUP_BLOCK: usize = ROWS * q2_k::BYTES;
    /// Where the rows' f16 `d` start.
    pub(crate) const D: usize = 0;
    /// Where the rows' f16 `dmin` start.
    pub(crate) const DMIN: usize = 2 * ROWS;
    /// Where the scale bytes start (four runs of 16 words).
    pub(crate) const SCALES: usize = 4 * ROWS;
    /// Where the values start (16 runs of 64 bytes).
    pub(crate) const QS: usize = SCALES + 16 * ROWS;

    /// Repacks the 16 stored blocks `block(l)` into `out`.
    pub(super) fn repack_block<'a>(block: impl Fn(usize) -> &'a [u8], out: &mut [u8]) {
        assert_eq!(out.len(), GROUP_BLOCK);
        for l in 0..ROWS {
            let x = &block(l)[..q2_k::BYTES];
            out[D + 2 * l..D + 2 * l + 2].copy_from_slice(&x[q2_k::D..q2_k::D + 2]);
            out[DMIN + 2 * l..DMIN + 2 * l + 2].copy_from_slice(&x[q2_k::DMIN..q2_k::DMIN + 2]);
            for w in 0..4 {
                let (at, from) = (SCALES + 64 * w + 4 * l, q2_k::SCALES + 4 * w);
                out[at..at + 4].copy_from_slice(&x[from..from + 4]);
            }
            for g in 0..16 {
                let w = two_bit_word(x, q2_k::QS, g);
                let at = QS + 64 * g + 4 * l;
                out[at..at + 4].copy_from_slice(&w.to_le_bytes());
            }
        }
    }

    /// Row `l`'s stored block out of the group block `gb` into `x`: the inverse of
    /// [`repack_block`].
    pub(super) fn stored_block(gb: &[u8], l: usize, x: &mut [u8]) {
        assert!(gb.len() >= GROUP_BLOCK && l < ROWS && x.len() == q2_k::BYTES);
        x[q2_k::D..q2_k::D + 2].copy_from_slice(&gb[D + 2 * l..D + 2 * l + 2]);
        x[q2_k::DMIN..q2_k::DMIN + 2].copy_from_slice(&gb[DMIN + 2 * l..DMIN + 2 * l + 2]);
        for w in 0..4 {
            let (at, to) = (SCALES + 64 * w + 4 * l, q2_k::SCALES + 4 * w);
            x[to..to + 4].copy_from_slice(&gb[at..at + 4]);
        }
        x[q2_k::QS..q2_k::QS + 64].fill(0);
        for g in 0..16 {
            put_two_bit_word(x, q2_k::QS, g, word_at(gb, QS + 64 * g + 4 * l));
        }
    }
}

/// The Q3_K layout: per group block of 16 rows,
///
/// - `D + 2·l`: row `l`'s f16 `d`;
/// - `SCALES + 64·w + 4·l`: word `w` (0..3) of row `l`'s 12 packed scale bytes;
/// - `HM + 64·p + 4·l + k` (`p` in `0..8`): bit `4h + s` the high bit of value
///   `16(2p + h) + 4s + k` of row `l` (`h` in `0..2`, `s` in `0..4`);
/// - `QS + 64·g + 4·l + k`: the low two bits of the values, as Q2_K's (`q2::QS`).
///
/// So a block of 16 values of 16 rows is one 64-byte run of low bits and half a run of high
/// bits: a shift and a mask each, joined, for each of the four vectors.
pub(crate) mod q3 {
    use super::*;
    use crate::kquants::layout::q3_k;

    /// Bytes of one group block.
    pub(crate) const GROUP_BLOCK: usize = ROWS * q3_k::BYTES;
    /// Where the rows' f16 `d` start.
    pub(crate) const D: usize = 0;
    /// Where the packed scale words start (three runs of 16 words).
    pub(crate) const SCALES: usize = 2 * ROWS;
    /// Where the high bits start (8 runs of 64 bytes).
    pub(crate) const HM: usize = SCALES + 12 * ROWS;
    /// Where the low two bits start (16 runs of 64 bytes).
    pub(crate) const QS: usize = HM + 8 * 64;

    /// Repacks the 16 stored blocks `block(l)` into `out`.
    pub(super) fn repack_block<'a>(block: impl Fn(usize) -> &'a [u8], out: &mut [u8]) {
        assert_eq!(out.len(), GROUP_BLOCK);
        for l in 0..ROWS {
            let x = &block(l)[..q3_k::BYTES];
            out[D + 2 * l..D + 2 * l + 2].copy_from_slice(&x[q3_k::D..q3_k::D + 2]);
            for w in 0..3 {
                let (at, from) = (SCALES + 64 * w + 4 * l, q3_k::SCALES + 4 * w);
                out[at..at + 4].copy_from_slice(&x[from..from + 4]);
            }
            for g in 0..16 {
                let w = two_bit_word(x, q3_k::QS, g);
                let at = QS + 64 * g + 4 * l;
                out[at..at + 4].copy_from_slice(&w.to_le_bytes());
            }
            // Value 16g + 4s + k keeps its high bit in bit g / 2 of mask byte
            // 16 (g % 2) + 4s + k.
            for p in 0..8 {
                let mut w = 0u32;
                for h in 0..2 {
                    for s in 0..4 {
                        let m = word_at(x, q3_k::HMASK + 16 * h + 4 * s);
                        w |= (m >> p & ONES) << (4 * h + s);
                    }
                }
                let at = HM + 64 * p + 4 * l;
                out[at..at + 4].copy_from_slice(&w.to_le_bytes());
            }
        }
    }

    /// Row `l`'s stored block out of the group block `gb` into `x`: the inverse of
    /// [`repack_block`].
    pub(super) fn stored_block(gb: &[u8], l: usize, x: &mut [u8]) {
        assert!(gb.len() >= GROUP_BLOCK && l < ROWS && x.len() == q3_k::BYTES);
        x[q3_k::D..q3_k::D + 2].copy_from_slice(&gb[D + 2 * l..D + 2 * l + 2]);
        for w in 0..3 {
            let (at, to) = (SCALES + 64 * w + 4 * l, q3_k::SCALES + 4 * w);
            x[to..to + 4].copy_from_slice(&gb[at..at + 4]);
        }
        x[q3_k::HMASK..q3_k::SCALES].fill(0);
        for g in 0..16 {
            put_two_bit_word(x, q3_k::QS, g, word_at(gb, QS + 64 * g + 4 * l));
        }
        for p in 0..8 {
            let w = word_at(gb, HM + 64 * p + 4 * l);
            for h in 0..2 {
                for s in 0..4 {
                    let at = q3_k::HMASK + 16 * h + 4 * s;
                    let m = word_at(x, at) | (w >> (4 * h + s) & ONES) << p;
                    x[at..at + 4].copy_from_slice(&m.to_le_bytes());
                }
            }
        }
    }
}

// [`dot_block_scalar`] reads Q2_Kx16's `d` and `dmin` as Q4_Kx16's, Q3_Kx16's `d` as Q6_Kx16's;
// the Q2_K / Q3_K kernels read both types' `d` at `q2::D`.
const _: () = assert!(q2::D == q4::D && q2::DMIN == q4::DMIN && q3::D == q6::D && q3::D == q2::D);

/// Group-block bytes and where the runs of low bits start, of Q3_Kx16 (`Q3`) or Q2_Kx16.
pub(crate) const fn low_bits_shape<const Q3: bool>() -> (usize, usize) {
    if Q3 {
        (q3::GROUP_BLOCK, q3::QS)
    } else {
        (q2::GROUP_BLOCK, q2::QS)
    }
}

/// Bit 0 of each byte of a word.
const ONES: u32 = 0x0101_0101;

/// The repacked word of values `16g + 4s + k` (`s` in bits `2s, 2s + 1` of byte `k`) of a
/// stored Q2_K / Q3_K block `x` whose 64 bytes of 2-bit values start at `qs`: value `v` keeps
/// them in bits `2 · (v % 128 / 32)` of byte `32 · (v / 128) + v % 32`, so the 16 values of
/// block `g` share one shift and 16 consecutive bytes.
fn two_bit_word(x: &[u8], qs: usize, g: usize) -> u32 {
    let (run, shift) = (qs + 32 * (g / 8) + 16 * (g % 2), 2 * (g % 8 / 2));
    (0..4).fold(0, |w, s| {
        w | (word_at(x, run + 4 * s) >> shift & 0x0303_0303) << (2 * s)
    })
}

/// The inverse of [`two_bit_word`]: word `w` of block `g` ORed into the stored bytes of `x`.
fn put_two_bit_word(x: &mut [u8], qs: usize, g: usize, w: u32) {
    let (run, shift) = (qs + 32 * (g / 8) + 16 * (g % 2), 2 * (g % 8 / 2));
    for s in 0..4 {
        let at = run + 4 * s;
        let v = word_at(x, at) | (w >> (2 * s) & 0x0303_0303) << shift;
        x[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
}

const LOW: u32 = 0x0f0f_0f0f;

/// The little-endian word at `b[at..at + 4]` (one load).
#[inline]
pub(crate) fn word_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

/// Row `l`'s stored block of repacked `ty` out of group block `gb`, into `x`.
fn stored_block(ty: WeightType, gb: &[u8], l: usize, x: &mut [u8]) {
    match ty {
        WeightType::Q4_Kx16 => q4::stored_block(gb, l, x),
        WeightType::Q5_Kx16 => q5::stored_block(gb, l, x),
        WeightType::Q2_Kx16 => q2::stored_block(gb, l, x),
        WeightType::Q3_Kx16 => q3::stored_block(gb, l, x),
        _ => q6::stored_block(gb, l, x),
    }
}

/// The exact `(S, M)` of row `l` of group block `gb` (repacked `ty`) against `y`: the row's
/// stored block, unpacked and summed as every K-quant kernel's integers are checked
/// (`unpack::block_ints_scalar`: the offset inside `S`, the mins in `M`).
fn block_ints(ty: WeightType, gb: &[u8], l: usize, y: &BlockQ8K) -> (i32, i32) {
    let from = ty.stored();
    let mut x = [0u8; q6_k::BYTES];
    let x = &mut x[..from.block_bytes()];
    stored_block(ty, gb, l, x);
    let mut w = super::Unpacked::ZERO;
    super::unpack::unpack_scalar(from, x, &mut w);
    super::unpack::block_ints_scalar(&w, y)
}

/// Row `r` of a repacked matrix as its stored bytes, into `out` (the stored type's
/// `row_bytes(n_cols)` bytes).
pub(crate) fn stored_row(w: &WeightView, r: usize, out: &mut [u8]) {
    let (nb, gbb, bb) = (
        w.n_cols / QK_K,
        group_block(w.ty),
        w.ty.stored().block_bytes(),
    );
    assert!(r < w.n_rows && out.len() == nb * bb);
    let group = &w.bytes[(r / ROWS) * nb * gbb..][..nb * gbb];
    for (b, x) in out.chunks_exact_mut(bb).enumerate() {
        stored_block(w.ty, &group[b * gbb..], r % ROWS, x);
    }
}

/// The bytes of `w` (Q4_K or Q6_K, rows a multiple of 16) repacked as `ty` (the matching
/// repacked type), same shape and size, groups repacked in parallel, into `out`.
///
/// # Panics
/// When `w` is not such a matrix (its shape and `out`'s length are checked by
/// [`crate::repack_into`]).
pub(crate) fn repack_into(w: &WeightView, ty: WeightType, out: &mut [u8]) {
    assert!(
        ty.is_grouped() && ty.stored() == w.ty && w.n_rows.is_multiple_of(ROWS),
        "only {:?} matrices of whole groups of {ROWS} rows become {ty:?}",
        ty.stored()
    );
    let (row, bb, gbb) = (
        w.ty.row_bytes(w.n_cols),
        w.ty.block_bytes(),
        group_block(ty),
    );
    // Shapes checked by `crate::repack_into`; the copy has the stored size.
    debug_assert_eq!(out.len(), w.bytes.len());
    if out.is_empty() || row == 0 {
        return;
    }
    let items: Vec<_> = out
        .chunks_mut(ROWS * row)
        .zip(w.bytes.chunks(ROWS * row))
        .collect();
    crate::team::for_each_item(items, |(dst, src)| {
        for (b, gb) in dst.chunks_exact_mut(gbb).enumerate() {
            let block = |l: usize| &src[l * row + b * bb..];
            match ty {
                WeightType::Q4_Kx16 => q4::repack_block(block, gb),
                WeightType::Q5_Kx16 => q5::repack_block(block, gb),
                WeightType::Q2_Kx16 => q2::repack_block(block, gb),
                WeightType::Q3_Kx16 => q3::repack_block(block, gb),
                _ => q6::repack_block(block, gb),
            }
        }
    });
}

/// Decodes one group `src` of repacked `ty` (16 rows of `dst.len() / 16` values) into `dst`,
/// row after row.
pub(crate) fn dequantize_group(ty: WeightType, src: &[u8], dst: &mut [f32]) {
    let (from, gbb) = (ty.stored(), group_block(ty));
    let n_cols = dst.len() / ROWS;
    let nb = n_cols / QK_K;
    assert!(dst.len() == ROWS * nb * QK_K && src.len() == nb * gbb);
    let mut x = vec![0u8; from.row_bytes(n_cols)];
    for (l, row) in dst.chunks_exact_mut(n_cols.max(1)).enumerate() {
        for (b, blk) in x.chunks_exact_mut(from.block_bytes()).enumerate() {
            stored_block(ty, &src[b * gbb..], l, blk);
        }
        crate::dequantize(from, &x, row);
    }
}

/// Adds super-block `gb` of row `l` against `y` to `acc`: scalar twin of the AVX-512 kernels'
/// step, bitwise: `fma(S, d·d_a, acc)`, then for Q4_K and Q5_K `fma(−M, dmin·d_a, ·)`.
pub(crate) fn dot_block_scalar(ty: WeightType, gb: &[u8], l: usize, y: &BlockQ8K, acc: f32) -> f32 {
    match ty {
        WeightType::Q4_Kx16 | WeightType::Q5_Kx16 | WeightType::Q2_Kx16 => {
            let (s, m) = block_ints(ty, gb, l, y);
            // Q2_Kx16's `d` and `dmin` lie where Q4_Kx16's do.
            let (d, dmin) = (f16_at(gb, q4::D + 2 * l), f16_at(gb, q4::DMIN + 2 * l));
            let acc = (s as f32).mul_add(d * y.d, acc);
            (-(m as f32)).mul_add(dmin * y.d, acc)
        }
        _ => {
            // Q3_Kx16's `d` lies where Q6_Kx16's does.
            let (s, _) = block_ints(ty, gb, l, y);
            (s as f32).mul_add(f16_at(gb, q6::D + 2 * l) * y.d, acc)
        }
    }
}

/// One group of repacked `ty` (`act.len()` super-blocks of 16 rows) · one token, by
/// [`dot_block_scalar`].
pub(crate) fn dot_group_scalar(ty: WeightType, group: &[u8], act: &[BlockQ8K]) -> [f32; ROWS] {
    let gbb = group_block(ty);
    assert!(group.len() >= act.len() * gbb);
    std::array::from_fn(|l| {
        act.iter().enumerate().fold(0f32, |acc, (b, y)| {
            dot_block_scalar(ty, &group[b * gbb..], l, y, acc)
        })
    })
}

/// What the repacked kernels give for a stored `row` (of `ty`'s stored type) · `act`: for
/// tests.
#[cfg(test)]
pub(crate) fn dot_stored_row(ty: WeightType, row: &[u8], act: &[BlockQ8K]) -> f32 {
    let (bb, gbb) = (ty.stored().block_bytes(), group_block(ty));
    let mut gb = vec![0u8; gbb];
    act.iter().enumerate().fold(0f32, |acc, (b, y)| {
        let x = &row[b * bb..(b + 1) * bb];
        match ty {
            WeightType::Q4_Kx16 => q4::repack_block(|_| x, &mut gb),
            WeightType::Q5_Kx16 => q5::repack_block(|_| x, &mut gb),
            WeightType::Q2_Kx16 => q2::repack_block(|_| x, &mut gb),
            WeightType::Q3_Kx16 => q3::repack_block(|_| x, &mut gb),
            _ => q6::repack_block(|_| x, &mut gb),
        }
        dot_block_scalar(ty, &gb, 0, y, acc)
    })
}

/// The checks of the in-place tile kernels (`tile_tokens` of `avx512_x16.rs`, `avx2_x16.rs`):
/// `group` whole super-blocks of repacked `ty`; `qs`, `ad`, `am` a token group's activation
/// tiles, scales and sums for them ([`crate::block_tiles::TileAct`] of `lanes` tokens, VNNI form: sums
/// per tile), `last` the last lane read. Returns the super-blocks.
///
/// # Panics
/// When any of that does not hold.
pub(crate) fn checked_tile_tokens(
    ty: WeightType,
    group: &[u8],
    qs: &[u8],
    ad: &[f32],
    am: &[f32],
    lanes: usize,
    last: usize,
) -> usize {
    assert!(ty.is_grouped(), "{ty:?} is not a repacked K-quant type");
    let nsb = group.len() / group_block(ty);
    let (nb, tiles) = (
        8 * nsb,
        if matches!(ty, WeightType::Q4_Kx16 | WeightType::Q5_Kx16) {
            8
        } else {
            16
        } * nsb,
    );
    assert!(group.len() == nsb * group_block(ty) && last < lanes);
    assert!(qs.len() == nb * 32 * lanes && ad.len() == nb * lanes);
    assert!(am.len() == tiles * lanes);
    nsb
}
