//! [`WeightType::Q4_0x16`] and [`WeightType::Q8_0x16`]: Q4_0 and Q8_0 rows repacked at load
//! time for the decode kernels.
//!
//! A stored block keeps its scale beside its quantized bytes (16 bytes of nibbles, or 32
//! signed bytes), so a row kernel spends about eight to eleven instructions on every block
//! (unpack, one 256-bit dot product, a scale looked up, converted and multiplied): on one core
//! that is slower than memory delivers the bytes. Repacked, each row is a run of groups of 16
//! consecutive blocks (the last one of `n` < 16 blocks where the row's blocks do not fill it),
//! as many bytes a group as its stored blocks (288 for 16 blocks of Q4_0, 544 for Q8_0), so a
//! repacked row is exactly as long as the stored one. A group of `n` blocks:
//!
//! - bytes `0..2n`: the blocks' f16 scales;
//! - bytes `2n + 4n·k + 4·i .. +4`: bytes `4k..4k+4` of block `i`'s quantized bytes (`k` in
//!   `0..4` for Q4_0's nibbles, `0..8` for Q8_0), Q8_0's stored as `q ^ 0x80` (`q + 128`, the
//!   unsigned operand of `vpdpbusd`).
//!
//! A whole group (`n = 16`) thus has its scales in bytes `0..32` and step `k` in the 64 bytes
//! at `32 + 64·k`. Kernels read a partial last group as the whole group it would be with zero
//! blocks after its `n` ([`padded_group`]; the AVX-512 kernels by masked loads, which give
//! those zeros): rows of 288 values (9 blocks) no longer take 16 blocks' bytes and work.
//!
//! One 64-byte load then holds the same four bytes of 16 blocks, which is where the interleaved
//! activations ([`crate::act_q8::ActLayout::Interleaved`]) keep the matching values: Q8_0's
//! load `k` holds values `4k..4k+4` of every block (activation step `k`); Q4_0's low nibbles are
//! values `4k..4k+4` and its high nibbles values `16+4k..16+4k+4` (steps `k` and `k + 4`).
//! Eight `vpdpbusd` leave each block's exact sum in its own int32 lane, and one conversion, one
//! multiply and one FMA scale 16 blocks: about 27 instructions per 16 blocks instead of 130 to
//! 176. Rows stay contiguous, so threads still split a matrix by rows. Q8_0's bytes are the
//! layout of a packed prefill panel row (`pack.rs`), so packing one is a copy.
//!
//! Arithmetic of a level's kernels, row and tile alike (`avx512_x16.rs` and `avx512_tile.rs`,
//! `avx2_x16.rs` and `avx2_tile.rs`), and of their twin `dot_lanes`: at AVX-512, lane `i` of
//! 16 accumulates `fma(S_b, d_w · d_a, acc_i)` over the blocks `b = 16g + i` in order (`S_b`
//! the exact integer `Σ w · a`, the stored offset taken off as `−offset · Σa`), then
//! `reduce16` sums the lanes in a fixed tree; at AVX2, lane `i` of 8 takes blocks `16g + i`
//! and `16g + 8 + i` of each group in turn, then `reduce8` (one accumulator per row and token
//! instead of one per half group: the tile kernel's sixteen half-group accumulators of a 2 × 4
//! tile did not stay in registers). So at [`crate::Isa::Avx512`] and at [`crate::Isa::Avx2`]
//! both paths give the same bits. The scalar level uses [`dot_sequential`] (blocks in order, as
//! `dot_scalar` does for stored rows): there a repacked row gives bitwise the results of the
//! stored one.

use crate::act_q8::{GROUP_BLOCKS, GROUP_BYTES, QK};
use crate::dot_scalar::{f16_at, q4_0_block_sum, q8_0_block_sum, Q4_0_BYTES, Q8_0_BYTES};
use crate::{WeightType, WeightView};

/// Where the quantized bytes of a group start (after the 16 scales).
pub(crate) const QUANTS_AT: usize = 2 * GROUP_BLOCKS;

/// Which stored type a repacked row was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum X16 {
    Q4_0,
    Q8_0,
}

