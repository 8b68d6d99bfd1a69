//! AVX2 prefill tile kernels of Q8_0 / Q4_0: `R` weight rows against `T` activation rows, each
//! weight vector loaded once for `T` tokens; twins of `tile_scalar.rs` (float weights take the
//! outer products of `avx2_panel.rs`). The rows come packed into a panel ([`panel_quant`]) or,
//! repacked (`qx16.rs`), where they lie ([`panel_x16`]); [`Weights`] gives the kernel either.
//!
//! The groups of 16 blocks are read as two halves of eight blocks, one block per int32 lane:
//! - Q4_0 (`u` = nibble ≤ 15): `maddubs(u, a)` pairs stay within ±3810, never saturating; eight
//!   of them add up in i16 from `−8 · Σa` of their values ([`TokenGroups`]), and one `madd` by
//!   ones then gives each block's `Σ (u − 8) · a`;
//! - Q8_0 (`u = w + 128`): `maddubs` would saturate, so the weights go back to signed (`u ^ 0x80`)
//!   and llama.cpp's sign trick `maddubs(|w|, sign(a, w))` is summed in i32.
//!
//! Each row and token keeps one float accumulator: a group's first half scales its blocks into
//! it, then its second (lane `i` takes block `i`, then `i + 8`), its lanes summed at the end:
//! the arithmetic of the repacked-row kernel (`avx2_x16.rs`, `qx16::dot_lanes` with 8 lanes),
//! so repacked rows give the same bits by either path. An accumulator per half, as the AVX-512
//! lanes split in two, made sixteen float vectors of a 2 × 4 tile that went to the stack and
//! back every half group (a probe of the loop: about a fifth of the kernel's time).

use std::arch::x86_64::*;

use crate::act_q8::{ActQ8, GROUP_BLOCKS, GROUP_BYTES};
use crate::avx2_dot::hsum_ps;
use crate::cpu::Avx2;
use crate::pack::{Q4_0_OFFSET, Q8_0_OFFSET};
use crate::qx16::{whole_group, MAX_GROUP_BYTES, QUANTS_AT, X16};
use crate::scratch::AlignedBytes;
use crate::tile_scalar::ActRow;
#[cfg(test)]
use crate::tile_scalar::QuantRow;

/// Rows and tokens of a full tile of [`panel_quant`]: two rows' vectors against four tokens'
/// (eight i16 / i32 accumulators, four activation vectors in registers, the float sums stored
/// between groups). Two by two loaded a vector for each product: on a Zen 3 core
/// (`matvec --rows 5632 --cols 2048 --isas avx2 --threads 1 --only prefill --tokens 64`, 128 KiB
/// panels) Q4_0x16 129.6 / Q8_0x16 86.8 GFLOP/s by 2 × 2, 140.5 / 91.2 by 2 × 4, 142.4 / 91.1 by
/// 4 × 2, 131.6 / 90.6 by 3 × 4.
pub(crate) const AVX2_TILE: (usize, usize) = (2, 4);

/// Quantized activations in groups of tokens (`avx512_tile::token_groups`: fours, then a two
/// or a one), in the order [`panel_quant`] reads them: one pointer walks a group's tokens side
/// by side. For each 16-block group `g` of a row ([`ActLayout::Interleaved`]) and half `h`
/// (blocks `8h..8h + 8`), unit `gh = 2g + h` of a group of `nt` tokens holds
/// - values: the half's eight 32-byte steps `k` (bytes `64k + 32h..` of the interleaved group,
///   values `4k..4k + 4` of each of its blocks), token by token: `((gh · 8 + k) · nt + t) · 32`;
/// - scales: the half's eight block scales per token at `(gh · nt + t) · 8`;
/// - Q4_0 corrections: per token, for each block (an int32 lane) and each of its i16 halves
///   (values `4k + 2j, 4k + 2j + 1` over the steps `k`), `−8 · Σ a` of those 16 values, at
///   `(gh · nt + t) · 16 + 2 · lane + j`: the kernel starts its i16 sums from them, so
///   `Σ (u − 8) · a` comes out of the lane without a subtraction (|value| ≤ 16 · 8 · 127,
///   within i16; the wrapping i16 adds on the way are then exact).
///
/// Reading a group's tokens through one pointer, group by group with both halves together,
/// keeps a tile's activations one stream: by token rows, half by half, a 2048 × 5632 product
/// (`matvec --rows 2048 --cols 5632 --types q4_0x16 --isas avx2 --threads 1 --only prefill
/// --tokens 64`) ran at about 113 GFLOP/s against 159 for 5632 × 2048, the six streams of a
/// tile outgrowing L1 on the longer rows; 152 against 163 regrouped.
///
/// [`ActLayout::Interleaved`]: crate::act_q8::ActLayout::Interleaved
#[derive(Debug, Clone)]
pub(crate) struct TokenGroups {
    n_tokens: usize,
    ng: usize,
    qs: AlignedBytes,
    d: AlignedBytes,
    corr: AlignedBytes,
}

