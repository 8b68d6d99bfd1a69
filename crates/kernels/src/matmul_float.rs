//! `matmul` for F32 / F16 / BF16 weights against `f32` activations: row kernels
//! ([`MatmulPath::Rows`]), or packed `f32` panels and tile kernels ([`MatmulPath::Tiles`]).

use std::borrow::Cow;
use std::sync::Arc;

#[cfg(target_arch = "x86_64")]
use crate::avx2_dot::{BF16, F16, F32};
use crate::cpu::Level;
use crate::matmul::{MatmulPath, MIN_TASK_BYTES, PANEL_BYTES};
use crate::pack::{f32_row_len, pack_float_row};
use crate::par::{
    for_each_row_chunk, rows_task_rows, run_rows_jobs, tile_chunk_rows, OutCols, RowsJob,
};
use crate::scratch::{sized, with_panel, Panel};
use crate::tiles::{run_tiles, Tiler};
use crate::{dot_scalar, tile_scalar, WeightType, WeightView};

/// `out = x · wᵀ` for a float weight type; shapes already checked.
pub(crate) fn matmul_float(
    level: Level,
    path: MatmulPath,
    w: &WeightView,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) {
    match (path, level) {
        // The scalar level has no tile kernels worth their panels; its one arithmetic serves
        // every path, which therefore agree bitwise.
        (MatmulPath::Rows, _) | (MatmulPath::Tiles | MatmulPath::Bulk, Level::Scalar) => {
            float_rows(level, w, x, n_tokens, out)
        }
        (MatmulPath::Tiles | MatmulPath::Bulk, _) => {
            // Only the bulk path's level has the AMX token (`MatmulPath::level`).
            #[cfg(target_arch = "x86_64")]
            if let Some(amx) = split_amx(level, w) {
                return crate::amx_bf16::matmul_bf16(amx, w, x, n_tokens, out, true);
            }
            float_tiles(level, w, x, n_tokens, out)
        }
    }
}

/// Rows the AVX2 float row kernels read side by side (decode, and prompts by rows): four
/// streams from memory, one accumulator per row and token (`avx2_dot`), so a block of four rows
/// and two tokens holds eight accumulators in registers. Decode as fast as two rows of four
/// accumulators each (`herd bench tl-f16.gguf -p 0 -n 32 -t 1,2 -r 2`, four alternating rounds,
/// medians, t/s two rows / four: 4.41 / 4.36 at one thread, 7.25 / 7.46 at two).
#[cfg(target_arch = "x86_64")]
const ROWS_AVX2: usize = 4;

/// Each row once, dotted with every token by the row kernel.
fn float_rows(level: Level, w: &WeightView, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    let job = FloatRows::new(level, w, x, n_tokens);
    run_rows_jobs(&[&job], &mut [out], n_tokens);
}

/// The input `x` (`n_tokens` rows of `n_cols`) in the layout of the AVX2 kernel for several
/// tokens (`avx2_dot::interleave_tokens`: the values of a step's two or three tokens read as
/// one stream, where token rows a power of two apart filled single cache sets), where the level
/// and the count of tokens take that kernel; made once for the products of one input.
pub(crate) fn float_interleaved(
    level: Level,
    x: &[f32],
    n_tokens: usize,
    n_cols: usize,
) -> Option<Arc<Vec<f32>>> {
    #[cfg(target_arch = "x86_64")]
    if let (Level::Avx2(_), true) = (level, n_tokens > 1) {
        let mut xi = vec![0f32; n_tokens * (n_cols / 8 * 8)];
        crate::avx2_dot::interleave_tokens(x, n_cols, &mut xi);
        return Some(Arc::new(xi));
    }
    let _ = (level, x, n_tokens, n_cols);
    None
}

/// A float product by rows ([`RowsJob`]).
pub(crate) struct FloatRows<'a> {
    level: Level,
    w: WeightView<'a>,
    x: &'a [f32],
    /// At AVX2 for several tokens, `x` with each step's tokens side by side
    /// ([`float_interleaved`]).
    xi: Option<Arc<Vec<f32>>>,
    n_tokens: usize,
    chunk: usize,
}

impl<'a> FloatRows<'a> {
    pub(crate) fn new(level: Level, w: &WeightView<'a>, x: &'a [f32], n_tokens: usize) -> Self {
        let xi = float_interleaved(level, x, n_tokens, w.n_cols);
        Self::with_interleaved(level, w, x, n_tokens, xi)
    }

