//! Splitting text into words before BPE, by the Llama 3 and GPT-2 regexes.
//!
//! The regexes are evaluated by hand: at each position the alternatives are tried in order,
//! exactly as a backtracking regex engine does, with the character classes of
//! [`crate::char_class`]. Every character is matched by some alternative, so the words cover
//! the text (the regex is used with `tokenizers`' "isolated" split behaviour).
//!
//! Llama 3:
//! `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//!
//! GPT-2:
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

use crate::char_class::{class, is_letter, is_number, is_other, is_space, Class};

/// The Llama 3 pre-tokenizer regex, as written in `tokenizer.json`.
pub const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The GPT-2 pre-tokenizer regex (also what `tokenizers`' ByteLevel pre-tokenizer uses).
pub const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// How text is cut into words before merging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PreTokenizer {
    /// The Llama 3 regex (GGUF `tokenizer.ggml.pre` "llama-bpe").
    Llama3,
    /// The GPT-2 regex (GGUF "default", "gpt-2").
    Gpt2,
    /// No splitting: each stretch of text is one word (Llama 2 style `tokenizer.json`).
    Whole,
}

/// GGUF pre-tokenizer names and what they mean.
const GGUF_NAMES: &[(&str, PreTokenizer)] = &[
    ("llama-bpe", PreTokenizer::Llama3),
    ("llama3", PreTokenizer::Llama3),
    ("llama-v3", PreTokenizer::Llama3),
    ("default", PreTokenizer::Gpt2),
    ("gpt-2", PreTokenizer::Gpt2),
    ("gpt2", PreTokenizer::Gpt2),
];

/// The known GGUF names, for error messages.
pub(crate) const GGUF_NAME_LIST: &str = "llama-bpe, llama3, llama-v3, default, gpt-2, gpt2";

impl PreTokenizer {
    /// The pre-tokenizer a GGUF `tokenizer.ggml.pre` value names; `None` when unknown.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        GGUF_NAMES.iter().find(|(n, _)| *n == name).map(|&(_, p)| p)
    }

    /// The pre-tokenizer whose regex is `pattern` (the exact text of a `tokenizer.json`
    /// Split pattern); `None` for any other regex.
    pub fn from_pattern(pattern: &str) -> Option<Self> {
        if pattern == LLAMA3_PATTERN {
            Some(Self::Llama3)
        } else if pattern == GPT2_PATTERN {
            Some(Self::Gpt2)
        } else {
            None
        }
    }

    /// Calls `word` with each word of `text`, in order; the words cover `text` exactly.
    pub(crate) fn split<'a>(self, text: &'a str, mut word: impl FnMut(&'a str)) {
        let end_of: fn(&str, usize) -> usize = match self {
            Self::Llama3 => llama3_end,
            Self::Gpt2 => gpt2_end,
            Self::Whole => {
                if !text.is_empty() {
                    word(text);
                }
                return;
            }
        };
        let mut pos = 0;
        while pos < text.len() {
            let end = end_of(text, pos);
            word(&text[pos..end]);
            pos = end;
        }
    }
}

/// The character at byte offset `pos` (a character boundary), if any.
#[inline]
fn char_at(s: &str, pos: usize) -> Option<char> {
    s[pos..].chars().next()
}

/// The end of the run of characters satisfying `f` that starts at `pos`.
#[inline]
fn run_end(s: &str, pos: usize, f: impl Fn(char) -> bool) -> usize {
    s[pos..]
        .char_indices()
        .find(|&(_, c)| !f(c))
        .map_or(s.len(), |(i, _)| pos + i)
}

/// The end of at most `max` characters satisfying `f` from `pos`.
fn run_end_max(s: &str, pos: usize, max: usize, f: impl Fn(char) -> bool) -> usize {
    let mut end = pos;
    for c in s[pos..].chars().take(max) {
        if !f(c) {
            break;
        }
        end += c.len_utf8();
    }
    end
}

/// Lowercases `c` for the case-insensitive contractions (simple case folding onto the
/// letters s, t, r, e, v, m, l, d: ASCII capitals and U+017F LATIN SMALL LETTER LONG S).
fn fold(c: char) -> char {
    match c {
        'A'..='Z' => c.to_ascii_lowercase(),
        '\u{17F}' => 's',
        _ => c,
    }
}

/// Length of a contraction suffix (`s t re ve m ll d`) at the start of `rest`, which follows
/// an apostrophe.
fn contraction_len(rest: &str, case_insensitive: bool) -> Option<usize> {
    let f = |c: char| if case_insensitive { fold(c) } else { c };
    let mut chars = rest.chars();
    let a = chars.next()?;
    match f(a) {
        's' | 't' | 'm' | 'd' => Some(a.len_utf8()),
        first @ ('r' | 'v' | 'l') => {
            let b = chars.next()?;
            let want = if first == 'l' { 'l' } else { 'e' };
            (f(b) == want).then(|| a.len_utf8() + b.len_utf8())
        }
        _ => None,
    }
}

