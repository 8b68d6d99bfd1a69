//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading a tokenizer or decoding ids.
///
/// Errors about a file name that file (`origin`); errors from [`crate::Vocab`] data that did not
/// come from a file use the origin `"vocabulary"`.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A SentencePiece `tokenizer.model` is not a well-formed protobuf message.
    #[error("{origin}: bad protobuf at byte offset {offset}: {what}")]
    Protobuf {
        /// The file (or other origin) being parsed.
        origin: String,
        /// Absolute byte offset in the file where the problem was found.
        offset: usize,
        /// What is wrong.
        what: String,
    },

    /// The SentencePiece model is not a BPE model.
    #[error("{origin}: unsupported SentencePiece model type {model_type} ({name}); only BPE (2) is supported")]
    UnsupportedModelType {
        /// The file (or other origin) being parsed.
        origin: String,
        /// The `trainer_spec.model_type` value.
        model_type: i32,
        /// Its name in the SentencePiece schema.
        name: &'static str,
    },

    /// The SentencePiece model asks for a normalization this crate does not implement.
    #[error("{origin}: unsupported normalizer: {what}")]
    UnsupportedNormalizer {
        /// The file (or other origin) being parsed.
        origin: String,
        /// What is asked for.
        what: String,
    },

    /// A llama2.c `tokenizer.bin` is malformed.
    #[error("{origin}: bad llama2.c tokenizer at byte offset {offset}: {what}")]
    Llama2cBin {
        /// The file (or other origin) being parsed.
        origin: String,
        /// Absolute byte offset in the file where the problem was found.
        offset: usize,
        /// What is wrong.
        what: String,
    },

    /// The vocabulary is inconsistent (lengths differ, an id points outside it, ...).
    #[error("{origin}: invalid vocabulary: {what}")]
    InvalidVocab {
        /// The file the vocabulary came from, or `"vocabulary"`.
        origin: String,
        /// What is wrong.
        what: String,
    },

    /// A `tokenizer.json` (or the `tokenizer_config.json` beside it) is malformed, or asks for
    /// something this crate does not implement. `path` is the JSON path of the offending value
    /// (empty when the whole file is at fault).
    #[error("{origin}: {}{what}", json_at(.path))]
    Json {
        /// The file (or other origin) being parsed.
        origin: String,
        /// JSON path of the value at fault, e.g. `pre_tokenizer.pretokenizers[0].pattern`.
        path: String,
        /// What is wrong.
        what: String,
    },

    /// A pre-tokenizer name (GGUF `tokenizer.ggml.pre`) that this crate does not know.
    #[error("{origin}: unknown pre-tokenizer {name:?} (known: {known})")]
    UnknownPreTokenizer {
        /// Where the name came from.
        origin: String,
        /// The name.
        name: String,
        /// The names that are known.
        known: &'static str,
    },

    /// A token id is not in the vocabulary.
    #[error("token id {id} is outside the vocabulary ({vocab_size} tokens)")]
    IdOutOfRange {
        /// The offending id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
}

/// `"PATH: "`, or nothing for an empty path.
fn json_at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// `Result` with [`TokenizerError`].
pub type Result<T> = std::result::Result<T, TokenizerError>;
