//! GPT-2's byte-level alphabet: every byte spelled as one printable character.
//!
//! Bytes that are printable in Latin-1 (`!`..=`~`, `¡`..=`¬`, `®`..=`ÿ`) stand for
//! themselves; the other 68 bytes, in increasing order, are U+0100, U+0101, ... (so a space is
//! `Ġ` U+0120 and a newline `Ċ` U+010A). Byte-level vocabularies spell their tokens in this
//! alphabet.

/// Whether byte `b` is spelled as the Latin-1 character of the same number.
const fn printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The character of each byte.
const BYTE_CHARS: [char; 256] = {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    let mut b = 0usize;
    while b < 256 {
        let code = if printable(b as u8) {
            b as u32
        } else {
            n += 1;
            255 + n
        };
        table[b] = match char::from_u32(code) {
            Some(c) => c,
            None => '\0',
        };
        b += 1;
    }
    table
};

/// Characters U+0000..U+0143 back to bytes (`None`: not in the alphabet).
const CHAR_BYTES: [Option<u8>; 324] = {
    let mut table = [None; 324];
    let mut b = 0usize;
    while b < 256 {
        table[BYTE_CHARS[b] as usize] = Some(b as u8);
        b += 1;
    }
    table
};

/// The alphabet character of byte `b`.
#[inline]
pub(crate) fn byte_char(b: u8) -> char {
    BYTE_CHARS[b as usize]
}

/// The byte an alphabet character stands for.
#[inline]
pub(crate) fn char_byte(c: char) -> Option<u8> {
    CHAR_BYTES.get(c as usize).copied().flatten()
}

/// The bytes a byte-level token spells. A character outside the alphabet (which a
/// well-formed vocabulary never has) stands for its own UTF-8 bytes.
pub(crate) fn token_bytes(token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    for c in token.chars() {
        match char_byte(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_alphabet() {
        assert_eq!(byte_char(b' '), '\u{120}');
        assert_eq!(byte_char(b'\n'), '\u{10A}');
        assert_eq!(byte_char(b'A'), 'A');
        assert_eq!(byte_char(0), '\u{100}');
        assert_eq!(byte_char(0x7F), '\u{121}');
        assert_eq!(byte_char(0xAD), '\u{143}');
        assert_eq!(byte_char(0xFF), '\u{FF}');
        for b in 0..=255u8 {
            assert_eq!(char_byte(byte_char(b)), Some(b));
        }
        assert_eq!(char_byte('\u{144}'), None);
        assert_eq!(char_byte(' '), None);
        assert_eq!(token_bytes("\u{120}hi"), b" hi");
    }
}
