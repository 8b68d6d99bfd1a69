//! The AVX-512 VNNI kernel of the block-tile driver (`block_tiles.rs`), for K-quant prefill at
//! AVX-512: 16 weight rows (one per 32-bit lane) × 16 tokens over a run of tiles of 32 values
//! (per tile, eight 64-byte vectors of 4 unsigned values of each row). Per tile and token,
//! eight `vpdpbusd` against the token's 4-value groups broadcast from the activation tile sum
//! each row's block exactly in int32; the epilogue, a lane per row (`acc[t][r]`):
//! `v += s · (d_a · d_w)`, then `v −= m_w · (d_a · Σ a)`. Scalar twin:
//! [`crate::block_tiles::tile_q8_scalar`], bitwise equal.
//!
//! Per 8 products, three float operations (a multiply and two fused multiply-adds) share the
//! multiply ports with them. Tokens go four at a time over the whole run of tiles (four
//! independent chains of products, four accumulators live), the run's weights staying in L1
//! between the four passes, the activations broadcast from it. A tile of a 16-value block type
//! (Q6_K, Q3_K, Q2_K) holds its values in one half, zeros in the other: only its four vectors
//! are multiplied (the sums are the same integers, half the products).

use std::arch::x86_64::*;

use crate::block_tile_shape::{checked_tiles, Mins, TILE_BYTES, TILE_ROWS, TILE_TOKENS};
use crate::block_tiles::TileKernel;
use crate::cpu::Avx512;

/// The kernel, proof of AVX-512 VNNI in hand.
pub(crate) struct VnniTiles(pub Avx512);

impl TileKernel for VnniTiles {
    fn run<const G: usize>(
        &self,
        w: &[u8],
        wd: &[f32],
        a: [&[u8]; G],
        ad: [&[f32]; G],
        half: bool,
        mins: Option<Mins<'_, G>>,
        acc: [&mut [[f32; TILE_TOKENS]; TILE_ROWS]; G],
        tokens: [usize; G],
    ) {
        let _features: Avx512 = self.0;
        let kernel: BlockKernel = if half {
            vnni_tiles::<true>
        } else {
            vnni_tiles::<false>
        };
        // SAFETY: the token proves the kernel's features.
        unsafe { run_block_kernel(kernel, w, wd, a, ad, half, mins, acc, tokens) }
    }
}

/// A block-tile kernel of the VNNI layout (this file's, `avx2_blocks.rs`'s): weights, their
/// scales and mins, one token group's activation tiles, scales and sums, the tile count, the
/// group's accumulators (`acc[t][r]`), its real tokens (the first lanes; the accumulators of
/// the others may be left as they are).
pub(crate) type BlockKernel = unsafe fn(
    *const u8,
    *const f32,
    *const f32,
    *const u8,
    *const f32,
    *const f32,
    usize,
    &mut [[f32; TILE_TOKENS]; TILE_ROWS],
    usize,
);

/// [`TileKernel::run`] by `kernel`, one token group after the other, every length checked
/// first ([`checked_tiles`]).
///
/// # Safety
/// The CPU features `kernel` needs available.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn run_block_kernel<const G: usize>(
    kernel: BlockKernel,
    w: &[u8],
    wd: &[f32],
    a: [&[u8]; G],
    ad: [&[f32]; G],
    half: bool,
    mins: Option<Mins<'_, G>>,
    acc: [&mut [[f32; TILE_TOKENS]; TILE_ROWS]; G],
    tokens: [usize; G],
) {
    let mins = mins.expect("VNNI-layout tiles always have mins");
    assert!(tokens.iter().all(|&t| t <= TILE_TOKENS));
    let nt = checked_tiles(w, wd, a, ad, half, Some(&mins));
    for (g, acc) in acc.into_iter().enumerate() {
        let (ap, dp, mp) = (a[g].as_ptr(), ad[g].as_ptr(), mins.a[g].as_ptr());
        // SAFETY: the features are the caller's; every length is checked above.
        unsafe {
            kernel(
                w.as_ptr(),
                wd.as_ptr(),
                mins.w.as_ptr(),
                ap,
                dp,
                mp,
                nt,
                acc,
                tokens[g],
            )
        }
    }
}

/// # Safety
/// AVX-512 F/BW/VNNI available; `w` holds `nt` tiles of 512 bytes, `wd` and `wm` `nt × 16`
/// values, `am` `nt × 16`, `a` and `ad` `nt` (`nt / 2` with `HALF`) tiles and `× 16` scales.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn vnni_tiles<const HALF: bool>(
    w: *const u8,
    wd: *const f32,
    wm: *const f32,
    a: *const u8,
    ad: *const f32,
    am: *const f32,
    nt: usize,
    acc: &mut [[f32; TILE_TOKENS]; TILE_ROWS],
    tokens: usize,
) {
    // SAFETY: as the caller promises; `acc` holds 16 rows of 16 values.
    unsafe {
        // Four tokens at a time over every tile: four independent chains of products, and only
        // their four accumulators live (a run of tiles' weights stays in L1 between the groups);
        // only the passes that hold real tokens (a one-token call computed sixteen).
        for t0 in (0..tokens).step_by(QUAD) {
            let mut f = [_mm512_setzero_ps(); QUAD];
            for (j, v) in f.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(acc[t0 + j].as_ptr());
            }
            for b in 0..nt {
                let ab = if HALF { b / 2 } else { b };
                let wt = w.add(b * TILE_BYTES);
                let (dw, mw) = (
                    _mm512_loadu_ps(wd.add(b * TILE_ROWS)),
                    _mm512_loadu_ps(wm.add(b * TILE_ROWS)),
                );
                let (at, dt, st) = (
                    a.add(ab * TILE_BYTES + t0 * 4),
                    ad.add(ab * TILE_TOKENS + t0),
                    am.add(b * TILE_TOKENS + t0),
                );
                let mut s = [_mm512_setzero_si512(); QUAD];
                // A half tile's other four vectors are zeros: their products add nothing.
                let steps = if HALF {
                    4 * (b % 2)..4 * (b % 2) + 4
                } else {
                    0..8
                };
                for k in steps {
                    let wk = _mm512_loadu_si512(wt.add(k * 64) as *const _);
                    for (j, s) in s.iter_mut().enumerate() {
                        let x = (at.add(k * 64 + j * 4) as *const i32).read_unaligned();
                        *s = _mm512_dpbusd_epi32(*s, wk, _mm512_set1_epi32(x));
                    }
                }
                for (j, (v, s)) in f.iter_mut().zip(s).enumerate() {
                    let scale = _mm512_mul_ps(_mm512_set1_ps(*dt.add(j)), dw);
                    *v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, *v);
                    *v = _mm512_fnmadd_ps(mw, _mm512_set1_ps(*st.add(j)), *v);
                }
            }
            for (j, v) in f.iter().enumerate() {
                _mm512_storeu_ps(acc[t0 + j].as_mut_ptr(), *v);
            }
        }
    }
}

/// Tokens of one pass over the tiles.
const QUAD: usize = 4;
