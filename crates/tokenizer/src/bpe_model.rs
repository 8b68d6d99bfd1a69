//! One word to token ids: the BPE model of Hugging Face `tokenizers` (`models.BPE`).
//!
//! A word is spelled as initial symbols (one per byte for byte-level vocabularies, one per
//! character otherwise, with `<0xXX>` byte tokens or the unknown token for characters that
//! have no token), then merged by rank. With `ignore_merges`, a word that is itself a token
//! is that token.
//!
//! A long word (a whole text, for vocabularies without a splitting pre-tokenizer) is merged in
//! independent stretches: between two adjacent known characters (bytes, for byte-level
//! vocabularies) that appear next to each other in no merged token, no merge can ever cross,
//! so each side evolves alone and the result is the same as merging the word whole.

use crate::bpe_vocab::BpeVocab;
use crate::byte_level::{byte_char, token_bytes};
use crate::error::{Result, TokenizerError};
use crate::hash::{FxHashMap, FxHashSet};
use crate::merge_rank::MergeTable;
use crate::vocab::TokenKind;

/// Key of two adjacent units (byte values or character codes).
#[inline]
fn unit_pair(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

/// Words longer than this (in bytes) are not cached.
const CACHE_MAX_WORD: usize = 64;

/// The tables one word's encoding needs.
#[derive(Debug, Clone)]
pub(crate) struct BpeModel {
    /// Word spelling -> id, for every token but control tokens. The spelling is the token's
    /// bytes for byte-level vocabularies, its text otherwise.
    word_ids: FxHashMap<Box<[u8]>, u32>,
    /// Byte-level: the token of each byte. Otherwise: the `<0xXX>` token of each byte, when
    /// byte fallback is on.
    byte_ids: [Option<u32>; 256],
    merges: MergeTable,
    /// Adjacent units (bytes or characters) found inside some merged token.
    bigrams: FxHashSet<u64>,
    byte_level: bool,
    byte_fallback: bool,
    ignore_merges: bool,
    fuse_unk: bool,
    unk: Option<u32>,
}

/// Buffers and the word cache, reused over one `encode` call.
#[derive(Default)]
pub(crate) struct WordWork {
    symbols: Vec<u32>,
    cache: FxHashMap<Box<str>, Box<[u32]>>,
}

impl BpeModel {
    /// Builds the tables; `all_ids` maps every token text to its id. Fails when a merge names
    /// a token that does not exist or whose concatenation is no token.
    pub(crate) fn new(
        v: &BpeVocab,
        all_ids: &FxHashMap<Box<str>, u32>,
        origin: &str,
    ) -> Result<Self> {
        let mut word_ids = FxHashMap::default();
        for (id, (text, kind)) in v.tokens.iter().zip(&v.kinds).enumerate() {
            if *kind == TokenKind::Control || text.is_empty() {
                continue;
            }
            let spelling: Box<[u8]> = if v.byte_level && *kind != TokenKind::UserDefined {
                token_bytes(text).into()
            } else {
                text.as_bytes().into()
            };
            word_ids.entry(spelling).or_insert(id as u32);
        }
        let mut byte_ids = [None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let b = b as u8;
            *slot = if v.byte_level {
                all_ids.get(byte_char(b).to_string().as_str()).copied()
            } else if v.byte_fallback {
                all_ids.get(format!("<0x{b:02X}>").as_str()).copied()
            } else {
                None
            };
        }
        let bad = |what: String| TokenizerError::InvalidVocab {
            origin: origin.to_string(),
            what,
        };
        let mut merges = MergeTable::default();
        let mut bigrams = FxHashSet::default();
        for (rank, (a, b)) in v.merges.iter().enumerate() {
            let id_of = |t: &str| {
                all_ids
                    .get(t)
                    .copied()
                    .ok_or_else(|| bad(format!("merge {rank} ({a:?} {b:?}): {t:?} is not a token")))
            };
            let (left, right) = (id_of(a)?, id_of(b)?);
            let text = format!("{a}{b}");
            let merged = id_of(&text)?;
            if v.byte_level {
                for w in token_bytes(&text).windows(2) {
                    bigrams.insert(unit_pair(u32::from(w[0]), u32::from(w[1])));
                }
            } else {
                let mut chars = text.chars();
                if let Some(mut x) = chars.next() {
                    for y in chars {
                        bigrams.insert(unit_pair(x as u32, y as u32));
                        x = y;
                    }
                }
            }
            let rank = u32::try_from(rank).map_err(|_| bad("too many merges".into()))?;
            merges.insert(left, right, rank, merged);
        }
        Ok(Self {
            word_ids,
            byte_ids,
            merges,
            bigrams,
            byte_level: v.byte_level,
            byte_fallback: v.byte_fallback,
            ignore_merges: v.ignore_merges,
            fuse_unk: v.fuse_unk,
            unk: v.unk,
        })
    }

    /// Number of distinct merges.
    pub(crate) fn merge_count(&self) -> usize {
        self.merges.len()
    }

    /// Appends the ids of `word` (cached per call in `work`).
    pub(crate) fn encode_word(&self, word: &str, work: &mut WordWork, out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if self.ignore_merges {
            if let Some(&id) = self.word_ids.get(word.as_bytes()) {
                out.push(id);
                return;
            }
        }
        if word.len() <= CACHE_MAX_WORD {
            self.encode_piece(word, work, out);
            return;
        }
        let mut start = 0;
        let mut prev: Option<(u32, bool)> = None;
        let mut cut_before = |i: usize, unit: u32, known: bool, work: &mut WordWork| {
            if let Some((p, p_known)) = prev {
                if p_known
                    && known
                    && i > start
                    && word.is_char_boundary(i)
                    && !self.bigrams.contains(&unit_pair(p, unit))
                {
                    self.encode_piece(&word[start..i], work, out);
                    start = i;
                }
            }
            prev = Some((unit, known));
        };
        if self.byte_level {
            for (i, &b) in word.as_bytes().iter().enumerate() {
                let known = self.byte_ids[b as usize].is_some();
                cut_before(i, u32::from(b), known, work);
            }
        } else {
            let mut buf = [0u8; 4];
            for (i, c) in word.char_indices() {
                let known = self
                    .word_ids
                    .contains_key(c.encode_utf8(&mut buf).as_bytes());
                cut_before(i, c as u32, known, work);
            }
        }
        self.encode_piece(&word[start..], work, out);
    }

    /// Appends the ids of a stretch no merge crosses out of, cached when short.
    fn encode_piece(&self, piece: &str, work: &mut WordWork, out: &mut Vec<u32>) {
        let cacheable = piece.len() <= CACHE_MAX_WORD;
        if cacheable {
            if let Some(ids) = work.cache.get(piece) {
                out.extend_from_slice(ids);
                return;
            }
        }
        let symbols = &mut work.symbols;
        symbols.clear();
        self.spell(piece, symbols);
        self.merges.merge(symbols);
        out.extend_from_slice(symbols);
        if cacheable {
            work.cache.insert(piece.into(), symbols.as_slice().into());
        }
    }

    /// The initial symbols of `word`, with `tokenizers`' unknown-token handling: a pending
    /// unknown token is written when the next known character comes (byte-fallback
    /// characters do not flush it) or at the end; with `fuse_unk` a run of unknown characters
    /// is one unknown token; without an unknown token they are dropped.
    fn spell(&self, word: &str, symbols: &mut Vec<u32>) {
        let mut pending: Option<u32> = None;
        let unknown = |symbols: &mut Vec<u32>, pending: &mut Option<u32>| {
            let Some(unk) = self.unk else { return };
            match pending.take() {
                Some(p) if self.fuse_unk => *pending = Some(p),
                Some(p) => {
                    symbols.push(p);
                    *pending = Some(unk);
                }
                None => *pending = Some(unk),
            }
        };
        if self.byte_level {
            for &b in word.as_bytes() {
                match self.byte_ids[b as usize] {
                    Some(id) => {
                        symbols.extend(pending.take());
                        symbols.push(id);
                    }
                    None => unknown(symbols, &mut pending),
                }
            }
        } else {
            let mut buf = [0u8; 4];
            for c in word.chars() {
                let s = c.encode_utf8(&mut buf);
                if let Some(&id) = self.word_ids.get(s.as_bytes()) {
                    symbols.extend(pending.take());
                    symbols.push(id);
                    continue;
                }
                if self.byte_fallback && s.bytes().all(|b| self.byte_ids[b as usize].is_some()) {
                    symbols.extend(s.bytes().filter_map(|b| self.byte_ids[b as usize]));
                    continue;
                }
                unknown(symbols, &mut pending);
            }
        }
        symbols.extend(pending);
    }
}
