use std::path::Path;

use serde_json::Value;

use super::assemble;
use crate::weights::{QkLayout, Role, TensorSet};
use crate::{Llama, LlamaConfig, ModelError, Result, RopeScaling};

fn hf_name(role: Role, l: usize) -> String {
    match role {
        Role::TokEmbeddings => "model.embed_tokens.weight".into(),
        Role::OutputNorm => "model.norm.weight".into(),
        Role::Output => "lm_head.weight".into(),
        Role::AttnNorm => format!("model.layers.{l}.input_layernorm.weight"),
        Role::Wq => format!("model.layers.{l}.self_attn.q_proj.weight"),
        Role::Wk => format!("model.layers.{l}.self_attn.k_proj.weight"),
        Role::Wv => format!("model.layers.{l}.self_attn.v_proj.weight"),
        Role::Wo => format!("model.layers.{l}.self_attn.o_proj.weight"),
        Role::FfnNorm => format!("model.layers.{l}.post_attention_layernorm.weight"),
        Role::WGate => format!("model.layers.{l}.mlp.gate_proj.weight"),
        Role::WDown => format!("model.layers.{l}.mlp.down_proj.weight"),
        Role::WUp => format!("model.layers.{l}.mlp.up_proj.weight"),
    }
}

/// Architectures whose weights and forward pass are Llama's.
const LLAMA_ARCHS: &[&str] = &["LlamaForCausalLM", "MistralForCausalLM"];

/// Reads the Llama configuration of a Hugging Face `config.json`.
pub fn hf_config(file: &Path, cfg: &Value) -> Result<LlamaConfig> {
    let arch = cfg
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .or_else(|| cfg.get("model_type").and_then(Value::as_str))
        .unwrap_or("(none)");
    if !LLAMA_ARCHS.contains(&arch) && !["llama", "mistral"].contains(&arch) {
        return Err(ModelError::UnknownArchitecture {
            file: file.to_path_buf(),
            arch: arch.to_string(),
        });
    }
    let uint = |field: &str| -> Result<Option<usize>> {
        match cfg.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| {
                    ModelError::config(
                        file,
                        field,
                        format!("expected a non-negative integer, found {v}"),
                    )
                }),
        }
    };
    let float = |obj: &Value, field: &str| -> Result<Option<f32>> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(|v| Some(v as f32)).ok_or_else(|| {
                ModelError::config(file, field, format!("expected a number, found {v}"))
            }),
        }
    };
    let need = |field: &str| uint(field)?.ok_or_else(|| ModelError::config(file, field, "missing"));
    let dim = need("hidden_size")?;
    let n_heads = need("num_attention_heads")?;
    let head_dim = match uint("head_dim")? {
        Some(d) => d,
        None if n_heads > 0 => dim / n_heads,
        None => 0,
    };
    // transformers up to 4.x writes `rope_theta` and `rope_scaling`; 5.x writes both as one
    // `rope_parameters` object.
    let rope_params = cfg.get("rope_parameters").filter(|v| v.is_object());
    let rope_scaling = match cfg
        .get("rope_scaling")
        .filter(|v| !v.is_null())
        .or(rope_params)
    {
        None => RopeScaling::None,
        Some(rs) => {
            let kind = rs
                .get("rope_type")
                .or_else(|| rs.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("(none)");
            let f = |field: &str| -> Result<f32> {
                float(rs, field)?.ok_or_else(|| {
                    ModelError::config(file, &format!("rope_scaling.{field}"), "missing")
                })
            };
            match kind {
                "default" => RopeScaling::None,
                "linear" => RopeScaling::Linear {
                    factor: f("factor")?,
                },
                "llama3" => RopeScaling::Llama3 {
                    factor: f("factor")?,
                    low_freq_factor: f("low_freq_factor")?,
                    high_freq_factor: f("high_freq_factor")?,
                    original_max_position_embeddings: f("original_max_position_embeddings")?,
                },
                other => {
                    return Err(ModelError::config(
                        file,
                        "rope_scaling.rope_type",
                        format!("'{other}' is not supported (linear, llama3)"),
                    ))
                }
            }
        }
    };
    Ok(LlamaConfig {
        dim,
        n_layers: need("num_hidden_layers")?,
        n_heads,
        n_kv_heads: uint("num_key_value_heads")?.unwrap_or(n_heads),
        head_dim,
        hidden_dim: need("intermediate_size")?,
        vocab_size: need("vocab_size")?,
        norm_eps: float(cfg, "rms_norm_eps")?.unwrap_or(1e-6),
        rope_theta: match (float(cfg, "rope_theta")?, rope_params) {
            (Some(theta), _) => theta,
            (None, Some(p)) => float(p, "rope_theta")?.unwrap_or(10000.0),
            (None, None) => 10000.0,
        },
        rope_scaling,
        max_seq_len: uint("max_position_embeddings")?.unwrap_or(2048),
        tied_embeddings: cfg
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// A Hugging Face model directory: config.json plus model.safetensors or sharded
/// model-*.safetensors with model.safetensors.index.json. Q/K rows are permuted from the
/// half-split layout into the interleaved one here, once.
pub fn from_hf_dir(dir: &Path) -> Result<Llama> {
    let config_path = dir.join("config.json");
    let cfg = formats::hf::read_json(&config_path)?;
    let mut config = hf_config(&config_path, &cfg)?;
    let tensors = formats::hf::read_safetensors_dir(dir)?;
    let set = TensorSet::new(dir, tensors);
    // Some checkpoints tie the output matrix without saying so: no lm_head.weight at all.
    if !config.tied_embeddings && !set.tensors.contains_key("lm_head.weight") {
        config.tied_embeddings = true;
    }
    assemble(config, &set, &hf_name, QkLayout::HalfSplit)
}