/// One group of a [`TokenGroups`]: `nt` tokens' values, scales and corrections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupAct<'a> {
    pub nt: usize,
    pub ng: usize,
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub corr: &'a [i16],
}

/// Bytes per token and 16-block group of [`TokenGroups`]: values, scales, corrections.
const UNIT: (usize, usize, usize) = (GROUP_BYTES, GROUP_BLOCKS * 4, 2 * GROUP_BLOCKS * 2);

impl TokenGroups {
    /// Every token of `act` (interleaved layout) in groups; the groups filled in parallel
    /// when there are many values.
    pub(crate) fn new(act: &ActQ8) -> TokenGroups {
        let (n_tokens, ng) = (act.n_tokens, act.n_blocks / GROUP_BLOCKS);
        assert_eq!(act.n_blocks, ng * GROUP_BLOCKS, "interleaved activations");
        let mut g = TokenGroups {
            n_tokens,
            ng,
            qs: AlignedBytes::zeroed(n_tokens * ng * UNIT.0),
            d: AlignedBytes::zeroed(n_tokens * ng * UNIT.1),
            corr: AlignedBytes::zeroed(n_tokens * ng * UNIT.2),
        };
        let mut items = Vec::new();
        let (mut qs, mut d, mut corr) = (
            g.qs.as_i8_mut(),
            bytemuck::cast_slice_mut::<u8, f32>(&mut g.d),
            bytemuck::cast_slice_mut::<u8, i16>(&mut g.corr),
        );
        for (t0, nt) in crate::avx512_tile::token_groups(n_tokens) {
            let (q, q_rest) = std::mem::take(&mut qs).split_at_mut(nt * ng * UNIT.0);
            let (dd, d_rest) = std::mem::take(&mut d).split_at_mut(nt * ng * GROUP_BLOCKS);
            let (c, c_rest) = std::mem::take(&mut corr).split_at_mut(nt * ng * 2 * GROUP_BLOCKS);
            (qs, d, corr) = (q_rest, d_rest, c_rest);
            items.push((t0..t0 + nt, q, dd, c));
        }
        let fill = |(ts, q, d, c): (std::ops::Range<usize>, &mut [i8], &mut [f32], &mut [i16])| {
            let rows: Vec<ActRow<'_>> = ts
                .map(|t| ActRow {
                    qs: act.qs(t),
                    d: act.d(t),
                    sums: act.sums(t),
                })
                .collect();
            fill_group(&rows, ng, q, d, c);
        };
        if n_tokens * ng * GROUP_BYTES < PAR_MIN_BYTES {
            items.into_iter().for_each(fill);
        } else {
            crate::team::for_each_item(items, fill);
        }
        g
    }

    /// The group of tokens `t0..t0 + nt` (one of `token_groups`).
    pub(crate) fn group(&self, t0: usize, nt: usize) -> GroupAct<'_> {
        assert!(t0 + nt <= self.n_tokens);
        let ng = self.ng;
        let (q, d, c) = (t0 * ng, t0 * ng * GROUP_BLOCKS, t0 * ng * 2 * GROUP_BLOCKS);
        GroupAct {
            nt,
            ng,
            qs: &self.qs.as_i8()[q * UNIT.0..][..nt * ng * UNIT.0],
            d: &bytemuck::cast_slice::<u8, f32>(&self.d)[d..][..nt * ng * GROUP_BLOCKS],
            corr: &bytemuck::cast_slice::<u8, i16>(&self.corr)[c..][..nt * ng * 2 * GROUP_BLOCKS],
        }
    }
}

/// Fewer bytes of values than this are regrouped on the calling thread.
const PAR_MIN_BYTES: usize = 1 << 16;

