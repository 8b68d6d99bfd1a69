//! The AVX2 kernel of the block-tile driver (`block_tiles.rs`), for K-quant prefill at the AVX2 level:
//! the AVX-512 VNNI kernel's tiles (per tile, eight 64-byte vectors of 4 unsigned values of
//! each of 16 rows), taken as two halves of 8 rows, one row per 32-bit lane, against each
//! token's 4-value groups broadcast from the activation tile. Scalar twin:
//! [`crate::block_tiles::tile_q8_scalar`], bitwise equal (and so equal to the AVX-512 VNNI kernel).
//!
//! Without `vpdpbusd`, `vpmaddubsw` multiplies the unsigned weights by the signed activations
//! and adds each lane's pairs in i16 (saturating); [`i16_steps`] of those add up in i16 before
//! one `vpmaddwd` by ones widens each lane to its exact int32 sum. The weights' largest value
//! (15 for Q4_K, 31 for Q5_K, 63 for Q6_K) and the activations' (|a| ≤ 127, Q8_0) bound each
//! i16 sum below 2¹⁵, so nothing saturates and the sums are the exact integers of the twin.
//! Then the AVX-512 kernel's epilogue, eight lanes at a time: `v += s · (d_a · d_w)`,
//! `v −= m_w · (d_a · Σ a)`.
//!
//! Tokens go four at a time over a half's whole run of tiles: four independent chains, their
//! accumulators in registers, the run's weights in L1 between the passes. A tile of a 16-value
//! block type (Q6_K, Q3_K, Q2_K) holds its values in one half, zeros in the other: only its
//! four vectors are multiplied.

use std::arch::x86_64::*;

use crate::avx512_blocks::{run_block_kernel, BlockKernel};
use crate::block_tile_shape::{Mins, TILE_BYTES, TILE_ROWS, TILE_TOKENS};
use crate::block_tiles::TileKernel;
use crate::cpu::Avx2;
use crate::WeightType;

/// The kernel for weights of one type, proof of AVX2 in hand.
pub(crate) struct Avx2Tiles {
    _features: Avx2,
    /// Products summed in i16 before widening ([`i16_steps`]).
    steps: usize,
}

impl Avx2Tiles {
    pub(crate) fn new(features: Avx2, ty: WeightType) -> Avx2Tiles {
        Avx2Tiles {
            _features: features,
            steps: i16_steps(ty),
        }
    }
}

/// Largest activation magnitude of a Q8_0 block: `round(x / d)` with `d = amax / 127`.
const ACT_MAX: usize = 127;

/// How many `vpmaddubsw` results of weights of `ty` (each lane `u₀a₀ + u₁a₁`, |…| ≤ 2 · u_max ·
/// 127) add up in i16 without passing 2¹⁵ − 1: a power of two, at most the eight steps of a tile.
pub(crate) fn i16_steps(ty: WeightType) -> usize {
    let u_max: usize = match ty.stored() {
        WeightType::Q2_K => 3,
        WeightType::Q3_K => 7,
        WeightType::Q4_K => 15,
        WeightType::Q5_K => 31,
        WeightType::Q6_K => 63,
        _ => panic!("not a K-quant type: {ty:?}"),
    };
    let fit = i16::MAX as usize / (2 * u_max * ACT_MAX);
    1 << fit.min(8).ilog2()
}

impl TileKernel for Avx2Tiles {
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
        let kernel: BlockKernel = match (half, self.steps) {
            (true, 1) => avx2_tiles::<true, 1>,
            (true, 2) => avx2_tiles::<true, 2>,
            (true, _) => avx2_tiles::<true, 4>,
            (false, 1) => avx2_tiles::<false, 1>,
            (false, 2) => avx2_tiles::<false, 2>,
            (false, 4) => avx2_tiles::<false, 4>,
            (false, _) => avx2_tiles::<false, 8>,
        };
        // SAFETY: `_features` proves AVX2.
        unsafe { run_block_kernel(kernel, w, wd, a, ad, half, mins, acc, tokens) }
    }
}

/// `STEPS`: products summed in i16 before widening (for `HALF` at most the tile's four).
///
/// # Safety
/// AVX2/FMA available; `w` holds `nt` tiles of 512 bytes, `wd` and `wm` `nt × 16` values, `am`
/// `nt × 16`, `a` and `ad` `nt` (`nt / 2` with `HALF`) tiles and `× 16` scales.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2_tiles<const HALF: bool, const STEPS: usize>(
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
    let ones = _mm256_set1_epi16(1);
    // SAFETY: as the caller promises; `acc` holds 16 tokens of 16 rows.
    unsafe {
        for h in 0..2 {
            // Rows 8h..8h + 8: bytes 32h..32h + 32 of each 64-byte vector.
            let rows = 8 * h;
            // Only the passes that hold real tokens.
            for t0 in (0..tokens).step_by(QUAD) {
                let mut f = [_mm256_setzero_ps(); QUAD];
                for (j, v) in f.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(acc[t0 + j].as_ptr().add(rows));
                }
                for b in 0..nt {
                    let ab = if HALF { b / 2 } else { b };
                    let wt = w.add(b * TILE_BYTES + 4 * rows);
                    let at = a.add(ab * TILE_BYTES + t0 * 4);
                    // A half tile's other four vectors are zeros: their products add nothing.
                    let first = if HALF { 4 * (b % 2) } else { 0 };
                    let n_steps = if HALF { 4 } else { 8 };
                    let mut s = [_mm256_setzero_si256(); QUAD];
                    for k0 in (first..first + n_steps).step_by(STEPS) {
                        let mut p = [_mm256_setzero_si256(); QUAD];
                        for k in k0..k0 + STEPS {
                            let wk = _mm256_loadu_si256(wt.add(k * 64) as *const __m256i);
                            for (j, p) in p.iter_mut().enumerate() {
                                let x = (at.add(k * 64 + j * 4) as *const i32).read_unaligned();
                                let prod = _mm256_maddubs_epi16(wk, _mm256_set1_epi32(x));
                                *p = _mm256_add_epi16(*p, prod);
                            }
                        }
                        for (s, p) in s.iter_mut().zip(p) {
                            *s = _mm256_add_epi32(*s, _mm256_madd_epi16(p, ones));
                        }
                    }
                    let (dw, mw) = (
                        _mm256_loadu_ps(wd.add(b * TILE_ROWS + rows)),
                        _mm256_loadu_ps(wm.add(b * TILE_ROWS + rows)),
                    );
                    let (dt, st) = (ad.add(ab * TILE_TOKENS + t0), am.add(b * TILE_TOKENS + t0));
                    for (j, (v, s)) in f.iter_mut().zip(s).enumerate() {
                        let scale = _mm256_mul_ps(_mm256_set1_ps(*dt.add(j)), dw);
                        *v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, *v);
                        *v = _mm256_fnmadd_ps(mw, _mm256_set1_ps(*st.add(j)), *v);
                    }
                }
                for (j, v) in f.iter().enumerate() {
                    _mm256_storeu_ps(acc[t0 + j].as_mut_ptr().add(rows), *v);
                }
            }
        }
    }
}

