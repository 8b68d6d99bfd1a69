//! AVX-512 prefill tile kernels for Q8_0 / Q4_0: `R` weight rows (packed panel rows, or
//! repacked Q8_0x16 / Q4_0x16 rows read where they lie) against `T` activation rows, each
//! weight vector loaded once for `T` tokens; twins of `tile_scalar.rs` (float weights
//! take the outer-product kernel of `avx512_panel.rs`). One 64-byte load holds four values of
//! each of 16 blocks (`pack.rs`), so eight `vpdpbusd` leave each block's exact `Σ u · a` in its
//! own int32 lane; the accumulator starts at `−offset · Σa` (undoing the unsigned offset of the
//! weights), then the 16 block sums are converted once and scaled by `d_w · d_a` in one FMA —
//! 512 products per (row, token) per eleven instructions. Lanes are summed as the repacked Q4_0 row kernel sums them
//!   (`avx512_x16.rs`), which therefore gives the same bits as this path.

use std::arch::x86_64::*;

use crate::act_q8::{GROUP_BLOCKS, GROUP_BYTES};
use crate::cpu::Avx512;
use crate::pack::{Q4_0_OFFSET, Q8_0_OFFSET};
use crate::tile_scalar::{ActRow, QuantRow};

/// `out[r][t]` for packed quantized rows (`offset` 128 for Q8_0, 8 for Q4_0).
pub(crate) fn tile_quant<const R: usize, const T: usize>(
    _: Avx512,
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
    let shift = match offset {
        Q8_0_OFFSET => 7,
        Q4_0_OFFSET => 3,
        _ => panic!("unsupported offset {offset}"),
    };
    // SAFETY: the token proves the features; every length checked above.
    unsafe {
        tile_avx512::<R, T, PACKED>(
            w.map(|r| r.qs.as_ptr()),
            w.map(|r| r.d.as_ptr()),
            a.map(|t| t.qs.as_ptr()),
            a.map(|t| t.d.as_ptr()),
            a.map(|t| t.sums.as_ptr()),
            ng,
            shift,
        )
    }
}

