//! llama2.c's own encoder test (Meta's example prompts, ids with BOS), run with both the
//! llama2.c `tokenizer.bin` and SentencePiece's `tokenizer.model`.

use tokenizer::{SpmTokenizer, TokenKind};

#[test]
fn llama2c_prompts_with_bin_and_model() {
    let Some(data) = testdata::shared_data("llama2c_prompts_with_bin_and_model") else {
        return;
    };
    let model =
        SpmTokenizer::from_model_file(data.join("llama2-tokenizer/tokenizer.model")).unwrap();
    let bin =
        SpmTokenizer::from_llama2c_bin(data.join("llama2-tokenizer/tokenizer.bin"), Some(32000))
            .unwrap();
    let bin_eof =
        SpmTokenizer::from_llama2c_bin(data.join("llama2-tokenizer/tokenizer.bin"), None).unwrap();
    assert_eq!(bin_eof.vocab_size(), 32000);
    assert_eq!(model.vocab().pieces, bin.vocab().pieces);
    assert_eq!(model.vocab().kinds, bin.vocab().kinds);
    assert_eq!(model.vocab().scores, bin.vocab().scores);
    assert_eq!((model.bos(), model.eos()), (Some(1), Some(2)));
    assert_eq!(model.kind(0).unwrap(), TokenKind::Unknown);

    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join("expected/llama2c_expected.json")).unwrap(),
    )
    .unwrap();
    let cases = expected["llama2_tokenizer_encode"]["cases"]
        .as_array()
        .unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let prompt = case["prompt"].as_str().unwrap();
        let want: Vec<u32> = case["expected_ids_with_bos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(bin.encode(prompt, true), want, "bin: {prompt:?}");
        assert_eq!(model.encode(prompt, true), want, "model: {prompt:?}");
        assert_eq!(model.decode(&want).unwrap(), prompt);
    }
}

#[test]
fn decode_piece_strips_space_after_bos() {
    let Some(data) = testdata::shared_data("decode_piece_strips_space_after_bos") else {
        return;
    };
    let tok = SpmTokenizer::from_model_file(data.join("llama2-tokenizer/tokenizer.model")).unwrap();
    let ids = tok.encode("I believe", true);
    assert_eq!(ids, [1, 306, 4658]);
    assert_eq!(tok.decode_piece(Some(1), 306).unwrap(), b"I");
    assert_eq!(tok.decode_piece(Some(306), 4658).unwrap(), b" believe");
    assert_eq!(tok.decode_piece(Some(306), 1).unwrap(), b"");
    assert_eq!(tok.decode_piece(Some(1), 13).unwrap(), b"\n");
    assert_eq!(tok.piece_bytes(13).unwrap(), b"\n");
    assert_eq!(tok.piece(4658).unwrap(), "\u{2581}believe");
}