/// Tokens of one pass over the tiles.
const QUAD: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_tiles::{tile_q8_scalar, TileForm};
    use crate::cpu::{Isa, Level};
    use crate::kernel_tests::Rng;

    /// The kernel against its scalar twin where its i16 sums are largest: every weight at its
    /// type's largest value, activations all +127, all −127 or random, whole and half tiles,
    /// one token group and two; and the step counts each type gets.
    #[test]
    fn sums_at_the_extremes_match_the_twin() {
        use WeightType::*;
        assert_eq!(
            [Q2_K, Q3_K, Q4_K, Q5_K, Q6_K].map(i16_steps),
            [8, 8, 8, 4, 2]
        );
        let Some(Level::Avx2(k)) = Level::new(Isa::Avx2) else {
            eprintln!("skip: AVX2 not available");
            return;
        };
        let mut rng = Rng(0x6a09e667f3bcc908);
        let mut floats = |n: usize| (0..n).map(|_| rng.f32()).collect::<Vec<f32>>();
        for (ty, u_max) in [(Q2_K, 3u8), (Q3_K, 7), (Q4_K, 15), (Q5_K, 31), (Q6_K, 63)] {
            let half = TileForm::new(ty).half;
            let nt = 6;
            let na = if half { nt / 2 } else { nt };
            // A half tile holds values in its own four vectors only (as the packer writes it).
            let mut w = vec![0u8; nt * TILE_BYTES];
            for (b, tile) in w.chunks_exact_mut(TILE_BYTES).enumerate() {
                let own = if half {
                    4 * (b % 2)..4 * (b % 2) + 4
                } else {
                    0..8
                };
                tile[own.start * 64..own.end * 64].fill(u_max);
            }
            let (wd, wm) = (floats(nt * TILE_ROWS), floats(nt * TILE_ROWS));
            for a_byte in [Some(127i8), Some(-127), None] {
                let a: [Vec<u8>; 2] = std::array::from_fn(|_| {
                    (0..na * TILE_BYTES)
                        .map(|i| match a_byte {
                            Some(v) => v as u8,
                            None => ((i * 37 + 11) % 255) as u8 ^ 0x80,
                        })
                        .map(|v| if v == 0x80 { 0x81 } else { v })
                        .collect()
                });
                let ad: [Vec<f32>; 2] = std::array::from_fn(|_| floats(na * TILE_TOKENS));
                let am: [Vec<f32>; 2] = std::array::from_fn(|_| floats(nt * TILE_TOKENS));
                let start: [[f32; TILE_TOKENS]; TILE_ROWS] =
                    std::array::from_fn(|_| floats(TILE_TOKENS).try_into().unwrap());
                let mut want = [start; 2];
                for (g, want) in want.iter_mut().enumerate() {
                    let mins = Some((&wm[..], &am[g][..]));
                    tile_q8_scalar(&w, &wd, &a[g], &ad[g], half, mins, want);
                }
                let kernel = Avx2Tiles::new(k, ty);
                let (mut one, mut pair) = (start, [start; 2]);
                kernel.run(
                    &w,
                    &wd,
                    [&a[0][..]],
                    [&ad[0][..]],
                    half,
                    Some(Mins {
                        w: &wm,
                        a: [&am[0]],
                    }),
                    [&mut one],
                    [TILE_TOKENS],
                );
                let [p0, p1] = &mut pair;
                let (aa, dd) = ([&a[0][..], &a[1][..]], [&ad[0][..], &ad[1][..]]);
                kernel.run(
                    &w,
                    &wd,
                    aa,
                    dd,
                    half,
                    Some(Mins {
                        w: &wm,
                        a: [&am[0], &am[1]],
                    }),
                    [p0, p1],
                    [TILE_TOKENS; 2],
                );
                let bits = |m: &[[f32; TILE_TOKENS]; TILE_ROWS]| m.map(|r| r.map(f32::to_bits));
                let what = format!("{ty:?} activations {a_byte:?}");
                assert_eq!(bits(&one), bits(&want[0]), "{what}: alone");
                assert_eq!(bits(&pair[0]), bits(&want[0]), "{what}: first of a pair");
                assert_eq!(bits(&pair[1]), bits(&want[1]), "{what}: second of a pair");
            }
        }
    }
}
