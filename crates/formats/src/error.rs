use std::path::PathBuf;

/// Every failure while reading a checkpoint. Each variant names the file and what in it is wrong.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A header field or structure is malformed (bad magic, truncated, absurd size, bad JSON...).
    #[error("{path}: {field}: {msg}")]
    Corrupt {
        path: PathBuf,
        field: String,
        msg: String,
    },
    /// A tensor's declared shape, dtype or byte range does not fit.
    #[error("{path}: tensor '{tensor}': {msg}")]
    BadTensor {
        path: PathBuf,
        tensor: String,
        msg: String,
    },
    /// Something valid in the format that this reader does not handle (e.g. an unknown dtype).
    #[error("{path}: unsupported: {msg}")]
    Unsupported { path: PathBuf, msg: String },
}

pub type Result<T> = std::result::Result<T, FormatError>;

impl FormatError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FormatError::Io {
            path: path.into(),
            source,
        }
    }
    pub fn corrupt(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        FormatError::Corrupt {
            path: path.into(),
            field: field.into(),
            msg: msg.into(),
        }
    }
    pub fn bad_tensor(
        path: impl Into<PathBuf>,
        tensor: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        FormatError::BadTensor {
            path: path.into(),
            tensor: tensor.into(),
            msg: msg.into(),
        }
    }
    pub fn unsupported(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        FormatError::Unsupported {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