/// Writes the tokens `rows` (interleaved layout, `ng` groups) as one group of
/// [`TokenGroups`] (`rows.len()` tokens) into `qs`, `d`, `corr`.
fn fill_group(rows: &[ActRow<'_>], ng: usize, qs: &mut [i8], d: &mut [f32], corr: &mut [i16]) {
    let nt = rows.len();
    assert!(rows
        .iter()
        .all(|r| r.qs.len() == ng * GROUP_BYTES && r.d.len() == ng * GROUP_BLOCKS));
    assert!(
        qs.len() == nt * ng * GROUP_BYTES
            && d.len() == nt * ng * GROUP_BLOCKS
            && corr.len() == nt * ng * 2 * GROUP_BLOCKS
    );
    for gh in 0..2 * ng {
        let (g, h) = (gh / 2, gh % 2);
        for (t, row) in rows.iter().enumerate() {
            let mut pairs = [0i32; 16];
            for k in 0..8 {
                let src = &row.qs[g * GROUP_BYTES + 64 * k + 32 * h..][..32];
                qs[((gh * 8 + k) * nt + t) * 32..][..32].copy_from_slice(src);
                for (p, two) in pairs.iter_mut().zip(src.chunks_exact(2)) {
                    *p += two[0] as i32 + two[1] as i32;
                }
            }
            let unit = gh * nt + t;
            d[unit * 8..][..8].copy_from_slice(&row.d[g * GROUP_BLOCKS + 8 * h..][..8]);
            for (c, p) in corr[unit * 16..][..16].iter_mut().zip(pairs) {
                // |p| ≤ 16 · 127: the product fits i16.
                *c = (-Q4_0_OFFSET * p) as i16;
            }
        }
    }
}

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
    let mut qs = vec![0i8; T * ng * GROUP_BYTES];
    let mut d = vec![0f32; T * ng * GROUP_BLOCKS];
    let mut corr = vec![0i16; T * ng * 2 * GROUP_BLOCKS];
    fill_group(&a, ng, &mut qs, &mut d, &mut corr);
    let w = Packed {
        q: w.map(|r| r.qs.as_ptr()),
        d: w.map(|r| r.d.as_ptr()),
    };
    let a = (qs.as_ptr(), d.as_ptr(), corr.as_ptr());
    // SAFETY: the token proves the features; every length checked above or made so.
    unsafe {
        match offset {
            Q4_0_OFFSET => tile_quant_avx2::<R, T, true, _>(w, a, ng),
            Q8_0_OFFSET => tile_quant_avx2::<R, T, false, _>(w, a, ng),
            _ => panic!("unsupported offset {offset}"),
        }
    }
}

/// Every row of a packed panel (`q`: rows of `q_row` bytes, `d`: rows of `d_row` scales)
/// against the token group `a` (4, 2 or 1 tokens), `out[t][r]` for row `r`: tiles of two rows
/// (one at an odd end) in one call, the tokens and outputs taken once for the whole panel
/// (through `tiles::run_tiles`, every tile built its rows and handed its results back one by
/// one, about a twentieth of a Q4_0 prompt's time). Each (row, token) pair gives the bits of
/// [`tile_quant`]. On a Zen 3 core, `matvec --rows 5632 --cols 2048 --types q4_0x16,q8_0x16
/// --isas avx2 --threads 1 --only prefill --tokens 64`, three alternating runs, GFLOP/s:
/// Q4_0x16 130.3, 142.8, 135.2 -> 144.1, 158.3, 153.4; Q8_0x16 91.5, 92.8, 92.4 -> 99.6, 97.3,
/// 98.8.
pub(crate) fn panel_quant(
    k: Avx2,
    q: &[u8],
    d: &[f32],
    (q_row, d_row): (usize, usize),
    a: GroupAct<'_>,
    out: &mut [&mut [f32]],
    offset: i32,
) {
    let ng = d_row / GROUP_BLOCKS;
    assert!(d_row == ng * GROUP_BLOCKS && q_row == ng * GROUP_BYTES);
    let np = d.len() / d_row.max(1);
    assert!(q.len() == np * q_row && d.len() == np * d_row);
    let q4 = match offset {
        Q4_0_OFFSET => true,
        Q8_0_OFFSET => false,
        _ => panic!("unsupported offset {offset}"),
    };
    // SAFETY (pointers): rows r < np of the panel (the driver asks for no others).
    let rows = |r: usize| unsafe { (q.as_ptr().add(r * q_row), d.as_ptr().add(r * d_row)) };
    let two = |r: usize| {
        let (a, b) = (rows(r), rows(r + 1));
        Packed {
            q: [a.0, b.0],
            d: [a.1, b.1],
        }
    };
    let one = |r: usize| {
        let a = rows(r);
        Packed { q: [a.0], d: [a.1] }
    };
    panel_with(k, two, one, np, ng, q4, a, out);
}

