//! Finding and building tokenizers: GGUF vocabularies (SentencePiece "llama" and byte-level
//! "gpt2"), tokenizer.json, tokenizer.model, llama2.c tokenizer.bin, and directories holding
//! them.

use std::path::Path;

use formats::gguf::{GgufFile, Value};
use tokenizer::{BpeTokenizer, BpeVocab, SpmTokenizer, TokenKind, Vocab};

use crate::load::read_prefix;
use crate::{EngineError, Result, TokenizerBox};

fn strings(file: &GgufFile, key: &str) -> Result<Option<Vec<String>>> {
    match file.get_array(key)? {
        None => Ok(None),
        Some(a) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| {
                formats::FormatError::corrupt(&file.path, key, "not an array of strings").into()
            }),
    }
}

fn token_types(file: &GgufFile, n: usize) -> Result<Option<Vec<i32>>> {
    let key = "tokenizer.ggml.token_type";
    match file.get_array(key)? {
        None => Ok(None),
        Some(a) => a
            .iter()
            .map(|v| match v {
                Value::I32(c) => Some(*c),
                other => other.as_u64().and_then(|c| i32::try_from(c).ok()),
            })
            .collect::<Option<Vec<_>>>()
            .filter(|t| t.len() == n)
            .map(Some)
            .ok_or_else(|| {
                formats::FormatError::corrupt(&file.path, key, "not one integer type per token")
                    .into()
            }),
    }
}

/// A token id stored under `key`, checked against the vocabulary size.
pub(crate) fn gguf_token_id(file: &GgufFile, key: &str, n: usize) -> Result<Option<u32>> {
    match file.get_u64(key)? {
        None => Ok(None),
        Some(v) if (v as usize) < n => Ok(Some(v as u32)),
        // llama.cpp writes -1 (as u32::MAX) for "none".
        Some(v) if v == u32::MAX as u64 => Ok(None),
        Some(v) => Err(formats::FormatError::corrupt(
            &file.path,
            key,
            format!("token id {v} is outside the vocabulary of {n}"),
        )
        .into()),
    }
}

/// The tokenizer of a GGUF file's `tokenizer.ggml.*` keys, or `None` when it has none.
pub fn gguf_tokenizer(file: &GgufFile) -> Result<Option<TokenizerBox>> {
    let path = &file.path;
    let model = match file.get_str("tokenizer.ggml.model")? {
        None => return Ok(None),
        Some(m) => m.to_string(),
    };
    let key = "tokenizer.ggml.tokens";
    let pieces =
        strings(file, key)?.ok_or_else(|| formats::FormatError::corrupt(path, key, "missing"))?;
    let n = pieces.len();
    let types = token_types(file, n)?;
    let bos = gguf_token_id(file, "tokenizer.ggml.bos_token_id", n)?;
    let eos = gguf_token_id(file, "tokenizer.ggml.eos_token_id", n)?;
    let origin = path.display().to_string();
    match model.as_str() {
        "llama" => {
            let key = "tokenizer.ggml.scores";
            let scores = match file.get_array(key)? {
                Some(a) => a
                    .iter()
                    .map(|v| v.as_f32())
                    .collect::<Option<Vec<_>>>()
                    .filter(|s| s.len() == n)
                    .ok_or_else(|| {
                        formats::FormatError::corrupt(path, key, "not one float per token")
                    })?,
                None => vec![0.0; n],
            };
            let kinds = match types {
                Some(t) => t
                    .iter()
                    .map(|&c| TokenKind::from_code(c as i64))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        formats::FormatError::corrupt(
                            path,
                            "tokenizer.ggml.token_type",
                            "unknown token type",
                        )
                    })?,
                None => vec![TokenKind::Normal; n],
            };
            let mut vocab = Vocab::new(pieces, scores, kinds);
            vocab.bos = bos;
            vocab.eos = eos;
            if let Some(unk) = gguf_token_id(file, "tokenizer.ggml.unknown_token_id", n)? {
                vocab.unk = Some(unk);
            }
            if let Some(b) = file.get_bool("tokenizer.ggml.add_space_prefix")? {
                vocab.add_dummy_prefix = b;
            }
            if let Some(b) = file.get_bool("tokenizer.ggml.remove_extra_whitespaces")? {
                vocab.remove_extra_whitespaces = b;
            }
            Ok(Some(Box::new(SpmTokenizer::from_vocab(vocab)?)))
        }
        "gpt2" => {
            let key = "tokenizer.ggml.merges";
            let merges = strings(file, key)?
                .ok_or_else(|| formats::FormatError::corrupt(path, key, "missing"))?;
            let pre = file.get_str("tokenizer.ggml.pre")?;
            let vocab =
                BpeVocab::from_gguf(pieces, types.as_deref(), &merges, pre, bos, eos, &origin)?;
            Ok(Some(Box::new(BpeTokenizer::from_vocab(vocab)?)))
        }
        other => Err(EngineError::NoTokenizer {
            path: path.clone(),
            msg: format!("tokenizer.ggml.model '{other}' is not supported (llama, gpt2)"),
        }),
    }
}

/// The tokenizer in a model or tokenizer directory: tokenizer.json first (what transformers
/// uses), else tokenizer.model.
pub fn dir_tokenizer(dir: &Path) -> Result<Option<(TokenizerBox, String)>> {
    let json = dir.join("tokenizer.json");
    if json.is_file() {
        return Ok(Some((
            tokenizer::load_tokenizer_json(&json)?,
            json.display().to_string(),
        )));
    }
    let model = dir.join("tokenizer.model");
    if model.is_file() {
        return Ok(Some((
            Box::new(SpmTokenizer::from_model_file(&model)?),
            model.display().to_string(),
        )));
    }
    Ok(None)
}

/// Loads a tokenizer given on its own: tokenizer.json, SentencePiece tokenizer.model,
/// llama2.c tokenizer.bin (recognised by content), a GGUF file's vocabulary, or a directory
/// holding one. `vocab_size` bounds a llama2.c tokenizer.bin (which does not store it).
pub fn load_tokenizer(path: &Path, vocab_size: Option<usize>) -> Result<TokenizerBox> {
    if !path.exists() {
        return Err(EngineError::NotFound {
            path: path.to_path_buf(),
        });
    }
    if path.is_dir() {
        return dir_tokenizer(path)?
            .map(|(t, _)| t)
            .ok_or_else(|| EngineError::NoTokenizer {
                path: path.to_path_buf(),
                msg: "directory holds neither tokenizer.json nor tokenizer.model".into(),
            });
    }
    let head = read_prefix(path, 8)?;
    if head.starts_with(b"GGUF") {
        return gguf_tokenizer(&GgufFile::open(path)?)?.ok_or_else(|| EngineError::NoTokenizer {
            path: path.to_path_buf(),
            msg: "GGUF file has no tokenizer.ggml.model".into(),
        });
    }
    let first = head.iter().copied().find(|b| !b.is_ascii_whitespace());
    if first == Some(b'{') {
        return Ok(tokenizer::load_tokenizer_json(path)?);
    }
    // A SentencePiece ModelProto starts with field 1 (pieces), length-delimited: byte 0x0a.
    // A llama2.c tokenizer.bin starts with a small little-endian i32 (the longest piece).
    if head.first() == Some(&0x0a) {
        Ok(Box::new(SpmTokenizer::from_model_file(path)?))
    } else {
        Ok(Box::new(SpmTokenizer::from_llama2c_bin(path, vocab_size)?))
    }
}
