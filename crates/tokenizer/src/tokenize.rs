//! The interface every tokenizer implements, so callers (and [`crate::StreamDecoder`]) need
//! not know which kind they hold.

use crate::error::Result;
use crate::stream::StreamDecoder;

/// What one token contributes to decoded text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text emitted as is.
    Text(&'a str),
    /// Text that starts with a word-boundary space; at the start of the output that space may
    /// be an artifact of the dummy prefix and is dropped according to [`LeadingSpace`].
    WordStart(&'a str),
    /// Raw bytes; consecutive byte pieces join into characters.
    Bytes(&'a [u8]),
    /// Nothing (control tokens such as BOS and EOS).
    Control,
}

/// How decoding treats spaces at the start of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadingSpace {
    /// Keep every space.
    Keep,
    /// Drop the one leading space of the first word-start piece (the dummy prefix).
    StripFirst,
    /// Drop the leading space of every word-start piece until some text has been produced.
    StripAll,
}

/// A tokenizer: text to ids and back.
pub trait Tokenize {
    /// Encodes `text`, with the BOS token first when `add_bos` is set (and there is one).
    fn encode(&self, text: &str, add_bos: bool) -> Vec<u32>;

    /// Number of tokens in the vocabulary.
    fn vocab_size(&self) -> usize;

    /// Beginning-of-sequence token.
    fn bos(&self) -> Option<u32>;

    /// End-of-sequence token.
    fn eos(&self) -> Option<u32>;

    /// What token `id` contributes to decoded text; an error when `id` is out of range.
    fn token_piece(&self, id: u32) -> Result<Piece<'_>>;

    /// How decoding treats spaces at the start of the output.
    fn leading_space(&self) -> LeadingSpace;

    /// Decodes a whole sequence of ids; an error when one is out of range.
    fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut decoder = StreamDecoder::new();
        let mut out = String::new();
        for &id in ids {
            decoder.push_into(self, id, &mut out)?;
        }
        decoder.finish_into(&mut out);
        Ok(out)
    }

    /// The bytes token `id` contributes on its own (no leading-space handling): the text of a
    /// piece, the raw byte of a byte token, nothing for a control token.
    fn token_bytes(&self, id: u32) -> Result<Vec<u8>> {
        Ok(match self.token_piece(id)? {
            Piece::Text(s) | Piece::WordStart(s) => s.as_bytes().to_vec(),
            Piece::Bytes(b) => b.to_vec(),
            Piece::Control => Vec::new(),
        })
    }
}
