//! Bad `tokenizer.json` input gives errors naming the file and the JSON path; bad ids give
//! errors, never panics.

mod common;

use std::path::PathBuf;

use tokenizer::{load_tokenizer_json, BpeTokenizer, Tokenize, TokenizerError};

/// A scratch folder for files written by these tests.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herd-tokenizer-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn error_of(json: &str) -> String {
    BpeTokenizer::from_tokenizer_json_str(json, "t.json")
        .unwrap_err()
        .to_string()
}

/// The synthetic fixture, as JSON to patch.
fn synthetic() -> serde_json::Value {
    let path = common::dir().join("synthetic/tokenizer.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn unparseable_file_names_the_file() {
    let dir = scratch("unparseable");
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, "{\"model\": [1, 2").unwrap();
    let err = BpeTokenizer::from_tokenizer_json(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TokenizerError::Json { .. }), "{err:?}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("not valid JSON"), "{msg}");
    let msg = load_tokenizer_json(dir.join("missing.json"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("missing.json") && msg.contains("cannot read"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_config_beside_names_that_file() {
    let dir = scratch("config");
    std::fs::write(dir.join("tokenizer.json"), synthetic().to_string()).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), "{\"bos_token\": [}").unwrap();
    let msg = BpeTokenizer::from_tokenizer_json(dir.join("tokenizer.json"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("tokenizer_config.json"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errors_carry_the_json_path() {
    assert!(error_of("[]").contains("t.json: not a JSON object"));
    assert!(error_of("{}").contains("t.json: missing \"model\""));

    let mut j = synthetic();
    j["model"]["type"] = "Unigram".into();
    let msg = error_of(&j.to_string());
    assert!(
        msg.contains("t.json: model.type: unsupported model type \"Unigram\""),
        "{msg}"
    );

    let mut j = synthetic();
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+".into();
    let msg = error_of(&j.to_string());
    assert!(
        msg.contains(
            "pre_tokenizer.pretokenizers[0].pattern: unsupported split pattern \"\\\\w+\""
        ),
        "{msg}"
    );

    let mut j = synthetic();
    j["model"]["merges"][1] = serde_json::json!(["a"]);
    let msg = error_of(&j.to_string());
    assert!(
        msg.contains("model.merges[1]: a merge has 2 tokens, not 1"),
        "{msg}"
    );

    let mut j = synthetic();
    j["model"]["merges"][0] = "ab".into();
    let msg = error_of(&j.to_string());
    assert!(
        msg.contains("model.merges[0]: merge \"ab\" is not two tokens"),
        "{msg}"
    );

    let mut j = synthetic();
    j["model"]["vocab"]["abc"] = (-1).into();
    let msg = error_of(&j.to_string());
    assert!(
        msg.contains("model.vocab[\"abc\"]: expected a 32-bit token id"),
        "{msg}"
    );

    let mut j = synthetic();
    j["model"]["vocab"]["abc"] = 4_000_000_000u32.into();
    let msg = error_of(&j.to_string());
    assert!(msg.contains("some ids have no token"), "{msg}");

    let mut j = synthetic();
    j["added_tokens"][0]["id"] = "x".into();
    let msg = error_of(&j.to_string());
    assert!(
        msg.contains("added_tokens[0].id: expected a 32-bit token id"),
        "{msg}"
    );

    let mut j = synthetic();
    j["decoder"] = serde_json::Value::Null;
    let msg = error_of(&j.to_string());
    assert!(msg.contains("needs the ByteLevel decoder"), "{msg}");

    let mut j = synthetic();
    j["normalizer"] = serde_json::json!({"type": "NFKC"});
    let msg = error_of(&j.to_string());
    assert!(
        msg.contains("normalizer: unsupported normalizer \"NFKC\""),
        "{msg}"
    );

    let mut j = synthetic();
    j["model"]["merges"][0] = serde_json::json!(["a", "q"]);
    let msg = error_of(&j.to_string());
    assert!(
        msg.contains("merge 0 (\"a\" \"q\"): \"aq\" is not a token"),
        "{msg}"
    );
}

#[test]
fn ids_outside_the_vocabulary_are_errors() {
    let path = common::dir().join("synthetic/tokenizer.json");
    let tok = BpeTokenizer::from_tokenizer_json(&path).unwrap();
    let n = tok.vocab_size() as u32;
    for id in [n, n + 1, u32::MAX] {
        assert!(matches!(
            tok.decode(&[0, id]),
            Err(TokenizerError::IdOutOfRange { id: bad, .. }) if bad == id
        ));
        assert!(tok.token_piece(id).is_err());
        assert!(tok.token_text(id).is_err());
        assert!(tok.decode_with(&[id], false).is_err());
    }
}
