//! The SentencePiece BPE tokenizer used by Llama 1 and 2 (and llama2.c).

use std::path::Path;

use crate::added::{AddedToken, Matcher, Segment};
use crate::bpe::Lexicon;
use crate::error::{Result, TokenizerError};
use crate::llama2c_bin::load_llama2c_bin;
use crate::model_file::load_model_file;
use crate::normalize::{Normalizer, SPACE_SYMBOL};
use crate::tokenize::{EncodeOptions, LeadingSpace, Piece, Surface, Tokenize};
use crate::vocab::{byte_of_piece, TokenKind, Vocab};

/// A SentencePiece BPE tokenizer, matching `sentencepiece` 0.2's `encode` and `decode`.
#[derive(Debug, Clone)]
pub struct SpmTokenizer {
    vocab: Vocab,
    lexicon: Lexicon,
    normalizer: Normalizer,
    surfaces: Vec<Surface>,
    /// Control and unknown pieces, recognised in text only with special-token parsing
    /// (user-defined pieces are always recognised, by the merge step).
    specials: Matcher,
}

impl SpmTokenizer {
    /// Builds a tokenizer from plain vocabulary data (e.g. GGUF's `tokenizer.ggml.*` arrays).
    pub fn from_vocab(vocab: Vocab) -> Result<Self> {
        Self::from_vocab_in(vocab, "vocabulary")
    }

    /// Loads SentencePiece's `tokenizer.model`.
    pub fn from_model_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_vocab_in(load_model_file(path)?, &path.display().to_string())
    }

    /// Loads llama2.c's `tokenizer.bin` of `vocab_size` tokens (or all the file holds).
    pub fn from_llama2c_bin(path: impl AsRef<Path>, vocab_size: Option<usize>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_vocab_in(
            load_llama2c_bin(path, vocab_size)?,
            &path.display().to_string(),
        )
    }

    fn from_vocab_in(vocab: Vocab, origin: &str) -> Result<Self> {
        vocab.validate(origin)?;
        let has_bytes = vocab.byte_fallback && vocab.kinds.contains(&TokenKind::Byte);
        if vocab.unk.is_none() && !has_bytes {
            return Err(TokenizerError::InvalidVocab {
                origin: origin.to_string(),
                what: "no unknown token and no byte tokens: some text could not be encoded".into(),
            });
        }
        let surfaces = vocab
            .pieces
            .iter()
            .zip(&vocab.kinds)
            .map(|(piece, kind)| surface(piece, *kind, &vocab.unk_surface))
            .collect();
        let specials = Matcher::new(
            vocab
                .pieces
                .iter()
                .zip(&vocab.kinds)
                .enumerate()
                .filter(|(_, (_, k))| matches!(k, TokenKind::Control | TokenKind::Unknown))
                .map(|(id, (p, _))| (p.clone(), AddedToken::new(id as u32, p.clone(), true))),
        );
        Ok(Self {
            specials,
            lexicon: Lexicon::new(&vocab),
            normalizer: Normalizer {
                add_dummy_prefix: vocab.add_dummy_prefix,
                remove_extra_whitespaces: vocab.remove_extra_whitespaces,
                escape_whitespaces: vocab.escape_whitespaces,
            },
            surfaces,
            vocab,
        })
    }

    /// The vocabulary this tokenizer was built from.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.vocab.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.vocab.eos
    }

    /// Encodes `text` (BOS first when `add_bos` is set and there is one).
    pub fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        let normalized = self.normalizer.normalize(text);
        let mut ids = Vec::with_capacity(normalized.len() / 3 + 1);
        if add_bos {
            ids.extend(self.vocab.bos);
        }
        self.lexicon.encode(&normalized, &mut ids);
        ids
    }

    /// Decodes ids to text, as `sentencepiece` does: control tokens vanish, byte tokens join
    /// into characters (U+FFFD per invalid byte), `▁` is a space, and the space the dummy
    /// prefix put before the first word is dropped. An id outside the vocabulary is an error.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        Tokenize::decode(self, ids)
    }

    /// The raw vocabulary text of token `id` (`▁` for spaces, `<0xXX>` for bytes).
    pub fn piece(&self, id: u32) -> Result<&str> {
        self.check(id)?;
        Ok(&self.vocab.pieces[id as usize])
    }

    /// The kind of token `id`.
    pub fn kind(&self, id: u32) -> Result<TokenKind> {
        self.check(id)?;
        Ok(self.vocab.kinds[id as usize])
    }

    /// The merge score of token `id`.
    pub fn score(&self, id: u32) -> Result<f32> {
        self.check(id)?;
        Ok(self.vocab.scores[id as usize])
    }

    /// The id of a vocabulary piece, spelled as in the vocabulary (`▁` for spaces).
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.lexicon.piece_id(piece)
    }

    /// The bytes token `id` contributes to decoded text on its own: the piece with `▁` as a
    /// space, the raw byte of a byte token, nothing for a control token, the unknown surface
    /// for the unknown token.
    pub fn piece_bytes(&self, id: u32) -> Result<Vec<u8>> {
        Tokenize::token_bytes(self, id)
    }

    /// The bytes of token `id` when it follows `prev` (`None`: first token), llama2.c style:
    /// after BOS, or at the very start, a piece's leading space is dropped.
    pub fn decode_piece(&self, prev: Option<u32>, id: u32) -> Result<Vec<u8>> {
        let mut bytes = self.piece_bytes(id)?;
        let at_start = prev.is_none() || prev == self.vocab.bos;
        if at_start && matches!(self.surfaces[id as usize], Surface::WordStart(_)) {
            bytes.remove(0);
        }
        Ok(bytes)
    }

    fn check(&self, id: u32) -> Result<()> {
        if (id as usize) < self.vocab.len() {
            Ok(())
        } else {
            Err(TokenizerError::IdOutOfRange {
                id,
                vocab_size: self.vocab.len(),
            })
        }
    }
}

