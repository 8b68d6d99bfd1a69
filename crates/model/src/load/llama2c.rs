use formats::llama2c::Llama2cFile;

use super::{assemble, meta_name};
use crate::weights::{QkLayout, TensorSet};
use crate::{Llama, LlamaConfig, Result, RopeScaling};

/// A llama2.c checkpoint (legacy or export v1). Its Q/K rows are already interleaved; RMSNorm
/// epsilon and RoPE base are llama2.c's fixed 1e-5 and 10000.
pub fn from_llama2c(file: Llama2cFile) -> Result<Llama> {
    let h = &file.header;
    let head_dim = h.dim.checked_div(h.n_heads).unwrap_or(0);
    let config = LlamaConfig {
        dim: h.dim,
        n_layers: h.n_layers,
        n_heads: h.n_heads,
        n_kv_heads: h.n_kv_heads,
        head_dim,
        hidden_dim: h.hidden_dim,
        vocab_size: h.vocab_size,
        norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: RopeScaling::None,
        max_seq_len: h.seq_len,
        tied_embeddings: h.shared_classifier,
    };
    let set = TensorSet::new(&file.path, file.tensors);
    assemble(config, &set, &meta_name, QkLayout::Interleaved)
}
