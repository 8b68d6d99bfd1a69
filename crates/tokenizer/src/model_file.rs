//! SentencePiece's `tokenizer.model`: a serialized `ModelProto`, read into a [`Vocab`].
//!
//! Only what encoding and decoding need is read: the pieces (text, score, type), the trainer
//! spec's model type, special ids, byte fallback and unknown surface, and the normalizer
//! spec's whitespace flags. Unknown fields of every wire type are skipped. Defaults are the
//! schema's (`add_dummy_prefix`, `remove_extra_whitespaces` and `escape_whitespaces` default to
//! true, `model_type` to UNIGRAM, `unk_id`/`bos_id`/`eos_id` to 0/1/2).

use std::path::Path;

use crate::error::{Result, TokenizerError};
use crate::proto::{Reader, Wire};
use crate::vocab::{TokenKind, Vocab, DEFAULT_UNK_SURFACE};

/// `TrainerSpec.model_type` value for BPE, the only one supported.
const MODEL_TYPE_BPE: i32 = 2;

/// Reads and parses a SentencePiece `tokenizer.model` file.
pub fn load_model_file(path: impl AsRef<Path>) -> Result<Vocab> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_model_proto(&bytes, &path.display().to_string())
}

/// Parses the bytes of a SentencePiece `tokenizer.model`; `origin` names them in errors.
pub fn parse_model_proto(bytes: &[u8], origin: &str) -> Result<Vocab> {
    let mut r = Reader::new(bytes, origin);
    let mut pieces = Vec::new();
    let mut scores = Vec::new();
    let mut kinds = Vec::new();
    let mut trainer = TrainerSpec::default();
    let mut normalizer = NormalizerSpec::default();
    while !r.is_done() {
        let at = r.offset();
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect(at, "ModelProto", field, wire, Wire::Len)?;
                let (piece, score, kind) = read_piece(&mut r.message()?)?;
                pieces.push(piece);
                scores.push(score);
                kinds.push(kind);
            }
            2 => {
                r.expect(at, "ModelProto", field, wire, Wire::Len)?;
                trainer.read(&mut r.message()?)?;
            }
            3 => {
                r.expect(at, "ModelProto", field, wire, Wire::Len)?;
                normalizer.read(&mut r.message()?)?;
            }
            _ => r.skip(field, wire)?,
        }
    }

    if trainer.model_type != MODEL_TYPE_BPE {
        let name = match trainer.model_type {
            1 => "UNIGRAM",
            3 => "WORD",
            4 => "CHAR",
            _ => "unknown",
        };
        return Err(TokenizerError::UnsupportedModelType {
            origin: origin.to_string(),
            model_type: trainer.model_type,
            name,
        });
    }
    let unsupported = |what: String| TokenizerError::UnsupportedNormalizer {
        origin: origin.to_string(),
        what,
    };
    if normalizer.charsmap_len > 0 {
        return Err(unsupported(format!(
            "precompiled character map of {} bytes (only the identity normalizer is implemented)",
            normalizer.charsmap_len
        )));
    }
    if trainer.treat_whitespace_as_suffix {
        return Err(unsupported("treat_whitespace_as_suffix".into()));
    }

    let n = pieces.len();
    let special = |name: &str, id: i32| -> Result<Option<u32>> {
        match u32::try_from(id) {
            Err(_) => Ok(None),
            Ok(id) if (id as usize) < n => Ok(Some(id)),
            Ok(id) => Err(TokenizerError::InvalidVocab {
                origin: origin.to_string(),
                what: format!("trainer_spec.{name} {id} is not below the {n} pieces"),
            }),
        }
    };
    // The unknown token is the piece of type UNKNOWN, as SentencePiece defines it.
    let unk = match kinds.iter().position(|k| *k == TokenKind::Unknown) {
        Some(i) => Some(i as u32),
        None => special("unk_id", trainer.unk_id)?,
    };
    let vocab = Vocab {
        bos: special("bos_id", trainer.bos_id)?,
        eos: special("eos_id", trainer.eos_id)?,
        unk,
        add_dummy_prefix: normalizer.add_dummy_prefix,
        remove_extra_whitespaces: normalizer.remove_extra_whitespaces,
        escape_whitespaces: normalizer.escape_whitespaces,
        byte_fallback: trainer.byte_fallback,
        unk_surface: trainer.unk_surface,
        pieces,
        scores,
        kinds,
    };
    vocab.validate(origin)?;
    Ok(vocab)
}

