//! `tokenizer` turns text into Llama token ids and back.
//!
//! It owns: the SentencePiece BPE algorithm (normalization, score-ordered merging, byte
//! fallback, decoding with the dummy-prefix rule), incremental UTF-8-safe decoding, and the
//! two tokenizer-only file formats, SentencePiece's `tokenizer.model` (a protobuf, read with a
//! small hand-written reader) and llama2.c's `tokenizer.bin`. Tokenizers are built from plain
//! data ([`Vocab`]), so any other source of a vocabulary maps onto it directly.
//!
//! It must never know about tensors, model weights or model file formats (GGUF, safetensors,
//! checkpoints): whoever reads those hands over a [`Vocab`].
//!
//! Corrupt or truncated files give a [`TokenizerError`] naming the file and the fault, never a
//! panic, and no allocation is sized from an unchecked length read off a file.

#![forbid(unsafe_code)]

mod bpe;
mod error;
mod hash;
mod llama2c_bin;
mod model_file;
mod normalize;
mod proto;
mod spm;
mod stream;
mod tokenize;
mod utf8;
mod vocab;

pub use error::{Result, TokenizerError};
pub use llama2c_bin::{load_llama2c_bin, parse_llama2c_bin};
pub use model_file::{load_model_file, parse_model_proto};
pub use normalize::SPACE_SYMBOL;
pub use spm::SpmTokenizer;
pub use stream::StreamDecoder;
pub use tokenize::{LeadingSpace, Piece, Tokenize};
pub use vocab::{TokenKind, Vocab, DEFAULT_UNK_SURFACE};