/// Every repacked Q8_0 / Q4_0 row of `w` (rows of `stride` bytes, `kind`, `qx16.rs`) where it
/// lies, against the token group `a`, `out[t][r]` for row `r`: [`panel_quant`] without the
/// packing, the same bits for every (row, token) pair. Where the rows' blocks do not fill
/// their last group, `tails` holds each row's last group padded ([`x16_tails`]); else it is
/// empty.
#[allow(clippy::too_many_arguments)]
pub(crate) fn panel_x16(
    k: Avx2,
    kind: X16,
    w: &[u8],
    stride: usize,
    tails: &[u8],
    ahead: usize,
    a: GroupAct<'_>,
    out: &mut [&mut [f32]],
) {
    assert!(stride > 0 && w.len().is_multiple_of(stride));
    let (np, nb) = (w.len() / stride, stride / kind.block_bytes());
    assert_eq!(nb * kind.block_bytes(), stride);
    let (whole, ng) = (nb / GROUP_BLOCKS, nb.div_ceil(GROUP_BLOCKS));
    if whole < ng {
        assert_eq!(tails.len(), np * MAX_GROUP_BYTES);
    }
    let group = kind.group_bytes();
    // SAFETY (pointers): rows r < np and their tails (the driver asks for no others).
    let row = |r: usize| unsafe { w.as_ptr().add(r * stride) };
    let tail = |r: usize| match whole < ng {
        // SAFETY: as above; the tails hold np padded groups (checked above).
        true => unsafe { tails.as_ptr().add(r * MAX_GROUP_BYTES) },
        false => std::ptr::null(),
    };
    let two = |r: usize| InPlace {
        rows: [row(r), row(r + 1)],
        group,
        whole,
        tail: [tail(r), tail(r + 1)],
        ahead,
    };
    let one = |r: usize| InPlace {
        rows: [row(r)],
        group,
        whole,
        tail: [tail(r)],
        ahead,
    };
    panel_with(k, two, one, np, ng, kind == X16::Q4_0, a, out);
}

/// Each repacked row's last group padded to a whole one (`qx16::whole_group`), `MAX_GROUP_BYTES`
/// a row, for [`panel_x16`]; empty when the rows' groups are whole.
pub(crate) fn x16_tails(kind: X16, w: &[u8], stride: usize) -> Vec<u8> {
    let nb = stride / kind.block_bytes();
    if nb.is_multiple_of(GROUP_BLOCKS) {
        return Vec::new();
    }
    w.chunks_exact(stride)
        .flat_map(|row| whole_group(kind, row, nb / GROUP_BLOCKS))
        .collect()
}

