//! Plain data for a merge-rank BPE tokenizer (Llama 3 / GPT-2 byte-level, or a Llama 2 style
//! `tokenizer.json`): what GGUF `tokenizer.ggml.*` keys or a `tokenizer.json` are read into.

use crate::added::AddedToken;
use crate::error::{Result, TokenizerError};
use crate::pretokenizer::{PreTokenizer, GGUF_NAME_LIST};
use crate::tokenize::LeadingSpace;
use crate::vocab::TokenKind;

/// When a `▁` is put before a stretch of text (a "stretch" is the text between added tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prepend {
    /// Never.
    Never,
    /// Before the stretch at the very start of the input, unless it already starts with `▁`
    /// (`tokenizers` Metaspace, prepend_scheme "first").
    First,
    /// Before every stretch that does not already start with `▁` (Metaspace "always").
    Always,
    /// Before every non-empty stretch, unconditionally (the `Prepend("▁")` normalizer of older
    /// Llama `tokenizer.json` files; like SentencePiece's dummy prefix).
    EverySegment,
}

/// How spaces are treated before merging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Spaces {
    /// Spaces are ordinary characters (byte-level vocabularies).
    Plain,
    /// Spaces are spelled `▁` (U+2581) and a `▁` is put first as `prepend` says; with
    /// `split`, each `▁` also starts a new word.
    Metaspace {
        /// When a `▁` is put first.
        prepend: Prepend,
        /// Split the text before every `▁`.
        split: bool,
    },
}

/// A merge-rank BPE vocabulary as plain data.
///
/// Index `i` of `tokens` and `kinds` describes token id `i`. Token texts are spelled as the
/// source spells them: in GPT-2's byte alphabet for byte-level vocabularies (`Ġ` for a space),
/// with `▁` for spaces and `<0xXX>` byte tokens for SentencePiece-style ones; added tokens
/// (`<|eot_id|>`) as their literal text.
#[derive(Debug, Clone, PartialEq)]
pub struct BpeVocab {
    /// The text of each token.
    pub tokens: Vec<String>,
    /// The kind of each token (the GGUF `token_type` numbering; see [`TokenKind::from_code`]).
    pub kinds: Vec<TokenKind>,
    /// The merges, best first: merge `i` joins the two token texts into their concatenation.
    pub merges: Vec<(String, String)>,
    /// How text is cut into words.
    pub pre: PreTokenizer,
    /// Words are merged as bytes spelled in GPT-2's byte alphabet.
    pub byte_level: bool,
    /// Characters with no token become `<0xXX>` byte tokens (else the unknown token).
    pub byte_fallback: bool,
    /// A word that is itself a token is emitted whole, without merging (Llama 3).
    pub ignore_merges: bool,
    /// Consecutive unknown characters become one unknown token.
    pub fuse_unk: bool,
    /// How spaces are treated.
    pub spaces: Spaces,
    /// Tokens cut out of the text before merging. [`BpeVocab::new`] fills it from `kinds`:
    /// control and unknown tokens are special, user-defined ones are not.
    pub added: Vec<AddedToken>,
    /// Beginning-of-sequence token.
    pub bos: Option<u32>,
    /// End-of-sequence token.
    pub eos: Option<u32>,
    /// Unknown token.
    pub unk: Option<u32>,
    /// How decoding treats a space at the start of the output.
    pub leading_space: LeadingSpace,
}

impl BpeVocab {
    /// A byte-level vocabulary (GGUF `tokenizer.ggml.model` "gpt2"): byte-level merging with
    /// pre-tokenizer `pre`, no byte fallback, `ignore_merges` for Llama 3, added tokens from
    /// `kinds`, `unk` the first unknown token, no BOS/EOS (set them afterwards).
    pub fn new(
        tokens: Vec<String>,
        kinds: Vec<TokenKind>,
        merges: Vec<(String, String)>,
        pre: PreTokenizer,
    ) -> Self {
        let added = added_from_kinds(&tokens, &kinds);
        let unk = kinds
            .iter()
            .position(|k| *k == TokenKind::Unknown)
            .and_then(|i| u32::try_from(i).ok());
        Self {
            tokens,
            kinds,
            merges,
            pre,
            byte_level: true,
            byte_fallback: false,
            ignore_merges: pre == PreTokenizer::Llama3,
            fuse_unk: false,
            spaces: Spaces::Plain,
            added,
            bos: None,
            eos: None,
            unk,
            leading_space: LeadingSpace::Keep,
        }
    }

