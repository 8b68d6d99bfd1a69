//! Added tokens (special and user-defined) and cutting them out of text before BPE.
//!
//! Matching follows Hugging Face `tokenizers`: scanning left to right, the first position
//! where some token text occurs wins, and there the longest token; a `single_word` token is
//! skipped when a word character touches it; `lstrip` / `rstrip` make the token swallow the
//! whitespace before / after it. Special tokens take part only when special-token parsing is
//! asked for; the others always do.

use crate::char_class::{is_space, is_word_char};
use crate::hash::FxHashMap;

/// A token matched in text before BPE runs (`tokenizer.json` `added_tokens`, or GGUF control
/// and user-defined tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedToken {
    /// Its id.
    pub id: u32,
    /// Its literal text.
    pub content: String,
    /// A special (control) token: matched only with special-token parsing, and dropped when
    /// decoding skips special tokens.
    pub special: bool,
    /// Swallows the whitespace before it.
    pub lstrip: bool,
    /// Swallows the whitespace after it.
    pub rstrip: bool,
    /// Matches only when no word character touches it.
    pub single_word: bool,
    /// Matched against normalized text rather than the raw input.
    pub normalized: bool,
}

impl AddedToken {
    /// A token with no stripping, not single-word, matched on the raw text.
    pub fn new(id: u32, content: impl Into<String>, special: bool) -> Self {
        Self {
            id,
            content: content.into(),
            special,
            lstrip: false,
            rstrip: false,
            single_word: false,
            normalized: false,
        }
    }
}

/// A piece of text after cutting out added tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Ordinary text: a byte range of the input.
    Text(usize, usize),
    /// An added token.
    Token(u32),
}

/// Finds added tokens in text.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    /// The tokens, with the text they are matched by.
    tokens: Vec<(String, AddedToken)>,
    /// Match text -> index in `tokens` (the first of duplicates).
    by_text: FxHashMap<Box<str>, usize>,
    /// Distinct match lengths in bytes, longest first.
    lengths: Vec<usize>,
    /// Bytes some match text starts with.
    first: [bool; 256],
}

impl Matcher {
    /// A matcher for `tokens`, each matched by the text given with it.
    pub(crate) fn new(tokens: impl IntoIterator<Item = (String, AddedToken)>) -> Self {
        let mut m = Self {
            tokens: Vec::new(),
            by_text: FxHashMap::default(),
            lengths: Vec::new(),
            first: [false; 256],
        };
        for (text, token) in tokens {
            if text.is_empty() {
                continue;
            }
            m.first[text.as_bytes()[0] as usize] = true;
            if !m.lengths.contains(&text.len()) {
                m.lengths.push(text.len());
            }
            let index = m.tokens.len();
            m.by_text.entry(text.as_str().into()).or_insert(index);
            m.tokens.push((text, token));
        }
        m.lengths.sort_unstable_by(|a, b| b.cmp(a));
        m
    }

    /// The match text and id of every special token.
    pub(crate) fn special_tokens(&self) -> Vec<(String, u32)> {
        self.tokens
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(text, t)| (text.clone(), t.id))
            .collect()
    }

    /// Whether there is nothing to match.
    pub(crate) fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The longest token text at `pos`, if any (special tokens only when `special`): its
    /// length and token.
    fn longest_at(&self, text: &str, pos: usize, special: bool) -> Option<(usize, &AddedToken)> {
        let rest = &text.as_bytes()[pos..];
        if !rest.first().is_some_and(|&b| self.first[b as usize]) {
            return None;
        }
        self.lengths.iter().find_map(|&n| {
            let end = pos + n;
            if end > text.len() || !text.is_char_boundary(end) {
                return None;
            }
            let &i = self.by_text.get(&text[pos..end])?;
            let token = &self.tokens[i].1;
            (special || !token.special).then_some((n, token))
        })
    }

    /// Cuts `text` into ordinary text and added tokens, appending the pieces to `out`.
    /// Special tokens are recognised only when `parse_special` is set.
    pub(crate) fn split(&self, text: &str, parse_special: bool, out: &mut Vec<Segment>) {
        if self.is_empty() {
            out.push(Segment::Text(0, text.len()));
            return;
        }
        let mut done = 0;
        let mut pos = 0;
        while pos < text.len() {
            let Some((len, token)) = self.longest_at(text, pos, parse_special) else {
                pos += text[pos..].chars().next().map_or(1, char::len_utf8);
                continue;
            };
            let (mut start, mut stop) = (pos, pos + len);
            if token.single_word {
                let before = text[..start].chars().next_back();
                let after = text[stop..].chars().next();
                if before.is_some_and(is_word_char) || after.is_some_and(is_word_char) {
                    // As a regex engine would, carry on after the rejected match.
                    pos = stop;
                    continue;
                }
            }
            if token.lstrip {
                let trimmed = text[..start].trim_end_matches(is_space).len();
                start = trimmed.max(done);
            }
            if token.rstrip {
                stop = text.len() - text[stop..].trim_start_matches(is_space).len();
            }
            if done < start {
                out.push(Segment::Text(done, start));
            }
            out.push(Segment::Token(token.id));
            done = stop;
            pos = stop;
        }
        if done < text.len() {
            out.push(Segment::Text(done, text.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(tokens: Vec<AddedToken>) -> Matcher {
        Matcher::new(tokens.into_iter().map(|t| (t.content.clone(), t)))
    }

    fn run(m: &Matcher, text: &str, special: bool) -> Vec<String> {
        let mut segs = Vec::new();
        m.split(text, special, &mut segs);
        segs.iter()
            .map(|s| match *s {
                Segment::Text(a, b) => text[a..b].to_string(),
                Segment::Token(id) => format!("#{id}"),
            })
            .collect()
    }

    #[test]
    fn longest_first_and_special_switch() {
        let m = matcher(vec![
            AddedToken::new(1, "<|a|>", true),
            AddedToken::new(2, "<|a|><|a|>", true),
            AddedToken::new(3, "word", false),
        ]);
        assert_eq!(run(&m, "x<|a|><|a|>y", true), ["x", "#2", "y"]);
        assert_eq!(run(&m, "x<|a|><|a|>y", false), ["x<|a|><|a|>y"]);
        assert_eq!(run(&m, "a word!", false), ["a ", "#3", "!"]);
        assert_eq!(run(&m, "", true), Vec::<String>::new());
    }

    #[test]
    fn strip_and_single_word() {
        let mut mask = AddedToken::new(7, "<mask>", true);
        mask.lstrip = true;
        mask.rstrip = true;
        let mut w = AddedToken::new(8, "ony", false);
        w.single_word = true;
        let m = matcher(vec![mask, w]);
        assert_eq!(
            run(&m, "I saw a <mask>  cat", true),
            ["I saw a", "#7", "cat"]
        );
        assert_eq!(run(&m, "Anthony ony", true), ["Anthony ", "#8"]);
    }
}
