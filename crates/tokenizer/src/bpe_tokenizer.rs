//! The merge-rank BPE tokenizer: Llama 3 / GPT-2 byte-level BPE, and Llama 2 style
//! `tokenizer.json` files (spaces as `▁`, byte fallback), matching Hugging Face `tokenizers`.
//!
//! Encoding runs the `tokenizers` pipeline: added tokens are cut out of the raw text; each
//! stretch between them is normalized (spaces to `▁` and a leading `▁`, for SentencePiece-style
//! vocabularies), split into words by the pre-tokenizer, and each word is merged on its own.

use std::borrow::Cow;
use std::path::Path;

use crate::added::{Matcher, Segment};
use crate::bpe_model::{BpeModel, WordWork};
use crate::bpe_vocab::{BpeVocab, Prepend, Spaces};
use crate::byte_level::token_bytes;
use crate::error::{Result, TokenizerError};
use crate::hash::FxHashMap;
use crate::hf_json;
use crate::normalize::SPACE_SYMBOL;
use crate::tokenize::{EncodeOptions, LeadingSpace, Piece, Surface, Tokenize};
use crate::vocab::{byte_of_piece, TokenKind};

/// `▁` as a char.
const SPACE_CHAR: char = '\u{2581}';

/// A merge-rank BPE tokenizer (see the module documentation).
#[derive(Debug, Clone)]
pub struct BpeTokenizer {
    vocab: BpeVocab,
    model: BpeModel,
    /// Added tokens matched on the raw text.
    raw_added: Matcher,
    /// Added tokens matched on normalized text, by their normalized text.
    normalized_added: Matcher,
    /// Token text -> id: added tokens first, then the first of duplicate tokens.
    ids: FxHashMap<Box<str>, u32>,
    surfaces: Vec<Surface>,
}

impl BpeTokenizer {
    /// Builds a tokenizer from plain vocabulary data (e.g. GGUF's `tokenizer.ggml.*` arrays).
    pub fn from_vocab(vocab: BpeVocab) -> Result<Self> {
        Self::from_vocab_in(vocab, "vocabulary")
    }

    /// Loads a Hugging Face `tokenizer.json`. BOS/EOS come from its post-processor, else from
    /// a `tokenizer_config.json` beside it, else from well-known token names.
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let vocab = hf_json::load(path)?;
        Self::from_vocab_in(vocab, &path.display().to_string())
    }

    /// Parses the text of a `tokenizer.json`; `origin` names it in errors. Nothing beside it is
    /// read.
    pub fn from_tokenizer_json_str(json: &str, origin: &str) -> Result<Self> {
        let vocab = hf_json::parse(json, origin, None)?;
        Self::from_vocab_in(vocab, origin)
    }

    /// Builds the tokenizer; `origin` names the source in errors.
    pub fn from_vocab_in(vocab: BpeVocab, origin: &str) -> Result<Self> {
        vocab.validate(origin)?;
        let mut ids: FxHashMap<Box<str>, u32> = FxHashMap::default();
        for t in &vocab.added {
            ids.entry(t.content.as_str().into()).or_insert(t.id);
        }
        for (id, text) in vocab.tokens.iter().enumerate() {
            ids.entry(text.as_str().into()).or_insert(id as u32);
        }
        let model = BpeModel::new(&vocab, &ids, origin)?;
        let raw_added = Matcher::new(
            vocab
                .added
                .iter()
                .filter(|t| !t.normalized)
                .map(|t| (t.content.clone(), t.clone())),
        );
        let normalized_added = Matcher::new(vocab.added.iter().filter(|t| t.normalized).map(|t| {
            (
                normalize_stretch(&vocab.spaces, &t.content).into_owned(),
                t.clone(),
            )
        }));
        let special: Vec<bool> = {
            let mut s = vec![false; vocab.len()];
            for t in vocab.added.iter().filter(|t| t.special) {
                s[t.id as usize] = true;
            }
            s
        };
        let surfaces = (0..vocab.len())
            .map(|i| surface(&vocab, i, special[i]))
            .collect();
        Ok(Self {
            vocab,
            model,
            raw_added,
            normalized_added,
            ids,
            surfaces,
        })
    }

    /// The vocabulary this tokenizer was built from.
    pub fn vocab(&self) -> &BpeVocab {
        &self.vocab
    }

    /// Number of distinct merges.
    pub fn merge_count(&self) -> usize {
        self.model.merge_count()
    }

    /// The kind of token `id`.
    pub fn kind(&self, id: u32) -> Result<TokenKind> {
        self.check(id)?;
        Ok(self.vocab.kinds[id as usize])
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

    /// Encodes one stretch of raw text between added tokens; `at_start`: it starts the input.
    fn encode_stretch(&self, raw: &str, at_start: bool, work: &mut WordWork, out: &mut Vec<u32>) {
        let normalized = normalize_stretch(&self.vocab.spaces, raw);
        if self.normalized_added.is_empty() {
            self.pre_tokenize(&normalized, at_start, work, out);
            return;
        }
        let mut segments = Vec::new();
        self.normalized_added
            .split(&normalized, true, &mut segments);
        for seg in segments {
            match seg {
                Segment::Token(id) => out.push(id),
                Segment::Text(a, b) => {
                    self.pre_tokenize(&normalized[a..b], at_start && a == 0, work, out)
                }
            }
        }
    }

    /// Metaspace rewriting, splitting into words, and merging each word.
    fn pre_tokenize(&self, text: &str, first: bool, work: &mut WordWork, out: &mut Vec<u32>) {
        let (text, split) = match self.vocab.spaces {
            Spaces::Plain => (Cow::Borrowed(text), false),
            Spaces::Metaspace { prepend, split } => (metaspace(text, prepend, first), split),
        };
        let mut word = |w: &str| self.model.encode_word(w, work, out);
        if !split {
            self.vocab.pre.split(&text, &mut word);
            return;
        }
        // Each `▁` starts a new piece ("merged with next").
        let mut start = 0;
        for (i, c) in text.char_indices() {
            if c == SPACE_CHAR && i > start {
                self.vocab.pre.split(&text[start..i], &mut word);
                start = i;
            }
        }
        self.vocab.pre.split(&text[start..], &mut word);
    }
}

