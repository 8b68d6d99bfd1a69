//! AVX2 prefill tile kernels of Q8_0 / Q4_0: `R` packed weight rows against `T` activation rows,
//! each weight vector loaded once for `T` tokens; twins of `tile_scalar.rs` (float weights take
//! the outer products of `avx2_panel.rs`).
//!
//! The packed groups of 16 blocks (`pack.rs`) are read as two halves of eight blocks, one block
//! per int32 lane:
//! - Q4_0 (`u` = nibble ≤ 15): `maddubs(u, a)` pairs stay within ±3810, so eight of them add up
//!   in i16 without saturating (±30480); one `madd` by ones then gives each block's sum;
//! - Q8_0 (`u = w + 128`): `maddubs` would saturate, so the weights go back to signed (`u ^ 0x80`)
//!   and llama.cpp's sign trick `maddubs(|w|, sign(a, w))` is summed in i32.
//!
//! Each half of a group scales its blocks into an accumulator of its own, the two added lane by
//! lane at the end: the arithmetic of the repacked-row kernel (`avx2_x16.rs`), so repacked rows
//! give the same bits by either path (`qx16.rs`).

use std::arch::x86_64::*;

use crate::act_q8::{GROUP_BLOCKS, GROUP_BYTES};
use crate::avx2_dot::hsum_ps;
use crate::cpu::Avx2;
use crate::pack::{Q4_0_OFFSET, Q8_0_OFFSET};
use crate::tile_scalar::ActRow;
#[cfg(test)]
use crate::tile_scalar::QuantRow;

/// Rows and tokens of a full tile of [`panel_quant`]: two rows' vectors against four tokens'
/// (eight i16 / i32 accumulators, four activation vectors in registers, the float sums of a half
/// group stored between groups). Two by two loaded a vector for each product: on a Zen 3 core
/// (`matvec --rows 5632 --cols 2048 --isas avx2 --threads 1 --only prefill --tokens 64`, 128 KiB
/// panels) Q4_0x16 129.6 / Q8_0x16 86.8 GFLOP/s by 2 × 2, 140.5 / 91.2 by 2 × 4, 142.4 / 91.1 by
/// 4 × 2, 131.6 / 90.6 by 3 × 4.
pub(crate) const AVX2_TILE: (usize, usize) = (2, 4);

