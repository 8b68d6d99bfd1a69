//! AVX-512 prefill kernel for float weights (F32, F16 and BF16, turned into `f32` once per pass,
//! [`pack_groups`]; the AVX2 level's kernels, `avx2_panel.rs`, take the same entry points, and
//! for short prompts there panels of the stored 16-bit values, [`panel_kind`]):
//! outer products, as BLAS kernels do. The panel holds 16 rows side by side, column-major within
//! each group (`[group][column][16]`), so one 64-byte load is one column of 16 rows; a token's
//! value in that column is broadcast and one FMA moves 16 (row, token) sums. A call covers up
//! to [`MAX_GROUPS`] groups and [`TOKENS`] tokens: 24 accumulators, and per column 4 loads and
//! 6 broadcasts for 24 FMAs, with no horizontal sums (the dot-product tiles of
//! `avx512_tile.rs` spend a reduction per (row, token) and a load per FMA pair; they reached
//! about a third of the FMA peak on one core).
//!
//! Each (row, token) sum runs over the columns of a chunk in order, one fused multiply-add per
//! column starting from zero, and is then stored or added to what the earlier chunks left; the
//! chunks are fixed by the matrix's width and the level alone ([`k_chunk`]), so the bits
//! depend on neither the batch nor which tile a row or token falls in. Twin:
//! [`crate::tile_scalar::panel_f32`], bitwise.

use std::arch::x86_64::*;
use std::ops::Range;

use crate::avx2_dot::{BF16, F16, F32};
use crate::avx512_dot::load16;
use crate::cpu::Level;
use crate::WeightType;

/// Rows of a group (lanes of a vector).
pub(crate) const GROUP_ROWS: usize = 16;
/// Groups of one call.
pub(crate) const MAX_GROUPS: usize = 4;
/// Tokens of one call.
pub(crate) const TOKENS: usize = 6;
/// Columns of one call at AVX-512 ([`k_chunk`]): 4 groups of 128 columns take 32 KiB, so a
/// call's weights stay in L1 while the tokens pass.
pub(crate) const K_CHUNK_AVX512: usize = 128;
/// Columns of one call at AVX2 ([`k_chunk`]). The AVX2 kernel takes a call's groups one at a
/// time (one group's 16 rows × 6 tokens fill the registers), so its weights stream through
/// once per group and only the tokens' columns (6 × 512 values, 12 KiB) are read again; each
/// call ends in 12 stores (or loads, adds and stores) per group and a round of bookkeeping,
/// which 128 columns (768 cycles of multiply-adds) paid for too often. One Zen 3 core
/// (`matvec --rows R --cols C --types f16 --isas avx2 --threads 1 --only prefill --tokens
/// 512`, three alternating runs, GFLOP/s; the FMA peak measured there: 102) at 128 / 512
/// columns: 2048 × 5632 71.6-79.1 / 86.9-90.1, 5632 × 2048 71.5-77.5 / 86.6-90.6; 256 and
/// 1024 columns on a trial build: no better than 512, which keeps six tokens' columns in L1.
pub(crate) const K_CHUNK_AVX2: usize = 512;

/// Columns each (row, token) sum of the outer-product kernels at `level` covers before it is
/// stored or added to the output: the chunks of a matrix are fixed by its width and the level
/// alone (batch invariance), and both paths of a level ([`tile`] on panels and [`fused`])
/// take the same ones.
pub(crate) fn k_chunk(level: Level) -> usize {
    match level {
        Level::Avx2(_) => K_CHUNK_AVX2,
        _ => K_CHUNK_AVX512,
    }
}

/// Prompts of up to this many tokens take sixteen-bit panels of F16 / BF16 rows at the AVX2
/// level ([`panel_kind`]). TinyLlama F16 (`herd bench tl-f16.gguf -p 16,64,512 -n 0 -t 2`,
/// four sets of alternating rounds against `f32` panels, BENCHMARKS.md): the medians of pp16
/// 5% and of pp64 8% faster on average (three of four sets faster at pp16, all four at pp64);
/// with every prompt on these panels, pp512 4% slower in one of two sets and one core's cached
/// 512-token product 4% slower: each tile call converts its weights again, which a long
/// prompt's many calls pay for more than the packing saves.
pub(crate) const HALF_PANEL_TOKENS: usize = 64;

