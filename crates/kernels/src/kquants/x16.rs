//! [`WeightType::Q4_Kx16`]: Q4_K matrices repacked at load time for the decode kernel
//! (`avx512_x16.rs` beside this file).
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
//! Matrices whose row count is not a multiple of 16 keep their stored layout
//! ([`crate::repacked_type`]).

use super::layout::{f16_at, q4_k, scales_mins_k4};
use super::{BlockQ8K, QK_K};
use crate::{WeightType, WeightView};

/// Rows per group.
pub(crate) const ROWS: usize = 16;
/// Bytes of one super-block of a group's 16 rows.
pub(crate) const GROUP_BLOCK: usize = ROWS * q4_k::BYTES;
/// Where the rows' f16 `d` start in a group block.
pub(crate) const D: usize = 0;
/// Where the rows' f16 `dmin` start.
pub(crate) const DMIN: usize = 2 * ROWS;
/// Where the rows' packed scale words start (three runs of 16 words).
pub(crate) const SCALES: usize = 4 * ROWS;
/// Where the nibbles start (32 runs of 64 bytes).
pub(crate) const QS: usize = SCALES + 12 * ROWS;

/// Value `i` (0..32) of sub-block `j` (0..8) of the stored block `x`.
#[inline]
fn stored_value(x: &[u8], j: usize, i: usize) -> u8 {
    (x[q4_k::QS + 32 * (j / 2) + i] >> (4 * (j % 2))) & 0xF
}

/// Repacks the 16 stored blocks `block(l)` (rows `l` of a group, one super-block) into `out`.
fn repack_block<'a>(block: impl Fn(usize) -> &'a [u8], out: &mut [u8]) {
    assert_eq!(out.len(), GROUP_BLOCK);
    for l in 0..ROWS {
        let x = &block(l)[..q4_k::BYTES];
        out[D + 2 * l..D + 2 * l + 2].copy_from_slice(&x[q4_k::D..q4_k::D + 2]);
        out[DMIN + 2 * l..DMIN + 2 * l + 2].copy_from_slice(&x[q4_k::DMIN..q4_k::DMIN + 2]);
        for w in 0..3 {
            let at = SCALES + 64 * w + 4 * l;
            out[at..at + 4].copy_from_slice(&x[q4_k::SCALES + 4 * w..q4_k::SCALES + 4 * w + 4]);
        }
        for j in 0..8 {
            for q in 0..4 {
                for k in 0..4 {
                    let (lo, hi) = (
                        stored_value(x, j, 4 * q + k),
                        stored_value(x, j, 16 + 4 * q + k),
                    );
                    out[QS + 64 * (4 * j + q) + 4 * l + k] = lo | hi << 4;
                }
            }
        }
    }
}

/// Row `l`'s stored Q4_K block out of the group block `gb`: the inverse of [`repack_block`].
pub(crate) fn stored_block(gb: &[u8], l: usize) -> [u8; q4_k::BYTES] {
    assert!(gb.len() >= GROUP_BLOCK && l < ROWS);
    let mut x = [0u8; q4_k::BYTES];
    x[q4_k::D..q4_k::D + 2].copy_from_slice(&gb[D + 2 * l..D + 2 * l + 2]);
    x[q4_k::DMIN..q4_k::DMIN + 2].copy_from_slice(&gb[DMIN + 2 * l..DMIN + 2 * l + 2]);
    for w in 0..3 {
        let at = SCALES + 64 * w + 4 * l;
        x[q4_k::SCALES + 4 * w..q4_k::SCALES + 4 * w + 4].copy_from_slice(&gb[at..at + 4]);
    }
    let word = |j: usize, q: usize| {
        let at = QS + 64 * (4 * j + q) + 4 * l;
        u32::from_le_bytes([gb[at], gb[at + 1], gb[at + 2], gb[at + 3]])
    };
    const LOW: u32 = 0x0f0f_0f0f;
    // Stored byte 32c + i holds value i of sub-block 2c (low nibble) and of 2c + 1 (high).
    for c in 0..4 {
        for q in 0..4 {
            let (even, odd) = (word(2 * c, q), word(2 * c + 1, q));
            let first = (even & LOW) | (odd & LOW) << 4;
            let second = (even >> 4 & LOW) | (odd >> 4 & LOW) << 4;
            let at = q4_k::QS + 32 * c + 4 * q;
            x[at..at + 4].copy_from_slice(&first.to_le_bytes());
            x[at + 16..at + 20].copy_from_slice(&second.to_le_bytes());
        }
    }
    x
}

/// Row `r` of a repacked matrix (`n_cols` values) as its stored Q4_K bytes, into `out`
/// (`Q4_K.row_bytes(n_cols)` bytes).
pub(crate) fn stored_row(w: &WeightView, r: usize, out: &mut [u8]) {
    let nb = w.n_cols / QK_K;
    assert!(w.ty == WeightType::Q4_Kx16 && r < w.n_rows && out.len() == nb * q4_k::BYTES);
    let group = &w.bytes[(r / ROWS) * nb * GROUP_BLOCK..][..nb * GROUP_BLOCK];
    for (b, x) in out.chunks_exact_mut(q4_k::BYTES).enumerate() {
        x.copy_from_slice(&stored_block(&group[b * GROUP_BLOCK..], r % ROWS));
    }
}

