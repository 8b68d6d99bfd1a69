//! Corrupt input: errors, never panics.

use tokenizer::{parse_llama2c_bin, parse_model_proto, SpmTokenizer, TokenizerError};

#[test]
fn truncated_model_files_are_errors() {
    let Some(data) = testdata::shared_data("truncated_model_files_are_errors") else {
        return;
    };
    for file in [
        "llama2-tokenizer/tokenizer.model",
        "stories260K/tok512.model",
    ] {
        let bytes = std::fs::read(data.join(file)).unwrap();
        let full = parse_model_proto(&bytes, file).unwrap();
        // The pieces come first and the trainer spec (which says "BPE") after them, so every
        // cut before the end of the trainer spec must fail; later cuts must at least not panic.
        let mut cuts: Vec<usize> = (0..bytes.len()).step_by(997).collect();
        cuts.extend(0..64);
        cuts.extend(bytes.len() - 64..bytes.len());
        let mut errors = 0;
        for cut in cuts {
            match parse_model_proto(&bytes[..cut], "cut") {
                Err(e) => {
                    errors += 1;
                    let msg = e.to_string();
                    assert!(msg.starts_with("cut: "), "{msg}");
                }
                Ok(v) => {
                    assert_eq!(v.pieces, full.pieces, "cut {cut} parsed with other pieces");
                    assert!(
                        cut > bytes.len() - 200,
                        "cut {cut} of {} parsed",
                        bytes.len()
                    );
                }
            }
        }
        assert!(errors > 100);
    }
}

#[test]
fn flipped_bytes_never_panic() {
    let Some(data) = testdata::shared_data("flipped_bytes_never_panic") else {
        return;
    };
    let bytes = std::fs::read(data.join("stories260K/tok512.model")).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..3000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut b = bytes.clone();
        let at = (seed % b.len() as u64) as usize;
        b[at] = (seed >> 32) as u8;
        if let Ok(v) = parse_model_proto(&b, "flip") {
            if let Ok(tok) = SpmTokenizer::from_vocab(v) {
                let ids = tok.encode("Once upon a time, 🦙  there was", true);
                let _ = tok.decode(&ids);
            }
        }
    }
}

#[test]
fn bad_protobuf_reports_offset() {
    // Field 1 (pieces) claims 100 bytes, 2 follow.
    let e = parse_model_proto(&[0x0a, 100, 1, 2], "m").unwrap_err();
    assert!(
        matches!(e, TokenizerError::Protobuf { offset: 2, .. }),
        "{e}"
    );
    // Huge length prefix: an error, no allocation.
    let e = parse_model_proto(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], "m").unwrap_err();
    assert!(matches!(e, TokenizerError::Protobuf { .. }), "{e}");
    // Wrong wire type for pieces.
    let e = parse_model_proto(&[0x08, 1], "m").unwrap_err();
    assert!(e.to_string().contains("wire type"), "{e}");
    // Empty file: no BPE trainer spec.
    let e = parse_model_proto(&[], "m").unwrap_err();
    assert!(
        matches!(
            e,
            TokenizerError::UnsupportedModelType { model_type: 1, .. }
        ),
        "{e}"
    );
}

#[test]
fn bad_llama2c_bin_is_an_error() {
    let e = parse_llama2c_bin(
        &[16, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f],
        None,
        "b",
    )
    .unwrap_err();
    assert!(
        matches!(e, TokenizerError::Llama2cBin { offset: 12, .. }),
        "{e}"
    );
    let e = parse_llama2c_bin(
        &[16, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
        None,
        "b",
    )
    .unwrap_err();
    assert!(e.to_string().contains("negative length"), "{e}");
}

#[test]
fn out_of_range_ids_are_errors() {
    let Some(data) = testdata::shared_data("out_of_range_ids_are_errors") else {
        return;
    };
    let tok = SpmTokenizer::from_model_file(data.join("llama2-tokenizer/tokenizer.model")).unwrap();
    let e = tok.decode(&[1, 15043, 32000]).unwrap_err();
    assert!(
        matches!(
            e,
            TokenizerError::IdOutOfRange {
                id: 32000,
                vocab_size: 32000
            }
        ),
        "{e}"
    );
    assert!(tok.decode(&[u32::MAX]).is_err());
    assert!(tok.piece_bytes(32000).is_err());
    assert!(tok.piece(40000).is_err());
    assert!(tok.decode_piece(None, 32000).is_err());
    let mut d = tokenizer::StreamDecoder::new();
    assert!(d.push(&tok, 32000).is_err());
    assert!(SpmTokenizer::from_model_file(data.join("no-such-file.model")).is_err());
}
