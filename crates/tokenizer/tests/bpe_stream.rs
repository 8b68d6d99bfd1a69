//! Incremental decoding of byte-level ids: equal to whole decoding, and never a broken
//! character, even where a token holds only part of a character's bytes.

mod common;

use common::{adversarial, corpus, expected, gguf_tokenizer, load, short};
use tokenizer::{Piece, StreamDecoder, Tokenize};

/// Streams `ids`; checks each chunk and returns the concatenation and whether bytes were ever
/// held back.
fn stream(tok: &dyn Tokenize, ids: &[u32], text: &str) -> (String, bool) {
    let mut d = StreamDecoder::new();
    let mut all = String::new();
    let mut held = false;
    let valid = !text.contains('\u{FFFD}');
    for &id in ids {
        let chunk = d.push(tok, id).unwrap();
        if valid {
            assert!(
                !chunk.contains('\u{FFFD}'),
                "{}: chunk {chunk:?}",
                short(text)
            );
        }
        held |= d.has_pending();
        all.push_str(&chunk);
    }
    all.push_str(&d.finish());
    (all, held)
}

#[test]
fn streaming_equals_decoding() {
    let e = expected();
    let tokenizers: Vec<(&str, Box<dyn Tokenize>)> = vec![
        ("bpe", Box::new(load(&e, "bpe"))),
        ("bpe_gpt2", Box::new(load(&e, "bpe_gpt2"))),
        ("gguf", Box::new(gguf_tokenizer(&e))),
    ];
    for (name, tok) in &tokenizers {
        let mut split_chars = 0;
        for text in adversarial(&e) {
            let ids = tok.encode(&text, false);
            let whole = tok.decode(&ids).unwrap();
            assert_eq!(whole, text, "{name}");
            let (streamed, held) = stream(tok.as_ref(), &ids, &text);
            assert_eq!(streamed, whole, "{name}: {}", short(&text));
            split_chars += usize::from(held);
        }
        // The set must include characters whose bytes are spread over several tokens.
        assert!(
            split_chars > 5,
            "{name}: only {split_chars} strings split a character"
        );
    }
}

#[test]
fn streaming_a_corpus() {
    let e = expected();
    let tok = load(&e, "bpe");
    for name in ["wikitext-2-raw-test.txt", "tinyshakespeare.txt"] {
        let Some(text) = corpus("streaming_a_corpus", name) else {
            return;
        };
        let ids = tok.encode(&text, false);
        let (streamed, _) = stream(&tok, &ids, &text);
        assert!(streamed == text, "{name}: streamed text differs");
    }
}

#[test]
fn byte_level_tokens_are_bytes() {
    let e = expected();
    let tok = load(&e, "bpe");
    let ids = tok.encode("\u{1F999}", false);
    assert!(ids.len() > 1, "the llama emoji should need several tokens");
    for &id in &ids {
        assert!(matches!(tok.token_piece(id).unwrap(), Piece::Bytes(_)));
    }
    let bytes: Vec<u8> = ids
        .iter()
        .flat_map(|&id| tok.token_bytes(id).unwrap())
        .collect();
    assert_eq!(bytes, "\u{1F999}".as_bytes());
    // Special tokens: nothing, or their text when kept.
    let eot = tok.token_to_id("<|eot_id|>").unwrap();
    assert_eq!(tok.token_piece(eot).unwrap(), Piece::Control);
    let mut d = StreamDecoder::new().keep_special(true);
    assert_eq!(d.push(&tok, eot).unwrap(), "<|eot_id|>");
    let mut d = StreamDecoder::continuing();
    assert_eq!(d.push(&tok, eot).unwrap(), "");
}
