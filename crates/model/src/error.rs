use std::path::PathBuf;

/// Failures while building a model from a checkpoint or running it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Format(#[from] formats::FormatError),
    #[error(
        "{file}: unknown architecture '{arch}' (herd runs Llama-family models: llama, mistral)"
    )]
    UnknownArchitecture { file: PathBuf, arch: String },
    #[error("{file}: config field '{field}': {msg}")]
    BadConfig {
        file: PathBuf,
        field: String,
        msg: String,
    },
    #[error("{file}: tensor '{tensor}' is missing")]
    MissingTensor { file: PathBuf, tensor: String },
    #[error("{file}: tensor '{tensor}': expected shape {expected:?}, found {found:?}")]
    ShapeMismatch {
        file: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{file}: tensor '{tensor}': {msg}")]
    BadTensor {
        file: PathBuf,
        tensor: String,
        msg: String,
    },
    #[error("token id {id} is outside the vocabulary (size {vocab_size})")]
    TokenOutOfRange { id: u32, vocab_size: usize },
    #[error("position {pos} is beyond the model's context length {max_seq_len}")]
    PositionOutOfRange { pos: usize, max_seq_len: usize },
    #[error("invalid batch: {0}")]
    BadBatch(String),
}

pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub(crate) fn config(file: &std::path::Path, field: &str, msg: impl Into<String>) -> Self {
        ModelError::BadConfig {
            file: file.to_path_buf(),
            field: field.to_string(),
            msg: msg.into(),
        }
    }
}