    /// [`FloatRows::new`] with the input's layout for the AVX2 kernel made already
    /// ([`float_interleaved`] of the same input: the products of one input share it).
    pub(crate) fn with_interleaved(
        level: Level,
        w: &WeightView<'a>,
        x: &'a [f32],
        n_tokens: usize,
        xi: Option<Arc<Vec<f32>>>,
    ) -> Self {
        let work_per_row = w.ty.row_bytes(w.n_cols) * n_tokens;
        let chunk = rows_task_rows(w.n_rows, work_per_row);
        FloatRows {
            level,
            w: *w,
            x,
            xi,
            n_tokens,
            chunk,
        }
    }
}

impl RowsJob for FloatRows<'_> {
    fn weights(&self) -> &WeightView<'_> {
        &self.w
    }
    fn chunk_rows(&self) -> usize {
        self.chunk
    }
    fn run(&self, mut oc: OutCols<'_>) {
        let n_cols = self.w.n_cols;
        let x = |t: usize| &self.x[t * n_cols..(t + 1) * n_cols];
        // At AVX-512, each row read once for up to four tokens (the same bits as a token at a
        // time).
        #[cfg(target_arch = "x86_64")]
        if let (Level::Avx512(k), true) = (self.level, self.n_tokens > 1) {
            use crate::avx512_dot::{dot_float_tokens, FLOAT_TOKENS};
            let mut res = [0f32; FLOAT_TOKENS];
            for (i, r) in oc.rows().enumerate() {
                let wr = self.w.row(r);
                for t0 in (0..self.n_tokens).step_by(FLOAT_TOKENS) {
                    let nt = FLOAT_TOKENS.min(self.n_tokens - t0);
                    let xs: [&[f32]; FLOAT_TOKENS] = std::array::from_fn(|j| x(t0 + j.min(nt - 1)));
                    let (xs, res) = (&xs[..nt], &mut res[..nt]);
                    match self.w.ty {
                        WeightType::F32 => dot_float_tokens::<F32>(k, wr, xs, res),
                        WeightType::F16 => dot_float_tokens::<F16>(k, wr, xs, res),
                        _ => dot_float_tokens::<BF16>(k, wr, xs, res),
                    }
                    for (j, &v) in res[..nt].iter().enumerate() {
                        oc.token(t0 + j)[i] = v;
                    }
                }
            }
            return;
        }
        // At AVX2: rows side by side (streams from memory at once), each read once for up to
        // `BLOCK_TOKENS` tokens; every row and token the same bits as a decode's.
        #[cfg(target_arch = "x86_64")]
        if let Level::Avx2(k) = self.level {
            use crate::avx2_dot::{dot_float_block, dot_float_rows, BLOCK_TOKENS};
            const R: usize = ROWS_AVX2;
            let rows = oc.rows();
            let whole = rows.len() / R * R;
            let ty = self.w.ty;
            if self.n_tokens == 1 {
                let out = oc.token(0);
                for i in (0..whole).step_by(R) {
                    let w = std::array::from_fn(|j| self.w.row(rows.start + i + j));
                    out[i..i + R].copy_from_slice(&match ty {
                        WeightType::F32 => dot_float_rows::<F32, R>(k, w, x(0)),
                        WeightType::F16 => dot_float_rows::<F16, R>(k, w, x(0)),
                        _ => dot_float_rows::<BF16, R>(k, w, x(0)),
                    });
                }
                for (o, r) in out[whole..].iter_mut().zip(rows.start + whole..rows.end) {
                    *o = dot_row(self.level, ty, self.w.row(r), x(0));
                }
                return;
            }
            let n8 = n_cols / 8 * 8;
            let xi = self.xi.as_deref().expect("the interleaved input at AVX2");
            let mut i = 0;
            while i < rows.len() {
                let nr = if i < whole { R } else { 1 };
                for t0 in (0..self.n_tokens).step_by(BLOCK_TOKENS) {
                    let nt = BLOCK_TOKENS.min(self.n_tokens - t0);
                    let xs = &self.x[t0 * n_cols..(t0 + nt) * n_cols];
                    let xi = &xi[t0 * n8..(t0 + nt) * n8];
                    let put = |r: usize, t: usize, v: f32| oc.token(t0 + t)[i + r] = v;
                    if nr == R {
                        let w = std::array::from_fn(|j| self.w.row(rows.start + i + j));
                        match ty {
                            WeightType::F32 => dot_float_block::<F32, R>(k, w, xs, xi, n_cols, put),
                            WeightType::F16 => dot_float_block::<F16, R>(k, w, xs, xi, n_cols, put),
                            _ => dot_float_block::<BF16, R>(k, w, xs, xi, n_cols, put),
                        }
                    } else {
                        let w = [self.w.row(rows.start + i)];
                        match ty {
                            WeightType::F32 => dot_float_block::<F32, 1>(k, w, xs, xi, n_cols, put),
                            WeightType::F16 => dot_float_block::<F16, 1>(k, w, xs, xi, n_cols, put),
                            _ => dot_float_block::<BF16, 1>(k, w, xs, xi, n_cols, put),
                        }
                    }
                }
                i += nr;
            }
            return;
        }
        for (i, r) in oc.rows().enumerate() {
            let wr = self.w.row(r);
            for t in 0..self.n_tokens {
                oc.token(t)[i] = dot_row(self.level, self.w.ty, wr, x(t));
            }
        }
    }
}

