//! AVX-512 prefill tile kernels for Q8_0 / Q4_0: `R` weight rows (packed panel rows, or
//! repacked Q8_0x16 / Q4_0x16 rows read where they lie) against `T` activation rows, each
//! weight vector loaded once for `T` tokens; twins of `tile_scalar.rs` (float weights
//! take the outer-product kernel of `avx512_panel.rs`). One 64-byte load holds four values of
//! each of 16 blocks (`pack.rs`), so eight `vpdpbusd` leave each block's exact `Σ u · a` in its
//! own int32 lane; the accumulator starts at `−offset · Σa` (undoing the unsigned offset of the
//! weights), then the 16 block sums are converted once and scaled by `d_w · d_a` in one FMA —
//! 512 products per (row, token) per eleven instructions. Lanes are summed as the repacked row
//! kernel sums them (`avx512_x16.rs`), which therefore gives the same bits as this path; a full
//! 3 × 4 tile sums its twelve accumulators side by side (`reduce_3x4`) and stores each token's
//! three results with one masked store. The tile loop runs inside the kernels' feature set, so
//! the tiles are inlined into it.

use std::arch::x86_64::*;

use crate::act_q8::{GROUP_BLOCKS, GROUP_BYTES};
use crate::cpu::Avx512;
use crate::pack::{Q4_0_OFFSET, Q8_0_OFFSET};
use crate::qx16::X16;
use crate::tile_scalar::ActRow;
#[cfg(test)]
use crate::tile_scalar::QuantRow;

/// `out[r][t]` for packed quantized rows (`offset` 128 for Q8_0, 8 for Q4_0): one tile, checked
/// (the kernel tests' entry; the product takes whole panels, [`panel`]).
#[cfg(test)]
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
    let (wq, wd) = (w.map(|r| r.qs.as_ptr()), w.map(|r| r.d.as_ptr()));
    let (aq, ad, asum) = (
        a.map(|t| t.qs.as_ptr()),
        a.map(|t| t.d.as_ptr()),
        a.map(|t| t.sums.as_ptr()),
    );
    let mut res = [[0f32; R]; T];
    let out = res.each_mut().map(|o| o.as_mut_ptr());
    // SAFETY: the token proves the features; every length checked above; `out[t]` holds `R`
    // values.
    unsafe {
        let (acts, out) = ((aq, ad, asum), Some(out));
        macro_rules! tile {
            ($src:expr) => {
                tile_avx512::<R, T, { $src }, false>(
                    wq,
                    wd,
                    acts,
                    0..ng,
                    NO_TAIL,
                    None,
                    out,
                    ALL_LINES,
                )
            };
        }
        match offset {
            Q8_0_OFFSET => tile!(PACKED_Q8_0),
            Q4_0_OFFSET => tile!(PACKED_Q4_0),
            _ => panic!("unsupported offset {offset}"),
        }
    }
    std::array::from_fn(|r| std::array::from_fn(|t| res[t][r]))
}

/// The weight rows of a panel, as [`panel`] reads them.
#[derive(Clone, Copy)]
pub(crate) enum PanelRows<'a> {
    /// Packed panel rows (`pack.rs`): `q_row` bytes each in `q`, `d_row` scales each in `d`,
    /// values offset by `offset` (128 for Q8_0, 8 for Q4_0).
    Packed {
        q: &'a [u8],
        d: &'a [f32],
        q_row: usize,
        d_row: usize,
        offset: i32,
    },
    /// Repacked rows of `kind` (`qx16.rs`), back to back, read where they lie.
    Repacked { kind: X16, w: &'a [u8] },
}

