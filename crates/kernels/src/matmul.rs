use rayon::prelude::*;

use crate::{dequantize, dot, WeightType};

/// A borrowed weight matrix `[n_rows, n_cols]`, row-major, each row `ty.row_bytes(n_cols)` bytes.
#[derive(Debug, Clone, Copy)]
pub struct WeightView<'a> {
    pub ty: WeightType,
    pub n_rows: usize,
    pub n_cols: usize,
    pub bytes: &'a [u8],
}

impl<'a> WeightView<'a> {
    /// The bytes of row `r`.
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.ty.row_bytes(self.n_cols);
        &self.bytes[r * rb..(r + 1) * rb]
    }
    /// Row `r` decoded into `out` (`n_cols` values).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        dequantize(self.ty, self.row(r), out);
    }
}

/// Rows handed to one task: large enough to amortize scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 16;

/// `out[t, r] = Σ_c x[t, c] · w[r, c]` for `n_tokens` rows of `x` (`[n_tokens, n_cols]`) into
/// `out` (`[n_tokens, n_rows]`). Each weight row is decoded once and used for every token.
pub fn matmul(w: &WeightView, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    debug_assert_eq!(x.len(), n_tokens * w.n_cols);
    debug_assert_eq!(out.len(), n_tokens * w.n_rows);
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

    #[test]
    fn matmul_matches_naive() {
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
        matmul(&view, &x, n_tokens, &mut out);
        for t in 0..n_tokens {
            for r in 0..n_rows {
                let want: f32 = (0..n_cols)
                    .map(|c| w[r * n_cols + c] * x[t * n_cols + c])
                    .sum();
                assert!((out[t * n_rows + r] - want).abs() < 1e-4);
            }
            let mut one = vec![0f32; n_rows];
            matmul(&view, &x[t * n_cols..(t + 1) * n_cols], 1, &mut one);
            assert_eq!(&one[..], &out[t * n_rows..(t + 1) * n_rows]);
        }
    }
}
