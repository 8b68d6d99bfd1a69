use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use formats::{DType, Storage, Tensor};
use kernels::{WeightType, WeightView};

use crate::{LlamaConfig, ModelError, Result};

/// A weight matrix `[n_rows, n_cols]` in its stored type; bytes shared with the file's map
/// where the format allows.
///
/// Where this CPU's kernels have a faster layout for the type (Q4_0 and Q8_0 at AVX2 and above,
/// Q4_K and Q6_K at AVX-512, see `kernels::repacked_type`), a repacked copy is made the first time the row
/// kernels (decode) ask for it ([`Weight::fast_view`]) or when [`Weight::repack`] is called, and from then on
/// serves every product ([`Weight::current_view`]); `ty` and [`Weight::view`] stay the
/// stored type and bytes.
#[derive(Debug, Clone)]
pub struct Weight {
    pub ty: WeightType,
    pub n_rows: usize,
    pub n_cols: usize,
    data: Storage,
    repacked: OnceLock<Option<Box<Weight>>>,
}

impl Weight {
    /// A weight over owned bytes: `n_rows` rows of `n_cols` values of `ty`.
    ///
    /// # Panics
    /// When `bytes` is not exactly `n_rows * ty.row_bytes(n_cols)` long or `n_cols` is not a
    /// whole number of blocks (a bug of the caller, which built the bytes).
    pub fn from_owned(ty: WeightType, n_rows: usize, n_cols: usize, bytes: Vec<u8>) -> Weight {
        assert!(
            n_cols.is_multiple_of(ty.block_elems()) && bytes.len() == n_rows * ty.row_bytes(n_cols),
            "{ty:?} [{n_rows}, {n_cols}] needs {} bytes, got {}",
            n_rows * ty.row_bytes(n_cols),
            bytes.len()
        );
        Weight::new(ty, n_rows, n_cols, Storage::owned(bytes))
    }
    pub(crate) fn new(ty: WeightType, n_rows: usize, n_cols: usize, data: Storage) -> Weight {
        Weight {
            ty,
            n_rows,
            n_cols,
            data,
            repacked: OnceLock::new(),
        }
    }
    /// The stored bytes (type `ty`), as loaded.
    pub fn view(&self) -> WeightView<'_> {
        WeightView {
            ty: self.ty,
            n_rows: self.n_rows,
            n_cols: self.n_cols,
            bytes: self.data.as_bytes(),
        }
    }
    pub fn is_mapped(&self) -> bool {
        self.data.is_mapped()
    }
    /// The repacked copy if one has been made, else the stored bytes: what prefill multiplies
    /// by (both give it the same bits, so it never waits for a copy to be made).
    pub fn current_view(&self) -> WeightView<'_> {
        match self.repacked.get() {
            Some(Some(r)) => r.view(),
            _ => self.view(),
        }
    }
    /// Keeps the stored bytes serving for good (no repacked copy will be made): for
    /// comparisons with the stored layout. No effect once a copy exists.
    pub fn keep_stored(&self) {
        let _ = self.repacked.set(None);
    }
    /// What decode multiplies by: the repacked copy, made now if it pays and is not made yet
    /// (see [`Weight::repack`]), else the stored bytes.
    pub fn fast_view(&self) -> WeightView<'_> {
        self.repack();
        self.current_view()
    }
    /// Whether this CPU's kernels have a faster layout for this matrix and it serves from the
    /// stored one all the same: no copy made yet, or none to be made ([`Weight::keep_stored`],
    /// or the memory for it could not be had).
    pub fn lacks_faster_layout(&self) -> bool {
        kernels::repacked_type(self.ty, self.n_rows).is_some()
            && !matches!(self.repacked.get(), Some(Some(_)))
    }
    /// Makes the repacked copy if this CPU's kernels have a faster layout for `ty` and it is
    /// not made yet, handing the mapped pages of the stored bytes back to the kernel (they
    /// come back from the file if read again); the bytes of the copy, or 0. The copy lives in
    /// anonymous memory of its own with huge pages asked for (a page fault per 2 MiB instead of
    /// per 4 KiB); when that memory cannot be had the stored bytes keep serving.
    pub fn repack(&self) -> u64 {
        let r = self.repacked.get_or_init(|| {
            let ty = kernels::repacked_type(self.ty, self.n_rows)?;
            let len = self.n_rows * ty.row_bytes(self.n_cols);
            let stored = self.view();
            let data = Storage::anon_filled(len, |out| kernels::repack_into(&stored, out)).ok()?;
            self.data.release();
            Some(Box::new(Weight::new(ty, self.n_rows, self.n_cols, data)))
        });
        r.as_ref().map_or(0, |w| w.data.len() as u64)
    }
}

