use std::collections::HashMap;
use std::path::{Path, PathBuf};

use formats::{DType, Storage, Tensor};
use kernels::{WeightType, WeightView};

use crate::{LlamaConfig, ModelError, Result};

/// A weight matrix `[n_rows, n_cols]` in its stored type; bytes shared with the file's map
/// where the format allows.
#[derive(Debug, Clone)]
pub struct Weight {
    pub ty: WeightType,
    pub n_rows: usize,
    pub n_cols: usize,
    data: Storage,
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
        Weight {
            ty,
            n_rows,
            n_cols,
            data: Storage::owned(bytes),
        }
    }
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
    /// This weight in the layout this CPU's kernels decode fastest, where that differs from
    /// the stored one (`kernels::repacked_type`): a copy in memory of its own.
    pub fn repacked(&self) -> Option<Weight> {
        let ty = kernels::repacked_type(self.ty)?;
        Some(Weight::from_owned(
            ty,
            self.n_rows,
            self.n_cols,
            kernels::repack(&self.view()),
        ))
    }
    /// Replaces the stored bytes by [`Weight::repacked`] ones where that pays, handing mapped
    /// pages back to the kernel; the bytes of the copy, or 0.
    pub fn repack(&mut self) -> u64 {
        let Some(r) = self.repacked() else { return 0 };
        self.data.release();
        *self = r;
        self.data.len() as u64
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
        if n_cols % ty.block_elems() != 0 {
            return Err(ModelError::BadTensor {
                file: self.file.clone(),
                tensor: name.to_string(),
                msg: format!("rows of {n_cols} values are not whole {} blocks", t.dtype),
            });
        }
        Ok(Weight {
            ty,
            n_rows,
            n_cols,
            data: t.storage().clone(),
        })
    }

    /// A 1-D vector of exactly `n` values, decoded to `f32`.
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let t = self.get(name)?;
        self.check_shape(t, &[n])?;
        let ty = weight_type(t.dtype);
        if n % ty.block_elems() != 0 {
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
    Weight {
        ty: w.ty,
        n_rows: w.n_rows,
        n_cols: w.n_cols,
        data: Storage::owned(out),
    }
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
