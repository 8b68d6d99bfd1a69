//! `engine` turns a path into a running model: it recognises the checkpoint format from the
//! content, loads model and tokenizer, owns sequences and their KV storage, samples, and offers
//! the generation and scoring calls the CLI (and later the server) use. Token ids in, token ids
//! out; text only at its edges (prompt encoding, streamed decoding).
//!
//! It must never know about HTTP or JSON requests.

#![forbid(unsafe_code)]

mod bandwidth;
mod bench;
mod chat;
mod chat_settings;
mod error;
mod generate;
mod importance;
mod kv;
mod load;
mod perplexity;
mod prompt;
mod quantize;
mod sampler;
pub mod serve;
mod tokenizer_load;

pub use bandwidth::{BandwidthProbe, PROBE_BYTES};
pub use bench::{
    extend_context, main_weight_type, run_pp, run_tg, weight_bytes, BenchResult, BenchTest,
    WeightBytes,
};
pub use chat::{ChatRunner, ChatSettings, ReplyStats};
pub use chat_settings::{chat_settings, prompt_add_bos, stop_ids};
pub use error::{EngineError, Result};
pub use generate::{GenerateStats, Session, StopReason};
pub use kv::{BlockId, KvCache, KvPool, KvSpec, DEFAULT_BLOCK_SIZE};
pub use load::{detect_format, load, load_model, Loaded, ModelFormat, TokenizerBox};
pub use model::KvType;
pub use perplexity::{perplexity, PerplexityResult};
pub use prompt::encode_chat;
pub use quantize::{
    quantize, PlannedTensor, QuantType, QuantizeEvent, QuantizeReport, QUANT_TYPE_NAMES,
};
pub use sampler::{
    apply_presence_frequency, argmax, log_softmax, top_logprobs, Sampler, SamplerConfig,
};
pub use tokenizer_load::{dir_tokenizer, gguf_tokenizer, load_tokenizer};