/// The tiles of [`panel_quant`] and [`panel_x16`]: `np` rows, two at a time by `two(r)`
/// (rows `r`, `r + 1`), one at an odd end by `one(r)`, against the token group `a` (4, 2 or
/// 1 tokens), the tokens and outputs taken once for the whole panel (through
/// `tiles::run_tiles`, every tile built its rows and handed its results back one by one,
/// about a twentieth of a Q4_0 prompt's time).
#[allow(clippy::too_many_arguments)]
fn panel_with<W2: Weights<2>, W1: Weights<1>>(
    k: Avx2,
    two: impl Fn(usize) -> W2,
    one: impl Fn(usize) -> W1,
    np: usize,
    ng: usize,
    q4: bool,
    a: GroupAct<'_>,
    out: &mut [&mut [f32]],
) {
    assert_eq!(a.nt, out.len());
    assert!(out.iter().all(|o| o.len() == np));
    assert!(
        a.ng == ng
            && a.qs.len() == a.nt * ng * GROUP_BYTES
            && a.d.len() == a.nt * ng * GROUP_BLOCKS
            && a.corr.len() == a.nt * ng * 2 * GROUP_BLOCKS
    );
    let o: [*mut f32; 4] = std::array::from_fn(|t| {
        out.get_mut(t)
            .map_or(std::ptr::null_mut(), |o| o.as_mut_ptr())
    });
    let a = (a.qs.as_ptr(), a.d.as_ptr(), a.corr.as_ptr());
    // SAFETY: the first `nt` pointers are the outputs' (distinct slices of `np` values); the
    // activations hold `ng` groups of `nt` tokens (checked above).
    unsafe {
        match (out.len(), q4) {
            (4, true) => panel_n::<4, true, _, _>(k, two, one, a, o, np, ng),
            (4, false) => panel_n::<4, false, _, _>(k, two, one, a, o, np, ng),
            (2, true) => panel_n::<2, true, _, _>(k, two, one, a, [o[0], o[1]], np, ng),
            (2, false) => panel_n::<2, false, _, _>(k, two, one, a, [o[0], o[1]], np, ng),
            (1, true) => panel_n::<1, true, _, _>(k, two, one, a, [o[0]], np, ng),
            (1, false) => panel_n::<1, false, _, _>(k, two, one, a, [o[0]], np, ng),
            (n, _) => panic!("token groups of 4, 2 or 1, not {n}"),
        }
    }
}

/// [`panel_with`] for `NT` tokens.
///
/// # Safety
/// Each `out[t]` writable for `np` values, none overlapping another; `two` and `one` give
/// rows of `ng` groups for every `r < np` asked; `a` holds `ng` groups of `NT` tokens.
unsafe fn panel_n<const NT: usize, const Q4: bool, W2: Weights<2>, W1: Weights<1>>(
    _: Avx2,
    two: impl Fn(usize) -> W2,
    one: impl Fn(usize) -> W1,
    a: (*const i8, *const f32, *const i16),
    out: [*mut f32; NT],
    np: usize,
    ng: usize,
) {
    assert!(out.iter().all(|o| !o.is_null()));
    const RM: usize = AVX2_TILE.0;
    const { assert!(AVX2_TILE.0 == 2 && AVX2_TILE.1 == 4) }; // two rows; groups of 4, 2 or 1
    let mut r = 0;
    while r < np {
        // SAFETY: the caller's contract; each output pointer has np values.
        unsafe {
            if np - r >= RM && NT == 4 {
                // (`t % NT`: NT is 4 here; the index only has to compile for 2 and 1.)
                let o = std::array::from_fn(|t| out[t % NT].add(r));
                tile_2x4_into::<Q4, W2>(two(r), a, ng, o);
                r += RM;
            } else if np - r >= RM {
                let res = tile_quant_avx2::<RM, NT, Q4, W2>(two(r), a, ng);
                for (i, res) in res.iter().enumerate() {
                    for t in 0..NT {
                        *out[t].add(r + i) = res[t];
                    }
                }
                r += RM;
            } else {
                let res = tile_quant_avx2::<1, NT, Q4, W1>(one(r), a, ng);
                for t in 0..NT {
                    *out[t].add(r) = res[0][t];
                }
                r += 1;
            }
        }
    }
}

/// `out[r][t]` of one tile ([`tile_acc`]'s lanes summed).
///
/// # Safety
/// As [`tile_acc`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_quant_avx2<const R: usize, const T: usize, const Q4: bool, W: Weights<R>>(
    w: W,
    a: (*const i8, *const f32, *const i16),
    ng: usize,
) -> [[f32; T]; R] {
    // SAFETY: the caller's contract.
    let facc = unsafe { tile_acc::<R, T, Q4, W>(w, a, ng) };
    facc.map(|row| row.map(|v| hsum_ps(v)))
}

