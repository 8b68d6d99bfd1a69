//! [`WeightType::Q4_0x16`]: Q4_0 rows repacked at load time for the decode kernels.
//!
//! A stored Q4_0 block keeps its scale beside its 16 bytes of nibbles, so a row kernel spends
//! about eleven instructions on every 18-byte block (unpack, one 256-bit dot product, a scale
//! looked up, converted and multiplied): on one core that is slower than memory delivers the
//! bytes. Repacked, each row is a run of groups of 16 consecutive blocks (the last padded with
//! zero blocks), 288 bytes a group:
//!
//! - bytes `0..32`: the 16 blocks' f16 scales;
//! - bytes `32 + 64·k + 4·i .. +4` (`k` in `0..4`): bytes `4k..4k+4` of block `i`'s nibbles.
//!
//! One 64-byte load then holds the same four bytes of 16 blocks: its low nibbles are values
//! `4k..4k+4` and its high nibbles values `16+4k..16+4k+4` of every block, which is where the
//! interleaved activations ([`crate::act_q8::ActLayout::Interleaved`]) keep them at steps `k`
//! and `k + 4`. Eight `vpdpbusd` leave each block's exact sum in its own int32 lane, and one
//! conversion, one multiply and one FMA scale 16 blocks: about 27 instructions per 16 blocks
//! instead of 176. Rows stay contiguous, so threads still split a matrix by rows.
//!
//! Arithmetic, identical in the AVX-512 kernel (`avx512_x16.rs`) and its twin [`dot_lanes`]:
//! lane `i` of 16 accumulates `fma(S_b, d_w · d_a, acc_i)` over the blocks `b = 16g + i` in
//! order (`S_b` the exact integer `Σ (n − 8) · a`), then [`reduce16`] sums the lanes in a fixed
//! tree. The AVX-512 tile kernel (`avx512_tile.rs`) scales and sums a packed panel's blocks the
//! same way, so at [`crate::Isa::Avx512`] both paths give the same bits. The scalar level uses
//! [`dot_sequential`] (blocks in order, as `dot_scalar::dot_q4_0` does for stored rows): there
//! a repacked row gives bitwise the results of the stored one.

use crate::act_q8::{GROUP_BLOCKS, GROUP_BYTES, QK};
use crate::dot_scalar::{f16_at, q4_0_block_sum, Q4_0_BYTES};
use crate::{WeightType, WeightView};

/// Bytes of one group of 16 repacked blocks.
pub(crate) const X16_GROUP_BYTES: usize = GROUP_BLOCKS * Q4_0_BYTES;
/// Where the nibbles of a group start (after the 16 scales).
const NIBBLES_AT: usize = 2 * GROUP_BLOCKS;

/// Bytes of a repacked row of `n_cols` values (`n_cols` a multiple of 32).
pub(crate) fn row_bytes(n_cols: usize) -> usize {
    (n_cols / QK).div_ceil(GROUP_BLOCKS) * X16_GROUP_BYTES
}

/// Repacks one stored Q4_0 row (`src`, whole blocks) into `dst` (`row_bytes` long).
pub(crate) fn repack_row(src: &[u8], dst: &mut [u8]) {
    assert_eq!(src.len() % Q4_0_BYTES, 0);
    let nb = src.len() / Q4_0_BYTES;
    assert_eq!(dst.len(), row_bytes(nb * QK));
    let full = nb / GROUP_BLOCKS;
    let (head, tail) = src.split_at(full * X16_GROUP_BYTES);
    for (s, d) in head
        .chunks_exact(X16_GROUP_BYTES)
        .zip(dst.chunks_exact_mut(X16_GROUP_BYTES))
    {
        repack_group(s.try_into().unwrap(), d.try_into().unwrap());
    }
    if !tail.is_empty() {
        // The last, partial group: zero blocks after the row's end.
        let mut s = [0u8; X16_GROUP_BYTES];
        s[..tail.len()].copy_from_slice(tail);
        let d = &mut dst[full * X16_GROUP_BYTES..];
        repack_group(&s, d.try_into().unwrap());
    }
}

/// Sixteen stored blocks into one repacked group (fixed sizes: a few vector moves).
fn repack_group(src: &[u8; X16_GROUP_BYTES], dst: &mut [u8; X16_GROUP_BYTES]) {
    for (i, blk) in src.chunks_exact(Q4_0_BYTES).enumerate() {
        dst[2 * i..2 * i + 2].copy_from_slice(&blk[..2]);
        for k in 0..4 {
            let at = NIBBLES_AT + 64 * k + 4 * i;
            dst[at..at + 4].copy_from_slice(&blk[2 + 4 * k..6 + 4 * k]);
        }
    }
}

/// Block `b` of a repacked row, back in the stored Q4_0 layout.
pub(crate) fn block_at(row: &[u8], b: usize) -> [u8; Q4_0_BYTES] {
    let (g, i) = (b / GROUP_BLOCKS, b % GROUP_BLOCKS);
    let grp = &row[g * X16_GROUP_BYTES..(g + 1) * X16_GROUP_BYTES];
    let mut blk = [0u8; Q4_0_BYTES];
    blk[..2].copy_from_slice(&grp[2 * i..2 * i + 2]);
    for k in 0..4 {
        let at = NIBBLES_AT + 64 * k + 4 * i;
        blk[2 + 4 * k..6 + 4 * k].copy_from_slice(&grp[at..at + 4]);
    }
    blk
}

/// Decodes the `dst.len()` values of a repacked row.
pub(crate) fn dequantize_row(row: &[u8], dst: &mut [f32]) {
    assert_eq!(row.len(), row_bytes(dst.len()));
    for (b, out) in dst.chunks_exact_mut(QK).enumerate() {
        crate::dequantize(WeightType::Q4_0, &block_at(row, b), out);
    }
}