/// Every row of a panel (`out[t].len()` rows) against the `T` tokens of `a` (interleaved Q8_0
/// activations), by tiles of [`PANEL_TILE_ROWS`] rows (edge rows one at a time), into
/// `out[t][r]`: [`tile_quant`]'s arithmetic per (row, token), with the checks and pointers
/// made once per panel instead of once per tile. Repacked rows give the bytes and scales
/// `qx16::pack_tiles_row` would pack of them (Q8_0's bytes as they lie, Q4_0's nibbles split
/// in registers, the scales widened from f16), so both sources give the same bits.
///
/// `ahead`: what to bring into L2 while the panel runs ([`Ahead`]; hints only).
pub(crate) fn panel<const T: usize>(
    _: Avx512,
    rows: PanelRows<'_>,
    a: [ActRow<'_>; T],
    out: [&mut [f32]; T],
    ahead: Ahead<'_>,
) {
    let ng = a[0].d.len() / GROUP_BLOCKS;
    let n_rows = out[0].len();
    assert!(a.iter().all(|t| t.qs.len() == ng * GROUP_BYTES
        && t.d.len() == ng * GROUP_BLOCKS
        && t.sums.len() == ng * GROUP_BLOCKS));
    assert!(out.iter().all(|o| o.len() == n_rows));
    let acts = (
        a.map(|t| t.qs.as_ptr()),
        a.map(|t| t.d.as_ptr()),
        a.map(|t| t.sums.as_ptr()),
    );
    let mut out = out;
    match rows {
        PanelRows::Packed {
            q,
            d,
            q_row,
            d_row,
            offset,
        } => {
            assert!(q_row == ng * GROUP_BYTES && d_row == ng * GROUP_BLOCKS);
            assert!(q.len() >= n_rows * q_row && d.len() >= n_rows * d_row);
            // Packed panels lie in a scratch buffer: nothing to stream.
            let lines = match ahead {
                Ahead::Stream => &[][..],
                Ahead::Lines(lines) => lines,
            };
            let w = (q.as_ptr(), q_row, d.as_ptr(), d_row);
            // SAFETY: the token proves the features; rows and activations checked above.
            unsafe {
                match offset {
                    Q8_0_OFFSET => {
                        by_tiles::<T, PACKED_Q8_0, false>(&mut out, w, acts, (ng, NO_TAIL), lines)
                    }
                    Q4_0_OFFSET => {
                        by_tiles::<T, PACKED_Q4_0, false>(&mut out, w, acts, (ng, NO_TAIL), lines)
                    }
                    _ => panic!("unsupported offset {offset}"),
                }
            }
        }
        PanelRows::Repacked { kind, w } => {
            // A partial last group is read by loads masked to its blocks.
            let (stride, last) = crate::qx16::rows_shape(kind, w.len(), n_rows, ng);
            let tail = if last < GROUP_BLOCKS {
                (ng - 1, last)
            } else {
                NO_TAIL
            };
            // Scale pointers are not read for repacked rows.
            let w = (w.as_ptr(), stride, std::ptr::null(), 0);
            // SAFETY: the token proves the features; rows and activations checked above.
            unsafe {
                let shape = (ng, tail);
                match (kind, ahead) {
                    (X16::Q8_0, Ahead::Stream) => {
                        by_tiles::<T, X16_Q8_0, true>(&mut out, w, acts, shape, &[])
                    }
                    (X16::Q4_0, Ahead::Stream) => {
                        by_tiles::<T, X16_Q4_0, true>(&mut out, w, acts, shape, &[])
                    }
                    (X16::Q8_0, Ahead::Lines(l)) => {
                        by_tiles::<T, X16_Q8_0, false>(&mut out, w, acts, shape, l)
                    }
                    (X16::Q4_0, Ahead::Lines(l)) => {
                        by_tiles::<T, X16_Q4_0, false>(&mut out, w, acts, shape, l)
                    }
                }
            }
        }
    }
}

/// What a [`panel`] call asks memory for while its tiles compute (prefetches into L2: hints,
/// never dereferenced, so the results are the same bits whatever it asks).
#[derive(Clone, Copy)]
pub(crate) enum Ahead<'a> {
    /// The panel's own rows, `PREFETCH_BYTES` ahead of each row's reads group by group, as the
    /// decode kernel streams them (repacked rows only): for the first pass over a panel that
    /// comes from memory.
    Stream,
    /// These bytes (a share of the next panel), a share per tile at its start.
    Lines(&'a [u8]),
}

/// How far ahead of the rows a streaming tile reads it asks for them ([`Ahead::Stream`],
/// [`panel_streamed`]): the decode kernels' distance.
const STREAM_AHEAD: usize = crate::avx2_dot::PREFETCH_BYTES;

/// Every token of `a` times the repacked rows `w` (`out[0].len()` rows of `kind`), tile by
/// tile: each tile of rows takes every group of four tokens (then two, then one) while its rows
/// sit in L1, the rows streamed in from memory [`STREAM_AHEAD`] bytes ahead, each line asked
/// for once, in one of the token groups' passes (spread over them, so the memory is asked at
/// an even pace while the tiles compute). The same arithmetic per (row, token) as [`panel`], so
/// the same bits.
pub(crate) fn panel_streamed(
    _: Avx512,
    kind: X16,
    w: &[u8],
    a: &[ActRow<'_>],
    out: &mut [&mut [f32]],
) {
    let n_rows = out.first().map_or(0, |o| o.len());
    let Some(a0) = a.first() else { return };
    let ng = a0.d.len() / GROUP_BLOCKS;
    assert_eq!(a.len(), out.len());
    assert!(a.iter().all(|t| t.qs.len() == ng * GROUP_BYTES
        && t.d.len() == ng * GROUP_BLOCKS
        && t.sums.len() == ng * GROUP_BLOCKS));
    assert!(out.iter().all(|o| o.len() == n_rows));
    let (stride, last) = crate::qx16::rows_shape(kind, w.len(), n_rows, ng);
    let tail = if last < GROUP_BLOCKS {
        (ng - 1, last)
    } else {
        NO_TAIL
    };
    // SAFETY: the token proves the features; rows and activations checked above.
    unsafe {
        match kind {
            X16::Q8_0 => streamed::<X16_Q8_0>(w.as_ptr(), stride, a, out, (ng, tail)),
            X16::Q4_0 => streamed::<X16_Q4_0>(w.as_ptr(), stride, a, out, (ng, tail)),
        }
    }
}

/// [`panel_streamed`] for one layout.
///
/// # Safety
/// The features available; `out[0].len()` rows of `stride` bytes at `q`, each of `ng` groups
/// of the layout `SRC` names (group `tail.0`, if any, of `tail.1` blocks); activation rows of
/// `ng` groups.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn streamed<const SRC: u8>(
    q: *const u8,
    stride: usize,
    a: &[ActRow<'_>],
    out: &mut [&mut [f32]],
    (ng, tail): (usize, Tail),
) {
    let n_rows = out[0].len();
    let passes = token_groups(a.len()).count();
    let wq = |r: usize| q.wrapping_add(r * stride);
    let null = std::ptr::null::<f32>();
    let mut r0 = 0;
    while r0 < n_rows {
        let rows = (n_rows - r0).min(PANEL_TILE_ROWS);
        for (pass, (t0, nt)) in token_groups(a.len()).enumerate() {
            let t = &a[t0..t0 + nt];
            let acts = |i: usize| {
                let t = &t[i.min(nt - 1)];
                (t.qs.as_ptr(), t.d.as_ptr(), t.sums.as_ptr())
            };
            // The lines this pass asks for: line l in pass l % passes, so that the memory is
            // asked at an even pace over the passes (a mask made once per pass: no division
            // in the kernel's steps).
            let pf = (pass..u32::BITS as usize)
                .step_by(passes)
                .fold(0u32, |m, l| m | 1 << l);
            let step = if rows == PANEL_TILE_ROWS { rows } else { 1 };
            for r in (r0..r0 + rows).step_by(step) {
                let mut o = |i: usize| out[t0 + i.min(nt - 1)][r..].as_mut_ptr();
                let g = 0..ng;
                // SAFETY: rows r.. hold `ng` groups (the caller's promise); each `out[t]` has
                // room for the tile's rows.
                unsafe {
                    macro_rules! run {
                        ($r:literal, $t:literal) => {{
                            let w: [*const u8; $r] = std::array::from_fn(|i| wq(r + i));
                            let acts: ActPtrs<$t> = (
                                std::array::from_fn(|i| acts(i).0),
                                std::array::from_fn(|i| acts(i).1),
                                std::array::from_fn(|i| acts(i).2),
                            );
                            let out = Some(std::array::from_fn(|i| o(i)));
                            tile_avx512::<$r, $t, SRC, true>(
                                w, [null; $r], acts, g, tail, None, out, pf,
                            )
                        }};
                    }
                    match (step, nt) {
                        (3, 4) => run!(3, 4),
                        (3, 2) => run!(3, 2),
                        (3, _) => run!(3, 1),
                        (_, 4) => run!(1, 4),
                        (_, 2) => run!(1, 2),
                        _ => run!(1, 1),
                    }
                }
            }
        }
        r0 += rows;
    }
}

/// The groups of 4 tokens (then 2, then 1) that cover `0..n_tokens`, as (first token, tokens):
/// the token counts of the tile kernels, one pass over a panel or tile each.
pub(crate) fn token_groups(n_tokens: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut t0 = 0;
    std::iter::from_fn(move || {
        let nt = match n_tokens.checked_sub(t0)? {
            0 => return None,
            1 => 1,
            2 | 3 => 2,
            _ => 4,
        };
        t0 += nt;
        Some((t0 - nt, nt))
    })
}

/// Rows of the tiles [`panel`] runs.
const PANEL_TILE_ROWS: usize = 3;

/// Weight rows as pointers: (first row's bytes, bytes per row, first row's scales, scales per
/// row).
type RowPtrs = (*const u8, usize, *const f32, usize);
/// Activation rows as pointers: (values, scales, sums) per token.
type ActPtrs<const T: usize> = ([*const i8; T], [*const f32; T], [*const i32; T]);

/// The `out[0].len()` rows of `w` by tiles of [`PANEL_TILE_ROWS`] rows, the edge rows one at a
/// time, all groups at once or in blocks of [`BLOCK_GROUPS`] for long rows; each tile's
/// `[row][token]` results go to `out[token][row]`. `STREAM`: the rows are streamed in as the tiles
/// read them ([`Ahead::Stream`]), else `ahead` is prefetched a share per tile.
///
/// # Safety
/// The features available; every row of `w` and every activation row hold `ng` groups of the
/// layout `SRC` names, group `tail.0` (if any) of `tail.1` blocks ([`tile_avx512`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn by_tiles<const T: usize, const SRC: u8, const STREAM: bool>(
    out: &mut [&mut [f32]; T],
    w: RowPtrs,
    acts: ActPtrs<T>,
    (ng, tail): (usize, Tail),
    mut ahead: &[u8],
) {
    let (q, q_row, d, d_row) = w;
    let wq = |r: usize| q.wrapping_add(r * q_row);
    let wd = |r: usize| d.wrapping_add(r * d_row);
    let n_rows = out[0].len();
    // Groups per pass over the panel: all of them, or blocks of them for long rows, each
    // tile's accumulators kept between blocks (so the sums run in the same order).
    let block = if ng > UNBLOCKED_GROUPS {
        BLOCK_GROUPS
    } else {
        ng.max(1)
    };
    let n_tiles = n_rows / PANEL_TILE_ROWS;
    let mut kept: Vec<[[__m512; T]; PANEL_TILE_ROWS]> = Vec::new();
    let mut kept_edge: Vec<[[__m512; T]; 1]> = Vec::new();
    if block < ng {
        let zero = _mm512_setzero_ps();
        kept = vec![[[zero; T]; PANEL_TILE_ROWS]; n_tiles];
        kept_edge = vec![[[zero; T]; 1]; n_rows - n_tiles * PANEL_TILE_ROWS];
    }
    // The lines of `ahead`, a share per tile row.
    let steps = ng.div_ceil(block) * n_rows.div_ceil(PANEL_TILE_ROWS);
    let per_step = ahead.len().div_ceil(64).div_ceil(steps.max(1));
    for g0 in (0..ng).step_by(block) {
        let groups = g0..(g0 + block).min(ng);
        let last = groups.end == ng;
        for r0 in (0..n_rows).step_by(PANEL_TILE_ROWS) {
            let (now, rest) = ahead.split_at((64 * per_step).min(ahead.len()));
            crate::stream::prefetch_lines_l2(now.as_ptr() as usize, now.len().div_ceil(64));
            ahead = rest;
            let mut at = |r0: usize| last.then(|| out.each_mut().map(|o| o[r0..].as_mut_ptr()));
            // SAFETY: rows r0..r0 + R ≤ n_rows hold `ng` groups (the caller's promise), and
            // each `out[t]` has room for them.
            if n_rows - r0 >= PANEL_TILE_ROWS {
                let acc = kept.get_mut(r0 / PANEL_TILE_ROWS);
                unsafe {
                    tile_avx512::<PANEL_TILE_ROWS, T, SRC, STREAM>(
                        std::array::from_fn(|i| wq(r0 + i)),
                        std::array::from_fn(|i| wd(r0 + i)),
                        acts,
                        groups.clone(),
                        tail,
                        acc,
                        at(r0),
                        ALL_LINES,
                    )
                };
            } else {
                for r in r0..n_rows {
                    let acc = kept_edge.get_mut(r - r0);
                    let (wq, wd) = ([wq(r)], [wd(r)]);
                    let groups = groups.clone();
                    unsafe {
                        tile_avx512::<1, T, SRC, STREAM>(
                            wq,
                            wd,
                            acts,
                            groups,
                            tail,
                            acc,
                            at(r),
                            ALL_LINES,
                        )
                    };
                }
            }
        }
    }
}

/// Rows longer than this many groups are multiplied in blocks of [`BLOCK_GROUPS`] groups, so
/// that a token group's activations for one block stay in L1 across the panel (four tokens of
/// a group take 2.5 KiB with their scales and sums). Q4_0x16 prefill at one thread
/// (`matvec --rows 1024 --tokens 512`) ran 626 G op/s at 4096 columns but 555 at 8192 and 416
/// at 11008 (Llama-2-7B's down projection) before.
const UNBLOCKED_GROUPS: usize = 12;
/// Groups per block of long rows ([`UNBLOCKED_GROUPS`]).
const BLOCK_GROUPS: usize = 8;

/// Where a tile kernel's weight rows come from and what they hold: packed panel rows
/// (`pack.rs`: 512 bytes and 16 `f32` scales a group, beside each other in two arrays), or
/// repacked rows read where they lie (`qx16.rs`: per group 16 f16 scales, then Q8_0's 512 bytes
/// or Q4_0's 256 bytes of nibbles, whose low nibbles are a packed row's steps 0–3 and high ones
/// its steps 4–7); Q8_0 values offset by 128, Q4_0's by 8.
const PACKED_Q8_0: u8 = 0;
/// Packed Q4_0 rows ([`PACKED_Q8_0`]).
const PACKED_Q4_0: u8 = 1;
/// Repacked Q8_0 rows ([`PACKED_Q8_0`]).
const X16_Q8_0: u8 = 2;
/// Repacked Q4_0 rows ([`PACKED_Q8_0`]).
const X16_Q4_0: u8 = 3;

/// A partial group of repacked rows: (its index, its blocks), read by loads masked to them
/// (`qx16.rs`); [`NO_TAIL`] where every group is whole.
type Tail = (usize, usize);
/// No partial group.
const NO_TAIL: Tail = (usize::MAX, GROUP_BLOCKS);

/// Every line of a group ([`tile_avx512`]'s `lines`).
const ALL_LINES: u32 = u32::MAX;

/// `R` weight rows × `T` tokens over the groups `groups`, the rows' bytes as `SRC` says (`wd`
/// is read only for packed rows): the per-lane sums start from `acc` (zero when `None`), then
/// are summed into `out[t][r]` when `out` is given, else kept in `acc` for the next groups.
/// `STREAM`: each row's lines `PREFETCH_BYTES` ahead are asked for, group by group
/// ([`Ahead::Stream`]), line `l` of each group's where bit `l` of `lines` is set.
/// Every source gives the same bytes and scales for the same matrix, so the same bits; the
/// lane sums run over the groups in order however they are split.
///
/// # Safety
/// The features available; weight rows (and for packed rows their scales) and activation rows
/// hold the groups `groups` (512 values, 16 scales, 16 sums each); each `out[t]` has room for
/// `R` values.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx512<const R: usize, const T: usize, const SRC: u8, const STREAM: bool>(
    wq: [*const u8; R],
    wd: [*const f32; R],
    (aq, ad, asum): ActPtrs<T>,
    groups: std::ops::Range<usize>,
    tail: Tail,
    acc: Option<&mut [[__m512; T]; R]>,
    out: Option<[*mut f32; T]>,
    lines: u32,
) {
    use crate::avx512_x16::{x16_scales, x16_step};
    let packed = SRC == PACKED_Q8_0 || SRC == PACKED_Q4_0;
    let group = match SRC {
        PACKED_Q8_0 | PACKED_Q4_0 => GROUP_BYTES,
        X16_Q8_0 => X16::Q8_0.group_bytes(),
        _ => X16::Q4_0.group_bytes(),
    };
    let quants_at = if packed { 0 } else { crate::qx16::QUANTS_AT };
    let low = _mm512_set1_epi8(0x0f);
    let mut facc = match &acc {
        Some(a) => **a,
        None => [[_mm512_setzero_ps(); T]; R],
    };
    let mut init = [_mm512_setzero_si512(); T];
    let mut av = [_mm512_setzero_si512(); T];
    let mut nib = [_mm512_setzero_si512(); R];
    for g in groups {
        let (qo, so) = (g * GROUP_BYTES, g * GROUP_BLOCKS);
        // SAFETY (loads): group g < ng is inside every row and activation row.
        unsafe {
            for t in 0..T {
                let s = _mm512_loadu_si512(asum[t].add(so) as *const _);
                // −offset · Σa: offset 128 (Q8_0) or 8 (Q4_0).
                let off = match SRC {
                    PACKED_Q8_0 | X16_Q8_0 => _mm512_slli_epi32::<7>(s),
                    _ => _mm512_slli_epi32::<3>(s),
                };
                init[t] = _mm512_sub_epi32(_mm512_setzero_si512(), off);
            }
            let mut iacc = [init; R];
            // A partial group of repacked rows: its blocks' bytes, masked.
            let (masked, n) = (g == tail.0, tail.1);
            let base: [*const u8; R] = std::array::from_fn(|r| wq[r].add(g * group));
            let grp: [*const u8; R] = std::array::from_fn(|r| base[r].add(quants_at));
            // The group's lines a fixed distance ahead, line l (if `lines` has it) at step l
            // (the ninth at step 0).
            let ahead = |b: *const u8, l: usize| {
                crate::stream::prefetch_stream(b.wrapping_add(STREAM_AHEAD + 64 * l) as usize, 1)
            };
            let asked = |l: usize| l < group.div_ceil(64) && lines >> l & 1 != 0;
            if STREAM && asked(8) {
                for b in base {
                    ahead(b, 8);
                }
            }
            // Steps k and k + 4 of each group together (Q4_0's nibbles share one load).
            for k in 0..4 {
                for half in 0..2 {
                    let step = k + 4 * half;
                    if STREAM && asked(step) {
                        for b in base {
                            ahead(b, step);
                        }
                    }
                    if SRC == X16_Q4_0 && half == 0 {
                        for r in 0..R {
                            nib[r] = if masked {
                                x16_step::<true>(base[r], n, k)
                            } else {
                                _mm512_loadu_si512(grp[r].add(64 * k) as *const _)
                            };
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
                        } else if SRC == X16_Q8_0 && masked {
                            x16_step::<true>(base[r], n, step)
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
                let dw = if packed {
                    _mm512_loadu_ps(wd[r].add(so))
                } else if masked {
                    _mm512_cvtph_ps(x16_scales::<true>(base[r], n))
                } else {
                    _mm512_cvtph_ps(x16_scales::<false>(base[r], GROUP_BLOCKS))
                };
                for t in 0..T {
                    let scale = _mm512_mul_ps(dw, _mm512_loadu_ps(ad[t].add(so)));
                    let s = _mm512_cvtepi32_ps(iacc[r][t]);
                    facc[r][t] = _mm512_fmadd_ps(s, scale, facc[r][t]);
                }
            }
        }
    }
    let Some(out) = out else {
        if let Some(a) = acc {
            *a = facc;
        }
        return;
    };
    // Lanes summed as the repacked Q4_0 row kernel sums them, so both paths agree bitwise there.
    if R == 3 && T == 4 {
        // SAFETY: the features are enabled in this function; `out[t]` holds 3 values.
        unsafe {
            let sums = reduce_3x4(std::array::from_fn(|i| facc[i / 4][i % 4]));
            store_3x4(sums, std::array::from_fn(|t| out[t]));
        }
    } else {
        for (r, row) in facc.iter().enumerate() {
            for (o, &v) in out.iter().zip(row) {
                // SAFETY: the features are enabled in this function; `out[t]` holds `R` values.
                unsafe { *o.add(r) = crate::avx512_x16::reduce16(v) };
            }
        }
    }
}

/// The lane sums of twelve accumulators `v[4·r + t]` (3 rows × 4 tokens) side by side, each
/// exactly [`crate::avx512_x16::reduce16`]'s: `s1[i] = v[i] + v[i + 8]`, `s2[i] = s1[i] +
/// s1[i + 4]`, `s3[i] = s2[i] + s2[i + 2]`, `s3[0] + s3[1]`, the same additions (so the same
/// bits) in 36 instructions instead of twelve dependent chains. 128-bit lane `t` of the result
/// holds rows 0, 1, 2 of token `t` (its last value is not a sum).
///
/// # Safety
/// AVX-512 F available.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn reduce_3x4(v: [__m512; 12]) -> __m512 {
    // 128-bit lanes (a, b, c, d) of x then y: (x.a, x.b, y.c, y.d) style picks.
    const LO_HALVES: i32 = 0b01_00_01_00;
    const HI_HALVES: i32 = 0b11_10_11_10;
    const EVEN_LANES: i32 = 0b10_00_10_00;
    const ODD_LANES: i32 = 0b11_01_11_01;
    let halves = |x, y| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<LO_HALVES>(x, y),
            _mm512_shuffle_f32x4::<HI_HALVES>(x, y),
        )
    };
    let quarters = |x, y| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<EVEN_LANES>(x, y),
            _mm512_shuffle_f32x4::<ODD_LANES>(x, y),
        )
    };
    // s2 of row r, token t in 128-bit lane t.
    let s2: [__m512; 3] = std::array::from_fn(|r| {
        let (t01, t23) = (
            halves(v[4 * r], v[4 * r + 1]),
            halves(v[4 * r + 2], v[4 * r + 3]),
        );
        quarters(t01, t23)
    });
    // Within each 128-bit lane: (x0, x1, y0, y1) + (x2, x3, y2, y3), then (0, 2) + (1, 3).
    let pairs = |x, y| {
        _mm512_add_ps(
            _mm512_shuffle_ps::<0b01_00_01_00>(x, y),
            _mm512_shuffle_ps::<0b11_10_11_10>(x, y),
        )
    };
    let (s3_01, s3_2) = (pairs(s2[0], s2[1]), pairs(s2[2], s2[2]));
    _mm512_add_ps(
        _mm512_shuffle_ps::<0b10_00_10_00>(s3_01, s3_2),
        _mm512_shuffle_ps::<0b11_01_11_01>(s3_01, s3_2),
    )
}

/// 128-bit lane `t` of `sums` (see [`reduce_3x4`]): its first three values to `out[t]`.
///
/// # Safety
/// AVX-512 F available; each `out[t]` has room for 3 values.
#[inline]
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn store_3x4(sums: __m512, out: [*mut f32; 4]) {
    let lanes = [
        _mm512_castps512_ps128(sums),
        _mm512_extractf32x4_ps::<1>(sums),
        _mm512_extractf32x4_ps::<2>(sums),
        _mm512_extractf32x4_ps::<3>(sums),
    ];
    for (o, l) in out.into_iter().zip(lanes) {
        // SAFETY: the caller's promise; only the first three values are written.
        unsafe { _mm_mask_storeu_ps(o, 0b0111, l) };
    }
}
