//! The byte-level BPE built from GGUF-style plain data (`BpeVocab::from_gguf`) gives the same
//! ids as its `tokenizer.json` under Hugging Face `tokenizers`.

mod common;

use common::{adversarial, expected, gguf_tokenizer, id_lists, short};
use tokenizer::{BpeVocab, EncodeOptions, PreTokenizer, TokenKind, Tokenize, TokenizerError};

#[test]
fn gguf_vocabulary_gives_the_recorded_ids() {
    let e = expected();
    let tok = gguf_tokenizer(&e);
    let rec = &e["tokenizers"]["bpe"];
    let parse = EncodeOptions {
        parse_special: true,
        ..EncodeOptions::default()
    };
    let texts = adversarial(&e);
    for (i, (want, want_plain)) in id_lists(&rec["ids"])
        .iter()
        .zip(id_lists(&rec["plain_ids"]))
        .enumerate()
    {
        let text = &texts[i];
        assert_eq!(&tok.encode_with(text, parse), want, "[{i}] {}", short(text));
        assert_eq!(tok.encode(text, false), want_plain, "[{i}] {}", short(text));
        assert_eq!(tok.decode(&want_plain).unwrap(), *text);
    }
    assert_eq!(tok.vocab().pre, PreTokenizer::Llama3);
    assert!(tok.vocab().ignore_merges);
    assert_eq!(tok.bos(), tok.token_to_id("<|begin_of_text|>"));
    assert_eq!(tok.eos(), tok.token_to_id("<|end_of_text|>"));
    assert_eq!(tok.kind(tok.bos().unwrap()).unwrap(), TokenKind::Control);
    assert!(tok.merge_count() >= 4000);
}

#[test]
fn bad_gguf_values_are_errors() {
    let tokens = || vec!["a".to_string(), "b".into(), "ab".into()];
    let err = |r: Result<BpeVocab, TokenizerError>| r.unwrap_err().to_string();
    let msg = err(BpeVocab::from_gguf(
        tokens(),
        None,
        &[],
        Some("qwen2"),
        None,
        None,
        "m.gguf",
    ));
    assert!(msg.contains("m.gguf") && msg.contains("\"qwen2\""), "{msg}");
    let msg = err(BpeVocab::from_gguf(
        tokens(),
        Some(&[1, 9, 1]),
        &[],
        None,
        None,
        None,
        "m.gguf",
    ));
    assert!(msg.contains("token 1 has unknown type 9"), "{msg}");
    let msg = err(BpeVocab::from_gguf(
        tokens(),
        Some(&[1]),
        &[],
        None,
        None,
        None,
        "m.gguf",
    ));
    assert!(msg.contains("3 tokens but 1 token types"), "{msg}");
    let msg = err(BpeVocab::from_gguf(
        tokens(),
        None,
        &["ab".into()],
        None,
        None,
        None,
        "m.gguf",
    ));
    assert!(msg.contains("merge 0 \"ab\""), "{msg}");
    // A merge whose result is no token fails when the tokenizer is built.
    let v = BpeVocab::from_gguf(tokens(), None, &["b a".into()], None, None, None, "m").unwrap();
    let msg = tokenizer::BpeTokenizer::from_vocab(v)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("merge 0 (\"b\" \"a\"): \"ba\" is not a token"),
        "{msg}"
    );
    // Ids out of range.
    let v = BpeVocab::from_gguf(tokens(), None, &[], None, Some(3), None, "m").unwrap();
    let msg = tokenizer::BpeTokenizer::from_vocab(v)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("bos id 3 is not below 3"), "{msg}");
}