/// What a token of `kind` spelled `piece` decodes to.
fn surface(piece: &str, kind: TokenKind, unk_surface: &str) -> Surface {
    match kind {
        TokenKind::Control => Surface::Control,
        TokenKind::Unknown => Surface::Text(unk_surface.into()),
        // Validated: every byte token is spelled <0xXX>.
        TokenKind::Byte => Surface::Bytes(Box::new([byte_of_piece(piece).unwrap_or(0)])),
        TokenKind::Normal | TokenKind::UserDefined | TokenKind::Unused => {
            let text = piece.replace(SPACE_SYMBOL, " ").into_boxed_str();
            if piece.starts_with(SPACE_SYMBOL) {
                Surface::WordStart(text)
            } else {
                Surface::Text(text)
            }
        }
    }
}

impl Tokenize for SpmTokenizer {
    fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        SpmTokenizer::encode(self, text, add_bos)
    }

    /// With `parse_special`, the text of control and unknown pieces (`<s>`, `</s>`, `<unk>`)
    /// becomes those tokens, and every stretch of text between them is encoded on its own,
    /// with its own dummy prefix (as llama.cpp and `tokenizers`' Llama normalizer do).
    fn encode_with(&self, text: &str, opts: EncodeOptions) -> Vec<u32> {
        let mut ids = if opts.parse_special && !self.specials.is_empty() {
            let mut ids = Vec::with_capacity(text.len() / 3 + 2);
            if opts.add_bos {
                ids.extend(self.vocab.bos);
            }
            let mut segments = Vec::new();
            self.specials.split(text, true, &mut segments);
            for seg in segments {
                match seg {
                    Segment::Token(id) => ids.push(id),
                    Segment::Text(a, b) => {
                        let normalized = self.normalizer.normalize(&text[a..b]);
                        self.lexicon.encode(&normalized, &mut ids);
                    }
                }
            }
            ids
        } else {
            SpmTokenizer::encode(self, text, opts.add_bos)
        };
        if opts.add_eos {
            ids.extend(self.vocab.eos);
        }
        ids
    }

    fn token_to_id(&self, text: &str) -> Option<u32> {
        self.lexicon.piece_id(text)
    }

    fn special_tokens(&self) -> Vec<(String, u32)> {
        self.specials.special_tokens()
    }

    fn token_text(&self, id: u32) -> Result<&str> {
        self.piece(id)
    }

    fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    fn bos(&self) -> Option<u32> {
        self.vocab.bos
    }

    fn eos(&self) -> Option<u32> {
        self.vocab.eos
    }

    fn token_piece(&self, id: u32) -> Result<Piece<'_>> {
        self.check(id)?;
        Ok(self.surfaces[id as usize].piece())
    }

    fn leading_space(&self) -> LeadingSpace {
        if self.vocab.remove_extra_whitespaces {
            LeadingSpace::StripAll
        } else if self.vocab.add_dummy_prefix {
            LeadingSpace::StripFirst
        } else {
            LeadingSpace::Keep
        }
    }
}
