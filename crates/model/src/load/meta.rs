use std::path::{Path, PathBuf};

use formats::{Storage, Tensor};
use serde_json::Value;

use super::{assemble, meta_name};
use crate::weights::{QkLayout, Role, TensorSet};
use crate::{Llama, LlamaConfig, ModelError, Result, RopeScaling};

/// How Meta's model-parallel shards split a tensor.
enum Split {
    /// Every shard holds the whole tensor (norms, rotary tables).
    Replicated,
    /// Split along dimension `d`.
    Dim(usize),
}

fn split_of(name: &str, t: &Tensor) -> Split {
    if t.shape.len() < 2 {
        Split::Replicated
    } else if name.starts_with("tok_embeddings.")
        || name.contains(".attention.wo.")
        || name.contains(".feed_forward.w2.")
    {
        // Row-parallel layers and the parallel embedding are split along their columns.
        Split::Dim(1)
    } else {
        Split::Dim(0)
    }
}

/// Joins the same tensor from each shard along the dimension Meta split it on.
fn join(name: &str, shards: &[PathBuf], parts: &[&Tensor]) -> Result<Tensor> {
    let first = parts[0];
    let bad = |i: usize, msg: String| ModelError::BadTensor {
        file: shards[i].clone(),
        tensor: name.to_string(),
        msg,
    };
    for (i, p) in parts.iter().enumerate() {
        if p.dtype != first.dtype || p.shape.len() != first.shape.len() {
            return Err(bad(
                i,
                format!(
                    "{} {:?} does not match shard 0's {} {:?}",
                    p.dtype, p.shape, first.dtype, first.shape
                ),
            ));
        }
    }
    let (shape, bytes) = match split_of(name, first) {
        Split::Replicated => return Ok(first.clone()),
        Split::Dim(0) => {
            let mut shape = first.shape.clone();
            shape[0] = parts.iter().map(|p| p.shape[0]).sum();
            for (i, p) in parts.iter().enumerate() {
                if p.shape[1..] != first.shape[1..] {
                    return Err(bad(
                        i,
                        format!("shape {:?} cannot be stacked on {:?}", p.shape, first.shape),
                    ));
                }
            }
            (
                shape,
                parts
                    .iter()
                    .flat_map(|p| p.bytes().iter().copied())
                    .collect::<Vec<u8>>(),
            )
        }
        Split::Dim(_) => {
            let n_rows = first.shape[0];
            for (i, p) in parts.iter().enumerate() {
                if p.shape.len() != 2 || p.shape[0] != n_rows {
                    return Err(bad(
                        i,
                        format!(
                            "shape {:?} cannot be joined column-wise to {:?}",
                            p.shape, first.shape
                        ),
                    ));
                }
            }
            let elem = first.dtype.block_bytes();
            let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.bytes().len()).sum());
            for r in 0..n_rows {
                for p in parts {
                    let rb = p.shape[1] * elem;
                    bytes.extend_from_slice(&p.bytes()[r * rb..(r + 1) * rb]);
                }
            }
            let shape = vec![n_rows, parts.iter().map(|p| p.shape[1]).sum()];
            (shape, bytes)
        }
    };
    Tensor::new(name, first.dtype, shape, Storage::owned(bytes)).map_err(|msg| bad(0, msg))
}

fn join_shards(shards: &[PathBuf], mut per_shard: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>> {
    if per_shard.len() == 1 {
        return Ok(per_shard.pop().unwrap_or_default());
    }
    let sets: Vec<TensorSet> = shards
        .iter()
        .zip(per_shard)
        .map(|(p, t)| TensorSet::new(p, t))
        .collect();
    let mut names: Vec<&String> = sets[0].tensors.keys().collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let parts = sets
            .iter()
            .map(|s| s.get(name))
            .collect::<Result<Vec<_>>>()?;
        out.push(join(name, shards, &parts)?);
    }
    Ok(out)
}

fn params_config(file: &Path, p: &Value, set: &TensorSet) -> Result<LlamaConfig> {
    let int = |field: &str| -> Result<Option<i64>> {
        match p.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                ModelError::config(file, field, format!("expected an integer, found {v}"))
            }),
        }
    };
    let uint = |field: &str| -> Result<Option<usize>> {
        match int(field)? {
            None => Ok(None),
            Some(v) => usize::try_from(v)
                .map(Some)
                .map_err(|_| ModelError::config(file, field, format!("{v} is negative"))),
        }
    };
    let need = |field: &str| uint(field)?.ok_or_else(|| ModelError::config(file, field, "missing"));
    let float = |field: &str| p.get(field).and_then(Value::as_f64).map(|v| v as f32);
    let dim = need("dim")?;
    let n_heads = need("n_heads")?;
    // The MLP width comes from the weights: params.json only holds the inputs of a rounding
    // formula (multiple_of, ffn_dim_multiplier) that differs between releases.
    let w1 = set.get(&meta_name(Role::WGate, 0))?;
    let hidden_dim = w1.shape.first().copied().unwrap_or(0);
    let emb = set.get(&meta_name(Role::TokEmbeddings, 0))?;
    let vocab_size = match int("vocab_size")? {
        Some(v) if v > 0 => v as usize,
        _ => emb.shape.first().copied().unwrap_or(0),
    };
    let scaled = p
        .get("use_scaled_rope")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let rope_scaling = if scaled {
        // The values Meta's Llama 3.1 reference code applies when use_scaled_rope is set.
        RopeScaling::Llama3 {
            factor: float("rope_scaling_factor").unwrap_or(8.0),
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        }
    } else {
        RopeScaling::None
    };
    let default_ctx = if scaled { 131072 } else { 4096 };
    Ok(LlamaConfig {
        dim,
        n_layers: need("n_layers")?,
        n_heads,
        n_kv_heads: uint("n_kv_heads")?.unwrap_or(n_heads),
        head_dim: dim.checked_div(n_heads).unwrap_or(0),
        hidden_dim,
        vocab_size,
        norm_eps: float("norm_eps").unwrap_or(1e-5),
        rope_theta: float("rope_theta").unwrap_or(10000.0),
        rope_scaling,
        max_seq_len: uint("max_seq_len")?.unwrap_or(default_ctx),
        tied_embeddings: !set.tensors.contains_key("output.weight"),
    })
}

/// Meta's original release layout: `params.json` and `consolidated.NN.pth` shards, joined
/// along the dimension each tensor was split on. Q/K rows are interleaved already.
pub fn from_meta_dir(dir: &Path) -> Result<Llama> {
    let params_path = dir.join("params.json");
    let params = formats::meta::read_params(&params_path)?;
    let shards = formats::meta::consolidated_shards(dir)?;
    let per_shard = shards
        .iter()
        .map(|p| formats::meta::read_pth(p))
        .collect::<formats::Result<Vec<_>>>()?;
    let tensors = join_shards(&shards, per_shard)?;
    let set = TensorSet::new(dir, tensors);
    let config = params_config(&params_path, &params, &set)?;
    assemble(config, &set, &meta_name, QkLayout::Interleaved)
}