/// The normalizer stage: with [`Prepend::EverySegment`] (a `Prepend` + `Replace` normalizer)
/// spaces become `▁` and a `▁` goes first; otherwise the text is unchanged.
fn normalize_stretch<'a>(spaces: &Spaces, raw: &'a str) -> Cow<'a, str> {
    match spaces {
        Spaces::Metaspace {
            prepend: Prepend::EverySegment,
            ..
        } if !raw.is_empty() => {
            let mut s = String::with_capacity(raw.len() + raw.len() / 2 + 3);
            s.push(SPACE_CHAR);
            s.push_str(&raw.replace(' ', SPACE_SYMBOL));
            Cow::Owned(s)
        }
        _ => Cow::Borrowed(raw),
    }
}

/// The Metaspace pre-tokenizer's rewriting of one piece (`first`: it starts the input).
fn metaspace(text: &str, prepend: Prepend, first: bool) -> Cow<'_, str> {
    if prepend == Prepend::EverySegment {
        // Done by the normalizer stage.
        return Cow::Borrowed(text);
    }
    let mut s = text.replace(' ', SPACE_SYMBOL);
    let wanted = match prepend {
        Prepend::Always => true,
        Prepend::First => first,
        Prepend::Never | Prepend::EverySegment => false,
    };
    if wanted && !s.is_empty() && !s.starts_with(SPACE_CHAR) {
        s.insert(0, SPACE_CHAR);
    }
    Cow::Owned(s)
}

/// What token `i` decodes to.
fn surface(v: &BpeVocab, i: usize, special: bool) -> Surface {
    let (text, kind) = (&v.tokens[i], v.kinds[i]);
    if special || kind == TokenKind::Control {
        return Surface::Control;
    }
    if v.byte_level {
        return match kind {
            TokenKind::UserDefined => Surface::Text(text.as_str().into()),
            _ => Surface::Bytes(token_bytes(text).into()),
        };
    }
    if kind == TokenKind::Byte && v.byte_fallback {
        if let Some(b) = byte_of_piece(text) {
            return Surface::Bytes(Box::new([b]));
        }
    }
    let spaced: Box<str> = text.replace(SPACE_CHAR, " ").into();
    if spaced.starts_with(' ') {
        Surface::WordStart(spaced)
    } else {
        Surface::Text(spaced)
    }
}

impl Tokenize for BpeTokenizer {
    fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        self.encode_with(
            text,
            EncodeOptions {
                add_bos,
                ..EncodeOptions::default()
            },
        )
    }

    fn encode_with(&self, text: &str, opts: EncodeOptions) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if opts.add_bos {
            out.extend(self.vocab.bos);
        }
        let mut segments = Vec::new();
        self.raw_added
            .split(text, opts.parse_special, &mut segments);
        let mut work = WordWork::default();
        for seg in segments {
            match seg {
                Segment::Token(id) => out.push(id),
                Segment::Text(a, b) => {
                    self.encode_stretch(&text[a..b], a == 0, &mut work, &mut out)
                }
            }
        }
        if opts.add_eos {
            out.extend(self.vocab.eos);
        }
        out
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
        self.vocab.leading_space
    }

    fn token_to_id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    fn special_tokens(&self) -> Vec<(String, u32)> {
        self.vocab
            .added
            .iter()
            .filter(|t| t.special)
            .map(|t| (t.content.clone(), t.id))
            .collect()
    }

    fn token_text(&self, id: u32) -> Result<&str> {
        self.check(id)?;
        Ok(&self.vocab.tokens[id as usize])
    }
}

/// Loads a Hugging Face `tokenizer.json` as a boxed [`Tokenize`].
pub fn load_tokenizer_json(path: impl AsRef<Path>) -> Result<Box<dyn Tokenize + Send + Sync>> {
    Ok(Box::new(BpeTokenizer::from_tokenizer_json(path)?))
}
