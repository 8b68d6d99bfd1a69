//! Text normalization before merging: dummy prefix, whitespace collapsing, space escaping.
//!
//! This is SentencePiece's identity normalizer: no Unicode normalization, only the three
//! whitespace rules of its `NormalizerSpec`.

/// SentencePiece's visible space, U+2581.
pub const SPACE_SYMBOL: &str = "\u{2581}";

/// The whitespace rules applied before merging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Normalizer {
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

impl Normalizer {
    /// Normalizes `text`. Empty input (or input of spaces only, when extra whitespace is
    /// removed) gives an empty string: no dummy prefix is added to nothing.
    pub(crate) fn normalize(&self, text: &str) -> String {
        let space = if self.escape_whitespaces {
            SPACE_SYMBOL
        } else {
            " "
        };
        let input = if self.remove_extra_whitespaces {
            text.trim_start_matches(' ')
        } else {
            text
        };
        if input.is_empty() {
            return String::new();
        }
        let mut out = String::with_capacity(input.len() + input.len() / 4 + space.len());
        if self.add_dummy_prefix {
            out.push_str(space);
        }
        if !self.remove_extra_whitespaces {
            for (i, part) in input.split(' ').enumerate() {
                if i > 0 {
                    out.push_str(space);
                }
                out.push_str(part);
            }
            return out;
        }
        let mut prev_space = true;
        for c in input.chars() {
            if c == ' ' {
                if !prev_space {
                    out.push_str(space);
                }
                prev_space = true;
            } else {
                out.push(c);
                prev_space = false;
            }
        }
        // Trailing spaces go, as escaped spaces: an input that ends in a literal `▁` loses it
        // too, exactly as SentencePiece does.
        while out.ends_with(space) {
            out.truncate(out.len() - space.len());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA: Normalizer = Normalizer {
        add_dummy_prefix: true,
        remove_extra_whitespaces: false,
        escape_whitespaces: true,
    };

    #[test]
    fn llama_rules() {
        assert_eq!(LLAMA.normalize(""), "");
        assert_eq!(LLAMA.normalize(" "), "\u{2581}\u{2581}");
        assert_eq!(
            LLAMA.normalize("a  b "),
            "\u{2581}a\u{2581}\u{2581}b\u{2581}"
        );
    }

    #[test]
    fn removes_extra_whitespace() {
        let n = Normalizer {
            remove_extra_whitespaces: true,
            ..LLAMA
        };
        assert_eq!(n.normalize("   "), "");
        assert_eq!(
            n.normalize("  a   b  \n c "),
            "\u{2581}a\u{2581}b\u{2581}\n\u{2581}c"
        );
        let plain = Normalizer {
            escape_whitespaces: false,
            add_dummy_prefix: false,
            ..n
        };
        assert_eq!(plain.normalize(" a  b "), "a b");
    }
}