/// One pass of a float product: weight rows `p0..p0 + np`, whose outputs start at `col0` of the
/// chunk's, against columns `k0..k1`.
struct Pass {
    p0: usize,
    np: usize,
    col0: usize,
    k0: usize,
    k1: usize,
}

/// A float product split for the packed kernels: rows in chunks per task (multiples of
/// `align`), each chunk in panels of rows, each panel in passes of [`K_BLOCK`] columns (its
/// panel slice and the same columns of every token stay in L2); `f` gets every pass with the
/// chunk's outputs and this thread's scratch panel.
fn for_each_pass(
    level: Level,
    w: &WeightView,
    n_tokens: usize,
    align: usize,
    out: &mut [f32],
    f: impl Fn(&mut OutCols<'_>, &mut Panel, Pass) + Sync,
) {
    let (n_rows, n_cols) = (w.n_rows, w.n_cols);
    let work_per_row = w.ty.row_bytes(n_cols) * n_tokens;
    let kb = K_BLOCK.min(f32_row_len(n_cols));
    let panel_rows = (PANEL_BYTES / (4 * kb)).clamp(align, 256) / align * align;
    let min_rows = MIN_TASK_BYTES.div_ceil(work_per_row);
    let chunk = tile_chunk_rows(level, n_rows, align, min_rows, panel_rows);
    for_each_row_chunk(out, n_rows, n_tokens, chunk, |mut oc| {
        let rows = oc.rows();
        with_panel(|p| {
            for p0 in rows.clone().step_by(panel_rows) {
                let np = panel_rows.min(rows.end - p0);
                let col0 = p0 - rows.start;
                for k0 in (0..n_cols).step_by(K_BLOCK) {
                    let k1 = n_cols.min(k0 + K_BLOCK);
                    f(
                        &mut oc,
                        p,
                        Pass {
                            p0,
                            np,
                            col0,
                            k0,
                            k1,
                        },
                    );
                }
            }
        });
    });
}

/// Packed panels and tiles; activations padded like the panel rows.
fn float_tiles(level: Level, w: &WeightView, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if !matches!(level, Level::Scalar) {
        if let Some(job) = FloatFused::for_call(level, w, x, n_tokens) {
            return run_rows_jobs(&[&job], &mut [out], n_tokens);
        }
        return float_panels(level, w, x, n_tokens, out);
    }
    let n_cols = w.n_cols;
    let kp = f32_row_len(n_cols);
    let xp: Cow<[f32]> = if kp == n_cols {
        Cow::Borrowed(x)
    } else {
        let mut v = vec![0f32; n_tokens * kp];
        for (d, s) in v.chunks_exact_mut(kp).zip(x.chunks_exact(n_cols)) {
            d[..n_cols].copy_from_slice(s);
        }
        Cow::Owned(v)
    };
    let value_bytes = w.ty.block_bytes();
    // Rows of a tile: the `run_tiles::<2, 4, _>` below.
    for_each_pass(
        level,
        w,
        n_tokens,
        2,
        out,
        |oc,
         p,
         Pass {
             p0,
             np,
             col0,
             k0,
             k1,
         }| {
            let kw = f32_row_len(k1 - k0);
            let panel = sized(&mut p.f, np * kw);
            for (i, pr) in panel.chunks_exact_mut(kw).enumerate() {
                let bytes = &w.row(p0 + i)[k0 * value_bytes..k1 * value_bytes];
                pack_float_row(level, w.ty, bytes, pr);
            }
            let tiler = FloatTiler {
                level,
                panel,
                x: &xp,
                kp,
                k: k0..k0 + kw,
            };
            let emit = |r: usize, t: usize, v: f32| {
                let o = &mut oc.token(t)[col0 + r];
                *o = if k0 == 0 { v } else { *o + v };
            };
            run_tiles::<2, 4, _>(&tiler, np, n_tokens, emit);
        },
    );
}

/// The AMX tiles where the bulk path ([`MatmulPath::Bulk`], the only one whose level keeps the
/// AMX token) of `w` takes them: F16 and BF16 weights (in two `bf16` terms, `amx_bf16::Split`)
/// of whole 32-column tiles, for every token count (so the path stays batch-invariant). F32 weights keep the `f32`
/// kernels (24 significant bits would take three terms).
#[cfg(target_arch = "x86_64")]
pub(crate) fn split_amx(level: Level, w: &WeightView) -> Option<crate::cpu::Amx> {
    let float = matches!(w.ty, WeightType::F16 | WeightType::BF16);
    crate::matmul_quant::tiles_amx(level).filter(|_| float && w.n_cols.is_multiple_of(32))
}

/// [`float_tiles`] at the AVX2 and AVX-512 levels: each pass's rows packed in groups of 16 rows
/// (as `f32`, or at AVX2 for short prompts as the stored 16-bit values,
/// [`avx512_panel::panel_kind`]) and multiplied by outer products, [`avx512_panel::k_chunk`]
/// columns and up to 64 rows at a time against every token.
#[cfg(target_arch = "x86_64")]
fn float_panels(level: Level, w: &WeightView, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    use crate::avx512_panel::{self as ap, GROUP_ROWS, MAX_GROUPS, TOKENS};
    let (n_cols, value_bytes) = (w.n_cols, w.ty.block_bytes());
    let kind = ap::panel_kind(level, w.ty, n_tokens);
    let chunk = ap::k_chunk(level);
    for_each_pass(
        level,
        w,
        n_tokens,
        GROUP_ROWS,
        out,
        |oc,
         p,
         Pass {
             p0,
             np,
             col0,
             k0,
             k1,
         }| {
            let kw = k1 - k0;
            let group_bytes = ap::group_bytes(kind, kw);
            let n_groups = np.div_ceil(GROUP_ROWS);
            // On a 64-byte boundary: every weight load within one cache line.
            let groups = p.q.sized(n_groups * group_bytes);
            let row = |i: usize| &w.row(p0 + i)[k0 * value_bytes..k1 * value_bytes];
            ap::pack_groups(level, w.ty, kind, row, np, kw, groups);
            for g0 in (0..n_groups).step_by(MAX_GROUPS) {
                let r0 = g0 * GROUP_ROWS;
                let r1 = np.min(r0 + MAX_GROUPS * GROUP_ROWS);
                let gs = &groups[g0 * group_bytes..];
                for ks in (0..kw).step_by(chunk) {
                    let cols = ks..kw.min(ks + chunk);
                    let add = k0 + ks > 0;
                    for t0 in (0..n_tokens).step_by(TOKENS) {
                        let ts = t0..n_tokens.min(t0 + TOKENS);
                        let xs: [&[f32]; TOKENS] = std::array::from_fn(|j| {
                            let t = (t0 + j).min(n_tokens - 1);
                            &x[t * n_cols + k0 + cols.start..][..cols.len()]
                        });
                        let mut os: [&mut [f32]; TOKENS] = std::array::from_fn(|_| &mut [][..]);
                        let nt = ts.len();
                        for (slot, o) in os.iter_mut().zip(oc.tokens_mut(ts, col0 + r0..col0 + r1))
                        {
                            *slot = o;
                        }
                        ap::tile(
                            level,
                            kind,
                            gs,
                            kw,
                            cols.clone(),
                            &xs[..nt],
                            &mut os[..nt],
                            add,
                        );
                    }
                }
            }
        },
    );
}

/// [`float_tiles`] at the AVX2 and AVX-512 levels for a few tokens (at most one call's
/// [`avx512_panel::TOKENS`]): the stored rows converted and transposed in registers and
/// multiplied at once (`avx512_panel::fused`), bitwise [`float_panels`] with no panel. A server's
/// steps of a few sequences take the tile path (batch invariance) and a panel, written and read
/// back for so few tokens, tripled their time: TinyLlama F16 served 7 tokens/s at one
/// sequence against 20 decoding alone.
#[cfg(target_arch = "x86_64")]
pub(crate) struct FloatFused<'a> {
    level: Level,
    w: WeightView<'a>,
    x: &'a [f32],
    n_tokens: usize,
    chunk: usize,
}

