//! Whole-corpus encoding against `sentencepiece` 0.2 with Llama 2's tokenizer.model, and
//! stories260K's tok512 against llama2.c's reference ids.

use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokenizer::SpmTokenizer;

fn sha256_of_ids(ids: &[u32]) -> String {
    let mut h = Sha256::new();
    for &id in ids {
        h.update((id as i32).to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn llama2_corpora_match_sentencepiece() {
    let Some(data) = testdata::shared_data("llama2_corpora_match_sentencepiece") else {
        return;
    };
    let tok = SpmTokenizer::from_model_file(data.join("llama2-tokenizer/tokenizer.model")).unwrap();
    let expected = json(&data.join("expected/llama2_tokenizer_corpus_ids.json"));
    let files = expected["files"].as_object().unwrap();
    assert_eq!(files.len(), 3);
    for (name, want) in files {
        let text = std::fs::read_to_string(data.join(name)).unwrap();
        let t0 = Instant::now();
        let ids = tok.encode(&text, false);
        let secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "{name}: {} bytes -> {} ids in {secs:.3} s ({:.1} MB/s)",
            text.len(),
            ids.len(),
            text.len() as f64 / secs / 1e6
        );
        let first = ids_of(&want["first_64"]);
        assert_eq!(&ids[..first.len()], &first[..], "{name}: first ids");
        let last = ids_of(&want["last_16"]);
        assert_eq!(
            &ids[ids.len() - last.len()..],
            &last[..],
            "{name}: last ids"
        );
        assert_eq!(
            ids.len() as u64,
            want["n_ids"].as_u64().unwrap(),
            "{name}: n_ids"
        );
        assert_eq!(
            sha256_of_ids(&ids),
            want["ids_sha256"].as_str().unwrap(),
            "{name}: sha256"
        );
        let back = tok.decode(&ids).unwrap();
        assert!(back == text, "{name}: decode(encode(text)) != text");
    }
}

#[test]
fn tok512_model_and_bin_agree_with_reference() {
    let Some(data) = testdata::shared_data("tok512_model_and_bin_agree_with_reference") else {
        return;
    };
    let model = SpmTokenizer::from_model_file(data.join("stories260K/tok512.model")).unwrap();
    let bin =
        SpmTokenizer::from_llama2c_bin(data.join("stories260K/tok512.bin"), Some(512)).unwrap();
    assert_eq!(model.vocab_size(), 512);
    assert_eq!(model.vocab().pieces, bin.vocab().pieces);
    assert_eq!(model.vocab().scores, bin.vocab().scores);
    assert_eq!(model.vocab().kinds, bin.vocab().kinds);

    let text = std::fs::read_to_string(data.join("corpora/tinystories-valid-head.txt")).unwrap();
    let reference = json(&data.join("expected/stories260K_nll_tinystories_val_prefix.json"));
    let ids = model.encode(&text, false);
    let first = ids_of(&reference["first_ids"]);
    assert_eq!(&ids[..first.len()], &first[..]);
    assert_eq!(ids.len(), 393_012);

    // tok512.model collapses runs of spaces (remove_extra_whitespaces); llama2.c's encoder
    // does not. With that one flag set alike, the two files give the same ids.
    assert!(model.vocab().remove_extra_whitespaces);
    let mut bin_vocab = bin.vocab().clone();
    bin_vocab.remove_extra_whitespaces = true;
    let bin_collapsing = SpmTokenizer::from_vocab(bin_vocab).unwrap();
    assert_eq!(bin_collapsing.encode(&text, false), ids);
    // And on text without runs of spaces or edge spaces, the files agree as they are.
    let tidy: String = text
        .lines()
        .map(|l| {
            l.split(' ')
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(bin.encode(&tidy, true), model.encode(&tidy, true));
}

#[test]
fn merging_in_stretches_equals_merging_whole() {
    let Some(data) = testdata::shared_data("merging_in_stretches_equals_merging_whole") else {
        return;
    };
    let tok = SpmTokenizer::from_model_file(data.join("llama2-tokenizer/tokenizer.model")).unwrap();
    // An unused piece (that never occurs) makes the tokenizer merge the text as one stretch.
    let mut v = tok.vocab().clone();
    v.pieces.push("\u{E000}\u{E001}".into());
    v.scores.push(0.0);
    v.kinds.push(tokenizer::TokenKind::Unused);
    let whole = SpmTokenizer::from_vocab(v).unwrap();
    for name in [
        "corpora/wikitext-2-raw-test.txt",
        "corpora/tinyshakespeare.txt",
    ] {
        let text = std::fs::read_to_string(data.join(name)).unwrap();
        let mut cut = 300_000;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        let text = &text[..cut];
        assert_eq!(whole.encode(text, false), tok.encode(text, false), "{name}");
    }
}
