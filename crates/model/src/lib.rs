//! `model` owns the Llama architecture: its configuration (read from config.json, GGUF keys,
//! params.json or a llama2.c header), the mapping of each format's tensor names onto the
//! weights, the Q/K layout reconciliation and shard joining done once at load, and the forward
//! pass `forward(batch, kv view) -> logits`.
//!
//! It must never know about requests, sampling, HTTP or tokenizers. The model owns no sequence:
//! every call receives a [`Batch`] (which token, at which position, of which sequence) and a
//! [`KvView`] onto storage that the caller owns.

#![forbid(unsafe_code)]

mod batch;
mod config;
mod error;
mod llama;
pub mod load;
mod synthetic;
mod weights;

pub use batch::{Batch, KvBlock, KvType, KvView};
pub use config::{LlamaConfig, RopeScaling};
pub use error::{ModelError, Result};
pub use kernels::{Isa, MatmulPath};
pub use llama::Llama;
pub use synthetic::{synthetic, synthetic_config, synthetic_shapes, synthetic_type};
pub use weights::{LayerWeights, Weight};