/// The bytes of `w` (Q4_K, rows a multiple of 16) as a [`WeightType::Q4_Kx16`] matrix of the
/// same shape and size, groups repacked in parallel, into `out`.
///
/// # Panics
/// When `w` is not such a Q4_K matrix or `out` has another length than `w.bytes`.
pub(crate) fn repack_into(w: &WeightView, out: &mut [u8]) {
    assert!(
        w.ty == WeightType::Q4_K && w.n_rows.is_multiple_of(ROWS),
        "only Q4_K matrices of whole groups of {ROWS} rows are repacked"
    );
    let row = w.ty.row_bytes(w.n_cols);
    assert_eq!(
        w.bytes.len(),
        w.n_rows * row,
        "Q4_K matrix of {} x {}",
        w.n_rows,
        w.n_cols
    );
    assert_eq!(
        out.len(),
        w.bytes.len(),
        "repacked bytes of {} rows",
        w.n_rows
    );
    let nb = w.n_cols / QK_K;
    if out.is_empty() || nb == 0 {
        return;
    }
    let items: Vec<_> = out
        .chunks_mut(ROWS * row)
        .zip(w.bytes.chunks(ROWS * row))
        .collect();
    crate::team::for_each_item(items, |(dst, src)| {
        for (b, gb) in dst.chunks_exact_mut(GROUP_BLOCK).enumerate() {
            let at = b * q4_k::BYTES;
            repack_block(|l| &src[l * row + at..], gb);
        }
    });
}

/// Decodes one group `src` (16 rows of `dst.len() / 16` values) into `dst`, row after row.
pub(crate) fn dequantize_group(src: &[u8], dst: &mut [f32]) {
    let n_cols = dst.len() / ROWS;
    let nb = n_cols / QK_K;
    assert!(dst.len() == ROWS * nb * QK_K && src.len() == nb * GROUP_BLOCK);
    let mut x = vec![0u8; nb * q4_k::BYTES];
    for (l, row) in dst.chunks_exact_mut(n_cols.max(1)).enumerate() {
        for (b, blk) in x.chunks_exact_mut(q4_k::BYTES).enumerate() {
            blk.copy_from_slice(&stored_block(&src[b * GROUP_BLOCK..], l));
        }
        super::dequantize_q4_k(&x, row);
    }
}

/// The exact `(S, M)` of row `l` of group block `gb` against `y`.
fn block_ints(gb: &[u8], l: usize, y: &BlockQ8K) -> (i32, i32) {
    let x = stored_block(gb, l);
    let (sc, mn) = scales_mins_k4(&x[q4_k::SCALES..q4_k::SCALES + 12]);
    let (mut s, mut m) = (0i32, 0i32);
    for j in 0..8 {
        let dot: i32 = (0..32)
            .map(|i| stored_value(&x, j, i) as i32 * y.qs[32 * j + i] as i32)
            .sum();
        s += sc[j] as i32 * dot;
        let bsum = y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32;
        m += mn[j] as i32 * bsum;
    }
    (s, m)
}

/// Adds super-block `gb` of row `l` against `y` to `acc`: scalar twin of the AVX-512 kernel's
/// step, bitwise.
pub(crate) fn dot_block_scalar(gb: &[u8], l: usize, y: &BlockQ8K, acc: f32) -> f32 {
    let (s, m) = block_ints(gb, l, y);
    let (d, dmin) = (f16_at(gb, D + 2 * l), f16_at(gb, DMIN + 2 * l));
    let acc = (s as f32).mul_add(d * y.d, acc);
    (-(m as f32)).mul_add(dmin * y.d, acc)
}

/// One group (`act.len()` super-blocks of 16 rows) · one token, by [`dot_block_scalar`].
pub(crate) fn dot_group_scalar(group: &[u8], act: &[BlockQ8K]) -> [f32; ROWS] {
    assert!(group.len() >= act.len() * GROUP_BLOCK);
    std::array::from_fn(|l| {
        act.iter().enumerate().fold(0f32, |acc, (b, y)| {
            dot_block_scalar(&group[b * GROUP_BLOCK..], l, y, acc)
        })
    })
}

/// What the repacked kernels give for a stored Q4_K `row` · `act`: for tests.
#[cfg(test)]
pub(crate) fn dot_stored_row(row: &[u8], act: &[BlockQ8K]) -> f32 {
    let mut gb = [0u8; GROUP_BLOCK];
    act.iter().enumerate().fold(0f32, |acc, (b, y)| {
        let x = &row[b * q4_k::BYTES..(b + 1) * q4_k::BYTES];
        repack_block(|_| x, &mut gb);
        dot_block_scalar(&gb, 0, y, acc)
    })
}