/// A full tile of two rows and four tokens into `out[t][0..2]`: [`tile_acc`]'s eight sums in
/// one reduction ([`hsum_2x4`]), each token's two results stored together (eight `hsum_ps`
/// and scalar stores took about a twentieth of a tile's instructions on 2048-column rows).
///
/// # Safety
/// As [`tile_acc`]; each `out[t]` writable for two values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_2x4_into<const Q4: bool, W: Weights<2>>(
    w: W,
    a: (*const i8, *const f32, *const i16),
    ng: usize,
    out: [*mut f32; 4],
) {
    // SAFETY: the caller's contract.
    unsafe {
        let [[f0, f1, f2, f3], [f4, f5, f6, f7]] = tile_acc::<2, 4, Q4, W>(w, a, ng);
        let v = hsum_2x4([f0, f1, f2, f3, f4, f5, f6, f7]);
        let (lo, hi) = (
            _mm_castps_pd(_mm256_castps256_ps128(v)),
            _mm_castps_pd(_mm256_extractf128_ps::<1>(v)),
        );
        _mm_storel_pd(out[0] as *mut f64, lo);
        _mm_storeh_pd(out[1] as *mut f64, lo);
        _mm_storel_pd(out[2] as *mut f64, hi);
        _mm_storeh_pd(out[3] as *mut f64, hi);
    }
}

/// The sums of a 2 × 4 tile's accumulators `f[4r + t]`, each bitwise `hsum_ps` of its vector
/// (the same additions in the same order, eight vectors at a time), in the order
/// `[t0 r0, t0 r1, t1 r0, t1 r1, t2 r0, t2 r1, t3 r0, t3 r1]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_2x4(f: [__m256; 8]) -> __m256 {
    // The vectors in the order whose sums come out as above.
    let w = [f[0], f[2], f[4], f[6], f[1], f[3], f[5], f[7]];
    // hsum_ps's first step, two vectors at a time: lane i + lane i + 4, one vector per half.
    let s: [__m256; 4] = std::array::from_fn(|i| {
        let (a, b) = (w[2 * i], w[2 * i + 1]);
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(a, b),
            _mm256_permute2f128_ps::<0x31>(a, b),
        )
    });
    // Its second: (s0 + s2, s1 + s3) of each vector.
    let u: [__m256; 2] = std::array::from_fn(|i| {
        let (a, b) = (s[2 * i], s[2 * i + 1]);
        _mm256_add_ps(
            _mm256_shuffle_ps::<0x44>(a, b),
            _mm256_shuffle_ps::<0xee>(a, b),
        )
    });
    // Its last: the first of those plus the second.
    _mm256_add_ps(
        _mm256_shuffle_ps::<0x88>(u[0], u[1]),
        _mm256_shuffle_ps::<0xdd>(u[0], u[1]),
    )
}

/// Where a tile's weight rows come from: a packed panel ([`Packed`]) or repacked rows read where
/// they lie ([`InPlace`]). Either way, half `h` of group `g` of row `r` is eight steps of 32
/// bytes (one per int32 lane: four values of each of eight blocks) and eight block scales, and
/// both give a step the same bytes and a block the same scale, so the same bits.
pub(crate) trait Weights<const R: usize>: Copy {
    /// Repacked rows read in place: Q4_0's bytes hold two steps (low nibbles step `k`, high
    /// step `k + 4`, `qx16.rs`) and the scales are f16.
    const IN_PLACE: bool;
    /// Where group `g`'s quantized bytes of row `r` start: step `k` of half `h` at
    /// `64 · k + 32 · h` (Q4_0 in place: `k` < 4, the high nibbles the later four steps).
    ///
    /// # Safety
    /// `r < R`, `g` a group of the rows.
    unsafe fn quants(self, r: usize, g: usize) -> *const u8;
    /// Row `r`'s eight block scales of half `h` of group `g`.
    ///
    /// # Safety
    /// As [`Weights::quants`]; AVX2/F16C available.
    unsafe fn scales(self, r: usize, g: usize, h: usize) -> __m256;
    /// Asks memory for what later tiles read, as group `g` begins (hints).
    #[inline(always)]
    fn prefetch(self, g: usize) {
        let _ = g;
    }
}

/// Rows of a packed panel (`pack.rs`): groups of 512 bytes of one value a byte and 16 `f32`
/// scales.
#[derive(Clone, Copy)]
pub(crate) struct Packed<const R: usize> {
    pub q: [*const u8; R],
    pub d: [*const f32; R],
}

impl<const R: usize> Weights<R> for Packed<R> {
    const IN_PLACE: bool = false;
    #[inline(always)]
    unsafe fn quants(self, r: usize, g: usize) -> *const u8 {
        // SAFETY: the caller's contract.
        unsafe { self.q[r].add(g * GROUP_BYTES) }
    }
    #[inline(always)]
    unsafe fn scales(self, r: usize, g: usize, h: usize) -> __m256 {
        // SAFETY: the caller's contract.
        unsafe { _mm256_loadu_ps(self.d[r].add(g * GROUP_BLOCKS + 8 * h)) }
    }
}