#[cfg(target_arch = "x86_64")]
impl<'a> FloatFused<'a> {
    /// The product by tiles of `n_tokens` rows of `x` with float `w`, if it is one of a few
    /// tokens at a SIMD level (else the panels take it).
    pub(crate) fn for_call(
        level: Level,
        w: &WeightView<'a>,
        x: &'a [f32],
        n_tokens: usize,
    ) -> Option<Self> {
        use crate::avx512_panel::{GROUP_ROWS, TOKENS};
        if matches!(level, Level::Scalar) || !(1..=TOKENS).contains(&n_tokens) {
            return None;
        }
        let work_per_row = w.ty.row_bytes(w.n_cols) * n_tokens;
        let chunk = rows_task_rows(w.n_rows, work_per_row).next_multiple_of(GROUP_ROWS);
        Some(FloatFused {
            level,
            w: *w,
            x,
            n_tokens,
            chunk,
        })
    }
}

#[cfg(target_arch = "x86_64")]
impl RowsJob for FloatFused<'_> {
    fn weights(&self) -> &WeightView<'_> {
        &self.w
    }
    fn chunk_rows(&self) -> usize {
        self.chunk
    }
    fn run(&self, mut oc: OutCols<'_>) {
        use crate::avx512_panel::{fused, fused_rows, TOKENS};
        let (n_cols, nt) = (self.w.n_cols, self.n_tokens);
        let xs: [&[f32]; TOKENS] = std::array::from_fn(|t| {
            let t = t.min(nt - 1);
            &self.x[t * n_cols..(t + 1) * n_cols]
        });
        let rows = oc.rows();
        let step = fused_rows(self.level, nt);
        for r0 in rows.clone().step_by(step) {
            let r1 = rows.end.min(r0 + step);
            let cols = r0 - rows.start..r1 - rows.start;
            let mut os: [&mut [f32]; TOKENS] = std::array::from_fn(|_| &mut [][..]);
            for (slot, o) in os.iter_mut().zip(oc.tokens_mut(0..nt, cols)) {
                *slot = o;
            }
            let row = |i: usize| self.w.row(r0 + i);
            fused(
                self.level,
                self.w.ty,
                row,
                r1 - r0,
                &xs[..nt],
                &mut os[..nt],
            );
        }
    }
}