impl X16 {
    /// The repacked layout `ty` is, if it is one.
    pub(crate) fn of(ty: WeightType) -> Option<X16> {
        match ty {
            WeightType::Q4_0x16 => Some(X16::Q4_0),
            WeightType::Q8_0x16 => Some(X16::Q8_0),
            _ => None,
        }
    }
    /// The stored type the rows were made from.
    pub(crate) fn stored(self) -> WeightType {
        match self {
            X16::Q4_0 => WeightType::Q4_0,
            X16::Q8_0 => WeightType::Q8_0,
        }
    }
    /// Bytes of a stored block.
    pub(crate) const fn block_bytes(self) -> usize {
        match self {
            X16::Q4_0 => Q4_0_BYTES,
            X16::Q8_0 => Q8_0_BYTES,
        }
    }
    /// Bytes of one group of 16 repacked blocks.
    pub(crate) const fn group_bytes(self) -> usize {
        GROUP_BLOCKS * self.block_bytes()
    }
    /// Quantized bytes of a block.
    const fn quant_bytes(self) -> usize {
        self.block_bytes() - 2
    }
    /// What the repacked quantized bytes are xor-ed with.
    const fn flip(self) -> u8 {
        match self {
            X16::Q4_0 => 0,
            X16::Q8_0 => 0x80,
        }
    }
    /// What a weight's unsigned byte (nibble) adds to its value.
    #[cfg(test)]
    pub(crate) const fn offset(self) -> i32 {
        match self {
            X16::Q4_0 => crate::pack::Q4_0_OFFSET,
            X16::Q8_0 => crate::pack::Q8_0_OFFSET,
        }
    }
}

/// Bytes of a repacked row of `n_cols` values (`n_cols` a multiple of 32): those of the stored
/// row.
pub(crate) fn row_bytes(kind: X16, n_cols: usize) -> usize {
    (n_cols / QK) * kind.block_bytes()
}

/// Blocks of group `g` of a row of `nb` blocks (16 but in a partial last group).
pub(crate) fn group_blocks(nb: usize, g: usize) -> usize {
    (nb - g * GROUP_BLOCKS).min(GROUP_BLOCKS)
}

/// Where step `k`'s bytes of a group of `n` blocks start (`QUANTS_AT + 64·k` when whole).
pub(crate) const fn step_at(n: usize, k: usize) -> usize {
    2 * n + 4 * n * k
}

/// Bytes of a whole group of the largest kind (Q8_0).
pub(crate) const MAX_GROUP_BYTES: usize = GROUP_BLOCKS * Q8_0_BYTES;

/// A group of `n` blocks (`grp`, its `n · block_bytes` bytes) as the whole group it would be
/// with zero blocks after its own (scale 0 and zero bytes: they add nothing), in the first
/// `kind.group_bytes()` bytes of the result.
pub(crate) fn padded_group(kind: X16, grp: &[u8], n: usize) -> [u8; MAX_GROUP_BYTES] {
    assert!(n <= GROUP_BLOCKS && grp.len() == n * kind.block_bytes());
    let mut out = [0u8; MAX_GROUP_BYTES];
    out[..2 * n].copy_from_slice(&grp[..2 * n]);
    for k in 0..kind.quant_bytes() / 4 {
        let at = QUANTS_AT + 64 * k;
        out[at..at + 4 * n].copy_from_slice(&grp[step_at(n, k)..][..4 * n]);
    }
    out
}

/// Group `g` of a repacked row (`nb` blocks, [`row_bytes`] long): its bytes and its blocks.
fn group_of(kind: X16, row: &[u8], g: usize) -> (&[u8], usize) {
    let nb = row.len() / kind.block_bytes();
    let n = group_blocks(nb, g);
    (&row[g * kind.group_bytes()..][..n * kind.block_bytes()], n)
}

/// Group `g` of a repacked row as a whole group ([`padded_group`]; a copy either way).
pub(crate) fn whole_group(kind: X16, row: &[u8], g: usize) -> [u8; MAX_GROUP_BYTES] {
    let (grp, n) = group_of(kind, row, g);
    padded_group(kind, grp, n)
}

/// The checks of a product of `n_rows` repacked rows of `kind` (`w_len` bytes) by one token of
/// interleaved activations (`qs` `ng · 512` values, `d` and `sums` `ng · 16`): `(ng, row
/// stride in bytes, blocks of the last group)`.
///
/// # Panics
/// When the lengths disagree.
pub(crate) fn matrix_shape(
    kind: X16,
    w_len: usize,
    n_rows: usize,
    qs: &[i8],
    d: &[f32],
    sums: &[i32],
) -> (usize, usize, usize) {
    let ng = d.len() / GROUP_BLOCKS;
    assert!(d.len() == ng * GROUP_BLOCKS && sums.len() == d.len() && qs.len() == ng * GROUP_BYTES);
    let (stride, last) = rows_shape(kind, w_len, n_rows, ng);
    (ng, stride, last)
}

/// `n_rows` repacked rows of `kind` in `w_len` bytes, to meet activations of `ng` groups:
/// `(row stride in bytes, blocks of the last group)`.
///
/// # Panics
/// When the lengths disagree.
pub(crate) fn rows_shape(kind: X16, w_len: usize, n_rows: usize, ng: usize) -> (usize, usize) {
    assert!(n_rows > 0 && w_len.is_multiple_of(n_rows));
    let stride = w_len / n_rows;
    assert!(stride.is_multiple_of(kind.block_bytes()));
    let nb = stride / kind.block_bytes();
    assert_eq!(
        nb.div_ceil(GROUP_BLOCKS),
        ng,
        "activations of the rows' groups"
    );
    (stride, group_blocks(nb, ng.saturating_sub(1)))
}

