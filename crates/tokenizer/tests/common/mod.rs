//! Shared helpers for the tests against the recorded Hugging Face `tokenizers` fixtures
//! (`tests/fixtures/tokenizers/`, made by `tools/fixtures/make_tokenizer_fixtures.py`).

#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokenizer::BpeTokenizer;

/// The tokenizer fixtures folder.
pub fn dir() -> PathBuf {
    testdata::fixtures().join("tokenizers")
}

/// `expected.json`.
pub fn expected() -> Value {
    let path = dir().join("expected.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// The adversarial strings.
pub fn adversarial(e: &Value) -> Vec<String> {
    e["adversarial"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// A JSON array of ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| u32::try_from(x.as_u64().unwrap()).unwrap())
        .collect()
}

/// A JSON array of id arrays.
pub fn id_lists(v: &Value) -> Vec<Vec<u32>> {
    v.as_array().unwrap().iter().map(ids).collect()
}

/// A JSON array of strings.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// sha256 of ids as little-endian u32.
pub fn sha256_of_ids(ids: &[u32]) -> String {
    let mut h = Sha256::new();
    for &id in ids {
        h.update(id.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a text's UTF-8 bytes.
pub fn sha256_of_text(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Replaces the dotted paths of `patch` in `json` (the script's `apply_patch`).
pub fn apply_patch(json: &mut Value, patch: &Value) {
    for (dotted, value) in patch.as_object().unwrap() {
        let mut node = &mut *json;
        let parts: Vec<&str> = dotted.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            node = node.get_mut(*p).unwrap();
        }
        node[parts[parts.len() - 1]] = value.clone();
    }
}

/// The tokenizer recorded as `name` in `expected.json`: its file, patched when the record
/// says so. Unpatched files are loaded by path (with the tokenizer_config.json beside them).
pub fn load(e: &Value, name: &str) -> BpeTokenizer {
    let rec = &e["tokenizers"][name];
    let path = dir().join(rec["file"].as_str().unwrap());
    if rec["patch"].is_null() {
        return BpeTokenizer::from_tokenizer_json(&path).unwrap();
    }
    let mut json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    apply_patch(&mut json, &rec["patch"]);
    BpeTokenizer::from_tokenizer_json_str(&json.to_string(), name).unwrap()
}

/// Names of every recorded tokenizer.
pub fn names(e: &Value) -> Vec<String> {
    e["tokenizers"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// A shared corpus file, read as is (`None`, after a skip line, when the data is absent).
pub fn corpus(test: &str, name: &str) -> Option<String> {
    let data = testdata::shared_data(test)?;
    Some(String::from_utf8(std::fs::read(data.join("corpora").join(name)).unwrap()).unwrap())
}

/// Shortens a string for messages.
pub fn short(s: &str) -> String {
    let mut t: String = s.chars().take(40).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    format!("{t:?}")
}

/// The byte-level BPE built from the GGUF arrays dumped beside `vocab.gguf`, exactly as the
/// engine builds it from the GGUF keys.
pub fn gguf_tokenizer(e: &Value) -> BpeTokenizer {
    let path = dir().join(e["gguf"]["file"].as_str().unwrap());
    let g: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(g["model"], "gpt2");
    let types: Vec<i32> = g["token_type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap() as i32)
        .collect();
    let vocab = tokenizer::BpeVocab::from_gguf(
        strings(&g["tokens"]),
        Some(&types),
        &strings(&g["merges"]),
        g["pre"].as_str(),
        g["bos"].as_u64().map(|x| x as u32),
        g["eos"].as_u64().map(|x| x as u32),
        "gguf_vocab.json",
    )
    .unwrap();
    BpeTokenizer::from_vocab(vocab).unwrap()
}
