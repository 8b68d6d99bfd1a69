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
    /// Raw bytes (a `<0xXX>` byte token, or the bytes a byte-level token spells); consecutive
    /// byte pieces join into characters.
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

/// Options for [`Tokenize::encode_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Put the BOS token first (when there is one).
    pub add_bos: bool,
    /// Put the EOS token last (when there is one).
    pub add_eos: bool,
    /// Recognise the text of special tokens (`<|eot_id|>`, `<s>`) as those tokens. Without
    /// it, such text in the input is encoded as ordinary characters. Non-special added tokens
    /// (SentencePiece user-defined pieces) are always recognised.
    pub parse_special: bool,
}

/// A tokenizer: text to ids and back.
pub trait Tokenize {
    /// Encodes `text`, with the BOS token first when `add_bos` is set (and there is one).
    /// Special-token text is ordinary text: this is [`Tokenize::encode_with`] with
    /// `parse_special` off.
    fn encode(&self, text: &str, add_bos: bool) -> Vec<u32>;

    /// Encodes `text` as `opts` says. The default ignores `parse_special`; the tokenizers of
    /// this crate implement it.
    fn encode_with(&self, text: &str, opts: EncodeOptions) -> Vec<u32> {
        let mut ids = self.encode(text, opts.add_bos);
        if opts.add_eos {
            ids.extend(self.eos());
        }
        ids
    }

    /// The id of the token spelled exactly `text` in the vocabulary (or an added token's
    /// text, e.g. `"<|eot_id|>"`); `None` when there is none.
    fn token_to_id(&self, _text: &str) -> Option<u32> {
        None
    }

    /// The text and id of every special token: the tokens [`EncodeOptions::parse_special`]
    /// turns on (control and unknown pieces, special added tokens). Default: none.
    fn special_tokens(&self) -> Vec<(String, u32)> {
        Vec::new()
    }

    /// The spelling of token `id` in the vocabulary (`▁` for spaces in SentencePiece
    /// vocabularies, GPT-2's byte alphabet in byte-level ones, an added token's text as is).
    /// The default gives the decoded text of text pieces and `""` for other tokens.
    fn token_text(&self, id: u32) -> Result<&str> {
        Ok(match self.token_piece(id)? {
            Piece::Text(s) | Piece::WordStart(s) => s,
            Piece::Bytes(_) | Piece::Control => "",
        })
    }

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

    /// Decodes a whole sequence of ids; an error when one is out of range. Special (control)
    /// tokens decode to nothing.
    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_with(ids, true)
    }

    /// Decodes a whole sequence of ids; special tokens decode to nothing when `skip_special`
    /// is set, else to their text ([`Tokenize::token_text`]).
    fn decode_with(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let mut decoder = StreamDecoder::new().keep_special(!skip_special);
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

/// What a token decodes to, prepared once per token by each tokenizer.
#[derive(Debug, Clone)]
pub(crate) enum Surface {
    Text(Box<str>),
    WordStart(Box<str>),
    Bytes(Box<[u8]>),
    Control,
}

impl Surface {
    /// The borrowed [`Piece`] this surface stands for.
    pub(crate) fn piece(&self) -> Piece<'_> {
        match self {
            Surface::Text(s) => Piece::Text(s),
            Surface::WordStart(s) => Piece::WordStart(s),
            Surface::Bytes(b) => Piece::Bytes(b),
            Surface::Control => Piece::Control,
        }
    }
}
