//! Plain vocabulary data: what every tokenizer file format is read into.

use crate::error::{Result, TokenizerError};

/// The type of a vocabulary entry. The numbering of [`TokenKind::from_code`] (1..=6) is
/// SentencePiece's `ModelProto.SentencePiece.Type`, which GGUF's `tokenizer.ggml.token_type`
/// uses as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// An ordinary piece, found by merging.
    Normal,
    /// The unknown token (`<unk>`).
    Unknown,
    /// A control token (`<s>`, `</s>`): never produced by merging, decodes to nothing.
    Control,
    /// A piece the user asked to keep whole: matched before merging and never merged further.
    UserDefined,
    /// A reserved piece: merging may pass through it, but it is split again on output.
    Unused,
    /// One raw byte, spelled `<0xXX>`; used for characters that have no piece.
    Byte,
}

impl TokenKind {
    /// The kind for a SentencePiece / GGUF type code (1 normal, 2 unknown, 3 control,
    /// 4 user-defined, 5 unused, 6 byte); `None` for any other code.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => return None,
        })
    }

    /// The SentencePiece / GGUF type code of this kind (1..=6).
    pub fn code(self) -> i32 {
        match self {
            Self::Normal => 1,
            Self::Unknown => 2,
            Self::Control => 3,
            Self::UserDefined => 4,
            Self::Unused => 5,
            Self::Byte => 6,
        }
    }

    /// Whether the merge step may produce this kind (SentencePiece's "normal" pieces).
    pub(crate) fn is_mergeable(self) -> bool {
        matches!(self, Self::Normal | Self::UserDefined | Self::Unused)
    }
}

/// SentencePiece's default text for the unknown token in decoded output: `" ⁇ "`.
pub const DEFAULT_UNK_SURFACE: &str = " \u{2047} ";

/// A SentencePiece-style vocabulary as plain data.
///
/// Index `i` of `pieces`, `scores` and `kinds` describes token id `i`. Pieces spell spaces as
/// `▁` (U+2581), as SentencePiece and GGUF do; byte tokens are spelled `<0xXX>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    /// The text of each token.
    pub pieces: Vec<String>,
    /// The merge score of each token (higher merges first).
    pub scores: Vec<f32>,
    /// The kind of each token.
    pub kinds: Vec<TokenKind>,
    /// Beginning-of-sequence token.
    pub bos: Option<u32>,
    /// End-of-sequence token.
    pub eos: Option<u32>,
    /// Unknown token, used for characters with no piece when byte fallback is off or impossible.
    pub unk: Option<u32>,
    /// Prepend a space to non-empty input before encoding (and drop it again when decoding).
    pub add_dummy_prefix: bool,
    /// Drop leading and trailing spaces and collapse runs of spaces before encoding.
    pub remove_extra_whitespaces: bool,
    /// Replace spaces by `▁` before encoding.
    pub escape_whitespaces: bool,
    /// Spell characters that have no piece as `<0xXX>` byte tokens instead of the unknown token.
    pub byte_fallback: bool,
    /// What the unknown token decodes to.
    pub unk_surface: String,
}

impl Vocab {
    /// A vocabulary with Llama's settings: dummy prefix on, spaces escaped, no whitespace
    /// collapsing, byte fallback on when there are byte tokens, `unk` the first
    /// [`TokenKind::Unknown`] token, and no BOS/EOS (set them afterwards).
    pub fn new(pieces: Vec<String>, scores: Vec<f32>, kinds: Vec<TokenKind>) -> Self {
        let unk = kinds
            .iter()
            .position(|k| *k == TokenKind::Unknown)
            .and_then(|i| u32::try_from(i).ok());
        let byte_fallback = kinds.contains(&TokenKind::Byte);
        Self {
            pieces,
            scores,
            kinds,
            bos: None,
            eos: None,
            unk,
            add_dummy_prefix: true,
            remove_extra_whitespaces: false,
            escape_whitespaces: true,
            byte_fallback,
            unk_surface: DEFAULT_UNK_SURFACE.to_string(),
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Checks that the parallel arrays agree and that every special id is in range.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |what: String| TokenizerError::InvalidVocab {
            origin: origin.to_string(),
            what,
        };
        let n = self.pieces.len();
        if n == 0 {
            return Err(bad("no tokens".into()));
        }
        if u32::try_from(n).is_err() {
            return Err(bad(format!("{n} tokens do not fit 32-bit ids")));
        }
        if self.scores.len() != n || self.kinds.len() != n {
            return Err(bad(format!(
                "{n} pieces but {} scores and {} kinds",
                self.scores.len(),
                self.kinds.len()
            )));
        }
        for (name, id) in [("bos", self.bos), ("eos", self.eos), ("unk", self.unk)] {
            if let Some(id) = id {
                if id as usize >= n {
                    return Err(bad(format!("{name} id {id} is not below {n}")));
                }
            }
        }
        for (i, (piece, kind)) in self.pieces.iter().zip(&self.kinds).enumerate() {
            if *kind == TokenKind::Byte && byte_of_piece(piece).is_none() {
                return Err(bad(format!(
                    "byte token {i} is spelled {piece:?}, not <0xXX>"
                )));
            }
        }
        Ok(())
    }
}

/// The byte a `<0xXX>` piece stands for (two hex digits, either case).
pub(crate) fn byte_of_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_pieces() {
        assert_eq!(byte_of_piece("<0x0A>"), Some(10));
        assert_eq!(byte_of_piece("<0xff>"), Some(255));
        assert_eq!(byte_of_piece("<0x0>"), None);
        assert_eq!(byte_of_piece("<0x+1>"), None);
        assert_eq!(byte_of_piece("0x41"), None);
    }

    #[test]
    fn kind_codes_round_trip() {
        for code in 1..=6 {
            assert_eq!(TokenKind::from_code(code).unwrap().code() as i64, code);
        }
        assert_eq!(TokenKind::from_code(0), None);
        assert_eq!(TokenKind::from_code(7), None);
    }
}
