//! The BPE merge: normalized text in, token ids out.
//!
//! Same algorithm as SentencePiece's BPE model: the text is split into characters
//! (user-defined pieces are matched first, longest first, and never merged); a priority queue
//! holds every adjacent pair whose concatenation is a piece, best score first and leftmost on
//! ties; popping a pair merges it in a doubly linked list of symbols and queues the two new
//! neighbour pairs. Stale queue entries are recognised by the lengths of their two symbols.
//! Pieces of kind [`TokenKind::Unused`] may be formed on the way but are split back into the
//! two symbols they were last formed from. A final symbol that is no piece is spelled as
//! `<0xXX>` byte tokens (byte fallback) or as the unknown token, consecutive unknowns merging
//! into one.
//!
//! The text is cut into stretches wherever no merge can cross (see [`Lexicon::encode`]), so the
//! queue stays small and a whole corpus encodes as fast as its sentences would.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::hash::{FxHashMap, FxHashSet};
use crate::vocab::{byte_of_piece, TokenKind, Vocab};

/// No neighbour.
const NONE: u32 = u32::MAX;

/// Longest stretch (in bytes) merged in one pass, which keeps symbol offsets in 32 bits;
/// a longer one is cut at a character boundary.
const MAX_PASS_BYTES: usize = 1 << 31;

/// The piece tables the merge needs, built once from a [`Vocab`].
#[derive(Debug, Clone)]
pub(crate) struct Lexicon {
    /// Pieces merging may produce: normal, user-defined and unused.
    mergeable: FxHashMap<Box<str>, u32>,
    /// The other pieces (control, unknown, byte), looked up first for a final symbol.
    reserved: FxHashMap<Box<str>, u32>,
    /// Longest mergeable piece, in bytes.
    max_piece_len: usize,
    /// Longest user-defined piece, in bytes (0: none).
    max_user_len: usize,
    scores: Vec<f32>,
    kinds: Vec<TokenKind>,
    /// Id of the `<0xXX>` token for each byte, when byte fallback is on.
    byte_ids: [Option<u32>; 256],
    byte_fallback: bool,
    unk: Option<u32>,
    /// Adjacent character pairs found inside some mergeable piece.
    bigrams: FxHashSet<u64>,
    /// Whether text may be merged in independent stretches (no unused pieces).
    split_stretches: bool,
}

/// Buffers reused from one stretch of text to the next.
#[derive(Default)]
struct Work {
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Pair>,
    /// Unused piece id -> (start, left len, right len) of the pair it was last formed from.
    unmerge: FxHashMap<u32, (u32, u32, u32)>,
}

/// Key of an adjacent character pair.
fn bigram(a: char, b: char) -> u64 {
    (u64::from(a as u32) << 32) | u64::from(b as u32)
}

/// One symbol of the linked list: a byte range of the normalized text.
#[derive(Clone, Copy)]
struct Symbol {
    start: u32,
    len: u32,
    prev: u32,
    next: u32,
    frozen: bool,
}

/// A queued candidate merge of symbols `left` and `right` into a piece of `len` bytes.
#[derive(Clone, Copy)]
struct Pair {
    score: f32,
    left: u32,
    right: u32,
    len: u32,
}