/// How a pass's panel holds float values of `ty` at `level` for `n_tokens` tokens
/// (`avx2_dot`'s kinds): at AVX2, F16 and BF16 as stored for up to [`HALF_PANEL_TOKENS`]
/// (`avx2_panel::pack_group_avx2_16`; the tiles convert as they load), else `f32`.
pub(crate) fn panel_kind(level: Level, ty: WeightType, n_tokens: usize) -> u8 {
    match (level, float_kind(ty)) {
        (Level::Avx2(_), kind) if n_tokens <= HALF_PANEL_TOKENS => kind,
        _ => F32,
    }
}

/// Bytes of one group of `kw` columns of a panel of `kind`.
pub(crate) fn group_bytes(kind: u8, kw: usize) -> usize {
    kw * GROUP_ROWS * crate::avx2_dot::float_bytes(kind)
}

/// The `n` rows `row(i)` (each the stored bytes of `kw` values of `ty`: F32, F16 or BF16) as
/// `n.div_ceil(16)` groups of `kw` columns of 16 rows into `out` (4-byte aligned), each value
/// as `kind` ([`panel_kind`]; exactly the stored value); rows past `n` in the last group are
/// zero. Sixteen values of sixteen rows at a time: loaded (and converted) in registers, then
/// transposed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_groups<'a>(
    level: Level,
    ty: WeightType,
    kind: u8,
    row: impl Fn(usize) -> &'a [u8],
    n: usize,
    kw: usize,
    out: &mut [u8],
) {
    let groups = n.div_ceil(GROUP_ROWS);
    let gb = group_bytes(kind, kw);
    assert!(out.len() >= groups * gb);
    let stored = float_kind(ty);
    assert!(kind == F32 || (matches!(level, Level::Avx2(_)) && kind == stored));
    for g in 0..groups {
        let (ptrs, in_group) = group_rows(ty, &row, n, kw, g);
        let group = &mut out[g * gb..][..gb];
        // SAFETY: the token proves the features; each of the first `in_group` pointers reads
        // `kw` values of `ty` (checked), the group holds `kw · 16` values of `kind`.
        unsafe {
            use crate::avx2_panel::{pack_group_avx2, pack_group_avx2_16};
            if kind == F32 {
                let group: &mut [f32] = bytemuck::cast_slice_mut(group);
                let o = group.as_mut_ptr();
                match (level, stored) {
                    (Level::Avx512(_), F32) => pack_group_avx512::<F32>(&ptrs, in_group, kw, o),
                    (Level::Avx512(_), F16) => pack_group_avx512::<F16>(&ptrs, in_group, kw, o),
                    (Level::Avx512(_), _) => pack_group_avx512::<BF16>(&ptrs, in_group, kw, o),
                    (Level::Avx2(_), F32) => pack_group_avx2::<F32>(&ptrs, in_group, kw, group),
                    (Level::Avx2(_), F16) => pack_group_avx2::<F16>(&ptrs, in_group, kw, group),
                    (Level::Avx2(_), _) => pack_group_avx2::<BF16>(&ptrs, in_group, kw, group),
                    (Level::Scalar, _) => panic!("no outer-product kernels at the scalar level"),
                }
            } else {
                pack_group_avx2_16(&ptrs, in_group, kw, bytemuck::cast_slice_mut(group));
            }
        }
    }
}

/// The kernels' name for a float type (`avx2_dot.rs`).
fn float_kind(ty: WeightType) -> u8 {
    match ty {
        WeightType::F32 => F32,
        WeightType::F16 => F16,
        WeightType::BF16 => BF16,
        _ => panic!("{ty:?} is not a float type"),
    }
}