/// One `ModelProto.SentencePiece`: piece (1), score (2), type (3).
fn read_piece(r: &mut Reader<'_>) -> Result<(String, f32, TokenKind)> {
    let mut piece = String::new();
    let mut score = 0.0f32;
    let mut kind = TokenKind::Normal;
    while !r.is_done() {
        let at = r.offset();
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect(at, "SentencePiece", field, wire, Wire::Len)?;
                piece = r.string()?.to_string();
            }
            2 => {
                r.expect(at, "SentencePiece", field, wire, Wire::Fixed32)?;
                score = r.float()?;
            }
            3 => {
                r.expect(at, "SentencePiece", field, wire, Wire::Varint)?;
                let code = r.varint()? as i64;
                kind = TokenKind::from_code(code)
                    .ok_or_else(|| r.error_at(at, format!("unknown piece type {code}")))?;
            }
            _ => r.skip(field, wire)?,
        }
    }
    Ok((piece, score, kind))
}

/// The `TrainerSpec` fields that matter for encoding and decoding.
struct TrainerSpec {
    model_type: i32,
    treat_whitespace_as_suffix: bool,
    byte_fallback: bool,
    unk_id: i32,
    bos_id: i32,
    eos_id: i32,
    unk_surface: String,
}

impl Default for TrainerSpec {
    fn default() -> Self {
        Self {
            model_type: 1,
            treat_whitespace_as_suffix: false,
            byte_fallback: false,
            unk_id: 0,
            bos_id: 1,
            eos_id: 2,
            unk_surface: DEFAULT_UNK_SURFACE.to_string(),
        }
    }
}

impl TrainerSpec {
    fn read(&mut self, r: &mut Reader<'_>) -> Result<()> {
        while !r.is_done() {
            let at = r.offset();
            let (field, wire) = r.key()?;
            let int = |r: &mut Reader<'_>| -> Result<i32> {
                r.expect(at, "TrainerSpec", field, wire, Wire::Varint)?;
                // int32 and enum values are sign-extended to 64 bits on the wire.
                Ok(r.varint()? as i64 as i32)
            };
            match field {
                3 => self.model_type = int(r)?,
                24 => self.treat_whitespace_as_suffix = int(r)? != 0,
                35 => self.byte_fallback = int(r)? != 0,
                40 => self.unk_id = int(r)?,
                41 => self.bos_id = int(r)?,
                42 => self.eos_id = int(r)?,
                44 => {
                    r.expect(at, "TrainerSpec", field, wire, Wire::Len)?;
                    self.unk_surface = r.string()?.to_string();
                }
                _ => r.skip(field, wire)?,
            }
        }
        Ok(())
    }
}

/// The `NormalizerSpec` fields that matter for encoding and decoding.
struct NormalizerSpec {
    charsmap_len: usize,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        Self {
            charsmap_len: 0,
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

impl NormalizerSpec {
    fn read(&mut self, r: &mut Reader<'_>) -> Result<()> {
        while !r.is_done() {
            let at = r.offset();
            let (field, wire) = r.key()?;
            let flag = |r: &mut Reader<'_>| -> Result<bool> {
                r.expect(at, "NormalizerSpec", field, wire, Wire::Varint)?;
                Ok(r.varint()? != 0)
            };
            match field {
                2 => {
                    r.expect(at, "NormalizerSpec", field, wire, Wire::Len)?;
                    self.charsmap_len = r.bytes()?.len();
                }
                3 => self.add_dummy_prefix = flag(r)?,
                4 => self.remove_extra_whitespaces = flag(r)?,
                5 => self.escape_whitespaces = flag(r)?,
                _ => r.skip(field, wire)?,
            }
        }
        Ok(())
    }
}
