//! `tokenizer` turns text into Llama token ids and back.
//!
//! It owns: the SentencePiece BPE algorithm (normalization, score-ordered merging, byte
//! fallback, decoding with the dummy-prefix rule); the merge-rank BPE of Hugging Face
//! `tokenizers` and tiktoken (Llama 3 / GPT-2 byte-level BPE with their pre-tokenizer regexes,
//! and Llama 2 style `tokenizer.json` files); special and added tokens; incremental
//! UTF-8-safe decoding; and the tokenizer-only file formats: SentencePiece's `tokenizer.model`
//! (a protobuf, read with a small hand-written reader), llama2.c's `tokenizer.bin` and Hugging
//! Face's `tokenizer.json`. Tokenizers are built from plain data ([`Vocab`], [`BpeVocab`]), so
//! any other source of a vocabulary (GGUF `tokenizer.ggml.*` keys) maps onto it directly.
//!
//! It must never know about tensors, model weights or model file formats (GGUF, safetensors,
//! checkpoints): whoever reads those hands over a [`Vocab`].
//!
//! Corrupt or truncated files give a [`TokenizerError`] naming the file and the fault, never a
//! panic, and no allocation is sized from an unchecked length read off a file.

#![forbid(unsafe_code)]

mod added;
mod bpe;
mod bpe_model;
mod bpe_tokenizer;
mod bpe_vocab;
mod byte_level;
mod char_class;
mod error;
mod hash;
mod hf_json;
mod llama2c_bin;
mod merge_rank;
mod model_file;
mod normalize;
mod pretokenizer;
mod proto;
mod spm;
mod stream;
mod tokenize;
mod utf8;
mod vocab;

pub use added::AddedToken;
pub use bpe_tokenizer::{load_tokenizer_json, BpeTokenizer};
pub use bpe_vocab::{BpeVocab, Prepend, Spaces};
pub use error::{Result, TokenizerError};
pub use hf_json::parse_tokenizer_json;
pub use llama2c_bin::{load_llama2c_bin, parse_llama2c_bin};
pub use model_file::{load_model_file, parse_model_proto};
pub use normalize::SPACE_SYMBOL;
pub use pretokenizer::{PreTokenizer, GPT2_PATTERN, LLAMA3_PATTERN};
pub use spm::SpmTokenizer;
pub use stream::StreamDecoder;
pub use tokenize::{EncodeOptions, LeadingSpace, Piece, Tokenize};
pub use vocab::{TokenKind, Vocab, DEFAULT_UNK_SURFACE};