/// `out[r][t]` for packed quantized rows (`offset` 128 for Q8_0, 8 for Q4_0): one tile, checked
/// (the kernel tests' entry; [`panel_quant`] checks once per panel).
#[cfg(test)]
pub(crate) fn tile_quant<const R: usize, const T: usize>(
    _: Avx2,
    w: [QuantRow<'_>; R],
    a: [ActRow<'_>; T],
    offset: i32,
) -> [[f32; T]; R] {
    let ng = w[0].d.len() / GROUP_BLOCKS;
    assert!(w[0].d.len() == ng * GROUP_BLOCKS);
    assert!(w
        .iter()
        .all(|r| r.qs.len() == ng * GROUP_BYTES && r.d.len() == ng * GROUP_BLOCKS));
    assert!(a.iter().all(|t| t.qs.len() == ng * GROUP_BYTES
        && t.d.len() == ng * GROUP_BLOCKS
        && t.sums.len() == ng * GROUP_BLOCKS));
    let (wq, wd) = (w.map(|r| r.qs.as_ptr()), w.map(|r| r.d.as_ptr()));
    let (aq, ad, asum) = (
        a.map(|t| t.qs.as_ptr()),
        a.map(|t| t.d.as_ptr()),
        a.map(|t| t.sums.as_ptr()),
    );
    // SAFETY: the token proves the features; every length checked above.
    unsafe {
        match offset {
            Q4_0_OFFSET => tile_quant_avx2::<R, T, true>(wq, wd, aq, ad, asum, ng),
            Q8_0_OFFSET => tile_quant_avx2::<R, T, false>(wq, wd, aq, ad, asum, ng),
            _ => panic!("unsupported offset {offset}"),
        }
    }
}

/// Every row of a packed panel (`q`: rows of `q_row` bytes, `d`: rows of `d_row` scales)
/// against the tokens of `a` (4, 2 or 1), `out[t][r]` for row `r`: tiles of two rows (one at an odd
/// end) in one call, the tokens' rows and outputs taken once for the whole panel (through
/// `tiles::run_tiles`, every tile built its rows and handed its results back one by one, about
/// a twentieth of a Q4_0 prompt's time). Each (row, token) pair gives the bits of
/// [`tile_quant`]. On a Zen 3 core, `matvec --rows 5632 --cols 2048 --types q4_0x16,q8_0x16
/// --isas avx2 --threads 1 --only prefill --tokens 64`, three alternating runs, GFLOP/s:
/// Q4_0x16 130.3, 142.8, 135.2 -> 144.1, 158.3, 153.4; Q8_0x16 91.5, 92.8, 92.4 -> 99.6, 97.3,
/// 98.8.
#[allow(clippy::too_many_arguments)]
pub(crate) fn panel_quant(
    k: Avx2,
    q: &[u8],
    d: &[f32],
    rows: (usize, usize),
    a: &[ActRow<'_>],
    out: &mut [&mut [f32]],
    offset: i32,
) {
    assert_eq!(a.len(), out.len());
    let np = out.first().map_or(0, |o| o.len());
    assert!(out.iter().all(|o| o.len() == np));
    let o: [*mut f32; 4] = std::array::from_fn(|t| {
        out.get_mut(t)
            .map_or(std::ptr::null_mut(), |o| o.as_mut_ptr())
    });
    // SAFETY: the first `a.len()` pointers are the outputs' (distinct slices of `np` values).
    unsafe {
        match a.len() {
            4 => panel_quant_n::<4>(k, q, d, rows, [a[0], a[1], a[2], a[3]], o, np, offset),
            2 => panel_quant_n::<2>(k, q, d, rows, [a[0], a[1]], [o[0], o[1]], np, offset),
            1 => panel_quant_n::<1>(k, q, d, rows, [a[0]], [o[0]], np, offset),
            n => panic!("token groups of 4, 2 or 1, not {n}"),
        }
    }
}

/// [`panel_quant`] for `NT` tokens.
///
/// # Safety
/// Each `out[t]` writable for `np` values, none overlapping another.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_quant_n<const NT: usize>(
    _: Avx2,
    q: &[u8],
    d: &[f32],
    (q_row, d_row): (usize, usize),
    a: [ActRow<'_>; NT],
    out: [*mut f32; NT],
    np: usize,
    offset: i32,
) {
    let ng = d_row / GROUP_BLOCKS;
    assert!(d_row == ng * GROUP_BLOCKS && q_row == ng * GROUP_BYTES);
    assert!(q.len() == np * q_row && d.len() == np * d_row);
    assert!(out.iter().all(|o| !o.is_null()));
    assert!(a.iter().all(|t| t.qs.len() == ng * GROUP_BYTES
        && t.d.len() == ng * GROUP_BLOCKS
        && t.sums.len() == ng * GROUP_BLOCKS));
    let (aq, ad, asum) = (
        a.map(|t| t.qs.as_ptr()),
        a.map(|t| t.d.as_ptr()),
        a.map(|t| t.sums.as_ptr()),
    );
    let row = |r: usize| (q[r * q_row..].as_ptr(), d[r * d_row..].as_ptr());
    // SAFETY: the token proves the features; every length checked above, rows r < np.
    unsafe fn tile<const R: usize, const NT: usize>(
        w: [(*const u8, *const f32); R],
        a: ([*const i8; NT], [*const f32; NT], [*const i32; NT]),
        ng: usize,
        q4: bool,
    ) -> [[f32; NT]; R] {
        let (wq, wd) = (w.map(|w| w.0), w.map(|w| w.1));
        // SAFETY: the caller's contract.
        unsafe {
            match q4 {
                true => tile_quant_avx2::<R, NT, true>(wq, wd, a.0, a.1, a.2, ng),
                false => tile_quant_avx2::<R, NT, false>(wq, wd, a.0, a.1, a.2, ng),
            }
        }
    }
    let q4 = match offset {
        Q4_0_OFFSET => true,
        Q8_0_OFFSET => false,
        _ => panic!("unsupported offset {offset}"),
    };
    const RM: usize = AVX2_TILE.0;
    const { assert!(AVX2_TILE.1 == 4) }; // `panel_quant`'s token groups: 4, 2 or 1
    let mut r = 0;
    while r < np {
        // SAFETY: as above; each output pointer has np values (the caller's promise).
        unsafe {
            if np - r >= RM {
                let w = std::array::from_fn(|i| row(r + i));
                let res = tile::<RM, NT>(w, (aq, ad, asum), ng, q4);
                for (i, res) in res.iter().enumerate() {
                    for t in 0..NT {
                        *out[t].add(r + i) = res[t];
                    }
                }
                r += RM;
            } else {
                let res = tile::<1, NT>([row(r)], (aq, ad, asum), ng, q4);
                for t in 0..NT {
                    *out[t].add(r) = res[0][t];
                }
                r += 1;
            }
        }
    }
}

/// # Safety
/// AVX2/FMA available; weight and activation rows hold `ng` groups (512 bytes, 16 scales, 16
/// sums each).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_quant_avx2<const R: usize, const T: usize, const Q4: bool>(
    wq: [*const u8; R],
    wd: [*const f32; R],
    aq: [*const i8; T],
    ad: [*const f32; T],
    asum: [*const i32; T],
    ng: usize,
) -> [[f32; T]; R] {
    let ones = _mm256_set1_epi16(1);
    let flip = _mm256_set1_epi8(-128);
    // A block's lane is its index within its half; the halves keep accumulators of their own,
    // added lane by lane at the end, as the repacked-row kernel sums (`avx2_x16.rs`,
    // `qx16::dot_lanes`): both paths give the same bits. The first half of every group is
    // taken before the second, so only one half's accumulators are live in the loop (both,
    // interleaved group by group, spilled in it: Q4_0 prefill 14% slower).
    let mut facc = [[[_mm256_setzero_ps(); T]; R]; 2];
    let mut av = [_mm256_setzero_si256(); T];
    // The eight steps of a half as a loop the compiler cannot unroll whole: unrolled, it
    // hoisted loads ahead and kept them on the stack.
    let steps = std::hint::black_box(8);
    for (h, facc) in facc.iter_mut().enumerate() {
        for g in 0..ng {
            // Bytes of blocks 8h..8h+8 in each 64-byte step; their scales and sums.
            let (qo, so) = (g * GROUP_BYTES + 32 * h, g * GROUP_BLOCKS + 8 * h);
            let mut iacc = [[_mm256_setzero_si256(); T]; R];
            // SAFETY (loads): group g < ng is inside every row.
            unsafe {
                for k in 0..steps {
                    for t in 0..T {
                        av[t] = _mm256_loadu_si256(aq[t].add(qo + 64 * k) as *const __m256i);
                    }
                    for r in 0..R {
                        let wv = _mm256_loadu_si256(wq[r].add(qo + 64 * k) as *const __m256i);
                        if Q4 {
                            for t in 0..T {
                                let p = _mm256_maddubs_epi16(wv, av[t]);
                                iacc[r][t] = _mm256_add_epi16(iacc[r][t], p);
                            }
                        } else {
                            let ws = _mm256_xor_si256(wv, flip);
                            let wa = _mm256_sign_epi8(ws, ws);
                            for t in 0..T {
                                let p = _mm256_maddubs_epi16(wa, _mm256_sign_epi8(av[t], ws));
                                iacc[r][t] =
                                    _mm256_add_epi32(iacc[r][t], _mm256_madd_epi16(p, ones));
                            }
                        }
                    }
                }
                for t in 0..T {
                    let da = _mm256_loadu_ps(ad[t].add(so));
                    // Q4_0: the i16 pair sums to i32, minus 8 · Σa.
                    let corr = if Q4 {
                        let s = _mm256_loadu_si256(asum[t].add(so) as *const __m256i);
                        _mm256_slli_epi32::<3>(s)
                    } else {
                        _mm256_setzero_si256()
                    };
                    for r in 0..R {
                        let sums = if Q4 {
                            _mm256_sub_epi32(_mm256_madd_epi16(iacc[r][t], ones), corr)
                        } else {
                            iacc[r][t]
                        };
                        let scale = _mm256_mul_ps(_mm256_loadu_ps(wd[r].add(so)), da);
                        let s = _mm256_cvtepi32_ps(sums);
                        facc[r][t] = _mm256_fmadd_ps(s, scale, facc[r][t]);
                    }
                }
            }
        }
    }
    let mut out = [[0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            out[r][t] = hsum_ps(_mm256_add_ps(facc[0][r][t], facc[1][r][t]));
        }
    }
    out
}
