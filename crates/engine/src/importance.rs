//! Column importance of every matrix, estimated from the weights alone (no calibration text).
//!
//! A matrix row's output error from quantizing its weights is `Σ_j e_j x_j`, so the error in
//! column `j` weighs by the mean square `E[x_j²]` of that column's input (the diagonal that
//! llama.cpp's importance matrix measures on text). Here the mean squares are propagated
//! through the network instead, treating the inputs of each matrix as independent:
//!
//! - the residual stream starts as the token embeddings, averaged over the vocabulary;
//! - an RMS norm divides by the stream's root mean square and scales column `j` by `g[j]`;
//! - a matrix maps mean squares `m` to `Σ_j W[i,j]² m[j]` for output `i`;
//! - attention mixes value rows (a convex combination keeps their scale, at most), so the
//!   output projection's inputs take the mean squares of the values they come from;
//! - SwiGLU's `silu(a)·b` takes `E[silu(a)²]·E[b²]` with `a` normal of the propagated variance;
//! - each block adds its outputs to the stream.
//!
//! Only relative values inside one block of 32 columns change how a block is quantized.

use model::{Llama, Weight};
use rayon::prelude::*;

/// Mean squares of the inputs of one layer's matrices.
#[derive(Debug, Clone)]
pub struct LayerImportance {
    /// Input of `attn_q`, `attn_k`, `attn_v` (after the attention norm).
    pub attn_in: Vec<f32>,
    /// Input of `attn_output` (the heads' attention outputs).
    pub attn_out_in: Vec<f32>,
    /// Input of `ffn_gate`, `ffn_up` (after the feed-forward norm).
    pub ffn_in: Vec<f32>,
    /// Input of `ffn_down`.
    pub down_in: Vec<f32>,
}

/// The propagated mean squares for every layer of `m`.
pub fn estimate(m: &Llama) -> Vec<LayerImportance> {
    let c = &m.config;
    let e = &m.tok_embeddings;
    let mut h = column_mean_squares(e);
    let group = c.n_heads / c.n_kv_heads.max(1);
    let mut out = Vec::with_capacity(m.layers.len());
    for w in &m.layers {
        let attn_in = normed(&h, &w.attn_norm);
        let v = propagate(&w.wv, &attn_in);
        // Query head `q` reads the values of KV head `q / group`.
        let mut attn_out_in = Vec::with_capacity(c.n_heads * c.head_dim);
        for q in 0..c.n_heads {
            let kv = q / group.max(1);
            attn_out_in.extend_from_slice(&v[kv * c.head_dim..(kv + 1) * c.head_dim]);
        }
        add(&mut h, &propagate(&w.wo, &attn_out_in));
        let ffn_in = normed(&h, &w.ffn_norm);
        let gate = propagate(&w.w_gate, &ffn_in);
        let up = propagate(&w.w_up, &ffn_in);
        let down_in: Vec<f32> = gate
            .iter()
            .zip(&up)
            .map(|(&a, &b)| silu_mean_square(a) * b)
            .collect();
        add(&mut h, &propagate(&w.w_down, &down_in));
        out.push(LayerImportance {
            attn_in,
            attn_out_in,
            ffn_in,
            down_in,
        });
    }
    out
}

/// Mean over the rows of `w` of each column's square, each row scaled to unit mean square
/// first (what the first norm sees, up to its gain).
fn column_mean_squares(w: &Weight) -> Vec<f32> {
    let n = w.n_cols;
    let view = w.view();
    let acc = (0..w.n_rows)
        .into_par_iter()
        .fold(
            || (vec![0f64; n], vec![0f32; n]),
            |(mut acc, mut row), r| {
                view.row_f32(r, &mut row);
                let ms = row.iter().map(|&v| (v * v) as f64).sum::<f64>() / n as f64;
                if ms > 0.0 {
                    for (a, &v) in acc.iter_mut().zip(&row) {
                        *a += (v * v) as f64 / ms;
                    }
                }
                (acc, row)
            },
        )
        .map(|(acc, _)| acc)
        .reduce(
            || vec![0f64; n],
            |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect(),
        );
    acc.iter()
        .map(|&a| (a / w.n_rows.max(1) as f64) as f32)
        .collect()
}

/// An RMS norm with gain `g` applied to a stream of mean squares `h`.
fn normed(h: &[f32], g: &[f32]) -> Vec<f32> {
    let ms = h.iter().map(|&v| v as f64).sum::<f64>() / h.len().max(1) as f64;
    let inv = if ms > 0.0 { (1.0 / ms) as f32 } else { 0.0 };
    h.iter().zip(g).map(|(&h, &g)| g * g * h * inv).collect()
}

/// Mean squares of `W·x` for inputs of mean squares `m`, the inputs taken independent.
fn propagate(w: &Weight, m: &[f32]) -> Vec<f32> {
    let view = w.view();
    (0..w.n_rows)
        .into_par_iter()
        .map_init(
            || vec![0f32; w.n_cols],
            |row, r| {
                view.row_f32(r, row);
                row.iter().zip(m).map(|(&w, &m)| w * w * m).sum()
            },
        )
        .collect()
}

fn add(h: &mut [f32], d: &[f32]) {
    for (h, d) in h.iter_mut().zip(d) {
        *h += d;
    }
}

/// `E[silu(a)²]` for `a` normal with mean 0 and variance `var`, by a fixed quadrature.
fn silu_mean_square(var: f32) -> f32 {
    if var <= 0.0 {
        return 0.0;
    }
    let s = var.sqrt() as f64;
    // Midpoint rule over ±6 standard deviations.
    const N: usize = 96;
    let (lo, hi) = (-6.0f64, 6.0f64);
    let dz = (hi - lo) / N as f64;
    let mut sum = 0.0;
    for i in 0..N {
        let z = lo + (i as f64 + 0.5) * dz;
        let a = s * z;
        let silu = a / (1.0 + (-a).exp());
        sum += silu * silu * (-0.5 * z * z).exp();
    }
    (sum * dz / (2.0 * std::f64::consts::PI).sqrt()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_mean_square_matches_its_limits() {
        // Small variance: silu(a) ≈ a/2, so E[silu²] ≈ var/4.
        let v = 1e-4f32;
        assert!((silu_mean_square(v) / (v / 4.0) - 1.0).abs() < 1e-2);
        // Large variance: silu(a) ≈ relu(a), so E[silu²] ≈ var/2.
        let v = 1e4f32;
        assert!((silu_mean_square(v) / (v / 2.0) - 1.0).abs() < 1e-2);
        assert_eq!(silu_mean_square(0.0), 0.0);
    }

    #[test]
    fn normed_divides_by_the_mean_square_and_scales_by_the_gain() {
        let h = [1.0, 3.0];
        let g = [2.0, 1.0];
        assert_eq!(normed(&h, &g), vec![2.0, 1.5]);
    }
}
