//! Llama 2's tokenizer.model on the adversarial strings: plain ids and decoded text identical
//! to `sentencepiece`; with special-token parsing, identical to Hugging Face `tokenizers` on
//! the converted tokenizer.json (which splits out `<s>`, `</s>`, `<unk>`); and the
//! tokenizer.json path agrees with the tokenizer.model path wherever the two references agree.

mod common;

use common::{adversarial, expected, id_lists, load, short, strings};
use tokenizer::{EncodeOptions, SpmTokenizer, Tokenize};

fn llama2(test: &str) -> Option<SpmTokenizer> {
    let data = testdata::shared_data(test)?;
    Some(SpmTokenizer::from_model_file(data.join("llama2-tokenizer/tokenizer.model")).unwrap())
}

#[test]
fn plain_ids_and_text_match_sentencepiece() {
    let Some(spm) = llama2("plain_ids_and_text_match_sentencepiece") else {
        return;
    };
    let e = expected();
    let sp = &e["sentencepiece_llama2"];
    let texts = adversarial(&e);
    for ((text, want), decoded) in texts
        .iter()
        .zip(id_lists(&sp["ids"]))
        .zip(strings(&sp["decoded"]))
    {
        assert_eq!(spm.encode(text, false), want, "{}", short(text));
        assert_eq!(spm.decode(&want).unwrap(), decoded, "{}", short(text));
    }
}

#[test]
fn special_parsing_matches_tokenizers() {
    let Some(spm) = llama2("special_parsing_matches_tokenizers") else {
        return;
    };
    let e = expected();
    let parse = EncodeOptions {
        parse_special: true,
        ..EncodeOptions::default()
    };
    for (text, want) in adversarial(&e)
        .iter()
        .zip(id_lists(&e["tokenizers"]["llama2"]["ids"]))
    {
        assert_eq!(spm.encode_with(text, parse), want, "{}", short(text));
    }
    assert_eq!(spm.encode_with("<s>", parse), [1]);
    assert_eq!(spm.encode_with("a</s>", parse), [263, 2]);
    assert_ne!(spm.encode("<s>", false), [1]);
    assert_eq!(spm.token_to_id("<s>"), Some(1));
    let mut specials = spm.special_tokens();
    specials.sort_by_key(|s| s.1);
    assert_eq!(
        specials,
        [
            ("<unk>".to_string(), 0),
            ("<s>".into(), 1),
            ("</s>".into(), 2)
        ]
    );
    assert_eq!(spm.token_to_id("\u{2581}the"), Some(278));
    assert_eq!(spm.token_text(278).unwrap(), "\u{2581}the");
    assert_eq!(spm.decode_with(&[1, 278, 2], false).unwrap(), "<s> the</s>");
    assert_eq!(spm.decode(&[1, 278, 2]).unwrap(), "the");
    let both = EncodeOptions {
        add_bos: true,
        add_eos: true,
        parse_special: false,
    };
    assert_eq!(spm.encode_with("the", both), [1, 278, 2]);
}

#[test]
fn json_and_model_paths_agree_where_references_agree() {
    let Some(spm) = llama2("json_and_model_paths_agree_where_references_agree") else {
        return;
    };
    let e = expected();
    let json = load(&e, "llama2");
    let hf = id_lists(&e["tokenizers"]["llama2"]["plain_ids"]);
    let sp = id_lists(&e["sentencepiece_llama2"]["ids"]);
    let mut compared = 0;
    for (i, text) in adversarial(&e).iter().enumerate() {
        if hf[i] == sp[i] {
            assert_eq!(
                json.encode(text, false),
                spm.encode(text, false),
                "{}",
                short(text)
            );
            compared += 1;
        }
    }
    // Recorded differences between the two references (none with this converter).
    let differ = e["sentencepiece_llama2"]["versus_llama2_json"]["adversarial_plain_ids_differ"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(compared + differ, hf.len());
}
