use std::path::PathBuf;

/// Failures of loading or running a model, each naming what and where.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error(transparent)]
    Format(#[from] formats::FormatError),
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    #[error(transparent)]
    Chat(#[from] chat::ChatError),
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error("{path}: {msg}")]
    UnknownFormat { path: PathBuf, msg: String },
    #[error("{path}: {msg}")]
    NoTokenizer { path: PathBuf, msg: String },
    #[error("the prompt is {n_prompt} tokens, the context holds {n_ctx}")]
    PromptTooLong { n_prompt: usize, n_ctx: usize },
    #[error("the KV cache is full: {needed} more blocks needed, {available} free")]
    KvFull { needed: usize, available: usize },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;