/// Repacks one stored row (`src`, whole blocks of `kind.stored()`) into `dst` (`row_bytes`
/// long).
pub(crate) fn repack_row(kind: X16, src: &[u8], dst: &mut [u8]) {
    let (bytes, group) = (kind.block_bytes(), kind.group_bytes());
    assert_eq!(src.len() % bytes, 0);
    let nb = src.len() / bytes;
    assert_eq!(dst.len(), row_bytes(kind, nb * QK));
    for (s, d) in src.chunks(group).zip(dst.chunks_mut(group)) {
        repack_group(kind, s, d);
    }
}

/// Up to sixteen stored blocks into one repacked group of as many.
fn repack_group(kind: X16, src: &[u8], dst: &mut [u8]) {
    let (flip, n) = (kind.flip(), src.len() / kind.block_bytes());
    for (i, blk) in src.chunks_exact(kind.block_bytes()).enumerate() {
        dst[2 * i..2 * i + 2].copy_from_slice(&blk[..2]);
        for (k, four) in blk[2..].chunks_exact(4).enumerate() {
            let at = step_at(n, k) + 4 * i;
            for (o, &q) in dst[at..at + 4].iter_mut().zip(four) {
                *o = q ^ flip;
            }
        }
    }
}

/// Block `b` of a repacked row, back in the stored layout (the first `kind.block_bytes()`
/// bytes; the rest zero).
pub(crate) fn block_at(kind: X16, row: &[u8], b: usize) -> [u8; Q8_0_BYTES] {
    let (g, i) = (b / GROUP_BLOCKS, b % GROUP_BLOCKS);
    let (grp, n) = group_of(kind, row, g);
    let mut blk = [0u8; Q8_0_BYTES];
    blk[..2].copy_from_slice(&grp[2 * i..2 * i + 2]);
    for k in 0..kind.quant_bytes() / 4 {
        let at = step_at(n, k) + 4 * i;
        for (o, &q) in blk[2 + 4 * k..6 + 4 * k].iter_mut().zip(&grp[at..at + 4]) {
            *o = q ^ kind.flip();
        }
    }
    blk
}

/// Decodes the `dst.len()` values of a repacked row.
pub(crate) fn dequantize_row(kind: X16, row: &[u8], dst: &mut [f32]) {
    assert_eq!(row.len(), row_bytes(kind, dst.len()));
    for (b, out) in dst.chunks_exact_mut(QK).enumerate() {
        let blk = block_at(kind, row, b);
        crate::dequantize(kind.stored(), &blk[..kind.block_bytes()], out);
    }
}

/// A repacked row as a prefill panel row (`pack.rs`): Q8_0's bytes as they are, Q4_0's
/// unsigned nibbles at steps `k` (low) and `k + 4` (high) of each group; block scales as `f32`
/// (zero for padding blocks).
pub(crate) fn pack_tiles_row(kind: X16, row: &[u8], qs: &mut [u8], d: &mut [f32]) {
    assert!(row.len().is_multiple_of(kind.block_bytes()));
    let ng = (row.len() / kind.block_bytes()).div_ceil(GROUP_BLOCKS);
    assert!(qs.len() == ng * GROUP_BYTES && d.len() == ng * GROUP_BLOCKS);
    for (g, (q, d)) in qs
        .chunks_exact_mut(GROUP_BYTES)
        .zip(d.chunks_exact_mut(GROUP_BLOCKS))
        .enumerate()
    {
        let grp = &whole_group(kind, row, g)[..kind.group_bytes()];
        match kind {
            X16::Q8_0 => q.copy_from_slice(&grp[QUANTS_AT..]),
            X16::Q4_0 => {
                let (lo, hi) = q.split_at_mut(GROUP_BYTES / 2);
                for ((&v, l), h) in grp[QUANTS_AT..].iter().zip(lo).zip(hi) {
                    *l = v & 0x0f;
                    *h = v >> 4;
                }
            }
        }
        for (i, s) in d.iter_mut().enumerate() {
            *s = f16_at(grp, 2 * i);
        }
    }
}

#[cfg(test)]
/// Sum of 8 lanes in the tree of `hsum_ps` (AVX2) and of the second half of [`reduce16`]:
/// `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`.
pub(crate) fn reduce8(l: [f32; 8]) -> f32 {
    ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}

#[cfg(test)]
/// Sum of 16 lanes in the tree the AVX-512 kernels use: halves added lane by lane, then
/// [`reduce8`].
pub(crate) fn reduce16(v: [f32; 16]) -> f32 {
    reduce8(std::array::from_fn(|i| v[i] + v[i + 8]))
}

