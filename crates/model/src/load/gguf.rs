use formats::gguf::GgufFile;

use super::assemble;
use crate::weights::{QkLayout, Role, TensorSet};
use crate::{Llama, LlamaConfig, ModelError, Result, RopeScaling};

fn gguf_name(role: Role, l: usize) -> String {
    match role {
        Role::TokEmbeddings => "token_embd.weight".into(),
        Role::OutputNorm => "output_norm.weight".into(),
        Role::Output => "output.weight".into(),
        Role::AttnNorm => format!("blk.{l}.attn_norm.weight"),
        Role::Wq => format!("blk.{l}.attn_q.weight"),
        Role::Wk => format!("blk.{l}.attn_k.weight"),
        Role::Wv => format!("blk.{l}.attn_v.weight"),
        Role::Wo => format!("blk.{l}.attn_output.weight"),
        Role::FfnNorm => format!("blk.{l}.ffn_norm.weight"),
        Role::WGate => format!("blk.{l}.ffn_gate.weight"),
        Role::WDown => format!("blk.{l}.ffn_down.weight"),
        Role::WUp => format!("blk.{l}.ffn_up.weight"),
    }
}

/// A GGUF file of architecture "llama". Its Q/K rows are interleaved (converters permute them).
pub fn from_gguf(mut file: GgufFile) -> Result<Llama> {
    let path = file.path.clone();
    let tensors = std::mem::take(&mut file.tensors);
    let arch = file
        .get_str("general.architecture")?
        .ok_or_else(|| ModelError::config(&path, "general.architecture", "missing"))?
        .to_string();
    if arch != "llama" {
        return Err(ModelError::UnknownArchitecture { file: path, arch });
    }
    let need = |key: &str| -> Result<usize> {
        let full = format!("{arch}.{key}");
        let v = file
            .get_u64(&full)?
            .ok_or_else(|| ModelError::config(&path, &full, "missing"))?;
        usize::try_from(v)
            .map_err(|_| ModelError::config(&path, &full, format!("{v} is too large")))
    };
    let opt = |key: &str| -> Result<Option<usize>> {
        let full = format!("{arch}.{key}");
        match file.get_u64(&full)? {
            None => Ok(None),
            Some(v) => usize::try_from(v)
                .map(Some)
                .map_err(|_| ModelError::config(&path, &full, format!("{v} is too large"))),
        }
    };
    let dim = need("embedding_length")?;
    let n_heads = need("attention.head_count")?;
    let n_kv_heads = opt("attention.head_count_kv")?.unwrap_or(n_heads);
    let head_dim = match opt("attention.key_length")? {
        Some(d) => d,
        None if n_heads > 0 => dim / n_heads,
        None => 0,
    };
    let set = TensorSet::new(&path, tensors);
    let vocab_size = set
        .get(&gguf_name(Role::TokEmbeddings, 0))?
        .shape
        .first()
        .copied()
        .unwrap_or(0);
    let rope_theta = file
        .get_f32(&format!("{arch}.rope.freq_base"))?
        .unwrap_or(10000.0);
    let norm_eps = file
        .get_f32(&format!("{arch}.attention.layer_norm_rms_epsilon"))?
        .unwrap_or(1e-5);
    let rope_scaling = match set.tensors.get("rope_freqs.weight") {
        Some(_) => RopeScaling::Divisors(set.vector("rope_freqs.weight", head_dim / 2)?),
        None => match file.get_str(&format!("{arch}.rope.scaling.type"))? {
            None | Some("none") => RopeScaling::None,
            Some("linear") => {
                let key = format!("{arch}.rope.scaling.factor");
                let factor = file
                    .get_f32(&key)?
                    .ok_or_else(|| ModelError::config(&path, &key, "missing"))?;
                RopeScaling::Linear { factor }
            }
            Some(other) => {
                return Err(ModelError::config(
                    &path,
                    &format!("{arch}.rope.scaling.type"),
                    format!("'{other}' is not supported"),
                ))
            }
        },
    };
    let config = LlamaConfig {
        dim,
        n_layers: need("block_count")?,
        n_heads,
        n_kv_heads,
        head_dim,
        hidden_dim: need("feed_forward_length")?,
        vocab_size,
        norm_eps,
        rope_theta,
        rope_scaling,
        max_seq_len: need("context_length")?,
        tied_embeddings: !set.tensors.contains_key("output.weight"),
    };
    assemble(config, &set, &gguf_name, QkLayout::Interleaved)
}
