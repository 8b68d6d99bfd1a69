//! The plain matmul: decode each weight row to `f32`, dot it with every token's activations in
//! `f32`, rows spread over threads. It handles every [`WeightType`] and is the oracle the fast
//! kernels (`matmul.rs`) are tested against; [`crate::matmul`] also falls back to it for the
//! weight types it has no dedicated kernels for.

use rayon::prelude::*;

use crate::{dot, WeightView};

/// Rows handed to one task: large enough to amortize scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 16;

/// `out[t, r] = Σ_c x[t, c] · w[r, c]`, like [`crate::matmul`], with `f32` activations for every
/// weight type. Each weight row is decoded once and used for every token.
pub fn matmul_reference(w: &WeightView, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    assert_eq!(x.len(), n_tokens * w.n_cols);
    assert_eq!(out.len(), n_tokens * w.n_rows);
    if n_tokens == 1 {
        out.par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .for_each(|(task, chunk)| {
                let mut row = vec![0f32; w.n_cols];
                for (i, o) in chunk.iter_mut().enumerate() {
                    w.row_f32(task * ROWS_PER_TASK + i, &mut row);
                    *o = dot(&row, x);
                }
            });
        return;
    }
    // Transposed result [n_rows, n_tokens], then scattered back.
    let mut out_t = vec![0f32; n_tokens * w.n_rows];
    out_t
        .par_chunks_mut(ROWS_PER_TASK * n_tokens)
        .enumerate()
        .for_each(|(task, chunk)| {
            let mut row = vec![0f32; w.n_cols];
            for (i, o) in chunk.chunks_exact_mut(n_tokens).enumerate() {
                w.row_f32(task * ROWS_PER_TASK + i, &mut row);
                for (t, v) in o.iter_mut().enumerate() {
                    *v = dot(&row, &x[t * w.n_cols..(t + 1) * w.n_cols]);
                }
            }
        });
    for r in 0..w.n_rows {
        for t in 0..n_tokens {
            out[t * w.n_rows + r] = out_t[r * n_tokens + t];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WeightType;

    #[test]
    fn matches_naive_and_batch_equals_single() {
        let (n_rows, n_cols, n_tokens) = (37, 64, 3);
        let w: Vec<f32> = (0..n_rows * n_cols)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
            .collect();
        let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let x: Vec<f32> = (0..n_tokens * n_cols)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.2)
            .collect();
        let view = WeightView {
            ty: WeightType::F32,
            n_rows,
            n_cols,
            bytes: &bytes,
        };
        let mut out = vec![0f32; n_tokens * n_rows];
        matmul_reference(&view, &x, n_tokens, &mut out);
        for t in 0..n_tokens {
            for r in 0..n_rows {
                let want: f32 = (0..n_cols)
                    .map(|c| w[r * n_cols + c] * x[t * n_cols + c])
                    .sum();
                assert!((out[t * n_rows + r] - want).abs() < 1e-4);
            }
            let mut one = vec![0f32; n_rows];
            matmul_reference(&view, &x[t * n_cols..(t + 1) * n_cols], 1, &mut one);
            assert_eq!(&one[..], &out[t * n_rows..(t + 1) * n_rows]);
        }
    }
}
