//! The shapes of the block tiles of the Q8_0 / Q4_0 and K-quant prefill at AVX-512 and AVX2
//! (`block_tiles.rs` drives them; kernels `avx512_blocks.rs`, `avx2_blocks.rs`; twin
//! [`crate::block_tiles::tile_q8_scalar`]): 16 weight rows × one or two groups of 16 tokens over a run
//! of 32-value blocks, each block's exact integer sums scaled (and, for K-quants with mins, the
//! min term subtracted) in `f32`.
//!
//! For each of the `G` (1 or 2) token groups `g`: `acc[g][r][t] += Σ_b s · (ad[g][b'][t] ·
//! wd[b][r])`, then `− wm[b][r] · am[g][b][t]` where the weights have mins, over the `nt` weight
//! tiles `b` of the slices, in tile order, each step one fused multiply-add (two with mins),
//! where `s` is the exact integer sum of the 32 products of tile `b`'s row `r` and token `t`'s
//! activation block `b' = b` — or, with `half` (weights of 16-value blocks, each tile holding one
//! block's values in its half of 32 and zeros in the other), `b' = b / 2`. Each (row, token) sees
//! the same operations whatever `G` is.
//!
//! - `w`: `nt` weight tiles of 512 bytes (`[k: 8][row: 16][4]` unsigned values, [`crate::block_tiles::TileForm`]);
//! - `wd`: `nt × 16` weight block scales;
//! - `a[g]`: `nt` (`nt / 2` with `half`) activation tiles, `[k: 8][t: 16][4]` int8 (values
//!   `4k..4k+4` of the block);
//! - `ad[g]`: their `× 16` activation block scales;
//! - `mins`: `nt × 16` values each.

/// Weight rows of a tile (rows of C).
pub(crate) const TILE_ROWS: usize = 16;
/// Tokens of a tile (int32 columns of C).
pub(crate) const TILE_TOKENS: usize = 16;
/// Bytes of one block's weight tile (16 rows × 32) or activation tile (8 × 64).
pub(crate) const TILE_BYTES: usize = 512;

/// The integer sums' scaled corrections of weight types with mins (K-quants `Q2_K`, `Q4_K`,
/// `Q5_K`): per weight tile, the 16 rows' `dmin · min` and, per token group, the 16 tokens'
/// `d_a · Σ a` over the tile's values.
pub(crate) struct Mins<'a, const G: usize> {
    pub w: &'a [f32],
    pub a: [&'a [f32]; G],
}

/// The number of weight tiles `nt` of a block-tile kernel call, after checking every slice
/// against it: `w` `nt` tiles, `wd` `nt × 16` scales, each `a[g]` and
/// `ad[g]` `nt` (`nt / 2` with `half`, `nt` even) tiles and `× 16` scales, `mins` `nt × 16`
/// values each.
pub(crate) fn checked_tiles<const G: usize>(
    w: &[u8],
    wd: &[f32],
    a: [&[u8]; G],
    ad: [&[f32]; G],
    half: bool,
    mins: Option<&Mins<'_, G>>,
) -> usize {
    let nt = wd.len() / TILE_ROWS;
    let na = if half { nt / 2 } else { nt };
    assert!(wd.len() == nt * TILE_ROWS && w.len() == nt * TILE_BYTES);
    assert!(!half || nt.is_multiple_of(2));
    assert!(a.iter().all(|a| a.len() == na * TILE_BYTES));
    assert!(ad.iter().all(|d| d.len() == na * TILE_TOKENS));
    if let Some(m) = mins {
        assert!(m.w.len() == nt * TILE_ROWS);
        assert!(m.a.iter().all(|a| a.len() == nt * TILE_TOKENS));
    }
    nt
}
