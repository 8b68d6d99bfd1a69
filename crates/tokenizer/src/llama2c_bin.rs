//! llama2.c's `tokenizer.bin`, read into a [`Vocab`].
//!
//! Layout (little-endian): `i32 max_token_length`, then per token `f32 score`, `i32 len`,
//! `len` bytes of UTF-8. The vocabulary size is not stored: the caller passes it, or tokens are
//! read until the end of the file. The file stores no token types and spells spaces as `' '`;
//! they are rebuilt as SentencePiece has them: `' '` becomes `▁`, `<0xXX>` pieces are byte
//! tokens, and ids 0, 1, 2 are `<unk>` (unknown), `<s>` and `</s>` (control, BOS and EOS).

use std::path::Path;

use crate::error::{Result, TokenizerError};
use crate::vocab::{byte_of_piece, TokenKind, Vocab};

/// Reads and parses a llama2.c `tokenizer.bin` of `vocab_size` tokens (or all it holds).
pub fn load_llama2c_bin(path: impl AsRef<Path>, vocab_size: Option<usize>) -> Result<Vocab> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_llama2c_bin(&bytes, vocab_size, &path.display().to_string())
}

/// Parses the bytes of a llama2.c `tokenizer.bin`; `origin` names them in errors.
pub fn parse_llama2c_bin(bytes: &[u8], vocab_size: Option<usize>, origin: &str) -> Result<Vocab> {
    let mut cur = Cursor {
        bytes,
        pos: 0,
        origin,
    };
    let max_len = cur.i32("max_token_length")?;
    if max_len < 0 {
        return Err(cur.error(0, format!("negative max_token_length {max_len}")));
    }
    let mut pieces = Vec::new();
    let mut scores = Vec::new();
    loop {
        match vocab_size {
            Some(n) if pieces.len() == n => break,
            None if cur.pos == bytes.len() => break,
            _ => {}
        }
        let index = pieces.len();
        let score = f32::from_bits(cur.i32(&format!("score of token {index}"))? as u32);
        let len_at = cur.pos;
        let len = cur.i32(&format!("length of token {index}"))?;
        let len = usize::try_from(len)
            .map_err(|_| cur.error(len_at, format!("token {index} has negative length {len}")))?;
        let text_at = cur.pos;
        let raw = cur.take(len, &format!("text of token {index}"))?;
        let text = std::str::from_utf8(raw).map_err(|e| {
            cur.error(
                text_at + e.valid_up_to(),
                format!("token {index} is not valid UTF-8"),
            )
        })?;
        pieces.push(text.replace(' ', "\u{2581}"));
        scores.push(score);
    }

    let mut kinds: Vec<TokenKind> = pieces
        .iter()
        .map(|p| match byte_of_piece(p) {
            Some(_) => TokenKind::Byte,
            None => TokenKind::Normal,
        })
        .collect();
    for (id, (piece, kind)) in [
        ("<unk>", TokenKind::Unknown),
        ("<s>", TokenKind::Control),
        ("</s>", TokenKind::Control),
    ]
    .into_iter()
    .enumerate()
    {
        if id < pieces.len() {
            pieces[id] = piece.to_string();
            kinds[id] = kind;
        }
    }
    let n = pieces.len();
    let mut vocab = Vocab::new(pieces, scores, kinds);
    vocab.unk = (n > 0).then_some(0);
    vocab.bos = (n > 1).then_some(1);
    vocab.eos = (n > 2).then_some(2);
    vocab.validate(origin)?;
    Ok(vocab)
}

/// A bounds-checked little-endian reader.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    origin: &'a str,
}

impl<'a> Cursor<'a> {
    fn error(&self, offset: usize, what: String) -> TokenizerError {
        TokenizerError::Llama2cBin {
            origin: self.origin.to_string(),
            offset,
            what,
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(self.error(
                self.pos,
                format!("{what} needs {n} bytes but only {left} remain"),
            ));
        }
        let bytes: &'a [u8] = self.bytes;
        let out = &bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tokens: &[(f32, &str)]) -> Vec<u8> {
        let mut out = 16i32.to_le_bytes().to_vec();
        for (score, text) in tokens {
            out.extend_from_slice(&score.to_le_bytes());
            out.extend_from_slice(&(text.len() as i32).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        out
    }

    #[test]
    fn rebuilds_kinds_and_spaces() {
        let bytes = file(&[
            (0.0, "<unk>"),
            (0.0, "\n<s>\n"),
            (0.0, "\n</s>\n"),
            (0.0, "<0x41>"),
            (-1.0, " a"),
        ]);
        let v = parse_llama2c_bin(&bytes, None, "t").unwrap();
        assert_eq!(v.pieces, ["<unk>", "<s>", "</s>", "<0x41>", "\u{2581}a"]);
        use TokenKind::*;
        assert_eq!(v.kinds, [Unknown, Control, Control, Byte, Normal]);
        assert_eq!((v.unk, v.bos, v.eos), (Some(0), Some(1), Some(2)));
        assert!(v.byte_fallback && v.add_dummy_prefix && !v.remove_extra_whitespaces);
        assert_eq!(parse_llama2c_bin(&bytes, Some(3), "t").unwrap().len(), 3);
    }

    #[test]
    fn truncation_is_an_error() {
        let bytes = file(&[(0.0, "<unk>"), (0.0, "<s>"), (0.0, "</s>"), (0.0, "abc")]);
        for cut in 0..bytes.len() {
            let r = parse_llama2c_bin(&bytes[..cut], Some(4), "t");
            assert!(r.is_err(), "cut {cut}");
        }
        assert!(parse_llama2c_bin(&bytes, Some(5), "t").is_err());
        assert!(parse_llama2c_bin(&bytes[..bytes.len() - 1], None, "t").is_err());
    }
}
