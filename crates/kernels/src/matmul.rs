//! `matmul`: a stored weight matrix times the activations of one or more tokens, with the
//! kernels of the CPU's instruction set (`cpu.rs`: detected once, `HERD_ISA` lowers it).
//!
//! - F32 / F16 / BF16 weights meet `f32` activations: weights converted on the fly, products
//!   summed in `f32` (`matmul_float.rs`).
//! - Q8_0 / Q4_0 weights meet activations quantized to Q8_0 blocks, in exact integer dot
//!   products per block, as llama.cpp's CPU backend computes them (`matmul_quant.rs`,
//!   `act_q8.rs`); results differ from `f32` activations by that rounding.
//! - One token (decode): each thread streams a contiguous range of rows through a row kernel
//!   (`*_dot.rs`); reading the weights is the bound.
//! - Several tokens (prefill): each thread rewrites its rows a panel at a time (`pack.rs`) and
//!   tile kernels (`*_tile.rs`) take a few rows × a few tokens at once, each weight vector
//!   loaded once for several tokens; computing is the bound.
//! - Any other weight type takes the plain path, [`crate::matmul_reference`].

use crate::cpu::{Isa, Level};
use crate::matmul_float::matmul_float;
use crate::matmul_quant::matmul_quant;
use crate::{dequantize, matmul_reference, WeightType};

/// Fewer bytes of weights (times tokens) than this stay in one task: spreading tiny matrices
/// over threads costs more than it saves.
pub(crate) const MIN_TASK_BYTES: usize = 64 << 10;
/// Target size of a packed weight panel: a few hundred KiB stays in a core's L2 cache while
/// every group of tokens passes over it.
pub(crate) const PANEL_BYTES: usize = 256 << 10;

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

/// `out[t, r] = Σ_c x[t, c] · w[r, c]` for `n_tokens` rows of `x` (`[n_tokens, n_cols]`) into
/// `out` (`[n_tokens, n_rows]`), with the kernels of [`crate::isa`].
///
/// # Panics
/// When the lengths of `w.bytes`, `x` or `out` do not match the shapes.
pub fn matmul(w: &WeightView, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    matmul_with(crate::isa(), w, x, n_tokens, out)
}

/// [`matmul`] with the kernels of a given instruction-set level (tests, comparisons).
///
/// # Panics
/// When this CPU does not support `isa`, or the lengths do not match the shapes.
pub fn matmul_with(isa: Isa, w: &WeightView, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    let level = Level::new(isa).unwrap_or_else(|| panic!("this CPU does not support {isa}"));
    assert_eq!(
        w.bytes.len(),
        w.n_rows * w.ty.row_bytes(w.n_cols),
        "{:?} matrix of {} x {}",
        w.ty,
        w.n_rows,
        w.n_cols
    );
    assert_eq!(
        x.len(),
        n_tokens * w.n_cols,
        "activations of {n_tokens} tokens"
    );
    assert_eq!(
        out.len(),
        n_tokens * w.n_rows,
        "outputs of {n_tokens} tokens"
    );
    if out.is_empty() {
        return;
    }
    if w.n_cols == 0 {
        out.fill(0.0);
        return;
    }
    // Weight types without kernels of their own (added to `WeightType` over time) take the
    // plain path.
    #[allow(unreachable_patterns)]
    match w.ty {
        WeightType::F32 | WeightType::F16 | WeightType::BF16 => {
            matmul_float(level, w, x, n_tokens, out)
        }
        WeightType::Q8_0 | WeightType::Q4_0 => matmul_quant(level, w, x, n_tokens, out),
        WeightType::Q2_K
        | WeightType::Q3_K
        | WeightType::Q4_K
        | WeightType::Q5_K
        | WeightType::Q6_K => crate::matmul_kquant::matmul_kquant(level, w, x, n_tokens, out),
        _ => matmul_reference(w, x, n_tokens, out),
    }
}
