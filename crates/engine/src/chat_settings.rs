//! Where a model's chat template, special-token texts, end-of-turn ids and BOS policy come
//! from: tokenizer_config.json / chat_template.jinja / generation_config.json beside Hugging
//! Face weights or tokenizer files, or the `tokenizer.*` keys of a GGUF file; built-in Llama 2
//! and Llama 3 templates when the model carries none.

use std::path::{Path, PathBuf};

use chat::ChatTemplate;
use formats::gguf::GgufFile;
use serde_json::Value;
use tokenizer::Tokenize;

use crate::load::read_prefix;
use crate::tokenizer_load::gguf_token_id;
use crate::{ChatSettings, Result};

/// Texts that end a turn in the Llama family's vocabularies, stopped on when present.
const END_MARKERS: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|im_end|>",
    "<|endoftext|>",
];

/// Metadata of a model or tokenizer location: a GGUF file or a directory of JSON files.
enum Source {
    Gguf(GgufFile),
    Dir(PathBuf),
}

fn source(path: &Path) -> Result<Source> {
    if path.is_file() && read_prefix(path, 4)?.starts_with(b"GGUF") {
        return Ok(Source::Gguf(GgufFile::open(path)?));
    }
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(Path::new("."))
    };
    Ok(Source::Dir(dir.to_path_buf()))
}

fn read_json_if_present(path: &Path) -> Result<Option<Value>> {
    if path.is_file() {
        Ok(Some(formats::hf::read_json(path)?))
    } else {
        Ok(None)
    }
}

/// A special token's text in tokenizer_config.json: a string or `{"content": ...}`.
fn token_text(cfg: &Value, key: &str) -> Option<String> {
    match cfg.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn id_text(tok: &dyn Tokenize, id: Option<u32>) -> String {
    id.and_then(|id| tok.token_text(id).ok())
        .unwrap_or_default()
        .to_string()
}

/// Whether a plain prompt gets BOS first: the file's own flag (tokenizer_config.json
/// `add_bos_token`, GGUF `tokenizer.ggml.add_bos_token`), else yes when there is a BOS token.
pub fn prompt_add_bos(path: &Path, tok: &dyn Tokenize) -> Result<bool> {
    let flag = match source(path)? {
        Source::Gguf(f) => f.get_bool("tokenizer.ggml.add_bos_token")?,
        Source::Dir(d) => read_json_if_present(&d.join("tokenizer_config.json"))?
            .and_then(|c| c.get("add_bos_token").and_then(Value::as_bool)),
    };
    Ok(flag.unwrap_or(tok.bos().is_some()))
}

/// The ids that end generation for the model or tokenizer at `path`: EOS, GGUF's EOT/EOM
/// ids, generation_config.json's `eos_token_id` (a number or a list), tokenizer_config.json's
/// `eos_token`, and the Llama family's end-of-turn markers present in the vocabulary.
pub fn stop_ids(path: &Path, tok: &dyn Tokenize) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = tok.eos().into_iter().collect();
    match source(path)? {
        Source::Gguf(f) => {
            let n = tok.vocab_size();
            for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
                ids.extend(gguf_token_id(&f, key, n)?);
            }
        }
        Source::Dir(d) => {
            if let Some(gen) = read_json_if_present(&d.join("generation_config.json"))? {
                match gen.get("eos_token_id") {
                    Some(Value::Array(a)) => {
                        ids.extend(a.iter().filter_map(|v| v.as_u64()).map(|v| v as u32))
                    }
                    Some(v) => ids.extend(v.as_u64().map(|v| v as u32)),
                    None => {}
                }
            }
            let cfg = read_json_if_present(&d.join("tokenizer_config.json"))?;
            let eos = cfg.as_ref().and_then(|c| token_text(c, "eos_token"));
            ids.extend(eos.as_deref().and_then(|t| tok.token_to_id(t)));
        }
    }
    ids.extend(END_MARKERS.iter().filter_map(|m| tok.token_to_id(m)));
    ids.retain(|&id| (id as usize) < tok.vocab_size());
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// The chat settings of the model or tokenizer at `path`, whose tokenizer is `tok`.
pub fn chat_settings(path: &Path, tok: &dyn Tokenize) -> Result<ChatSettings> {
    let mut template = None;
    let (mut bos_token, mut eos_token) = (None, None);
    match source(path)? {
        Source::Gguf(f) => {
            let key = "tokenizer.chat_template";
            if let Some(src) = f.get_str(key)? {
                template = Some(ChatTemplate::new(
                    src,
                    &format!("{}: {key}", f.path.display()),
                )?);
            }
        }
        Source::Dir(d) => {
            let cfg_path = d.join("tokenizer_config.json");
            if let Some(cfg) = read_json_if_present(&cfg_path)? {
                template = chat::from_tokenizer_config(&cfg, &cfg_path.display().to_string())?;
                bos_token = token_text(&cfg, "bos_token");
                eos_token = token_text(&cfg, "eos_token");
            }
            // Newer transformers saves the template in a file of its own, which wins.
            let jinja = d.join("chat_template.jinja");
            if jinja.is_file() {
                let src = std::fs::read_to_string(&jinja)
                    .map_err(|e| formats::FormatError::io(&jinja, e))?;
                template = Some(ChatTemplate::new(&src, &jinja.display().to_string())?);
            }
        }
    }
    let stop_ids = stop_ids(path, tok)?;
    let template = match template {
        Some(t) => t,
        None if tok.token_to_id("<|start_header_id|>").is_some() => chat::llama3(),
        None => chat::llama2(),
    };
    Ok(ChatSettings {
        template,
        bos_token: bos_token.unwrap_or_else(|| id_text(tok, tok.bos())),
        eos_token: eos_token.unwrap_or_else(|| id_text(tok, tok.eos())),
        stop_ids,
    })
}
