//! Incremental decoding: ids in one at a time, only complete UTF-8 text out.

use crate::error::Result;
use crate::tokenize::{LeadingSpace, Piece, Tokenize};
use crate::utf8;

/// Decodes a token sequence one id at a time.
///
/// Each push returns only complete characters: bytes of a character split over several byte
/// tokens are held until it is complete; bytes that can never complete one come out as
/// U+FFFD, one per byte. Concatenating every push and [`StreamDecoder::finish`] gives exactly
/// [`Tokenize::decode`] of the whole sequence (which is implemented with this decoder).
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    /// Bytes of a character not complete yet.
    pending: Vec<u8>,
    /// Whether any text has been produced.
    produced: bool,
    /// Whether a leading space may still be dropped.
    at_start: bool,
    /// Whether the previous piece had its leading space dropped.
    dropped_space: bool,
    /// Whether special (control) tokens decode to their text rather than to nothing.
    keep_special: bool,
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamDecoder {
    /// A decoder at the start of a sequence: the dummy-prefix space of the first word is
    /// dropped, as in [`Tokenize::decode`].
    pub fn new() -> Self {
        Self {
            pending: Vec::new(),
            produced: false,
            at_start: true,
            dropped_space: false,
            keep_special: false,
        }
    }

    /// Whether special (control) tokens decode to their text (`true`) or to nothing (`false`,
    /// the default).
    pub fn keep_special(mut self, keep: bool) -> Self {
        self.keep_special = keep;
        self
    }

    /// A decoder for ids that continue text already shown (e.g. generated tokens after a
    /// prompt): every space is kept.
    pub fn continuing() -> Self {
        Self {
            produced: true,
            at_start: false,
            ..Self::new()
        }
    }

    /// Decodes one more id; returns the text it completes (possibly empty). On error (an id
    /// outside the vocabulary) the decoder is unchanged.
    pub fn push<T: Tokenize + ?Sized>(&mut self, tok: &T, id: u32) -> Result<String> {
        let mut out = String::new();
        self.push_into(tok, id, &mut out)?;
        Ok(out)
    }

    /// Like [`StreamDecoder::push`], appending to `out`.
    pub fn push_into<T: Tokenize + ?Sized>(
        &mut self,
        tok: &T,
        id: u32,
        out: &mut String,
    ) -> Result<()> {
        let mut piece = tok.token_piece(id)?;
        if self.keep_special && piece == Piece::Control {
            piece = Piece::Text(tok.token_text(id)?);
        }
        let before = out.len();
        if let Piece::Bytes(bytes) = piece {
            self.pending.extend_from_slice(bytes);
            let used = utf8::drain(&self.pending, false, out);
            self.pending.drain(..used);
        } else {
            self.finish_into(out);
            if self.produced || out.len() > before || self.dropped_space {
                self.at_start = false;
            }
            self.dropped_space = false;
            match piece {
                Piece::Text(s) => out.push_str(s),
                Piece::WordStart(s) => {
                    let rule = tok.leading_space();
                    let stripped = match s.strip_prefix(' ') {
                        Some(rest) if self.at_start && rule != LeadingSpace::Keep => {
                            self.dropped_space = rule == LeadingSpace::StripFirst;
                            rest
                        }
                        _ => s,
                    };
                    out.push_str(stripped);
                }
                Piece::Bytes(_) | Piece::Control => {}
            }
        }
        if out.len() > before {
            self.produced = true;
        }
        Ok(())
    }

    /// Flushes held bytes (an incomplete character becomes U+FFFD per byte). The decoder can
    /// go on being used afterwards.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        self.finish_into(&mut out);
        out
    }

    /// Like [`StreamDecoder::finish`], appending to `out`.
    pub fn finish_into(&mut self, out: &mut String) {
        if !self.pending.is_empty() {
            utf8::drain(&self.pending, true, out);
            self.pending.clear();
            self.produced = true;
        }
    }

    /// Whether bytes of an incomplete character are held.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}
