//! `tokenizer.json` loading: ids and decoded text identical to Hugging Face `tokenizers` on
//! the adversarial strings, for the trained byte-level BPE, Llama 2's converted tokenizer and
//! the patched variants recorded beside them.

mod common;

use common::{adversarial, expected, id_lists, ids, load, names, short, strings};
use tokenizer::{BpeTokenizer, EncodeOptions, TokenKind, Tokenize};

const PARSE: EncodeOptions = EncodeOptions {
    add_bos: false,
    add_eos: false,
    parse_special: true,
};

/// Lists every mismatch (index, text, got, want) and fails if there is any.
fn compare<T: PartialEq + std::fmt::Debug>(what: &str, texts: &[String], got: &[T], want: &[T]) {
    assert_eq!(got.len(), want.len());
    let bad: Vec<String> = (0..got.len())
        .filter(|&i| got[i] != want[i])
        .map(|i| {
            format!(
                "  [{i}] {}\n     got  {:?}\n     want {:?}",
                short(&texts[i]),
                got[i],
                want[i]
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} differ\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn adversarial_ids_match_tokenizers() {
    let e = expected();
    let texts = adversarial(&e);
    for name in names(&e) {
        let tok = load(&e, &name);
        let rec = &e["tokenizers"][&name];
        let got: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode_with(t, PARSE)).collect();
        compare(&format!("{name} ids"), &texts, &got, &id_lists(&rec["ids"]));
        let plain: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t, false)).collect();
        compare(
            &format!("{name} plain ids"),
            &texts,
            &plain,
            &id_lists(&rec["plain_ids"]),
        );
    }
}

#[test]
fn decoded_text_matches_tokenizers() {
    let e = expected();
    let texts = adversarial(&e);
    for name in names(&e) {
        let tok = load(&e, &name);
        let rec = &e["tokenizers"][&name];
        for (key, ids_key) in [("decoded", "ids"), ("plain_decoded", "plain_ids")] {
            let got: Vec<String> = id_lists(&rec[ids_key])
                .iter()
                .map(|ids| tok.decode(ids).unwrap())
                .collect();
            compare(&format!("{name} {key}"), &texts, &got, &strings(&rec[key]));
        }
    }
}

#[test]
fn byte_level_round_trips_every_string() {
    let e = expected();
    for name in ["bpe", "bpe_gpt2", "bpe_merges_only"] {
        let tok = load(&e, name);
        for text in adversarial(&e) {
            let ids = tok.encode(&text, false);
            assert_eq!(tok.decode(&ids).unwrap(), text, "{name}: {}", short(&text));
        }
    }
}

#[test]
fn bos_comes_from_the_post_processor() {
    let e = expected();
    let texts = adversarial(&e);
    for name in names(&e) {
        let tok = load(&e, &name);
        let rec = &e["tokenizers"][&name]["with_special_tokens"];
        let text = &texts[rec["index"].as_u64().unwrap() as usize];
        assert_eq!(tok.encode(text, true), ids(&rec["ids"]), "{name}");
    }
    let bpe = load(&e, "bpe");
    assert_eq!(bpe.bos(), bpe.token_to_id("<|begin_of_text|>"));
    assert_eq!(bpe.eos(), bpe.token_to_id("<|end_of_text|>"));
    let llama2 = load(&e, "llama2");
    assert_eq!((llama2.bos(), llama2.eos()), (Some(1), Some(2)));
    assert_eq!(llama2.vocab_size(), 32000);
}

#[test]
fn plain_text_never_yields_a_special_token() {
    let e = expected();
    for name in names(&e) {
        let tok = load(&e, &name);
        for text in adversarial(&e) {
            for id in tok.encode(&text, false) {
                assert_ne!(
                    tok.kind(id).unwrap(),
                    TokenKind::Control,
                    "{name}: {} gave control token {id}",
                    short(&text)
                );
            }
        }
    }
}

#[test]
fn special_tokens_by_text() {
    let e = expected();
    let bpe = load(&e, "bpe");
    let eot = bpe.token_to_id("<|eot_id|>").unwrap();
    assert_eq!(bpe.encode_with("<|eot_id|>", PARSE), [eot]);
    assert_ne!(bpe.encode("<|eot_id|>", false), [eot]);
    assert_eq!(bpe.token_text(eot).unwrap(), "<|eot_id|>");
    let specials = bpe.special_tokens();
    assert_eq!(specials.len(), 6);
    assert!(specials.contains(&("<|eot_id|>".to_string(), eot)));
    assert_eq!(bpe.decode(&[eot]).unwrap(), "");
    assert_eq!(bpe.decode_with(&[eot], false).unwrap(), "<|eot_id|>");
    let ids = bpe.encode_with(
        "hi",
        EncodeOptions {
            add_bos: true,
            add_eos: true,
            parse_special: false,
        },
    );
    assert_eq!(ids.first().copied(), bpe.bos());
    assert_eq!(ids.last().copied(), bpe.eos());
    assert_eq!(
        bpe.decode_with(&ids, false).unwrap(),
        "<|begin_of_text|>hi<|end_of_text|>"
    );
    // A byte-level token's text is in GPT-2's alphabet.
    let the = bpe.encode(" the", false);
    assert_eq!(the.len(), 1);
    assert_eq!(bpe.token_text(the[0]).unwrap(), "\u{120}the");
    assert_eq!(bpe.token_to_id("\u{120}the"), Some(the[0]));
    assert_eq!(bpe.token_to_id("no such token"), None);
}

/// The hand-made tokenizer: ignore_merges, lstrip/rstrip, single_word, normalized tokens.
#[test]
fn added_token_rules_and_ignore_merges() {
    let e = expected();
    let syn = &e["synthetic"];
    let texts = strings(&syn["texts"]);
    let path = common::dir().join(syn["file"].as_str().unwrap());
    let json = std::fs::read_to_string(&path).unwrap();
    let with = BpeTokenizer::from_tokenizer_json(&path).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value["model"]["ignore_merges"] = false.into();
    let without = BpeTokenizer::from_tokenizer_json_str(&value.to_string(), "merges only").unwrap();
    for (name, tok) in [("ignore_merges", &with), ("merges_only", &without)] {
        let got: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode_with(t, PARSE)).collect();
        compare(name, &texts, &got, &id_lists(&syn[name]["ids"]));
        let plain: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t, false)).collect();
        compare(name, &texts, &plain, &id_lists(&syn[name]["plain_ids"]));
    }
}
