//! Scalar twins of the prefill tile kernels (`avx2_tile.rs`, `avx512_tile.rs`, `avx512_panel.rs`):
//! `R` rows of a packed weight panel (`pack.rs`) against `T` activation rows, every pair's dot product.

use crate::act_q8::{GROUP_BLOCKS, GROUP_BYTES};

/// One row of a packed quantized panel: offset bytes and block scales.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QuantRow<'a> {
    pub qs: &'a [u8],
    pub d: &'a [f32],
}

/// One token of Q8_0 activations in the interleaved layout (`act_q8.rs`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActRow<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub sums: &'a [i32],
}

/// Twin of `avx512_panel::tile`, bitwise: `groups` column-major by 16 rows (`kw` columns per
/// group); each (row, token) sum over `cols` in order by fused multiply-adds from zero, then
/// stored (`add` false) or added to the output.
#[cfg(test)]
pub(crate) fn panel_f32(
    groups: &[f32],
    kw: usize,
    cols: std::ops::Range<usize>,
    x: &[&[f32]],
    out: &mut [&mut [f32]],
    add: bool,
) {
    for (x, o) in x.iter().zip(out.iter_mut()) {
        for (r, o) in o.iter_mut().enumerate() {
            let (g, l) = (r / 16, r % 16);
            let mut s = 0f32;
            for (i, k) in cols.clone().enumerate() {
                s = groups[(g * kw + k) * 16 + l].mul_add(x[i], s);
            }
            *o = if add { *o + s } else { s };
        }
    }
}

/// `out[r][t] = w[r] · x[t]` over padded `f32` rows.
pub(crate) fn tile_f32<const R: usize, const T: usize>(
    w: [&[f32]; R],
    x: [&[f32]; T],
) -> [[f32; T]; R] {
    let mut out = [[0f32; T]; R];
    for (o, wr) in out.iter_mut().zip(w) {
        for (v, xt) in o.iter_mut().zip(x) {
            *v = crate::dot(wr, xt);
        }
    }
    out
}

/// `out[r][t] = Σ_blocks (Σ (u − offset) · a) · d_w · d_a`, with `Σ (u − offset) · a`
/// computed as `Σ u · a − offset · Σ a` in exact integers.
pub(crate) fn tile_quant<const R: usize, const T: usize>(
    w: [QuantRow<'_>; R],
    a: [ActRow<'_>; T],
    offset: i32,
) -> [[f32; T]; R] {
    let mut out = [[0f32; T]; R];
    for (o, wr) in out.iter_mut().zip(w) {
        for (v, at) in o.iter_mut().zip(a) {
            *v = dot_quant(wr, at, offset);
        }
    }
    out
}

fn dot_quant(w: QuantRow<'_>, a: ActRow<'_>, offset: i32) -> f32 {
    assert!(w.qs.len() == a.qs.len() && w.d.len() == a.d.len() && a.sums.len() == a.d.len());
    let mut sum = 0f32;
    for (b, (&dw, &da)) in w.d.iter().zip(a.d).enumerate() {
        let (g, i) = (b / GROUP_BLOCKS, b % GROUP_BLOCKS);
        let mut s = -offset * a.sums[b];
        for k in 0..8 {
            let at = g * GROUP_BYTES + (k * GROUP_BLOCKS + i) * 4;
            for j in at..at + 4 {
                s += w.qs[j] as i32 * a.qs[j] as i32;
            }
        }
        sum += s as f32 * (dw * da);
    }
    sum
}