/// Every row of a packed panel (`n_rows` rows of `q_row` bytes in `q`, `d_row` scales in `d`)
/// against the `T` tokens of `a`, by tiles of 3 rows ([`by_tiles`]), into `out[t][r]`
/// (`out[t]` holds `n_rows` values): [`tile_quant`]'s arithmetic per (row, token), with the
/// checks and pointers made once per panel instead of once per tile.
#[allow(clippy::too_many_arguments)]
pub(crate) fn panel_quant<const T: usize>(
    _: Avx512,
    q: &[u8],
    d: &[f32],
    q_row: usize,
    d_row: usize,
    n_rows: usize,
    a: [ActRow<'_>; T],
    offset: i32,
    out: [&mut [f32]; T],
) {
    let ng = d_row / GROUP_BLOCKS;
    assert!(d_row == ng * GROUP_BLOCKS && q_row == ng * GROUP_BYTES);
    assert!(q.len() >= n_rows * q_row && d.len() >= n_rows * d_row);
    assert!(a.iter().all(|t| t.qs.len() == ng * GROUP_BYTES
        && t.d.len() == ng * GROUP_BLOCKS
        && t.sums.len() == ng * GROUP_BLOCKS));
    assert!(out.iter().all(|o| o.len() >= n_rows));
    let shift = match offset {
        Q8_0_OFFSET => 7,
        Q4_0_OFFSET => 3,
        _ => panic!("unsupported offset {offset}"),
    };
    let (aq, ad, asum) = (
        a.map(|t| t.qs.as_ptr()),
        a.map(|t| t.d.as_ptr()),
        a.map(|t| t.sums.as_ptr()),
    );
    let mut out = out;
    let wq = |r0: usize, i: usize| q.as_ptr().wrapping_add((r0 + i) * q_row);
    let wd = |r0: usize, i: usize| d.as_ptr().wrapping_add((r0 + i) * d_row);
    // SAFETY (both closures): the token proves the features; `by_tiles` passes rows
    // r0..r0 + R ≤ n_rows of the panel, and every activation row holds `ng` groups (checked
    // above).
    by_tiles(
        n_rows,
        &mut out,
        |r0| unsafe {
            tile_avx512::<PANEL_TILE_ROWS, T, PACKED>(
                std::array::from_fn(|i| wq(r0, i)),
                std::array::from_fn(|i| wd(r0, i)),
                aq,
                ad,
                asum,
                ng,
                shift,
            )
        },
        |r0| unsafe {
            tile_avx512::<1, T, PACKED>([wq(r0, 0)], [wd(r0, 0)], aq, ad, asum, ng, shift)
        },
    );
}

/// Rows of the tiles the panel kernels run ([`panel_quant`], `avx512_x16::panel_rows`).
pub(crate) const PANEL_TILE_ROWS: usize = 3;

/// A panel of `n_rows` rows by tiles: `full(r0)` for rows `r0..r0 + PANEL_TILE_ROWS`, then the
/// edge rows by `one(r0)`; each tile's `[row][token]` results go to `out[token][row]`.
#[inline(always)]
pub(crate) fn by_tiles<const T: usize>(
    n_rows: usize,
    out: &mut [&mut [f32]; T],
    mut full: impl FnMut(usize) -> [[f32; T]; PANEL_TILE_ROWS],
    mut one: impl FnMut(usize) -> [[f32; T]; 1],
) {
    fn put<const R: usize, const T: usize>(
        out: &mut [&mut [f32]; T],
        r0: usize,
        res: [[f32; T]; R],
    ) {
        for (t, o) in out.iter_mut().enumerate() {
            for (i, row) in res.iter().enumerate() {
                o[r0 + i] = row[t];
            }
        }
    }
    let mut r0 = 0;
    while r0 < n_rows {
        if n_rows - r0 >= PANEL_TILE_ROWS {
            put(out, r0, full(r0));
            r0 += PANEL_TILE_ROWS;
        } else {
            put(out, r0, one(r0));
            r0 += 1;
        }
    }
}

/// Where a tile kernel's weight rows come from: packed panel rows (`pack.rs`: 512 bytes and 16
/// `f32` scales a group, beside each other in two arrays), or repacked rows read where they lie
/// (`qx16.rs`: per group 16 f16 scales, then Q8_0's 512 bytes or Q4_0's 256 bytes of nibbles,
/// whose low nibbles are a packed row's steps 0–3 and high ones its steps 4–7).
pub(crate) const PACKED: u8 = 0;
/// Repacked Q8_0 rows ([`PACKED`]).
pub(crate) const X16_Q8_0: u8 = 1;
/// Repacked Q4_0 rows ([`PACKED`]).
pub(crate) const X16_Q4_0: u8 = 2;

/// `R` weight rows × `T` tokens, the rows' bytes as `SRC` says (`wd` is read only for
/// [`PACKED`]); `shift` 7 for Q8_0's offset of 128, 3 for Q4_0's 8 (repacked sources imply it:
/// a shift by an immediate measured 3–5% faster than by a register there). Every source gives
/// the same bytes and scales for the same matrix, so the same bits.
///
/// # Safety
/// The features available; weight rows (and for [`PACKED`] their scales) and activation rows
/// hold `ng` groups (512 values, 16 scales, 16 sums each).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn tile_avx512<const R: usize, const T: usize, const SRC: u8>(
    wq: [*const u8; R],
    wd: [*const f32; R],
    aq: [*const i8; T],
    ad: [*const f32; T],
    asum: [*const i32; T],
    ng: usize,
    shift: i32,
) -> [[f32; T]; R] {
    let group = match SRC {
        PACKED => GROUP_BYTES,
        X16_Q8_0 => crate::qx16::X16::Q8_0.group_bytes(),
        _ => crate::qx16::X16::Q4_0.group_bytes(),
    };
    let quants_at = if SRC == PACKED {
        0
    } else {
        crate::qx16::QUANTS_AT
    };
    let low = _mm512_set1_epi8(0x0f);
    let sh = _mm_cvtsi32_si128(shift);
    let mut facc = [[_mm512_setzero_ps(); T]; R];
    let mut init = [_mm512_setzero_si512(); T];
    let mut av = [_mm512_setzero_si512(); T];
    let mut nib = [_mm512_setzero_si512(); R];
    for g in 0..ng {
        let (qo, so) = (g * GROUP_BYTES, g * GROUP_BLOCKS);
        // SAFETY (loads): group g < ng is inside every row and activation row.
        unsafe {
            for t in 0..T {
                let s = _mm512_loadu_si512(asum[t].add(so) as *const _);
                let off = match SRC {
                    X16_Q8_0 => _mm512_slli_epi32::<7>(s),
                    X16_Q4_0 => _mm512_slli_epi32::<3>(s),
                    _ => _mm512_sll_epi32(s, sh),
                };
                init[t] = _mm512_sub_epi32(_mm512_setzero_si512(), off);
            }
            let mut iacc = [init; R];
            let grp: [*const u8; R] = std::array::from_fn(|r| wq[r].add(g * group + quants_at));
            // Steps k and k + 4 of each group together (Q4_0's nibbles share one load).
            for k in 0..4 {
                for half in 0..2 {
                    let step = k + 4 * half;
                    if SRC == X16_Q4_0 && half == 0 {
                        for r in 0..R {
                            nib[r] = _mm512_loadu_si512(grp[r].add(64 * k) as *const _);
                        }
                    }
                    for t in 0..T {
                        av[t] = _mm512_loadu_si512(aq[t].add(qo + 64 * step) as *const _);
                    }
                    for r in 0..R {
                        let wv = if SRC == X16_Q4_0 {
                            if half == 0 {
                                _mm512_and_si512(nib[r], low)
                            } else {
                                _mm512_and_si512(_mm512_srli_epi16::<4>(nib[r]), low)
                            }
                        } else {
                            _mm512_loadu_si512(grp[r].add(64 * step) as *const _)
                        };
                        for t in 0..T {
                            iacc[r][t] = _mm512_dpbusd_epi32(iacc[r][t], wv, av[t]);
                        }
                    }
                }
            }
            for r in 0..R {
                let dw = if SRC == PACKED {
                    _mm512_loadu_ps(wd[r].add(so))
                } else {
                    _mm512_cvtph_ps(_mm256_loadu_si256(wq[r].add(g * group) as *const __m256i))
                };
                for t in 0..T {
                    let scale = _mm512_mul_ps(dw, _mm512_loadu_ps(ad[t].add(so)));
                    let s = _mm512_cvtepi32_ps(iacc[r][t]);
                    facc[r][t] = _mm512_fmadd_ps(s, scale, facc[r][t]);
                }
            }
        }
    }
    // Lanes summed as the repacked Q4_0 row kernel sums them, so both paths agree bitwise there.
    let mut out = [[0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            // SAFETY: the features are enabled in this function.
            out[r][t] = unsafe { crate::avx512_x16::reduce16(facc[r][t]) };
        }
    }
    out
}
