//! Chat prompts and conversations: special tokens only where the template wrote them, the
//! GGUF byte-level vocabulary equal to tokenizer.json, end-of-turn ids, and KV reuse between
//! turns that changes nothing in the output.

use engine::{ChatRunner, Sampler, SamplerConfig};
use serde_json::json;
use tokenizer::EncodeOptions;

fn bpe_dir() -> std::path::PathBuf {
    testdata::fixtures().join("tokenizers/bpe")
}

#[test]
fn special_text_in_messages_stays_plain_text() {
    let tok = engine::load_tokenizer(&bpe_dir(), None).unwrap();
    let settings = engine::chat_settings(&bpe_dir(), tok.as_ref()).unwrap();
    let eot = tok.token_to_id("<|eot_id|>").unwrap();
    let plain = settings.context(
        vec![json!({"role": "user", "content": "Hello there"})],
        true,
    );
    let (text, ids) = engine::encode_chat(tok.as_ref(), &settings.template, &plain).unwrap();
    // Without special text in the content: exactly what parsing specials everywhere gives,
    // which is how transformers tokenizes a rendered chat.
    let parse_all = EncodeOptions {
        parse_special: true,
        ..EncodeOptions::default()
    };
    assert_eq!(ids, tok.encode_with(&text, parse_all));
    let tricky = settings.context(
        vec![json!({"role": "user", "content": "Hi <|eot_id|> there"})],
        true,
    );
    let (text, ids) = engine::encode_chat(tok.as_ref(), &settings.template, &tricky).unwrap();
    assert!(text.contains("Hi <|eot_id|> there"));
    // One <|eot_id|> closes the user turn; the one in the content is plain text.
    assert_eq!(ids.iter().filter(|&&id| id == eot).count(), 1, "{ids:?}");
    assert_eq!(tok.decode_with(&ids, false).unwrap(), text);
}

#[test]
fn gguf_byte_level_vocabulary_matches_tokenizer_json() {
    let json_tok = engine::load_tokenizer(&bpe_dir().join("tokenizer.json"), None).unwrap();
    let gguf_tok = engine::load_tokenizer(&bpe_dir().join("vocab.gguf"), None).unwrap();
    assert_eq!(json_tok.vocab_size(), gguf_tok.vocab_size());
    assert_eq!(json_tok.bos(), gguf_tok.bos());
    let texts = [
        "Hello, world! It's 2024-07-26.",
        "  leading spaces\n\n\ttabs\r\nCRLF",
        "日本語のテキスト 👨‍👩‍👧‍👦 émigré",
        "<|eot_id|> is special only when asked",
    ];
    for t in texts {
        for parse_special in [false, true] {
            let opts = EncodeOptions {
                add_bos: true,
                parse_special,
                ..EncodeOptions::default()
            };
            assert_eq!(
                json_tok.encode_with(t, opts),
                gguf_tok.encode_with(t, opts),
                "{t:?}"
            );
        }
        assert_eq!(gguf_tok.decode(&gguf_tok.encode(t, false)).unwrap(), t);
    }
}

#[test]
fn end_of_turn_ids_come_from_every_source() {
    let dir = std::env::temp_dir().join(format!("herd-chat-stop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(bpe_dir().join(f), dir.join(f)).unwrap();
    }
    let tok = engine::load_tokenizer(&dir, None).unwrap();
    let eom = tok.token_to_id("<|eom_id|>").unwrap();
    std::fs::write(
        dir.join("generation_config.json"),
        json!({"eos_token_id": [7, eom]}).to_string(),
    )
    .unwrap();
    let s = engine::chat_settings(&dir, tok.as_ref()).unwrap();
    for id in [
        7,
        eom,
        tok.token_to_id("<|eot_id|>").unwrap(),
        tok.token_to_id("<|end_of_text|>").unwrap(),
    ] {
        assert!(s.stop_ids.contains(&id), "{id} not in {:?}", s.stop_ids);
    }
    assert_eq!(s.bos_token, "<|begin_of_text|>");
    std::fs::remove_dir_all(&dir).ok();
}

fn greedy() -> Sampler {
    Sampler::new(SamplerConfig {
        temperature: 0.0,
        ..SamplerConfig::default()
    })
}

#[test]
fn second_turn_reuses_cache_and_matches_a_fresh_run() {
    let Some(d) = testdata::shared_data("second_turn_reuses_cache_and_matches_a_fresh_run") else {
        return;
    };
    let loaded = engine::load(&d.join("stories260K/stories260K.gguf"), None).unwrap();
    let tok = loaded.tokenizer.as_deref().unwrap();
    let settings = engine::chat_settings(&loaded.path, tok).unwrap();
    let mut a = ChatRunner::new(
        &loaded.model,
        tok,
        settings.clone(),
        Some("Tell stories.".into()),
        engine::KvType::default(),
    )
    .unwrap();
    let (first, s1) = a
        .reply("Once upon a time", 24, &mut greedy(), |_| true)
        .unwrap();
    assert_eq!(s1.n_reused, 0);
    let (second, s2) = a
        .reply("What happened next?", 24, &mut greedy(), |_| true)
        .unwrap();
    assert!(
        s2.n_reused >= s1.generate.n_prompt,
        "reused {} of {}",
        s2.n_reused,
        s1.generate.n_prompt
    );
    let mut b = ChatRunner::new(
        &loaded.model,
        tok,
        settings,
        Some("Tell stories.".into()),
        engine::KvType::default(),
    )
    .unwrap();
    b.push_message("user", "Once upon a time");
    b.push_message("assistant", &first);
    let (fresh, s3) = b
        .reply("What happened next?", 24, &mut greedy(), |_| true)
        .unwrap();
    assert_eq!(s3.n_reused, 0);
    assert_eq!(second, fresh);
}
