//! Hugging Face `tokenizer.json` files, read into a [`BpeVocab`].
//!
//! Supported: BPE models (`model.vocab`, `model.merges` as `"a b"` strings or `["a", "b"]`
//! pairs, `unk_token`, `byte_fallback`, `fuse_unk`, `ignore_merges`), `added_tokens` with all
//! their flags, the normalizers, pre-tokenizers, decoders and post-processors Llama-family
//! tokenizers use (see [`pipeline`]). Anything else is an error naming the file and the JSON
//! path of the value at fault.

mod model;
mod node;
mod pipeline;

use std::path::Path;

use serde_json::Value;

use crate::bpe_vocab::{BpeVocab, Spaces};
use crate::error::{Result, TokenizerError};
use crate::pretokenizer::PreTokenizer;
use node::Node;

/// Names tried for BOS and EOS when neither the post-processor nor a `tokenizer_config.json`
/// says.
const BOS_NAMES: &[&str] = &["<|begin_of_text|>", "<s>"];
const EOS_NAMES: &[&str] = &["<|end_of_text|>", "</s>", "<|endoftext|>"];

/// BOS/EOS named by a `tokenizer_config.json`.
#[derive(Debug, Default)]
pub(crate) struct Config {
    bos: Option<String>,
    eos: Option<String>,
}

/// Parses the text of a `tokenizer.json` into a [`BpeVocab`]; `origin` names it in errors.
/// BOS comes from a TemplateProcessing post-processor, EOS from its last special token; when
/// absent, well-known names (`<|begin_of_text|>`, `<s>`; `<|end_of_text|>`, `</s>`) are used.
pub fn parse_tokenizer_json(json: &str, origin: &str) -> Result<BpeVocab> {
    parse(json, origin, None)
}

/// Reads a `tokenizer.json`, and the `tokenizer_config.json` beside it when there is one.
pub(crate) fn load(path: &Path) -> Result<BpeVocab> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| TokenizerError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    let json = read(path)?;
    let config_path = path.with_file_name("tokenizer_config.json");
    let config = if config_path.is_file() {
        Some(read_config(
            &read(&config_path)?,
            &config_path.display().to_string(),
        )?)
    } else {
        None
    };
    parse(&json, &path.display().to_string(), config)
}

/// Reads `bos_token` / `eos_token` of a `tokenizer_config.json` (a string, or an object with a
/// `content` string).
fn read_config(json: &str, origin: &str) -> Result<Config> {
    let value = parse_value(json, origin)?;
    let root = Node::root(&value, origin);
    let name = |key: &str| -> Result<Option<String>> {
        let Some(n) = root.get(key) else {
            return Ok(None);
        };
        let text = match n.value.as_str() {
            Some(s) => s,
            None => n.req("content")?.str()?,
        };
        Ok(Some(text.to_string()))
    };
    Ok(Config {
        bos: name("bos_token")?,
        eos: name("eos_token")?,
    })
}

fn parse_value(json: &str, origin: &str) -> Result<Value> {
    let value: Value = serde_json::from_str(json).map_err(|e| TokenizerError::Json {
        origin: origin.to_string(),
        path: String::new(),
        what: format!("not valid JSON: {e}"),
    })?;
    if !value.is_object() {
        return Err(TokenizerError::Json {
            origin: origin.to_string(),
            path: String::new(),
            what: "not a JSON object".into(),
        });
    }
    Ok(value)
}

/// Parses a `tokenizer.json`, with BOS/EOS names from `config` when given.
pub(crate) fn parse(json: &str, origin: &str, config: Option<Config>) -> Result<BpeVocab> {
    let value = parse_value(json, origin)?;
    let root = Node::root(&value, origin);
    let m = model::read(&root)?;
    let spaces_from_normalizer = pipeline::normalizer(root.get("normalizer"))?;
    let pre = pipeline::pre_tokenizer(root.get("pre_tokenizer"))?;
    let decoding = pipeline::decoder(root.get("decoder"))?;
    let template = pipeline::post_processor(root.get("post_processor"))?;

    let spaces = match (spaces_from_normalizer, pre.spaces) {
        (Some(_), Some(_)) => {
            return Err(root.req("pre_tokenizer")?.error(
                "a Metaspace pre-tokenizer after a Prepend/Replace normalizer is not supported",
            ))
        }
        (Some(s), None) | (None, Some(s)) => s,
        (None, None) => Spaces::Plain,
    };
    if pre.byte_level != decoding.byte_level {
        let what = if pre.byte_level {
            "a ByteLevel pre-tokenizer needs the ByteLevel decoder"
        } else {
            "the ByteLevel decoder needs a ByteLevel pre-tokenizer"
        };
        let at = root.get("decoder").unwrap_or_else(|| root.clone());
        return Err(at.error(what));
    }
    if pre.byte_level && spaces != Spaces::Plain {
        return Err(root
            .req("pre_tokenizer")?
            .error("ByteLevel together with Metaspace is not supported"));
    }

    let id_of = |name: &str| -> Option<u32> {
        m.added
            .iter()
            .find(|t| t.content == name)
            .map(|t| t.id)
            .or_else(|| m.tokens.iter().position(|t| t == name).map(|i| i as u32))
    };
    let config = config.unwrap_or_default();
    let bos = template
        .first
        .or_else(|| config.bos.as_deref().and_then(id_of))
        .or_else(|| BOS_NAMES.iter().find_map(|n| id_of(n)));
    let eos = config
        .eos
        .as_deref()
        .and_then(id_of)
        .or(template.last)
        .or_else(|| EOS_NAMES.iter().find_map(|n| id_of(n)));

    Ok(BpeVocab {
        tokens: m.tokens,
        kinds: m.kinds,
        merges: m.merges,
        pre: pre.split.unwrap_or(PreTokenizer::Whole),
        byte_level: pre.byte_level,
        byte_fallback: m.byte_fallback,
        ignore_merges: m.ignore_merges,
        fuse_unk: m.fuse_unk,
        spaces,
        added: m.added,
        bos,
        eos,
        unk: m.unk,
        leading_space: decoding.leading_space,
    })
}
