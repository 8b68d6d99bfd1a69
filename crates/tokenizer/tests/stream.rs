//! Incremental decoding equals whole-sequence decoding and never emits broken characters.

use tokenizer::{SpmTokenizer, StreamDecoder, TokenKind, Tokenize};

fn llama() -> Option<SpmTokenizer> {
    let data = testdata::shared_data("stream")?;
    Some(SpmTokenizer::from_model_file(data.join("llama2-tokenizer/tokenizer.model")).unwrap())
}

/// Streams `ids`, checking every chunk; returns the concatenation.
fn stream(tok: &SpmTokenizer, ids: &[u32]) -> String {
    let mut d = StreamDecoder::new();
    let mut all = String::new();
    for &id in ids {
        let chunk = d.push(tok, id).unwrap();
        assert!(!chunk.contains('\u{FFFD}'), "chunk {chunk:?} after id {id}");
        all.push_str(&chunk);
    }
    all.push_str(&d.finish());
    all
}

#[test]
fn multibyte_characters_split_over_byte_tokens() {
    let Some(tok) = llama() else { return };
    for text in [
        "héllo 🦙 世界",
        "🦙🦙🦙",
        " leading space and 🦙",
        "\u{10FFFF} ⁇ ok",
        "a😀b😀c ½",
        "🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅",
    ] {
        let ids = tok.encode(text, true);
        assert!(
            ids.iter()
                .any(|&id| tok.kind(id).unwrap() == TokenKind::Byte),
            "{text:?} should need byte fallback"
        );
        let whole = tok.decode(&ids).unwrap();
        assert_eq!(whole, text);
        assert_eq!(stream(&tok, &ids), whole, "{text:?}");
        // Without BOS as well.
        let ids = tok.encode(text, false);
        assert_eq!(stream(&tok, &ids), tok.decode(&ids).unwrap());
    }
}

#[test]
fn held_bytes_are_released_when_the_character_completes() {
    let Some(tok) = llama() else { return };
    let ids = tok.encode("🦙", false);
    // "▁" then the four bytes of U+1F999.
    assert_eq!(ids.len(), 5);
    let mut d = StreamDecoder::new();
    assert_eq!(d.push(&tok, ids[0]).unwrap(), "");
    for &id in &ids[1..4] {
        assert_eq!(d.push(&tok, id).unwrap(), "");
        assert!(d.has_pending());
    }
    assert_eq!(d.push(&tok, ids[4]).unwrap(), "🦙");
    assert_eq!(d.finish(), "");
}

#[test]
fn invalid_byte_runs_match_decode() {
    let Some(tok) = llama() else { return };
    let byte = |b: u8| tok.token_id(&format!("<0x{b:02X}>")).unwrap();
    let sequences: Vec<Vec<u32>> = vec![
        // Truncated 4-byte character, then a word.
        vec![byte(0xF0), byte(0x9F), byte(0xA6), 3186],
        // Truncated character interrupted by EOS, then completed bytes.
        vec![1, byte(0xE4), 2, byte(0xB8), byte(0x96)],
        // Stray continuation bytes and an overlong lead.
        vec![byte(0x80), byte(0xC0), byte(0x41), byte(0xFF)],
        // Incomplete at the very end.
        vec![15043, byte(0xE4), byte(0xB8)],
        // Only a space piece first: the dummy-prefix space is dropped once.
        vec![29871, 29871, 15043],
    ];
    for ids in sequences {
        let whole = tok.decode(&ids).unwrap();
        let mut d = StreamDecoder::new();
        let mut all = String::new();
        for &id in &ids {
            all.push_str(&d.push(&tok, id).unwrap());
        }
        all.push_str(&d.finish());
        assert_eq!(all, whole, "{ids:?}");
    }
    assert_eq!(
        tok.decode(&[byte(0xF0), byte(0x9F), byte(0xA6), 3186])
            .unwrap(),
        "\u{FFFD}\u{FFFD}\u{FFFD} world"
    );
    assert_eq!(tok.decode(&[29871, 29871, 15043]).unwrap(), "  Hello");
    assert_eq!(tok.decode(&[1, 0, 2]).unwrap(), " \u{2047} ");
}

#[test]
fn continuing_decoder_keeps_leading_space() {
    let Some(tok) = llama() else { return };
    let ids = tok.encode("Hello world", false);
    let mut d = StreamDecoder::continuing();
    let mut s = String::new();
    for &id in &ids {
        s.push_str(&d.push(&tok, id).unwrap());
    }
    assert_eq!(s, " Hello world");
}

#[test]
fn corpus_streams_like_decode() {
    let Some(data) = testdata::shared_data("corpus_streams_like_decode") else {
        return;
    };
    let tok = SpmTokenizer::from_model_file(data.join("llama2-tokenizer/tokenizer.model")).unwrap();
    let text = std::fs::read_to_string(data.join("corpora/wikitext-2-raw-test.txt")).unwrap();
    let ids = tok.encode(&text[..200_000], true);
    assert_eq!(stream(&tok, &ids), Tokenize::decode(&tok, &ids).unwrap());
}
