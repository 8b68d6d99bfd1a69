//! Turning runs of raw bytes (from byte tokens) into text, one character at a time.
//!
//! A byte that cannot start a complete, valid character becomes one U+FFFD and the next byte
//! is tried: SentencePiece's rule, which gives one U+FFFD per bad byte.

/// U+FFFD REPLACEMENT CHARACTER.
pub(crate) const REPLACEMENT: char = '\u{FFFD}';

/// What the bytes at the start of a buffer hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// A complete valid character of this many bytes.
    Char(usize),
    /// The first byte can never start a valid character here.
    Invalid,
    /// A valid prefix of a character: more bytes could complete it.
    Incomplete,
}

/// Classifies the first character of `bytes` (which must not be empty).
pub(crate) fn step(bytes: &[u8]) -> Step {
    let b0 = bytes[0];
    let (len, lo, hi) = match b0 {
        0x00..=0x7f => return Step::Char(1),
        0xc2..=0xdf => (2, 0x80, 0xbf),
        0xe0 => (3, 0xa0, 0xbf),
        0xed => (3, 0x80, 0x9f),
        0xe1..=0xef => (3, 0x80, 0xbf),
        0xf0 => (4, 0x90, 0xbf),
        0xf4 => (4, 0x80, 0x8f),
        0xf1..=0xf3 => (4, 0x80, 0xbf),
        _ => return Step::Invalid,
    };
    for (i, &b) in bytes.iter().enumerate().take(len).skip(1) {
        let ok = if i == 1 {
            (lo..=hi).contains(&b)
        } else {
            (0x80..=0xbf).contains(&b)
        };
        if !ok {
            return Step::Invalid;
        }
    }
    if bytes.len() < len {
        Step::Incomplete
    } else {
        Step::Char(len)
    }
}

/// Appends the text of `bytes[..]` to `out`; returns how many bytes were consumed. With
/// `flush`, everything is consumed (an incomplete tail becomes U+FFFD per byte); otherwise an
/// incomplete character at the end is left for more bytes.
pub(crate) fn drain(bytes: &[u8], flush: bool, out: &mut String) -> usize {
    let mut pos = 0;
    while pos < bytes.len() {
        match step(&bytes[pos..]) {
            Step::Char(n) => {
                // `step` only accepts well-formed characters.
                if let Ok(s) = std::str::from_utf8(&bytes[pos..pos + n]) {
                    out.push_str(s);
                }
                pos += n;
            }
            Step::Incomplete if !flush => break,
            Step::Invalid | Step::Incomplete => {
                out.push(REPLACEMENT);
                pos += 1;
            }
        }
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy(bytes: &[u8]) -> String {
        let mut s = String::new();
        assert_eq!(drain(bytes, true, &mut s), bytes.len());
        s
    }

    #[test]
    fn one_replacement_per_bad_byte() {
        assert_eq!(lossy("é🦙".as_bytes()), "é🦙");
        assert_eq!(lossy(&[0xf0, 0x9f, 0xa6]), "\u{FFFD}\u{FFFD}\u{FFFD}");
        assert_eq!(lossy(&[0xf0, 0x9f, 0x41]), "\u{FFFD}\u{FFFD}A");
        assert_eq!(lossy(&[0xc0, 0x80]), "\u{FFFD}\u{FFFD}");
        assert_eq!(lossy(&[0xed, 0xa0, 0x80]), "\u{FFFD}\u{FFFD}\u{FFFD}");
        assert_eq!(lossy("\u{FFFD}".as_bytes()), "\u{FFFD}");
    }

    #[test]
    fn agrees_with_std_on_every_short_sequence() {
        // Every 1- and 2-byte sequence, and 3-byte ones with a few lead bytes.
        let mut seqs: Vec<Vec<u8>> = (0..=255u8).map(|a| vec![a]).collect();
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                seqs.push(vec![a, b]);
            }
        }
        for a in [0xe0u8, 0xe1, 0xed, 0xef, 0xf0, 0xf4, 0xf5] {
            for b in 0..=255u8 {
                for c in [0x41u8, 0x80, 0x9f, 0xa0, 0xbf, 0xc0] {
                    seqs.push(vec![a, b, c]);
                }
            }
        }
        for s in seqs {
            let valid = std::str::from_utf8(&s).is_ok();
            let mut out = String::new();
            drain(&s, true, &mut out);
            assert_eq!(valid, !out.contains(REPLACEMENT), "{s:x?}");
            if let Err(e) = std::str::from_utf8(&s) {
                // Incomplete exactly when std says the input ended early.
                let tail = &s[e.valid_up_to()..];
                assert_eq!(
                    step(tail) == Step::Incomplete,
                    e.error_len().is_none(),
                    "{s:x?}"
                );
            }
        }
    }
}
