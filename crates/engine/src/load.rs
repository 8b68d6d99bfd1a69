//! From a path to a model and its tokenizer. The format is recognised from content (magic
//! bytes, or the files a directory holds), never from a file name alone.

use std::io::Read;
use std::path::{Path, PathBuf};

use formats::gguf::GgufFile;
use model::Llama;
use tokenizer::Tokenize;

use crate::tokenizer_load::{dir_tokenizer, gguf_tokenizer};

use crate::{EngineError, Result};

/// A tokenizer of any kind, shareable across threads.
pub type TokenizerBox = Box<dyn Tokenize + Send + Sync>;

/// The checkpoint formats herd reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    Gguf,
    /// Hugging Face directory: config.json + safetensors.
    HfSafetensors,
    /// llama2.c `.bin` (legacy or export v1).
    Llama2c,
    /// Meta's consolidated.*.pth + params.json.
    MetaPth,
}

impl ModelFormat {
    pub fn name(self) -> &'static str {
        match self {
            ModelFormat::Gguf => "GGUF",
            ModelFormat::HfSafetensors => "Hugging Face safetensors",
            ModelFormat::Llama2c => "llama2.c checkpoint",
            ModelFormat::MetaPth => "Meta consolidated.pth",
        }
    }
}

/// A model ready to run, with its tokenizer when one was found.
pub struct Loaded {
    pub model: Llama,
    pub tokenizer: Option<TokenizerBox>,
    pub format: ModelFormat,
    /// The file or directory the weights came from.
    pub path: PathBuf,
    /// Where the tokenizer came from, for `herd info`.
    pub tokenizer_source: Option<String>,
}

pub(crate) fn read_prefix(path: &Path, n: usize) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    std::fs::File::open(path)
        .and_then(|f| f.take(n as u64).read_to_end(&mut buf))
        .map_err(|e| formats::FormatError::io(path, e))?;
    Ok(buf)
}

/// Recognises the checkpoint at `path` and returns its format and the path to load it from
/// (a directory for Hugging Face and Meta layouts).
pub fn detect_format(path: &Path) -> Result<(ModelFormat, PathBuf)> {
    if !path.exists() {
        return Err(EngineError::NotFound {
            path: path.to_path_buf(),
        });
    }
    if path.is_dir() {
        if path.join("config.json").is_file() {
            return Ok((ModelFormat::HfSafetensors, path.to_path_buf()));
        }
        if path.join("params.json").is_file() {
            return Ok((ModelFormat::MetaPth, path.to_path_buf()));
        }
        return Err(EngineError::UnknownFormat {
            path: path.to_path_buf(),
            msg: "directory holds neither config.json (Hugging Face) nor params.json (Meta)".into(),
        });
    }
    let head = read_prefix(path, 64)?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if head.starts_with(b"GGUF") {
        return Ok((ModelFormat::Gguf, path.to_path_buf()));
    }
    if head.starts_with(b"PK\x03\x04") {
        if parent.join("params.json").is_file() {
            return Ok((ModelFormat::MetaPth, parent.to_path_buf()));
        }
        return Err(EngineError::UnknownFormat {
            path: path.to_path_buf(),
            msg: "a PyTorch archive needs params.json beside it (Meta's layout)".into(),
        });
    }
    if head.len() > 8 && head[8] == b'{' {
        if parent.join("config.json").is_file() {
            return Ok((ModelFormat::HfSafetensors, parent.to_path_buf()));
        }
        return Err(EngineError::UnknownFormat {
            path: path.to_path_buf(),
            msg: "a safetensors file needs config.json beside it (Hugging Face layout)".into(),
        });
    }
    if formats::llama2c::looks_like_llama2c(&head) {
        return Ok((ModelFormat::Llama2c, path.to_path_buf()));
    }
    Err(EngineError::UnknownFormat {
        path: path.to_path_buf(),
        msg:
            "not a model file herd recognises (GGUF, safetensors, llama2.c .bin, consolidated.pth)"
                .into(),
    })
}

/// Loads the model at `path` (file or directory) without a tokenizer: the model, its format,
/// and the path it was read from (a directory for Hugging Face and Meta layouts).
pub fn load_model(path: &Path) -> Result<(Llama, ModelFormat, PathBuf)> {
    let (format, at) = detect_format(path)?;
    let model = match format {
        ModelFormat::Gguf => model::load::from_gguf(GgufFile::open(&at)?)?,
        ModelFormat::HfSafetensors => model::load::from_hf_dir(&at)?,
        ModelFormat::MetaPth => model::load::from_meta_dir(&at)?,
        ModelFormat::Llama2c => model::load::from_llama2c(formats::llama2c::open(&at)?)?,
    };
    Ok((model, format, at))
}

/// The tokenizer a checkpoint carries: GGUF's vocabulary, or tokenizer.json /
/// tokenizer.model beside the weights of a Hugging Face or Meta directory.
fn own_tokenizer(format: ModelFormat, at: &Path) -> Result<Option<(TokenizerBox, String)>> {
    match format {
        ModelFormat::Gguf => {
            Ok(gguf_tokenizer(&GgufFile::open(at)?)?.map(|t| (t, "GGUF vocabulary".to_string())))
        }
        ModelFormat::HfSafetensors | ModelFormat::MetaPth => dir_tokenizer(at),
        ModelFormat::Llama2c => Ok(None),
    }
}

/// Loads the model at `path` (file or directory) and its tokenizer: the one at `tokenizer`
/// when given, else the one the checkpoint carries.
pub fn load(path: &Path, tokenizer: Option<&Path>) -> Result<Loaded> {
    let (model, format, at) = load_model(path)?;
    let vocab_size = model.config.vocab_size;
    let found = match tokenizer {
        Some(t) => Some((
            crate::load_tokenizer(t, Some(vocab_size))?,
            t.display().to_string(),
        )),
        None => own_tokenizer(format, &at)?,
    };
    if let Some((t, source)) = &found {
        if t.vocab_size() > vocab_size {
            return Err(EngineError::NoTokenizer {
                path: PathBuf::from(source),
                msg: format!(
                    "tokenizer has {} tokens, the model's vocabulary only {vocab_size}",
                    t.vocab_size()
                ),
            });
        }
    }
    let (tokenizer, tokenizer_source) = match found {
        Some((t, s)) => (Some(t), Some(s)),
        None => (None, None),
    };
    Ok(Loaded {
        model,
        tokenizer,
        format,
        path: at,
        tokenizer_source,
    })
}