    /// A byte-level vocabulary from the values of GGUF keys, checked: `tokenizer.ggml.tokens`,
    /// `tokenizer.ggml.token_type` (all normal when absent), `tokenizer.ggml.merges` ("a b"
    /// strings), `tokenizer.ggml.pre` (GPT-2's regex when absent), and the BOS/EOS ids.
    /// `origin` names the source in errors.
    pub fn from_gguf(
        tokens: Vec<String>,
        token_types: Option<&[i32]>,
        merges: &[String],
        pre: Option<&str>,
        bos: Option<u32>,
        eos: Option<u32>,
        origin: &str,
    ) -> Result<Self> {
        let bad = |what: String| TokenizerError::InvalidVocab {
            origin: origin.to_string(),
            what,
        };
        let kinds = match token_types {
            None => vec![TokenKind::Normal; tokens.len()],
            Some(types) => {
                if types.len() != tokens.len() {
                    return Err(bad(format!(
                        "{} tokens but {} token types",
                        tokens.len(),
                        types.len()
                    )));
                }
                types
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| {
                        TokenKind::from_code(i64::from(t))
                            .ok_or_else(|| bad(format!("token {i} has unknown type {t}")))
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        };
        let merges = merges
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| bad(format!("merge {i} {m:?} is not two tokens and a space")))
            })
            .collect::<Result<Vec<_>>>()?;
        let name = pre.unwrap_or("default");
        let pre = PreTokenizer::from_gguf_name(name).ok_or_else(|| {
            TokenizerError::UnknownPreTokenizer {
                origin: origin.to_string(),
                name: name.to_string(),
                known: GGUF_NAME_LIST,
            }
        })?;
        let mut v = Self::new(tokens, kinds, merges, pre);
        v.bos = bos;
        v.eos = eos;
        Ok(v)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Checks that the arrays agree, that every id is in range and that every added token's
    /// text is its token's. Merges are checked when the tokenizer is built.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |what: String| TokenizerError::InvalidVocab {
            origin: origin.to_string(),
            what,
        };
        let n = self.tokens.len();
        if n == 0 {
            return Err(bad("no tokens".into()));
        }
        if u32::try_from(n).is_err() {
            return Err(bad(format!("{n} tokens do not fit 32-bit ids")));
        }
        if self.kinds.len() != n {
            return Err(bad(format!("{n} tokens but {} kinds", self.kinds.len())));
        }
        for (name, id) in [("bos", self.bos), ("eos", self.eos), ("unk", self.unk)] {
            if let Some(id) = id {
                if id as usize >= n {
                    return Err(bad(format!("{name} id {id} is not below {n}")));
                }
            }
        }
        for t in &self.added {
            let Some(text) = self.tokens.get(t.id as usize) else {
                return Err(bad(format!(
                    "added token {:?} has id {} (not below {n})",
                    t.content, t.id
                )));
            };
            if *text != t.content {
                return Err(bad(format!(
                    "added token {} is {:?} but token {} is {text:?}",
                    t.id, t.content, t.id
                )));
            }
            if t.content.is_empty() {
                return Err(bad(format!("added token {} is empty", t.id)));
            }
        }
        Ok(())
    }
}

/// Added tokens implied by token kinds: control and unknown tokens are special, user-defined
/// tokens are matched always.
fn added_from_kinds(tokens: &[String], kinds: &[TokenKind]) -> Vec<AddedToken> {
    tokens
        .iter()
        .zip(kinds)
        .enumerate()
        .filter(|(_, (text, _))| !text.is_empty())
        .filter_map(|(id, (text, kind))| {
            let special = match kind {
                TokenKind::Control | TokenKind::Unknown => true,
                TokenKind::UserDefined => false,
                _ => return None,
            };
            Some(AddedToken::new(
                u32::try_from(id).ok()?,
                text.clone(),
                special,
            ))
        })
        .collect()
}