impl Ord for Pair {
    fn cmp(&self, other: &Self) -> Ordering {
        // Highest score first, then leftmost.
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pair {}

impl Lexicon {
    /// Builds the tables. The first of duplicate pieces wins.
    pub(crate) fn new(v: &Vocab) -> Self {
        let mut mergeable = FxHashMap::default();
        let mut reserved = FxHashMap::default();
        let mut byte_ids = [None; 256];
        let mut max_piece_len = 0;
        let mut max_user_len = 0;
        let mut bigrams = FxHashSet::default();
        let mut has_unused = false;
        for (id, (piece, kind)) in v.pieces.iter().zip(&v.kinds).enumerate() {
            let id = id as u32;
            if *kind == TokenKind::Byte && v.byte_fallback {
                if let Some(b) = byte_of_piece(piece) {
                    byte_ids[b as usize].get_or_insert(id);
                }
            }
            if piece.is_empty() {
                continue;
            }
            if kind.is_mergeable() {
                has_unused |= *kind == TokenKind::Unused;
                let mut chars = piece.chars();
                if let Some(mut a) = chars.next() {
                    for b in chars {
                        bigrams.insert(bigram(a, b));
                        a = b;
                    }
                }
                mergeable.entry(piece.as_str().into()).or_insert(id);
                max_piece_len = max_piece_len.max(piece.len());
                if *kind == TokenKind::UserDefined {
                    max_user_len = max_user_len.max(piece.len());
                }
            } else {
                reserved.entry(piece.as_str().into()).or_insert(id);
            }
        }
        Self {
            mergeable,
            reserved,
            max_piece_len,
            max_user_len,
            scores: v.scores.clone(),
            kinds: v.kinds.clone(),
            byte_ids,
            byte_fallback: v.byte_fallback,
            unk: v.unk,
            bigrams,
            split_stretches: !has_unused,
        }
    }

    /// The id of a piece of any kind (reserved pieces first), if it is one.
    pub(crate) fn piece_id(&self, piece: &str) -> Option<u32> {
        self.reserved
            .get(piece)
            .or_else(|| self.mergeable.get(piece))
            .copied()
    }

    /// Appends the ids of normalized text `text` to `out`.
    ///
    /// The text is merged in independent stretches: between two adjacent characters that
    /// appear next to each other in no mergeable piece, no merge can ever cross, so each side
    /// evolves alone and the merge order within each (score, then position) is unchanged.
    /// This keeps the queue small and the result identical. (When the vocabulary has unused
    /// pieces, whose splitting depends on the global merge order, the text is merged whole.)
    pub(crate) fn encode(&self, text: &str, out: &mut Vec<u32>) {
        let mut work = Work::default();
        let mut prev_unk = false;
        let mut seg_start = 0;
        let mut pos = 0;
        let mut prev: Option<(char, bool)> = None;
        while pos < text.len() {
            let rest = &text[pos..];
            let first = rest.chars().next().unwrap_or_default();
            let (len, frozen) = match self.longest_user_defined(rest) {
                Some(n) => (n, true),
                None => (first.len_utf8(), false),
            };
            if let Some((prev_char, prev_frozen)) = prev {
                let cut = pos - seg_start + len > MAX_PASS_BYTES
                    || (self.split_stretches
                        && (prev_frozen
                            || frozen
                            || !self.bigrams.contains(&bigram(prev_char, first))));
                if cut {
                    self.merge(&text[seg_start..pos], &mut work, out, &mut prev_unk);
                    seg_start = pos;
                }
            }
            work.symbols.push(Symbol {
                start: (pos - seg_start) as u32,
                len: len as u32,
                prev: NONE,
                next: NONE,
                frozen,
            });
            // For a frozen symbol the character does not matter: it cuts on both sides.
            let last = rest[..len].chars().next_back().unwrap_or_default();
            prev = Some((last, frozen));
            pos += len;
        }
        if !work.symbols.is_empty() {
            self.merge(&text[seg_start..], &mut work, out, &mut prev_unk);
        }
    }

    /// Merges the symbols collected in `work` (which cover `text`) and emits their ids.
    fn merge(&self, text: &str, work: &mut Work, out: &mut Vec<u32>, prev_unk: &mut bool) {
        let Work {
            symbols,
            queue,
            unmerge,
        } = work;
        let n = symbols.len() as u32;
        for (i, s) in symbols.iter_mut().enumerate() {
            let i = i as u32;
            s.prev = if i == 0 { NONE } else { i - 1 };
            s.next = if i + 1 == n { NONE } else { i + 1 };
        }
        queue.clear();
        unmerge.clear();
        for i in 1..n {
            self.queue_pair(text, symbols, i - 1, i, queue, unmerge);
        }
        while let Some(top) = queue.pop() {
            let (l, r) = (top.left as usize, top.right as usize);
            let (left, right) = (symbols[l], symbols[r]);
            if left.len == 0 || right.len == 0 || left.len + right.len != top.len {
                continue;
            }
            symbols[l].len = top.len;
            symbols[l].next = right.next;
            if right.next != NONE {
                symbols[right.next as usize].prev = top.left;
            }
            symbols[r].len = 0;
            let (prev, next) = (symbols[l].prev, symbols[l].next);
            self.queue_pair(text, symbols, prev, top.left, queue, unmerge);
            self.queue_pair(text, symbols, top.left, next, queue, unmerge);
        }
        let mut i = 0;
        while i != NONE {
            let s = symbols[i as usize];
            self.emit(text, s.start, s.len, unmerge, out, prev_unk);
            i = s.next;
        }
        symbols.clear();
    }

    /// Length of the longest user-defined piece that `text` starts with.
    fn longest_user_defined(&self, text: &str) -> Option<usize> {
        if self.max_user_len == 0 {
            return None;
        }
        let limit = text.len().min(self.max_user_len);
        (1..=limit).rev().find(|&n| {
            text.is_char_boundary(n)
                && self
                    .mergeable
                    .get(&text[..n])
                    .is_some_and(|&id| self.kinds[id as usize] == TokenKind::UserDefined)
        })
    }

    /// Queues the merge of symbols `l` and `r` if their concatenation is a piece.
    fn queue_pair(
        &self,
        text: &str,
        symbols: &[Symbol],
        l: u32,
        r: u32,
        queue: &mut BinaryHeap<Pair>,
        unmerge: &mut FxHashMap<u32, (u32, u32, u32)>,
    ) {
        if l == NONE || r == NONE {
            return;
        }
        let (left, right) = (symbols[l as usize], symbols[r as usize]);
        if left.frozen || right.frozen {
            return;
        }
        let len = left.len + right.len;
        if len as usize > self.max_piece_len {
            return;
        }
        let start = left.start as usize;
        let Some(&id) = self.mergeable.get(&text[start..start + len as usize]) else {
            return;
        };
        queue.push(Pair {
            score: self.scores[id as usize],
            left: l,
            right: r,
            len,
        });
        if self.kinds[id as usize] == TokenKind::Unused {
            unmerge.insert(id, (left.start, left.len, right.len));
        }
    }

    /// Appends the ids of one final symbol, splitting unused pieces back apart.
    fn emit(
        &self,
        text: &str,
        start: u32,
        len: u32,
        unmerge: &FxHashMap<u32, (u32, u32, u32)>,
        out: &mut Vec<u32>,
        prev_unk: &mut bool,
    ) {
        let piece = &text[start as usize..(start + len) as usize];
        let id = self.piece_id(piece);
        if let Some(id) = id {
            if self.kinds[id as usize] == TokenKind::Unused {
                if let Some(&(s, l, r)) = unmerge.get(&id) {
                    self.emit(text, s, l, unmerge, out, prev_unk);
                    self.emit(text, s + l, r, unmerge, out, prev_unk);
                    return;
                }
            }
        }
        let id = id.or(self.unk);
        let is_unk =
            id.is_none() || id.is_some_and(|i| self.kinds[i as usize] == TokenKind::Unknown);
        if is_unk && self.byte_fallback {
            for b in piece.bytes() {
                if let Some(byte_id) = self.byte_ids[b as usize].or(self.unk) {
                    out.push(byte_id);
                }
            }
        } else if let Some(id) = id {
            if !(is_unk && *prev_unk) {
                out.push(id);
            }
        }
        *prev_unk = is_unk;
    }
}
