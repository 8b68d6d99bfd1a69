//! AVX2 prefill tile kernels of Q8_0 / Q4_0: `R` packed weight rows against `T` activation rows,
//! each weight vector loaded once for `T` tokens; twins of `tile_scalar.rs` (float weights take
//! the outer products of `avx2_panel.rs`).
//!
//! The packed groups of 16 blocks (`pack.rs`) are read as two halves of eight blocks, one block
//! per int32 lane:
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
    let (wq, wd) = (w.map(|r| r.qs.as_ptr()), w.map(|r| r.d.as_ptr()));
    let a = (qs.as_ptr(), d.as_ptr(), corr.as_ptr());
    // SAFETY: the token proves the features; every length checked above or made so.
    unsafe {
        match offset {
            Q4_0_OFFSET => tile_quant_avx2::<R, T, true>(wq, wd, a, ng),
            Q8_0_OFFSET => tile_quant_avx2::<R, T, false>(wq, wd, a, ng),
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
    rows: (usize, usize),
    a: GroupAct<'_>,
    out: &mut [&mut [f32]],
    offset: i32,
) {
    assert_eq!(a.nt, out.len());
    let np = out.first().map_or(0, |o| o.len());
    assert!(out.iter().all(|o| o.len() == np));
    let o: [*mut f32; 4] = std::array::from_fn(|t| {
        out.get_mut(t)
            .map_or(std::ptr::null_mut(), |o| o.as_mut_ptr())
    });
    // SAFETY: the first `a.nt` pointers are the outputs' (distinct slices of `np` values).
    unsafe {
        match a.nt {
            4 => panel_quant_n::<4>(k, q, d, rows, a, o, np, offset),
            2 => panel_quant_n::<2>(k, q, d, rows, a, [o[0], o[1]], np, offset),
            1 => panel_quant_n::<1>(k, q, d, rows, a, [o[0]], np, offset),
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
    a: GroupAct<'_>,
    out: [*mut f32; NT],
    np: usize,
    offset: i32,
) {
    let ng = d_row / GROUP_BLOCKS;
    assert!(d_row == ng * GROUP_BLOCKS && q_row == ng * GROUP_BYTES);
    assert!(q.len() == np * q_row && d.len() == np * d_row);
    assert!(out.iter().all(|o| !o.is_null()));
    assert!(
        a.nt == NT
            && a.ng == ng
            && a.qs.len() == NT * ng * GROUP_BYTES
            && a.d.len() == NT * ng * GROUP_BLOCKS
            && a.corr.len() == NT * ng * 2 * GROUP_BLOCKS
    );
    let a = (a.qs.as_ptr(), a.d.as_ptr(), a.corr.as_ptr());
    let row = |r: usize| (q[r * q_row..].as_ptr(), d[r * d_row..].as_ptr());
    // SAFETY: the token proves the features; every length checked above, rows r < np.
    unsafe fn tile<const R: usize, const NT: usize>(
        w: [(*const u8, *const f32); R],
        a: (*const i8, *const f32, *const i16),
        ng: usize,
        q4: bool,
    ) -> [[f32; NT]; R] {
        let (wq, wd) = (w.map(|w| w.0), w.map(|w| w.1));
        // SAFETY: the caller's contract.
        unsafe {
            match q4 {
                true => tile_quant_avx2::<R, NT, true>(wq, wd, a, ng),
                false => tile_quant_avx2::<R, NT, false>(wq, wd, a, ng),
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
            if np - r >= RM && NT == 4 {
                let w: [_; RM] = std::array::from_fn(|i| row(r + i));
                let (wq, wd) = (w.map(|w| w.0), w.map(|w| w.1));
                let o = std::array::from_fn(|t| out[t].add(r));
                match q4 {
                    true => tile_2x4_into::<true>(wq, wd, a, ng, o),
                    false => tile_2x4_into::<false>(wq, wd, a, ng, o),
                }
                r += RM;
            } else if np - r >= RM {
                let w = std::array::from_fn(|i| row(r + i));
                let res = tile::<RM, NT>(w, a, ng, q4);
                for (i, res) in res.iter().enumerate() {
                    for t in 0..NT {
                        *out[t].add(r + i) = res[t];
                    }
                }
                r += RM;
            } else {
                let res = tile::<1, NT>([row(r)], a, ng, q4);
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
unsafe fn tile_quant_avx2<const R: usize, const T: usize, const Q4: bool>(
    wq: [*const u8; R],
    wd: [*const f32; R],
    a: (*const i8, *const f32, *const i16),
    ng: usize,
) -> [[f32; T]; R] {
    // SAFETY: the caller's contract.
    let facc = unsafe { tile_acc::<R, T, Q4>(wq, wd, a, ng) };
    facc.map(|row| row.map(|v| hsum_ps(v)))
}

/// A full tile of two rows and four tokens into `out[t][0..2]`: [`tile_acc`]'s eight sums in
/// one reduction ([`hsum_2x4`]), each token's two results stored together (eight `hsum_ps`
/// and scalar stores took about a twentieth of a tile's instructions on 2048-column rows).
///
/// # Safety
/// As [`tile_acc`]; each `out[t]` writable for two values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_2x4_into<const Q4: bool>(
    wq: [*const u8; 2],
    wd: [*const f32; 2],
    a: (*const i8, *const f32, *const i16),
    ng: usize,
    out: [*mut f32; 4],
) {
    // SAFETY: the caller's contract.
    unsafe {
        let [[f0, f1, f2, f3], [f4, f5, f6, f7]] = tile_acc::<2, 4, Q4>(wq, wd, a, ng);
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

/// The float accumulators of one tile: lane `i` of `[r][t]` holds the sum over groups of
/// blocks `i` and `i + 8` of row `r` by token `t`.
///
/// # Safety
/// AVX2/FMA available; weight rows hold `ng` groups (512 bytes, 16 scales each), the token
/// group `a` (values, scales, corrections) `ng` groups of `T` tokens ([`TokenGroups`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_acc<const R: usize, const T: usize, const Q4: bool>(
    wq: [*const u8; R],
    wd: [*const f32; R],
    (aq, ad, corr): (*const i8, *const f32, *const i16),
    ng: usize,
) -> [[__m256; T]; R] {
    let ones = _mm256_set1_epi16(1);
    let flip = _mm256_set1_epi8(-128);
    // A block's lane is its index within its half; both halves scale into one accumulator, the
    // first half first, as the repacked-row kernel sums (`avx2_x16.rs`, `qx16::dot_lanes` with
    // 8 lanes): both paths give the same bits.
    let mut facc = [[_mm256_setzero_ps(); T]; R];
    // The eight steps of a half as a loop of four pairs the compiler cannot unroll whole:
    // unrolled, it hoisted loads ahead and kept them on the stack.
    let pairs = std::hint::black_box(4);
    for g in 0..ng {
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
                let w = 64 * 8 * g + 32 * h;
                let mut step = |k: usize| {
                    let av: [__m256i; T] = std::array::from_fn(|t| {
                        _mm256_loadu_si256(a.add((k * T + t) * 32) as *const __m256i)
                    });
                    for r in 0..R {
                        let wv = _mm256_loadu_si256(wq[r].add(w + 64 * k) as *const __m256i);
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
                for k in 0..pairs {
                    step(2 * k);
                    step(2 * k + 1);
                }
                for t in 0..T {
                    let da = _mm256_loadu_ps(ad.add((gh * T + t) * 8));
                    for r in 0..R {
                        // Q4_0: the i16 pair sums to i32, Σ (u − 8) · a.
                        let sums = if Q4 {
                            _mm256_madd_epi16(iacc[r][t], ones)
                        } else {
                            iacc[r][t]
                        };
                        let scale = _mm256_mul_ps(_mm256_loadu_ps(wd[r].add(8 * gh)), da);
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