/// The rows of group `g` of a pass of `n` rows (`row(i)`, each checked to hold `kw` values of
/// `ty`) as pointers, and how many of the 16 there are.
fn group_rows<'a>(
    ty: WeightType,
    row: &impl Fn(usize) -> &'a [u8],
    n: usize,
    kw: usize,
    g: usize,
) -> ([*const u8; GROUP_ROWS], usize) {
    let mut ptrs = [std::ptr::null(); GROUP_ROWS];
    let in_group = (n - g * GROUP_ROWS).min(GROUP_ROWS);
    for (l, p) in ptrs.iter_mut().enumerate().take(in_group) {
        let bytes = row(g * GROUP_ROWS + l);
        let what = g * GROUP_ROWS + l;
        assert_eq!(bytes.len(), kw * ty.block_bytes(), "row {what} of the pass");
        *p = bytes.as_ptr();
    }
    (ptrs, in_group)
}

/// # Safety
/// The features available; `rows[l]` reads `kw` values of `KIND` for `l < n`; `out` holds
/// `kw · 16` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn pack_group_avx512<const KIND: u8>(
    rows: &[*const u8; GROUP_ROWS],
    n: usize,
    kw: usize,
    out: *mut f32,
) {
    use crate::kv_f16::avx512::transpose16;
    for c in (0..kw).step_by(16) {
        let left = (kw - c).min(16);
        let m = ((1u32 << left) - 1) as __mmask16;
        let mut block = [_mm512_setzero_ps(); 16];
        // SAFETY: lanes past `left` are masked off, so each row reads below `kw` values; the
        // stores write columns c..c + left of the group.
        unsafe {
            for (l, v) in block.iter_mut().enumerate().take(n) {
                *v = load16::<KIND>(rows[l], c, m);
            }
            for (i, col) in transpose16(block).into_iter().enumerate().take(left) {
                _mm512_storeu_ps(out.add((c + i) * GROUP_ROWS), col);
            }
        }
    }
}

/// For each token `t` and row `r < out[t].len()` of the groups starting at `groups` (each
/// `kw` columns long, packed by [`pack_groups`] as `kind`): `out[t][r] = s` (`add`
/// false) or `out[t][r] + s` (`add` true), where `s` sums the columns `cols` of row `r` times
/// `x[t]` (`x[t][i]` is column `cols.start + i`) in order, by fused multiply-adds from zero. Up
/// to [`MAX_GROUPS`] groups' rows and [`TOKENS`] tokens.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile(
    level: Level,
    kind: u8,
    groups: &[u8],
    kw: usize,
    cols: Range<usize>,
    x: &[&[f32]],
    out: &mut [&mut [f32]],
    add: bool,
) {
    let rows = out.first().map_or(0, |o| o.len());
    let (g, t) = (rows.div_ceil(GROUP_ROWS), x.len());
    assert!((1..=MAX_GROUPS).contains(&g) && (1..=TOKENS).contains(&t) && out.len() == t);
    assert!(out.iter().all(|o| o.len() == rows));
    let vb = crate::avx2_dot::float_bytes(kind);
    assert!(cols.start <= cols.end && cols.end <= kw && groups.len() >= g * kw * GROUP_ROWS * vb);
    assert!(x.iter().all(|x| x.len() >= cols.len()));
    let w = groups[cols.start * GROUP_ROWS * vb..].as_ptr();
    let xp: [*const f32; TOKENS] =
        std::array::from_fn(|i| x.get(i).map_or(w as *const f32, |x| x.as_ptr()));
    let mut op = [std::ptr::null_mut(); TOKENS];
    for (p, o) in op.iter_mut().zip(out.iter_mut()) {
        *p = o.as_mut_ptr();
    }
    let n = cols.len();
    let gs = kw * GROUP_ROWS;
    // SAFETY (all): the level's token proves the features; the checks above bound every read
    // (g groups of kw columns of the panel's kind, n values of each token) and write (rows
    // values of each token); `f32` panels are 4-byte aligned (`pack_groups`).
    unsafe {
        use crate::avx2_panel::tile as avx2;
        let wf = w as *const f32;
        match (level, g, kind) {
            (Level::Avx512(_), 1, F32) => tile_tokens::<1>(wf, gs, xp, t, n, op, rows, add),
            (Level::Avx512(_), 2, F32) => tile_tokens::<2>(wf, gs, xp, t, n, op, rows, add),
            (Level::Avx512(_), 3, F32) => tile_tokens::<3>(wf, gs, xp, t, n, op, rows, add),
            (Level::Avx512(_), _, F32) => tile_tokens::<4>(wf, gs, xp, t, n, op, rows, add),
            (Level::Avx2(_), _, F32) => avx2::<F32>(w, gs, xp, t, n, op, rows, add),
            (Level::Avx2(_), _, F16) => avx2::<F16>(w, gs, xp, t, n, op, rows, add),
            (Level::Avx2(_), _, _) => avx2::<BF16>(w, gs, xp, t, n, op, rows, add),
            (Level::Scalar, ..) => panic!("no outer-product kernels at the scalar level"),
            (Level::Avx512(_), ..) => unreachable!("AVX-512 panels are f32"),
        }
    }
}

