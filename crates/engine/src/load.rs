//! From a path to a model and its tokenizer. The format is recognised from content (magic
//! bytes, or the files a directory holds), never from a file name alone.

use std::io::Read;
use std::path::{Path, PathBuf};

use formats::gguf::GgufFile;
use model::Llama;
use tokenizer::{SpmTokenizer, TokenKind, Tokenize, Vocab};

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

fn read_prefix(path: &Path, n: usize) -> Result<Vec<u8>> {
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

/// A SentencePiece vocabulary from GGUF's `tokenizer.ggml.*` keys (model "llama").
fn gguf_vocab(file: &GgufFile) -> Result<Option<Vocab>> {
    let path = &file.path;
    let corrupt = |key: &str, msg: &str| formats::FormatError::corrupt(path, key, msg);
    let model = match file.get_str("tokenizer.ggml.model")? {
        None => return Ok(None),
        Some(m) => m,
    };
    if model != "llama" {
        return Err(EngineError::NoTokenizer {
            path: path.clone(),
            msg: format!(
                "tokenizer.ggml.model '{model}' is not supported yet (only 'llama', SentencePiece)"
            ),
        });
    }
    let tokens = file
        .get_array("tokenizer.ggml.tokens")?
        .ok_or_else(|| corrupt("tokenizer.ggml.tokens", "missing"))?;
    let pieces = tokens
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| corrupt("tokenizer.ggml.tokens", "not an array of strings"))?;
    let n = pieces.len();
    let scores = match file.get_array("tokenizer.ggml.scores")? {
        Some(a) => a
            .iter()
            .map(|v| v.as_f32())
            .collect::<Option<Vec<_>>>()
            .filter(|s| s.len() == n)
            .ok_or_else(|| corrupt("tokenizer.ggml.scores", "not one float per token"))?,
        None => vec![0.0; n],
    };
    let kinds = match file.get_array("tokenizer.ggml.token_type")? {
        Some(a) => a
            .iter()
            .map(|v| match v {
                formats::gguf::Value::I32(c) => TokenKind::from_code(*c as i64),
                other => other.as_u64().and_then(|c| TokenKind::from_code(c as i64)),
            })
            .collect::<Option<Vec<_>>>()
            .filter(|k| k.len() == n)
            .ok_or_else(|| {
                corrupt(
                    "tokenizer.ggml.token_type",
                    "not one known token type per token",
                )
            })?,
        None => vec![TokenKind::Normal; n],
    };
    let mut vocab = Vocab::new(pieces, scores, kinds);
    let id = |key: &str| -> Result<Option<u32>> {
        match file.get_u64(key)? {
            None => Ok(None),
            Some(v) if (v as usize) < n => Ok(Some(v as u32)),
            Some(v) => Err(corrupt(
                key,
                &format!("token id {v} is outside the vocabulary of {n}"),
            )
            .into()),
        }
    };
    vocab.bos = id("tokenizer.ggml.bos_token_id")?;
    vocab.eos = id("tokenizer.ggml.eos_token_id")?;
    if let Some(unk) = id("tokenizer.ggml.unknown_token_id")? {
        vocab.unk = Some(unk);
    }
    if let Some(b) = file.get_bool("tokenizer.ggml.add_space_prefix")? {
        vocab.add_dummy_prefix = b;
    }
    if let Some(b) = file.get_bool("tokenizer.ggml.remove_extra_whitespaces")? {
        vocab.remove_extra_whitespaces = b;
    }
    Ok(Some(vocab))
}

/// Loads a tokenizer file given on its own: SentencePiece `tokenizer.model`, llama2.c
/// `tokenizer.bin` (recognised by content), a GGUF file's vocabulary, or a directory holding
/// `tokenizer.model`. `vocab_size` bounds a llama2.c tokenizer.bin (which does not store it).
pub fn load_tokenizer(path: &Path, vocab_size: Option<usize>) -> Result<TokenizerBox> {
    if !path.exists() {
        return Err(EngineError::NotFound {
            path: path.to_path_buf(),
        });
    }
    if path.is_dir() {
        let model = path.join("tokenizer.model");
        if model.is_file() {
            return Ok(Box::new(SpmTokenizer::from_model_file(&model)?));
        }
        return Err(EngineError::NoTokenizer {
            path: path.to_path_buf(),
            msg: "directory holds no tokenizer.model".into(),
        });
    }
    let head = read_prefix(path, 8)?;
    if head.starts_with(b"GGUF") {
        let file = GgufFile::open(path)?;
        let vocab = gguf_vocab(&file)?.ok_or_else(|| EngineError::NoTokenizer {
            path: path.to_path_buf(),
            msg: "GGUF file has no tokenizer.ggml.model".into(),
        })?;
        return Ok(Box::new(SpmTokenizer::from_vocab(vocab)?));
    }
    // A SentencePiece ModelProto starts with field 1 (pieces), length-delimited: byte 0x0a.
    // A llama2.c tokenizer.bin starts with a small little-endian i32 (the longest piece).
    if head.first() == Some(&0x0a) {
        Ok(Box::new(SpmTokenizer::from_model_file(path)?))
    } else {
        Ok(Box::new(SpmTokenizer::from_llama2c_bin(path, vocab_size)?))
    }
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

/// The tokenizer a checkpoint carries: GGUF's vocabulary, or tokenizer.model beside the
/// weights of a Hugging Face or Meta directory.
fn own_tokenizer(format: ModelFormat, at: &Path) -> Result<Option<(TokenizerBox, String)>> {
    match format {
        ModelFormat::Gguf => match gguf_vocab(&GgufFile::open(at)?)? {
            Some(v) => Ok(Some((
                Box::new(SpmTokenizer::from_vocab(v)?),
                "GGUF vocabulary".into(),
            ))),
            None => Ok(None),
        },
        ModelFormat::HfSafetensors | ModelFormat::MetaPth => {
            let beside = at.join("tokenizer.model");
            if beside.is_file() {
                let tok = SpmTokenizer::from_model_file(&beside)?;
                Ok(Some((Box::new(tok), beside.display().to_string())))
            } else {
                Ok(None)
            }
        }
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
            load_tokenizer(t, Some(vocab_size))?,
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