/// How many float accumulators a level's repacked Q4_0 / Q8_0 kernels scale the blocks of a
/// group into: one lane per block at AVX-512 ([`Lanes::L16`]), and at AVX2 ([`Lanes::L8`])
/// one lane per pair of blocks `i`, `i + 8` of a group, block `i` first (a single 8-lane
/// accumulator: the prefill tiles then keep one vector per row and token, not two).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lanes {
    L8,
    L16,
}

/// Repacked row · one token of interleaved activations (`qs` `ng · 512` values, `d` and `sums`
/// `ng · 16`), in the lane order of a level's kernels (their twin, bitwise): lane `i % n` of
/// `n` accumulates `fma(S_b, d_w · d_a, acc)` over the blocks `b = 16g + i` in order of `g`,
/// then of `i`, and the lanes are summed by [`reduce16`] or [`reduce8`].
#[cfg(test)]
pub(crate) fn dot_lanes(
    lanes: Lanes,
    kind: X16,
    row: &[u8],
    qs: &[i8],
    d: &[f32],
    sums: &[i32],
) -> f32 {
    assert!(row.len().is_multiple_of(kind.block_bytes()));
    let ng = (row.len() / kind.block_bytes()).div_ceil(GROUP_BLOCKS);
    assert!(qs.len() == ng * GROUP_BYTES);
    assert!(d.len() == ng * GROUP_BLOCKS && sums.len() == ng * GROUP_BLOCKS);
    let n = match lanes {
        Lanes::L8 => 8,
        Lanes::L16 => 16,
    };
    let mut acc = [0f32; GROUP_BLOCKS];
    for g in 0..ng {
        let grp = &whole_group(kind, row, g)[..kind.group_bytes()];
        let a = &qs[g * GROUP_BYTES..(g + 1) * GROUP_BYTES];
        for i in 0..GROUP_BLOCKS {
            let b = g * GROUP_BLOCKS + i;
            let mut s = -kind.offset() * sums[b];
            for k in 0..kind.quant_bytes() / 4 {
                for j in 4 * i..4 * i + 4 {
                    let v = grp[QUANTS_AT + 64 * k + j];
                    match kind {
                        X16::Q8_0 => s += v as i32 * a[64 * k + j] as i32,
                        X16::Q4_0 => {
                            s += (v & 0x0f) as i32 * a[64 * k + j] as i32;
                            s += (v >> 4) as i32 * a[64 * (k + 4) + j] as i32;
                        }
                    }
                }
            }
            let acc = &mut acc[i % n];
            *acc = (s as f32).mul_add(f16_at(grp, 2 * i) * d[b], *acc);
        }
    }
    match lanes {
        Lanes::L8 => reduce8(std::array::from_fn(|i| acc[i])),
        Lanes::L16 => reduce16(acc),
    }
}

/// Repacked row · one token of natural activations (`qs` `nb · 32`, `d` `nb`), blocks summed
/// in order: bitwise `dot_scalar::dot_q4_0` / `dot_q8_0` of the stored row.
pub(crate) fn dot_sequential(kind: X16, row: &[u8], qs: &[i8], d: &[f32]) -> f32 {
    let nb = d.len();
    assert!(row.len() == row_bytes(kind, nb * QK) && qs.len() == nb * QK);
    let mut sum = 0f32;
    for (b, a) in qs.chunks_exact(QK).enumerate() {
        let blk = block_at(kind, row, b);
        let s = match kind {
            X16::Q4_0 => q4_0_block_sum(&blk, a),
            X16::Q8_0 => q8_0_block_sum(&blk, a),
        };
        sum += s as f32 * (f16_at(&blk, 0) * d[b]);
    }
    sum
}

/// `w` (of `kind.stored()`) in the layout of `kind` into `out` (`w.n_rows ·
/// row_bytes(w.n_cols)` bytes, any contents, not empty), rows repacked in parallel; shapes
/// checked by [`crate::repack_into`].
pub(crate) fn repack_into(w: &WeightView, kind: X16, out: &mut [u8]) {
    assert_eq!(w.ty, kind.stored(), "{kind:?} is made from its stored type");
    let (src_row, dst_row) = (w.ty.row_bytes(w.n_cols), row_bytes(kind, w.n_cols));
    // Tasks of about 1 MiB: few enough to cost nothing, enough to share among threads.
    let rows_per_task = ((1 << 20) / dst_row).max(1);
    let items: Vec<_> = out
        .chunks_mut(rows_per_task * dst_row)
        .zip(w.bytes.chunks(rows_per_task * src_row))
        .collect();
    crate::team::for_each_item(items, |(dst, src)| {
        for (d, s) in dst.chunks_exact_mut(dst_row).zip(src.chunks_exact(src_row)) {
            repack_row(kind, s, d);
        }
    });
}