/// Repacked rows (`qx16.rs`) where they lie: `whole` whole groups of `group` bytes each, then,
/// when the row's blocks do not fill its last group, that group padded (`qx16::whole_group`)
/// at `tail`.
#[derive(Clone, Copy)]
pub(crate) struct InPlace<const R: usize> {
    pub rows: [*const u8; R],
    pub group: usize,
    pub whole: usize,
    pub tail: [*const u8; R],
    /// Bytes ahead of each group read at which to ask for its rows' later bytes (0: none).
    pub ahead: usize,
}

impl<const R: usize> InPlace<R> {
    #[inline(always)]
    unsafe fn group_at(self, r: usize, g: usize) -> *const u8 {
        // SAFETY: the caller's contract.
        unsafe {
            match g < self.whole {
                true => self.rows[r].add(g * self.group),
                false => self.tail[r],
            }
        }
    }
}

impl<const R: usize> Weights<R> for InPlace<R> {
    const IN_PLACE: bool = true;
    #[inline(always)]
    unsafe fn quants(self, r: usize, g: usize) -> *const u8 {
        // SAFETY: the caller's contract.
        unsafe { self.group_at(r, g).add(QUANTS_AT) }
    }
    #[inline(always)]
    unsafe fn scales(self, r: usize, g: usize, h: usize) -> __m256 {
        // SAFETY: the caller's contract; the group's 16 f16 scales lead it.
        unsafe {
            let bits = _mm_loadu_si128(self.group_at(r, g).add(16 * h) as *const __m128i);
            _mm256_cvtph_ps(bits)
        }
    }
    #[inline(always)]
    fn prefetch(self, g: usize) {
        if self.ahead == 0 {
            return;
        }
        for r in 0..R {
            // SAFETY: `group_at` only offsets a row pointer; the hint is never dereferenced.
            let at = unsafe { self.group_at(r, g) }.wrapping_add(self.ahead);
            crate::stream::prefetch_stream(at as usize, self.group.div_ceil(64));
        }
    }
}

/// Which values of a step's 32 bytes a tile multiplies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// One value a byte.
    Whole,
    /// Q4_0 in place: the low nibbles.
    Low,
    /// Q4_0 in place: the high nibbles.
    High,
}