/// [`tile_avx512`] for the first `t` of the pointers.
///
/// # Safety
/// As [`tile_avx512`], for `t` tokens.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile_tokens<const G: usize>(
    w: *const f32,
    gs: usize,
    x: [*const f32; TOKENS],
    t: usize,
    n: usize,
    out: [*mut f32; TOKENS],
    rows: usize,
    add: bool,
) {
    macro_rules! call {
        ($($t:literal)*) => {
            match t {
                $($t => {
                    let x: [*const f32; $t] = std::array::from_fn(|i| x[i]);
                    let o: [*mut f32; $t] = std::array::from_fn(|i| out[i]);
                    // SAFETY: the caller's.
                    unsafe { tile_avx512::<G, $t>(w, gs, x, n, o, rows, add) }
                })*
                _ => unreachable!("checked by `tile`"),
            }
        };
    }
    call!(1 2 3 4 5 6)
}

/// # Safety
/// The features available; `w + g·gs` readable for `16·n` values for `g < G`, each `x[t]` for
/// `n` values, each `out[t]` writable for `rows` values (`16·(G − 1) < rows ≤ 16·G`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tile_avx512<const G: usize, const T: usize>(
    w: *const f32,
    gs: usize,
    x: [*const f32; T],
    n: usize,
    out: [*mut f32; T],
    rows: usize,
    add: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); T]; G];
    let mut wv = [_mm512_setzero_ps(); G];
    for k in 0..n {
        // SAFETY: k < n (the caller's bounds).
        unsafe {
            for (g, v) in wv.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(w.add(g * gs + GROUP_ROWS * k));
            }
            for t in 0..T {
                let b = _mm512_set1_ps(*x[t].add(k));
                for g in 0..G {
                    acc[g][t] = _mm512_fmadd_ps(wv[g], b, acc[g][t]);
                }
            }
        }
    }
    for (g, acc) in acc.iter().enumerate() {
        let valid = (rows - GROUP_ROWS * g).min(GROUP_ROWS);
        let mask = ((1u32 << valid) - 1) as __mmask16;
        for (&out, &acc) in out.iter().zip(acc) {
            // SAFETY: lanes past `rows` are masked off.
            unsafe {
                let p = out.add(GROUP_ROWS * g);
                let v = if add {
                    _mm512_add_ps(_mm512_maskz_loadu_ps(mask, p), acc)
                } else {
                    acc
                };
                _mm512_mask_storeu_ps(p, mask, v);
            }
        }
    }
}

/// Groups of 16 rows in one call of [`fused`] at `level` for `t` tokens. AVX-512: one group
/// for one token (two were slower: more streams from memory), two for more (the accumulators
/// and a transposed block fill the 32 registers). AVX2: two groups, taken two or one
/// half-group at a time (`avx2_panel::fused_avx2`).
fn fused_groups(level: Level, t: usize) -> usize {
    match level {
        Level::Avx512(_) if t == 1 => 1,
        _ => 2,
    }
}

/// Rows of one call of [`fused`] at `level` for `t` tokens.
pub(crate) fn fused_rows(level: Level, t: usize) -> usize {
    GROUP_ROWS * fused_groups(level, t)
}