/// Columns per pass (a multiple of [`crate::pack::F32_ALIGN`]): 4 KiB of `f32` per row, so a
/// tile's token rows sit in L1 while weight rows stream through (AVX2 tiles), and a panel of
/// 64 rows (256 KiB, [`PANEL_BYTES`]) plus these columns of a few hundred tokens stay within L2.
const K_BLOCK: usize = 1024;
const _: () = assert!(
    K_BLOCK.is_multiple_of(crate::avx512_panel::K_CHUNK_AVX512)
        && K_BLOCK.is_multiple_of(crate::avx512_panel::K_CHUNK_AVX2)
);

/// One stored row · one token.
pub(crate) fn dot_row(level: Level, ty: WeightType, w: &[u8], x: &[f32]) -> f32 {
    match level {
        Level::Scalar => match ty {
            WeightType::F32 => dot_scalar::dot_f32(w, x),
            WeightType::F16 => dot_scalar::dot_f16(w, x),
            _ => dot_scalar::dot_bf16(w, x),
        },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2(k) => match ty {
            WeightType::F32 => crate::avx2_dot::dot_float::<F32>(k, w, x),
            WeightType::F16 => crate::avx2_dot::dot_float::<F16>(k, w, x),
            _ => crate::avx2_dot::dot_float::<BF16>(k, w, x),
        },
        #[cfg(target_arch = "x86_64")]
        Level::Avx512(k) => match ty {
            WeightType::F32 => crate::avx512_dot::dot_float::<F32>(k, w, x),
            WeightType::F16 => crate::avx512_dot::dot_float::<F16>(k, w, x),
            _ => crate::avx512_dot::dot_float::<BF16>(k, w, x),
        },
    }
}

/// Tiles of a packed `f32` panel against padded activations.
struct FloatTiler<'a> {
    level: Level,
    panel: &'a [f32],
    x: &'a [f32],
    kp: usize,
    /// The columns of this pass, in the activations; panel rows hold exactly these.
    k: std::ops::Range<usize>,
}

impl Tiler for FloatTiler<'_> {
    fn tile<const R: usize, const T: usize>(&self, r0: usize, t0: usize) -> [[f32; T]; R] {
        let (kp, k, kw) = (self.kp, &self.k, self.k.len());
        let w: [&[f32]; R] = std::array::from_fn(|i| &self.panel[(r0 + i) * kw..][..kw]);
        let x: [&[f32]; T] = std::array::from_fn(|i| &self.x[(t0 + i) * kp..][k.clone()]);
        match self.level {
            Level::Scalar => tile_scalar::tile_f32(w, x),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2(_) | Level::Avx512(_) => unreachable!("float products run on panels"),
        }
    }
}
