//! The character classes of the pre-tokenizer regexes: `\p{L}`, `\p{N}` and `\s`.
//!
//! `\p{L}` is every letter category (Lu, Ll, Lt, Lm, Lo) and `\p{N}` every number category
//! (Nd, Nl, No); `\s` is the Unicode `White_Space` property, which is what the regex engine of
//! Hugging Face `tokenizers` (Oniguruma) uses. Note that `char::is_alphabetic` is not `\p{L}`:
//! it also takes marks and letter-like numbers. A unit test checks these against the classes
//! recorded from `tokenizers` itself.

use unicode_general_category::{get_general_category, GeneralCategory as G};

/// Which of the regex classes a character is in (they do not overlap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// `\p{L}`.
    Letter,
    /// `\p{N}`.
    Number,
    /// `\s`.
    Space,
    /// Anything else: `[^\s\p{L}\p{N}]`.
    Other,
}

/// The class of `c`.
#[inline]
pub(crate) fn class(c: char) -> Class {
    if c.is_ascii() {
        return match c {
            'a'..='z' | 'A'..='Z' => Class::Letter,
            '0'..='9' => Class::Number,
            ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' => Class::Space,
            _ => Class::Other,
        };
    }
    if c.is_whitespace() {
        return Class::Space;
    }
    match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => Class::Letter,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => Class::Number,
        _ => Class::Other,
    }
}

/// `\p{L}`.
#[inline]
pub(crate) fn is_letter(c: char) -> bool {
    class(c) == Class::Letter
}

/// `\p{N}`.
#[inline]
pub(crate) fn is_number(c: char) -> bool {
    class(c) == Class::Number
}

/// `[^\s\p{L}\p{N}]`.
#[inline]
pub(crate) fn is_other(c: char) -> bool {
    class(c) == Class::Other
}

/// `\s`.
#[inline]
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// A regex word character (`\w`): letters, marks, decimal digits, connector punctuation and
/// the joiners. Used for the `single_word` rule of added tokens.
pub(crate) fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    if c.is_alphabetic() || c == '\u{200C}' || c == '\u{200D}' {
        return true;
    }
    matches!(
        get_general_category(c),
        G::NonspacingMark
            | G::SpacingMark
            | G::EnclosingMark
            | G::DecimalNumber
            | G::ConnectorPunctuation
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recorded ranges of one class, as a membership test.
    fn ranges(v: &serde_json::Value) -> Vec<(u32, u32)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_u64().unwrap() as u32, r[1].as_u64().unwrap() as u32))
            .collect()
    }

    fn contains(r: &[(u32, u32)], cp: u32) -> bool {
        let i = r.partition_point(|&(_, hi)| hi < cp);
        i < r.len() && r[i].0 <= cp
    }

    #[test]
    fn ascii() {
        assert_eq!(class('a'), Class::Letter);
        assert_eq!(class('7'), Class::Number);
        assert_eq!(class('\r'), Class::Space);
        assert_eq!(class('\''), Class::Other);
        assert_eq!(class('\u{1c}'), Class::Other);
        assert_eq!(class('\u{85}'), Class::Space);
        assert_eq!(class('\u{301}'), Class::Other);
        assert_eq!(class('\u{2167}'), Class::Number);
        assert_eq!(class('ſ'), Class::Letter);
    }

    /// Every code point is classified as the regex engine of `tokenizers` does.
    #[test]
    fn agrees_with_tokenizers_regex_engine() {
        let path = testdata::fixtures().join("tokenizers/expected.json");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let classes = &json["char_classes"];
        let (l, n, s) = (
            ranges(&classes["L"]),
            ranges(&classes["N"]),
            ranges(&classes["S"]),
        );
        let mut differ = Vec::new();
        for cp in 0..0x110000u32 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let want = if contains(&l, cp) {
                Class::Letter
            } else if contains(&n, cp) {
                Class::Number
            } else if contains(&s, cp) {
                Class::Space
            } else {
                Class::Other
            };
            if class(c) != want {
                differ.push((cp, class(c), want));
            }
        }
        // Both tables are Unicode 16 data today; a future Unicode version on one side may
        // move newly assigned code points, which this test would then list.
        assert!(
            differ.is_empty(),
            "{} code points differ (code point, ours, regex engine's), first {:x?}",
            differ.len(),
            &differ[..differ.len().min(20)]
        );
    }
}
