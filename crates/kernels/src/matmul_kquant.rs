//! K-quant weights (Q2_K..Q6_K) against activations quantized to Q8_K super-blocks, rows
//! spread over threads; the dot products are the `kquants` module's.

use crate::cpu::Level;
use crate::kquants::{kquant_matvec_row_with, quantize_q8_k, BlockQ8K, KQuantPath, QK_K};
use crate::matmul::{MatmulPath, MIN_TASK_BYTES};
use crate::par::{chunk_rows, for_each_row_chunk};
use crate::WeightView;

/// `out[t, r] = w[r] · x[t]` for a K-quant `w` (rows of whole 256-value super-blocks, checked
/// when the file was read).
pub(crate) fn matmul_kquant(
    level: Level,
    _path: MatmulPath,
    w: &WeightView,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
) {
    let path = if matches!(level, Level::Scalar) {
        KQuantPath::Scalar
    } else {
        KQuantPath::Avx2
    };
    let nb = w.n_cols / QK_K;
    let acts: Vec<BlockQ8K> = x.chunks_exact(w.n_cols).flat_map(quantize_q8_k).collect();
    let work_per_row = w.ty.row_bytes(w.n_cols) * n_tokens;
    let chunk = chunk_rows(w.n_rows, 1, MIN_TASK_BYTES.div_ceil(work_per_row.max(1)));
    for_each_row_chunk(out, w.n_rows, n_tokens, chunk, |mut oc| {
        for (i, r) in oc.rows().enumerate() {
            let row = w.row(r);
            for t in 0..n_tokens {
                oc.token(t)[i] =
                    kquant_matvec_row_with(path, w.ty, row, &acts[t * nb..(t + 1) * nb]);
            }
        }
    });
}
