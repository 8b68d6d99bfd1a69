//! A minimal protobuf wire-format reader: just enough to walk SentencePiece's `ModelProto`.
//!
//! Every length prefix is checked against the bytes that remain before anything is sliced,
//! and nothing is allocated from a length read off the wire.

use crate::error::{Result, TokenizerError};

/// Deepest nesting of (deprecated) groups that [`Reader::skip`] follows.
const MAX_GROUP_DEPTH: usize = 32;

/// The wire type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    Varint,
    Fixed64,
    Len,
    StartGroup,
    EndGroup,
    Fixed32,
}

impl Wire {
    fn name(self) -> &'static str {
        match self {
            Wire::Varint => "varint",
            Wire::Fixed64 => "fixed64",
            Wire::Len => "length-delimited",
            Wire::StartGroup => "start-group",
            Wire::EndGroup => "end-group",
            Wire::Fixed32 => "fixed32",
        }
    }
}

/// A cursor over one message's bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Absolute offset of `buf[0]` in the file, for error messages.
    base: usize,
    origin: &'a str,
}

impl<'a> Reader<'a> {
    /// A reader over a whole file.
    pub(crate) fn new(buf: &'a [u8], origin: &'a str) -> Self {
        Self {
            buf,
            pos: 0,
            base: 0,
            origin,
        }
    }

    /// Whether every byte has been read.
    pub(crate) fn is_done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Absolute file offset of the next byte.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// An error at absolute file offset `offset`.
    pub(crate) fn error_at(&self, offset: usize, what: impl Into<String>) -> TokenizerError {
        TokenizerError::Protobuf {
            origin: self.origin.to_string(),
            offset,
            what: what.into(),
        }
    }

    /// Reads a base-128 varint (at most 10 bytes).
    pub(crate) fn varint(&mut self) -> Result<u64> {
        let start = self.offset();
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.error_at(start, "varint runs past the end of its message"));
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error_at(start, "varint longer than 10 bytes"))
    }

    /// Reads a field key: the field number and its wire type.
    pub(crate) fn key(&mut self) -> Result<(u32, Wire)> {
        let start = self.offset();
        let key = self.varint()?;
        let field = key >> 3;
        let wire = match key & 7 {
            0 => Wire::Varint,
            1 => Wire::Fixed64,
            2 => Wire::Len,
            3 => Wire::StartGroup,
            4 => Wire::EndGroup,
            5 => Wire::Fixed32,
            w => return Err(self.error_at(start, format!("invalid wire type {w}"))),
        };
        if field == 0 || field > (1 << 29) - 1 {
            return Err(self.error_at(start, format!("invalid field number {field}")));
        }
        Ok((field as u32, wire))
    }

    /// Takes `n` bytes, failing if fewer remain.
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let start = self.offset();
        let left = self.buf.len() - self.pos;
        if n > left as u64 {
            return Err(self.error_at(
                start,
                format!("{what} of {n} bytes but only {left} bytes remain"),
            ));
        }
        let n = n as usize;
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Reads a length-delimited payload and returns a reader over it.
    pub(crate) fn message(&mut self) -> Result<Reader<'a>> {
        let len = self.varint()?;
        let base = self.offset();
        let buf = self.take(len, "length-delimited field")?;
        Ok(Reader {
            buf,
            pos: 0,
            base,
            origin: self.origin,
        })
    }

    /// Reads a length-delimited payload as UTF-8 text.
    pub(crate) fn string(&mut self) -> Result<&'a str> {
        let sub = self.message()?;
        std::str::from_utf8(sub.buf)
            .map_err(|e| self.error_at(sub.base + e.valid_up_to(), "string is not valid UTF-8"))
    }

    /// Reads a length-delimited payload as raw bytes.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8]> {
        Ok(self.message()?.buf)
    }

    /// Reads a little-endian fixed32 as `f32`.
    pub(crate) fn float(&mut self) -> Result<f32> {
        let b = self.take(4, "fixed32 field")?;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Fails unless `wire` is what field `field` of `message` must have.
    pub(crate) fn expect(
        &self,
        key_offset: usize,
        message: &str,
        field: u32,
        wire: Wire,
        want: Wire,
    ) -> Result<()> {
        if wire == want {
            Ok(())
        } else {
            Err(self.error_at(
                key_offset,
                format!(
                    "{message} field {field} has wire type {}, expected {}",
                    wire.name(),
                    want.name()
                ),
            ))
        }
    }

    /// Skips the value of a field of any wire type (groups included, to a bounded depth).
    pub(crate) fn skip(&mut self, field: u32, wire: Wire) -> Result<()> {
        self.skip_at_depth(field, wire, 0)
    }

    fn skip_at_depth(&mut self, field: u32, wire: Wire, depth: usize) -> Result<()> {
        match wire {
            Wire::Varint => {
                self.varint()?;
            }
            Wire::Fixed64 => {
                self.take(8, "fixed64 field")?;
            }
            Wire::Fixed32 => {
                self.take(4, "fixed32 field")?;
            }
            Wire::Len => {
                self.message()?;
            }
            Wire::StartGroup => {
                let start = self.offset();
                if depth >= MAX_GROUP_DEPTH {
                    return Err(self.error_at(start, "groups nested too deeply"));
                }
                loop {
                    if self.is_done() {
                        return Err(self.error_at(start, format!("group {field} is not closed")));
                    }
                    let (f, w) = self.key()?;
                    if w == Wire::EndGroup {
                        if f != field {
                            return Err(self.error_at(
                                self.offset(),
                                format!("group {field} closed as group {f}"),
                            ));
                        }
                        break;
                    }
                    self.skip_at_depth(f, w, depth + 1)?;
                }
            }
            Wire::EndGroup => {
                return Err(
                    self.error_at(self.offset(), format!("unexpected end of group {field}"))
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut r = Reader::new(&[0x96, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f], "t");
        assert_eq!(r.varint().unwrap(), 150);
        assert_eq!(r.varint().unwrap(), 0xffff_ffff);
        assert!(r.is_done());
        assert!(Reader::new(&[0x80], "t").varint().is_err());
        assert!(Reader::new(&[0xff; 11], "t").varint().is_err());
    }

    #[test]
    fn length_checked_against_remaining_bytes() {
        // Field 1, length-delimited, claims 200 bytes but has 1.
        let mut r = Reader::new(&[0x0a, 0xc8, 0x01, 0x00], "t");
        let (f, w) = r.key().unwrap();
        assert_eq!((f, w), (1, Wire::Len));
        let e = r.message().err().unwrap().to_string();
        assert!(e.contains("only 1 bytes remain"), "{e}");
    }

    #[test]
    fn skips_groups() {
        // Group 2 { field 1 varint 5 } then field 3 varint 7.
        let mut r = Reader::new(&[0x13, 0x08, 0x05, 0x14, 0x18, 0x07], "t");
        let (f, w) = r.key().unwrap();
        r.skip(f, w).unwrap();
        assert_eq!(r.key().unwrap(), (3, Wire::Varint));
        assert_eq!(r.varint().unwrap(), 7);
        // Unclosed group.
        let mut r = Reader::new(&[0x13, 0x08, 0x05], "t");
        let (f, w) = r.key().unwrap();
        assert!(r.skip(f, w).is_err());
    }
}