/// The float accumulators of one tile: lane `i` of `[r][t]` holds the sum over groups of
/// blocks `i` and `i + 8` of row `r` by token `t`.
///
/// # Safety
/// AVX2/FMA available; the weight rows hold `ng` groups, the token group `a` (values, scales,
/// corrections) `ng` groups of `T` tokens ([`TokenGroups`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_acc<const R: usize, const T: usize, const Q4: bool, W: Weights<R>>(
    w: W,
    (aq, ad, corr): (*const i8, *const f32, *const i16),
    ng: usize,
) -> [[__m256; T]; R] {
    let ones = _mm256_set1_epi16(1);
    let flip = _mm256_set1_epi8(-128);
    let low = _mm256_set1_epi8(0x0f);
    // A block's lane is its index within its half; both halves scale into one accumulator, the
    // first half first, as the repacked-row kernel sums (`avx2_x16.rs`, `qx16::dot_lanes` with
    // 8 lanes): both paths give the same bits.
    let mut facc = [[_mm256_setzero_ps(); T]; R];
    // The eight steps of a half as a loop of four pairs the compiler cannot unroll whole:
    // unrolled, it hoisted loads ahead and kept them on the stack.
    let pairs = std::hint::black_box(4);
    for g in 0..ng {
        // SAFETY (pointers): group g < ng of every row.
        let wq: [*const u8; R] = std::array::from_fn(|r| unsafe { w.quants(r, g) });
        w.prefetch(g);
        for h in 0..2 {
            let gh = 2 * g + h;
            // SAFETY (loads): unit gh < 2 · ng is inside every row and the token group.
            unsafe {
                // Q4_0: i16 sums start from −8 · Σa (see `TokenGroups`).
                let mut iacc = [[_mm256_setzero_si256(); T]; R];
                if Q4 {
                    for t in 0..T {
                        let c = _mm256_loadu_si256(corr.add((gh * T + t) * 16) as *const __m256i);
                        for acc in iacc.iter_mut() {
                            acc[t] = c;
                        }
                    }
                }
                let a = aq.add(gh * 8 * T * 32);
                // Step `k` with each row's weight vector at byte `at` of its group: the bytes
                // (`Whole`) or Q4_0's nibbles in place (`Low`, `High`).
                let mut step = |k: usize, at: usize, part: Part| {
                    let av: [__m256i; T] = std::array::from_fn(|t| {
                        _mm256_loadu_si256(a.add((k * T + t) * 32) as *const __m256i)
                    });
                    for r in 0..R {
                        let v = _mm256_loadu_si256(wq[r].add(at) as *const __m256i);
                        let wv = match part {
                            Part::Whole => v,
                            Part::Low => _mm256_and_si256(v, low),
                            Part::High => _mm256_and_si256(_mm256_srli_epi16::<4>(v), low),
                        };
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
                };
                if Q4 && W::IN_PLACE {
                    // The stored bytes of steps k and k + 4 serve both (the i16 sums are exact
                    // in any order).
                    for k in 0..pairs {
                        step(k, 64 * k + 32 * h, Part::Low);
                        step(k + 4, 64 * k + 32 * h, Part::High);
                    }
                } else {
                    for k in 0..pairs {
                        step(2 * k, 128 * k + 32 * h, Part::Whole);
                        step(2 * k + 1, 128 * k + 64 + 32 * h, Part::Whole);
                    }
                }
                // In place, each row's f16 scales converted once for the tokens; a panel's
                // f32 scales read where each product takes them (held in registers beside a
                // 2 × 4 tile's sixteen accumulators, they went to the stack: Q4_0 prompts of
                // 16-32 tokens a tenth slower).
                let ws: [__m256; R] = std::array::from_fn(|r| match W::IN_PLACE {
                    true => w.scales(r, g, h),
                    false => _mm256_setzero_ps(),
                });
                for t in 0..T {
                    let da = _mm256_loadu_ps(ad.add((gh * T + t) * 8));
                    for r in 0..R {
                        // Q4_0: the i16 pair sums to i32, Σ (u − 8) · a.
                        let sums = if Q4 {
                            _mm256_madd_epi16(iacc[r][t], ones)
                        } else {
                            iacc[r][t]
                        };
                        let wsr = if W::IN_PLACE {
                            ws[r]
                        } else {
                            w.scales(r, g, h)
                        };
                        let scale = _mm256_mul_ps(wsr, da);
                        let s = _mm256_cvtepi32_ps(sums);
                        facc[r][t] = _mm256_fmadd_ps(s, scale, facc[r][t]);
                    }
                }
            }
        }
    }
    facc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{Isa, Level};

    /// The 2 × 4 tile's one-pass reduction against `hsum_ps` of each vector, bitwise, on sums
    /// whose value depends on the order of their additions (magnitudes from 2^-20 to 2^20 of
    /// both signs).
    #[test]
    fn tile_sums_reduce_as_hsum_does() {
        let Some(Level::Avx2(_)) = Level::new(Isa::Avx2) else {
            eprintln!("skip: AVX2 not available");
            return;
        };
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..2000 {
            let vals: [[f32; 8]; 8] = std::array::from_fn(|_| {
                std::array::from_fn(|_| {
                    let r = next();
                    let m = (r >> 40) as f32 / (1u64 << 24) as f32 + 1.0;
                    let e = (r % 41) as i32 - 20;
                    let sign = if r & (1 << 32) != 0 { -1.0 } else { 1.0 };
                    sign * m * 2f32.powi(e)
                })
            });
            // SAFETY: AVX2 is available (checked above).
            let (got, want) = unsafe {
                let f = vals.map(|v| _mm256_loadu_ps(v.as_ptr()));
                let mut got = [0f32; 8];
                _mm256_storeu_ps(got.as_mut_ptr(), hsum_2x4(f));
                (got, f.map(|v| hsum_ps(v)))
            };
            // got: [t0 r0, t0 r1, t1 r0, ...]; want[4r + t].
            for t in 0..4 {
                for r in 0..2 {
                    assert_eq!(
                        got[2 * t + r].to_bits(),
                        want[4 * r + t].to_bits(),
                        "{vals:?}"
                    );
                }
            }
        }
    }
}