/// Weights of one transformer block.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>, // [dim]
    pub wq: Weight,          // [n_heads * head_dim, dim], interleaved RoPE layout
    pub wk: Weight,          // [n_kv_heads * head_dim, dim], interleaved RoPE layout
    pub wv: Weight,          // [n_kv_heads * head_dim, dim]
    pub wo: Weight,          // [dim, n_heads * head_dim]
    pub ffn_norm: Vec<f32>,  // [dim]
    pub w_gate: Weight,      // [hidden_dim, dim]
    pub w_down: Weight,      // [dim, hidden_dim]
    pub w_up: Weight,        // [hidden_dim, dim]
}

pub(crate) fn weight_type(dtype: DType) -> WeightType {
    match dtype {
        DType::F32 => WeightType::F32,
        DType::F16 => WeightType::F16,
        DType::BF16 => WeightType::BF16,
        DType::Q8_0 => WeightType::Q8_0,
        DType::Q4_0 => WeightType::Q4_0,
        DType::Q2_K => WeightType::Q2_K,
        DType::Q3_K => WeightType::Q3_K,
        DType::Q4_K => WeightType::Q4_K,
        DType::Q5_K => WeightType::Q5_K,
        DType::Q6_K => WeightType::Q6_K,
    }
}

/// Which role a tensor plays; each format names roles its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    TokEmbeddings,
    OutputNorm,
    Output,
    AttnNorm,
    Wq,
    Wk,
    Wv,
    Wo,
    FfnNorm,
    WGate,
    WDown,
    WUp,
}

/// The tensors of a checkpoint by name, with the file they came from (for error messages).
pub struct TensorSet {
    pub file: PathBuf,
    pub tensors: HashMap<String, Tensor>,
}

impl TensorSet {
    pub fn new(file: &Path, tensors: Vec<Tensor>) -> Self {
        let tensors = tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
        TensorSet {
            file: file.to_path_buf(),
            tensors,
        }
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                file: self.file.clone(),
                tensor: name.to_string(),
            })
    }

    fn check_shape(&self, t: &Tensor, expected: &[usize]) -> Result<()> {
        if t.shape != expected {
            return Err(ModelError::ShapeMismatch {
                file: self.file.clone(),
                tensor: t.name.clone(),
                expected: expected.to_vec(),
                found: t.shape.clone(),
            });
        }
        Ok(())
    }

    /// A 2-D weight of exactly `[n_rows, n_cols]`.
    pub fn matrix(&self, name: &str, n_rows: usize, n_cols: usize) -> Result<Weight> {
        let t = self.get(name)?;
        self.check_shape(t, &[n_rows, n_cols])?;
        let ty = weight_type(t.dtype);
        if !n_cols.is_multiple_of(ty.block_elems()) {
            return Err(ModelError::BadTensor {
                file: self.file.clone(),
                tensor: name.to_string(),
                msg: format!("rows of {n_cols} values are not whole {} blocks", t.dtype),
            });
        }
        Ok(Weight::new(ty, n_rows, n_cols, t.storage().clone()))
    }

    /// A 1-D vector of exactly `n` values, decoded to `f32`.
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let t = self.get(name)?;
        self.check_shape(t, &[n])?;
        let ty = weight_type(t.dtype);
        if !n.is_multiple_of(ty.block_elems()) {
            return Err(ModelError::BadTensor {
                file: self.file.clone(),
                tensor: name.to_string(),
                msg: format!("{n} values are not whole {} blocks", t.dtype),
            });
        }
        let mut out = vec![0f32; n];
        kernels::dequantize(ty, t.bytes(), &mut out);
        Ok(out)
    }
}

