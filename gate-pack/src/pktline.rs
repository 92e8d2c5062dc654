//! pkt-line framing (gitprotocol-common): the length-prefixed lines that carry the command list
//! of a push and the status report gate sends back when it refuses one.

use crate::error::PackError;

/// Largest pkt-line git sends or accepts, length prefix included.
pub const MAX_PKT_LEN: usize = 65520;

/// One framed unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pkt<'a> {
    /// `0000`
    Flush,
    /// `0001` (protocol v2 only)
    Delim,
    /// `0002` (protocol v2 only)
    ResponseEnd,
    /// A data line; the trailing LF, if any, is kept.
    Data(&'a [u8]),
}

/// Reads pkt-lines from a buffer, never past its end.
pub struct PktReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> PktReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        PktReader { buf, pos: 0 }
    }

    /// Byte offset of the next unread pkt-line.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The next pkt-line, or `None` at the end of the buffer.
    pub fn next_pkt(&mut self) -> Result<Option<Pkt<'a>>, PackError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(None);
        }
        let err = |reason| PackError::PktLine {
            offset: self.pos,
            reason,
        };
        let head = rest.get(..4).ok_or(err("truncated length prefix"))?;
        let mut len = 0usize;
        for &c in head {
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(err("length prefix is not hex")),
            };
            len = (len << 4) | usize::from(v);
        }
        let pkt = match len {
            0 => Pkt::Flush,
            1 => Pkt::Delim,
            2 => Pkt::ResponseEnd,
            3 => return Err(err("invalid length 3")),
            n if n > MAX_PKT_LEN => return Err(err("length over 65520")),
            n => Pkt::Data(rest.get(4..n).ok_or(err("truncated pkt-line"))?),
        };
        self.pos += if len < 4 { 4 } else { len };
        Ok(Some(pkt))
    }
}

/// Appends `payload` as one pkt-line, cut to the largest payload a pkt-line can carry.
pub fn write_pkt(out: &mut Vec<u8>, payload: &[u8]) {
    let payload = payload.get(..MAX_PKT_LEN - 4).unwrap_or(payload);
    out.extend_from_slice(format!("{:04x}", payload.len() + 4).as_bytes());
    out.extend_from_slice(payload);
}

/// Appends a flush-pkt.
pub fn write_flush(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0000");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_data_flush_and_rejects_bad_framing() {
        let mut r = PktReader::new(b"0006a\n0000");
        assert_eq!(r.next_pkt(), Ok(Some(Pkt::Data(b"a\n"))));
        assert_eq!(r.next_pkt(), Ok(Some(Pkt::Flush)));
        assert_eq!(r.next_pkt(), Ok(None));
        assert!(PktReader::new(b"0003").next_pkt().is_err());
        assert!(PktReader::new(b"00").next_pkt().is_err());
        assert!(PktReader::new(b"zzzz").next_pkt().is_err());
        assert!(PktReader::new(b"0009abc").next_pkt().is_err());
        assert!(PktReader::new(b"fff1").next_pkt().is_err());
    }

    #[test]
    fn writes_what_it_reads() {
        let mut out = Vec::new();
        write_pkt(&mut out, b"unpack ok\n");
        write_flush(&mut out);
        assert_eq!(out, b"000eunpack ok\n0000");
    }
}
