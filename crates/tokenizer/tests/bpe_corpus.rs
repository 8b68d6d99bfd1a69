//! Whole shared corpora encoded with every recorded `tokenizer.json` (and the GGUF-style
//! vocabulary): id counts, hashes and first ids identical to Hugging Face `tokenizers`, and
//! decoding gives the corpus back.

mod common;

use std::time::Instant;

use common::{corpus, expected, ids, load, names, sha256_of_ids, sha256_of_text};
use serde_json::Value;
use tokenizer::{BpeTokenizer, Tokenize};

/// Encodes every corpus with `tok` and compares with `rec["corpora"]`.
fn check_corpora(test: &str, label: &str, tok: &BpeTokenizer, rec: &Value) -> bool {
    for (name, want) in rec["corpora"].as_object().unwrap() {
        let Some(text) = corpus(test, name) else {
            return false;
        };
        let t0 = Instant::now();
        let got = tok.encode(&text, false);
        let secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "{label} {name}: {} bytes -> {} ids in {secs:.3} s ({:.1} MB/s)",
            text.len(),
            got.len(),
            text.len() as f64 / secs / 1e6
        );
        let first = ids(&want["first_64"]);
        assert_eq!(&got[..first.len()], &first[..], "{label} {name}: first ids");
        assert_eq!(
            got.len() as u64,
            want["n_ids"].as_u64().unwrap(),
            "{label} {name}: id count"
        );
        assert_eq!(
            sha256_of_ids(&got),
            want["sha256"].as_str().unwrap(),
            "{label} {name}: id hash"
        );
        let back = tok.decode(&got).unwrap();
        assert_eq!(
            sha256_of_text(&back),
            want["decoded_sha256"].as_str().unwrap(),
            "{label} {name}: decoded text"
        );
        if want["round_trips"].as_bool().unwrap() {
            assert!(
                back == text,
                "{label} {name}: decode does not give the corpus back"
            );
        }
    }
    true
}

#[test]
fn corpora_match_tokenizers() {
    let e = expected();
    for name in names(&e) {
        let tok = load(&e, &name);
        if !check_corpora(
            "corpora_match_tokenizers",
            &name,
            &tok,
            &e["tokenizers"][&name],
        ) {
            return;
        }
    }
}

#[test]
fn corpora_match_through_the_gguf_vocabulary() {
    let e = expected();
    let tok = common::gguf_tokenizer(&e);
    check_corpora(
        "corpora_match_through_the_gguf_vocabulary",
        "gguf",
        &tok,
        &e["tokenizers"]["bpe"],
    );
}