/// What [`tile`] gives on packed groups of the stored rows, with no panel: for each token `t`
/// and row `r < n`, `out[t][r]` = row `row(r)` (`n_cols` values of `ty`) times `x[t]`, over
/// every column, chunk by chunk of [`k_chunk`] columns, each chunk summed in order by fused
/// multiply-adds from zero, the first chunk stored and the others added (the chunks that
/// [`tile`] takes over the passes of `matmul_float.rs`, whose width is a multiple of either
/// level's chunk). Sixteen columns of sixteen rows are loaded, converted and transposed in
/// registers and multiplied at once: for a few tokens, writing a panel and reading it back
/// cost more than the products. Up to [`fused_rows`] rows, 1 to [`TOKENS`] tokens.
pub(crate) fn fused<'a>(
    level: Level,
    ty: WeightType,
    row: impl Fn(usize) -> &'a [u8],
    n: usize,
    x: &[&[f32]],
    out: &mut [&mut [f32]],
) {
    let t = x.len();
    let groups = fused_groups(level, t);
    assert!(out.len() == t && (1..=TOKENS).contains(&t) && (1..=groups * GROUP_ROWS).contains(&n));
    let n_cols = x[0].len();
    assert!(x.iter().all(|x| x.len() == n_cols) && out.iter().all(|o| o.len() == n));
    // The kernel's `groups` groups of rows; rows past `n` read row 0 again (their lanes are
    // never stored).
    let mut ptrs = [[std::ptr::null(); GROUP_ROWS]; 2];
    for (i, p) in ptrs
        .iter_mut()
        .flatten()
        .enumerate()
        .take(groups * GROUP_ROWS)
    {
        let bytes = row(if i < n { i } else { 0 });
        assert_eq!(
            bytes.len(),
            n_cols * ty.block_bytes(),
            "row {i} of the call"
        );
        *p = bytes.as_ptr();
    }
    let xp: [*const f32; TOKENS] = std::array::from_fn(|i| x.get(i).map_or(x[0], |x| x).as_ptr());
    let mut op = [std::ptr::null_mut(); TOKENS];
    for (p, o) in op.iter_mut().zip(out.iter_mut()) {
        *p = o.as_mut_ptr();
    }
    let (kind, chunk) = (float_kind(ty), k_chunk(level));
    macro_rules! call {
        ($f:ident, $g:literal, $t:literal $(, $p:literal)?) => {{
            let x: [*const f32; $t] = std::array::from_fn(|i| xp[i]);
            let o: [*mut f32; $t] = std::array::from_fn(|i| op[i]);
            let rows: &[[*const u8; GROUP_ROWS]; $g] = (&ptrs[..$g]).try_into().expect("groups");
            // SAFETY: the level's token proves the features; every pointer reads `n_cols`
            // values of `ty` (checked), every `x[t]` holds `n_cols` values and every `out[t]`
            // `n` (checked).
            unsafe {
                match kind {
                    F32 => $f::<F32, $g, $t $(, $p)?>(rows, n, n_cols, chunk, x, o),
                    F16 => $f::<F16, $g, $t $(, $p)?>(rows, n, n_cols, chunk, x, o),
                    _ => $f::<BF16, $g, $t $(, $p)?>(rows, n, n_cols, chunk, x, o),
                }
            }
        }};
    }
    match (level, groups) {
        (Level::Avx512(_), 1) => call!(fused_avx512, 1, 1),
        (Level::Avx512(_), _) => match t {
            1 => call!(fused_avx512, 2, 1),
            2 => call!(fused_avx512, 2, 2),
            3 => call!(fused_avx512, 2, 3),
            4 => call!(fused_avx512, 2, 4),
            5 => call!(fused_avx512, 2, 5),
            _ => call!(fused_avx512, 2, 6),
        },
        (Level::Avx2(_), _) => {
            use crate::avx2_panel::fused16_avx2;
            use crate::avx2_panel::fused_avx2;
            match t {
                1 if kind != F32 => call!(fused16_avx2, 2, 1, 2),
                1 => call!(fused_avx2, 2, 1, 2),
                2 => call!(fused_avx2, 2, 2, 2),
                3 => call!(fused_avx2, 2, 3, 2),
                4 => call!(fused_avx2, 2, 4, 1),
                5 => call!(fused_avx2, 2, 5, 1),
                _ => call!(fused_avx2, 2, 6, 1),
            }
        }
        (Level::Scalar, _) => panic!("no outer-product kernels at the scalar level"),
    }
}