/// A repacked row as a prefill panel row (`pack.rs`): unsigned nibbles at steps `k` (low) and
/// `k + 4` (high) of each group, block scales as `f32` (zero for padding blocks).
pub(crate) fn pack_tiles_row(row: &[u8], qs: &mut [u8], d: &mut [f32]) {
    let ng = row.len() / X16_GROUP_BYTES;
    assert!(row.len() == ng * X16_GROUP_BYTES);
    assert!(qs.len() == ng * GROUP_BYTES && d.len() == ng * GROUP_BLOCKS);
    for ((grp, q), d) in row
        .chunks_exact(X16_GROUP_BYTES)
        .zip(qs.chunks_exact_mut(GROUP_BYTES))
        .zip(d.chunks_exact_mut(GROUP_BLOCKS))
    {
        let (lo, hi) = q.split_at_mut(GROUP_BYTES / 2);
        for ((&v, l), h) in grp[NIBBLES_AT..].iter().zip(lo).zip(hi) {
            *l = v & 0x0f;
            *h = v >> 4;
        }
        for (i, s) in d.iter_mut().enumerate() {
            *s = f16_at(grp, 2 * i);
        }
    }
}

/// Sum of 16 lanes in the tree the AVX-512 kernels use: halves added lane by lane, then
/// `((h0 + h4) + (h2 + h6)) + ((h1 + h5) + (h3 + h7))`.
pub(crate) fn reduce16(v: [f32; 16]) -> f32 {
    let h: [f32; 8] = std::array::from_fn(|i| v[i] + v[i + 8]);
    ((h[0] + h[4]) + (h[2] + h[6])) + ((h[1] + h[5]) + (h[3] + h[7]))
}

/// Repacked row · one token of interleaved activations (`qs` `ng · 512` values, `d` and `sums`
/// `ng · 16`), in the lane order of the AVX-512 kernel (its twin, bitwise).
pub(crate) fn dot_lanes(row: &[u8], qs: &[i8], d: &[f32], sums: &[i32]) -> f32 {
    let ng = row.len() / X16_GROUP_BYTES;
    assert!(row.len() == ng * X16_GROUP_BYTES && qs.len() == ng * GROUP_BYTES);
    assert!(d.len() == ng * GROUP_BLOCKS && sums.len() == ng * GROUP_BLOCKS);
    let mut acc = [0f32; GROUP_BLOCKS];
    for g in 0..ng {
        let grp = &row[g * X16_GROUP_BYTES..(g + 1) * X16_GROUP_BYTES];
        let a = &qs[g * GROUP_BYTES..(g + 1) * GROUP_BYTES];
        for (i, acc) in acc.iter_mut().enumerate() {
            let b = g * GROUP_BLOCKS + i;
            let mut s = -8 * sums[b];
            for k in 0..4 {
                for j in 4 * i..4 * i + 4 {
                    let v = grp[NIBBLES_AT + 64 * k + j];
                    s += (v & 0x0f) as i32 * a[64 * k + j] as i32;
                    s += (v >> 4) as i32 * a[64 * (k + 4) + j] as i32;
                }
            }
            *acc = (s as f32).mul_add(f16_at(grp, 2 * i) * d[b], *acc);
        }
    }
    reduce16(acc)
}

/// Repacked row · one token of natural activations (`qs` `nb · 32`, `d` `nb`), blocks summed
/// in order: bitwise `dot_scalar::dot_q4_0` of the stored row.
pub(crate) fn dot_sequential(row: &[u8], qs: &[i8], d: &[f32]) -> f32 {
    let nb = d.len();
    assert!(row.len() == row_bytes(nb * QK) && qs.len() == nb * QK);
    let mut sum = 0f32;
    for (b, a) in qs.chunks_exact(QK).enumerate() {
        let blk = block_at(row, b);
        sum += q4_0_block_sum(&blk, a) as f32 * (f16_at(&blk, 0) * d[b]);
    }
    sum
}

/// `w` (Q4_0) as a [`WeightType::Q4_0x16`] matrix into `out` (`w.n_rows ·
/// Q4_0x16.row_bytes(w.n_cols)` bytes, any contents), rows repacked in parallel.
///
/// # Panics
/// When `w` is not Q4_0, its bytes do not match its shape or `out` has another length.
pub(crate) fn repack_into(w: &WeightView, out: &mut [u8]) {
    assert_eq!(w.ty, WeightType::Q4_0, "only Q4_0 rows are repacked");
    let (src_row, dst_row) = (w.ty.row_bytes(w.n_cols), row_bytes(w.n_cols));
    assert_eq!(
        w.bytes.len(),
        w.n_rows * src_row,
        "Q4_0 matrix of {} x {}",
        w.n_rows,
        w.n_cols
    );
    assert_eq!(
        out.len(),
        w.n_rows * dst_row,
        "repacked bytes of {} rows",
        w.n_rows
    );
    if out.is_empty() {
        return;
    }
    // Tasks of about 1 MiB: few enough to cost nothing, enough to share among threads.
    let rows_per_task = ((1 << 20) / dst_row).max(1);
    let items: Vec<_> = out
        .chunks_mut(rows_per_task * dst_row)
        .zip(w.bytes.chunks(rows_per_task * src_row))
        .collect();
    crate::team::for_each_item(items, |(dst, src)| {
        for (d, s) in dst.chunks_exact_mut(dst_row).zip(src.chunks_exact(src_row)) {
            repack_row(s, d);
        }
    });
}
