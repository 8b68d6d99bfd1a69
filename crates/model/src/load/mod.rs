//! Building a [`Llama`](crate::Llama) from each checkpoint format: configuration from the
//! format's own metadata, tensor names mapped onto roles, layouts reconciled.

mod gguf;
mod hf;
mod llama2c;
mod meta;

pub use gguf::from_gguf;
pub use hf::from_hf_dir;
pub use llama2c::from_llama2c;
pub use meta::from_meta_dir;

use std::path::Path;

use crate::weights::{build_weights, QkLayout, Role, TensorSet};
use crate::{Llama, LlamaConfig, ModelError, Result};

/// Checks the relations between configuration fields every format must satisfy.
pub(crate) fn validate(file: &Path, c: &LlamaConfig) -> Result<()> {
    let positive = [
        ("dim", c.dim),
        ("n_layers", c.n_layers),
        ("n_heads", c.n_heads),
        ("n_kv_heads", c.n_kv_heads),
        ("head_dim", c.head_dim),
        ("hidden_dim", c.hidden_dim),
        ("vocab_size", c.vocab_size),
        ("max_seq_len", c.max_seq_len),
    ];
    for (field, v) in positive {
        if v == 0 {
            return Err(ModelError::config(file, field, "must be positive"));
        }
    }
    if !c.n_heads.is_multiple_of(c.n_kv_heads) {
        return Err(ModelError::config(
            file,
            "n_kv_heads",
            format!(
                "{} query heads are not a multiple of {} KV heads",
                c.n_heads, c.n_kv_heads
            ),
        ));
    }
    if !c.head_dim.is_multiple_of(2) {
        return Err(ModelError::config(
            file,
            "head_dim",
            format!("{} is odd; RoPE needs pairs", c.head_dim),
        ));
    }
    // Far beyond any real model; keeps products of fields from overflowing.
    const MAX_FIELD: usize = 1 << 24;
    for (field, v) in positive {
        if v > MAX_FIELD && field != "max_seq_len" {
            return Err(ModelError::config(
                file,
                field,
                format!("{v} is implausibly large"),
            ));
        }
    }
    if !(c.norm_eps.is_finite() && c.norm_eps >= 0.0) {
        return Err(ModelError::config(
            file,
            "norm_eps",
            format!("{} is not a valid epsilon", c.norm_eps),
        ));
    }
    if !(c.rope_theta.is_finite() && c.rope_theta > 0.0) {
        return Err(ModelError::config(
            file,
            "rope_theta",
            format!("{} is not a valid base", c.rope_theta),
        ));
    }
    Ok(())
}

/// Validates `config`, then builds the model from `set`.
pub(crate) fn assemble(
    config: LlamaConfig,
    set: &TensorSet,
    name: &dyn Fn(Role, usize) -> String,
    layout: QkLayout,
) -> Result<Llama> {
    validate(&set.file, &config)?;
    let (tok_embeddings, layers, output_norm, output) = build_weights(&config, set, name, layout)?;
    Ok(Llama::new(
        config,
        tok_embeddings,
        layers,
        output_norm,
        output,
    ))
}

/// Meta's names, used by `consolidated.*.pth` and (as herd names them) llama2.c files.
pub(crate) fn meta_name(role: Role, l: usize) -> String {
    match role {
        Role::TokEmbeddings => "tok_embeddings.weight".into(),
        Role::OutputNorm => "norm.weight".into(),
        Role::Output => "output.weight".into(),
        Role::AttnNorm => format!("layers.{l}.attention_norm.weight"),
        Role::Wq => format!("layers.{l}.attention.wq.weight"),
        Role::Wk => format!("layers.{l}.attention.wk.weight"),
        Role::Wv => format!("layers.{l}.attention.wv.weight"),
        Role::Wo => format!("layers.{l}.attention.wo.weight"),
        Role::FfnNorm => format!("layers.{l}.ffn_norm.weight"),
        Role::WGate => format!("layers.{l}.feed_forward.w1.weight"),
        Role::WDown => format!("layers.{l}.feed_forward.w2.weight"),
        Role::WUp => format!("layers.{l}.feed_forward.w3.weight"),
    }
}