/// How far ahead of its loads [`fused`] asks for each row's bytes.
pub(crate) const FUSED_AHEAD_BYTES: usize = 256;

/// [`fused`] at AVX-512, chunk by chunk of `chunk` columns ([`k_chunk`]).
///
/// # Safety
/// The features available; each of the `16·G` pointers reads `n_cols` values of `KIND`, each
/// `x[t]` holds `n_cols` values, each `out[t]` is writable for `n ≤ 16·G` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn fused_avx512<const KIND: u8, const G: usize, const T: usize>(
    rows: &[[*const u8; GROUP_ROWS]; G],
    n: usize,
    n_cols: usize,
    chunk: usize,
    x: [*const f32; T],
    out: [*mut f32; T],
) {
    use crate::kv_f16::avx512::transpose16;
    let ng = n.div_ceil(GROUP_ROWS);
    let vb = crate::avx2_dot::float_bytes(KIND);
    for ks in (0..n_cols).step_by(chunk) {
        let ke = n_cols.min(ks + chunk);
        let mut acc = [[_mm512_setzero_ps(); T]; G];
        for c in (ks..ke).step_by(16) {
            let left = (ke - c).min(16);
            let m = ((1u32 << left) - 1) as __mmask16;
            for (g, acc) in acc.iter_mut().enumerate().take(ng) {
                // Each row ahead of its loads, a line at a time: sixteen streams or more are
                // more than the hardware prefetchers follow.
                if (c * vb).is_multiple_of(64) {
                    for &p in &rows[g] {
                        let ahead = p.wrapping_add(c * vb + FUSED_AHEAD_BYTES) as *const i8;
                        _mm_prefetch::<_MM_HINT_T0>(ahead);
                    }
                }
                let mut block = [_mm512_setzero_ps(); 16];
                for (v, &p) in block.iter_mut().zip(&rows[g]) {
                    // SAFETY: lanes past `left` are masked off: columns below `n_cols` only.
                    *v = unsafe { load16::<KIND>(p, c, m) };
                }
                // SAFETY: the features are this function's.
                let cols = unsafe { transpose16(block) };
                // SAFETY (broadcasts): columns c + i < ke ≤ n_cols of each token. A whole block
                // by a loop of constant length, so the 16 columns stay in registers; the last,
                // part-filled block of a chunk by the general one.
                if left == 16 {
                    for (i, col) in cols.iter().enumerate() {
                        for (t, a) in acc.iter_mut().enumerate() {
                            let b = _mm512_set1_ps(unsafe { *x[t].add(c + i) });
                            *a = _mm512_fmadd_ps(*col, b, *a);
                        }
                    }
                } else {
                    for (i, col) in cols.iter().enumerate().take(left) {
                        for (t, a) in acc.iter_mut().enumerate() {
                            let b = _mm512_set1_ps(unsafe { *x[t].add(c + i) });
                            *a = _mm512_fmadd_ps(*col, b, *a);
                        }
                    }
                }
            }
        }
        for (g, acc) in acc.iter().enumerate().take(ng) {
            let valid = (n - GROUP_ROWS * g).min(GROUP_ROWS);
            let mask = ((1u32 << valid) - 1) as __mmask16;
            for (&o, &a) in out.iter().zip(acc) {
                // SAFETY: lanes past `n` are masked off.
                unsafe {
                    let p = o.add(GROUP_ROWS * g);
                    let v = if ks > 0 {
                        _mm512_add_ps(_mm512_maskz_loadu_ps(mask, p), a)
                    } else {
                        a
                    };
                    _mm512_mask_storeu_ps(p, mask, v);
                }
            }
        }
    }
}