/// Reorders the rows of a Q or K projection from the half-split ("rotate_half") layout of
/// Hugging Face checkpoints to the interleaved layout herd's RoPE uses: within each head, row
/// `j` (first half) goes to `2j` and row `head_dim/2 + j` goes to `2j + 1`.
pub fn permute_half_to_interleaved(w: &Weight, n_heads: usize) -> Weight {
    let head_dim = w.n_rows / n_heads;
    let half = head_dim / 2;
    let row_bytes = w.ty.row_bytes(w.n_cols);
    let src = w.data.as_bytes();
    let mut out = vec![0u8; src.len()];
    for h in 0..n_heads {
        for j in 0..half {
            for (dst_row, src_row) in [(2 * j, j), (2 * j + 1, half + j)] {
                let d = (h * head_dim + dst_row) * row_bytes;
                let s = (h * head_dim + src_row) * row_bytes;
                out[d..d + row_bytes].copy_from_slice(&src[s..s + row_bytes]);
            }
        }
    }
    Weight::new(w.ty, w.n_rows, w.n_cols, Storage::owned(out))
}

/// Q/K row layout a checkpoint stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkLayout {
    /// Meta, GGUF and llama2.c: rotation pairs are adjacent.
    Interleaved,
    /// Hugging Face: first half of each head pairs with the second half.
    HalfSplit,
}

/// Builds every weight of `config` from `set`, naming tensors through `name`.
pub(crate) fn build_weights(
    config: &LlamaConfig,
    set: &TensorSet,
    name: &dyn Fn(Role, usize) -> String,
    layout: QkLayout,
) -> Result<(Weight, Vec<LayerWeights>, Vec<f32>, Weight)> {
    let c = config;
    let tok_embeddings = set.matrix(&name(Role::TokEmbeddings, 0), c.vocab_size, c.dim)?;
    let output_norm = set.vector(&name(Role::OutputNorm, 0), c.dim)?;
    let output = if c.tied_embeddings {
        tok_embeddings.clone()
    } else {
        set.matrix(&name(Role::Output, 0), c.vocab_size, c.dim)?
    };
    let mut layers = Vec::with_capacity(c.n_layers);
    for l in 0..c.n_layers {
        let mut wq = set.matrix(&name(Role::Wq, l), c.q_dim(), c.dim)?;
        let mut wk = set.matrix(&name(Role::Wk, l), c.kv_dim(), c.dim)?;
        if layout == QkLayout::HalfSplit {
            wq = permute_half_to_interleaved(&wq, c.n_heads);
            wk = permute_half_to_interleaved(&wk, c.n_kv_heads);
        }
        layers.push(LayerWeights {
            attn_norm: set.vector(&name(Role::AttnNorm, l), c.dim)?,
            wq,
            wk,
            wv: set.matrix(&name(Role::Wv, l), c.kv_dim(), c.dim)?,
            wo: set.matrix(&name(Role::Wo, l), c.dim, c.q_dim())?,
            ffn_norm: set.vector(&name(Role::FfnNorm, l), c.dim)?,
            w_gate: set.matrix(&name(Role::WGate, l), c.hidden_dim, c.dim)?,
            w_down: set.matrix(&name(Role::WDown, l), c.dim, c.hidden_dim)?,
            w_up: set.matrix(&name(Role::WUp, l), c.hidden_dim, c.dim)?,
        });
    }
    Ok((tok_embeddings, layers, output_norm, output))
}