/// End of the whitespace match at `start` (the character there is whitespace).
///
/// With `line_rule` (Llama 3's `\s*[\r\n]+`): a run containing CR or LF ends after its last
/// CR/LF. Otherwise `\s+(?!\S)`: a run at the end of the text is taken whole, a longer run
/// before a non-space leaves its last character for the next word; a single space before a
/// non-space is `\s+` alone.
fn space_end(s: &str, start: usize, line_rule: bool) -> usize {
    let mut end = start;
    let mut last_start = start;
    let mut count = 0usize;
    let mut after_line = None;
    for (i, c) in s[start..].char_indices() {
        if !is_space(c) {
            break;
        }
        last_start = start + i;
        end = last_start + c.len_utf8();
        count += 1;
        if line_rule && (c == '\r' || c == '\n') {
            after_line = Some(end);
        }
    }
    if let Some(e) = after_line {
        return e;
    }
    if end == s.len() || count == 1 {
        end
    } else {
        last_start
    }
}

/// End of the Llama 3 regex match starting at `start`.
fn llama3_end(s: &str, start: usize) -> usize {
    let Some(c0) = char_at(s, start) else {
        return s.len();
    };
    let p1 = start + c0.len_utf8();
    if c0 == '\'' {
        if let Some(n) = contraction_len(&s[p1..], true) {
            return p1 + n;
        }
    }
    let c1 = char_at(s, p1);
    match class(c0) {
        // [^\r\n\p{L}\p{N}]?\p{L}+ without the optional character.
        Class::Letter => return run_end(s, p1, is_letter),
        // \p{N}{1,3}
        Class::Number => return run_end_max(s, p1, 2, is_number),
        _ => {}
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+ with it.
    if c0 != '\r' && c0 != '\n' && c1.is_some_and(is_letter) {
        return run_end(s, p1, is_letter);
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    let other_from = if is_other(c0) {
        Some(start)
    } else if c0 == ' ' && c1.is_some_and(is_other) {
        Some(p1)
    } else {
        None
    };
    if let Some(from) = other_from {
        let end = run_end(s, from, is_other);
        return run_end(s, end, |c| c == '\r' || c == '\n');
    }
    space_end(s, start, true)
}

/// End of the GPT-2 regex match starting at `start`.
fn gpt2_end(s: &str, start: usize) -> usize {
    let Some(c0) = char_at(s, start) else {
        return s.len();
    };
    let p1 = start + c0.len_utf8();
    if c0 == '\'' {
        if let Some(n) = contraction_len(&s[p1..], false) {
            return p1 + n;
        }
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
    let (from, cls) = match char_at(s, p1) {
        Some(c1) if c0 == ' ' && class(c1) != Class::Space => (p1, class(c1)),
        _ => (start, class(c0)),
    };
    match cls {
        Class::Letter => run_end(s, from, is_letter),
        Class::Number => run_end(s, from, is_number),
        Class::Other => run_end(s, from, is_other),
        Class::Space => space_end(s, start, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(p: PreTokenizer, text: &str) -> Vec<&str> {
        let mut v = Vec::new();
        p.split(text, |w| v.push(w));
        v
    }

    #[test]
    fn llama3_splits() {
        let l = PreTokenizer::Llama3;
        assert_eq!(words(l, "Hello world"), ["Hello", " world"]);
        assert_eq!(words(l, "Hello  world"), ["Hello", " ", " world"]);
        assert_eq!(words(l, "1234567"), ["123", "456", "7"]);
        assert_eq!(words(l, "DON'T it's"), ["DON", "'T", " it", "'s"]);
        assert_eq!(words(l, "a \n b"), ["a", " \n", " b"]);
        assert_eq!(words(l, "x!!\n\ny"), ["x", "!!\n\n", "y"]);
        assert_eq!(words(l, "a  \t1"), ["a", "  ", "\t", "1"]);
        assert_eq!(words(l, "end   "), ["end", "   "]);
        assert_eq!(words(l, "(hello"), ["(hello"]);
        assert_eq!(words(l, "...hi"), ["...", "hi"]);
        assert_eq!(words(l, " 'x"), [" '", "x"]);
        assert_eq!(words(l, "cafe\u{301}"), ["cafe", "\u{301}"]);
        assert_eq!(words(l, ""), Vec::<&str>::new());
    }

    #[test]
    fn gpt2_splits() {
        let g = PreTokenizer::Gpt2;
        assert_eq!(words(g, "Hello world"), ["Hello", " world"]);
        assert_eq!(words(g, "1234567 89"), ["1234567", " 89"]);
        assert_eq!(words(g, "DON'T it's"), ["DON", "'", "T", " it", "'s"]);
        assert_eq!(words(g, "a \n b"), ["a", " \n", " b"]);
        assert_eq!(words(g, "a  b"), ["a", " ", " b"]);
        assert_eq!(words(g, "x!!\n\ny"), ["x", "!!", "\n", "\n", "y"]);
    }

    #[test]
    fn names() {
        assert_eq!(
            PreTokenizer::from_gguf_name("llama-bpe"),
            Some(PreTokenizer::Llama3)
        );
        assert_eq!(
            PreTokenizer::from_gguf_name("default"),
            Some(PreTokenizer::Gpt2)
        );
        assert_eq!(PreTokenizer::from_gguf_name("qwen2"), None);
        assert_eq!(
            PreTokenizer::from_pattern(LLAMA3_PATTERN),
            Some(PreTokenizer::Llama3)
        );
    }
}
