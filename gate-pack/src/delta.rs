//! Git's delta format (gitformat-pack "Deltified representation"): rebuilding an object from its
//! base, and, when the base is not in the pack (a thin pack), collecting the bytes the delta
//! inserts, since a secret can only enter an object through inserted bytes.

/// One delta instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op<'a> {
    Copy { offset: u64, len: u64 },
    Insert(&'a [u8]),
}

/// A parsed delta: its declared sizes and the start of its instruction stream.
#[derive(Debug, Clone, Copy)]
pub struct DeltaHeader {
    pub base_size: u64,
    pub result_size: u64,
    ops_start: usize,
}

fn varint(data: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    let mut value = 0u64;
    let mut shift = 0u32;
    loop {
        let byte = *data.get(*pos).ok_or("delta header is truncated")?;
        *pos += 1;
        let bits = u64::from(byte & 0x7f);
        if shift > 63 || (bits << shift) >> shift != bits {
            return Err("delta size does not fit in 64 bits");
        }
        value |= bits << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// Reads the base and result sizes at the front of a delta.
pub fn header(delta: &[u8]) -> Result<DeltaHeader, &'static str> {
    let mut pos = 0;
    let base_size = varint(delta, &mut pos)?;
    let result_size = varint(delta, &mut pos)?;
    Ok(DeltaHeader {
        base_size,
        result_size,
        ops_start: pos,
    })
}

struct Ops<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Ops<'a> {
    fn next_op(&mut self) -> Result<Option<Op<'a>>, &'static str> {
        let Some(&cmd) = self.data.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        if cmd & 0x80 != 0 {
            let mut offset = 0u64;
            for i in 0..4 {
                if cmd & (1 << i) != 0 {
                    let b = *self
                        .data
                        .get(self.pos)
                        .ok_or("copy instruction is truncated")?;
                    self.pos += 1;
                    offset |= u64::from(b) << (8 * i);
                }
            }
            let mut len = 0u64;
            for i in 0..3 {
                if cmd & (0x10 << i) != 0 {
                    let b = *self
                        .data
                        .get(self.pos)
                        .ok_or("copy instruction is truncated")?;
                    self.pos += 1;
                    len |= u64::from(b) << (8 * i);
                }
            }
            if len == 0 {
                len = 0x10000;
            }
            Ok(Some(Op::Copy { offset, len }))
        } else if cmd == 0 {
            Err("delta uses the reserved instruction 0")
        } else {
            let n = usize::from(cmd);
            let end = self.pos.checked_add(n).ok_or("insert overflows")?;
            let bytes = self
                .data
                .get(self.pos..end)
                .ok_or("insert runs past the end of the delta")?;
            self.pos = end;
            Ok(Some(Op::Insert(bytes)))
        }
    }
}

/// Rebuilds the object a delta describes from its `base`. The caller has checked
/// `header.result_size` against its object size limit.
pub fn apply(base: &[u8], delta: &[u8], head: &DeltaHeader) -> Result<Vec<u8>, &'static str> {
    if u64::try_from(base.len()).ok() != Some(head.base_size) {
        return Err("base size differs from the size the delta declares");
    }
    let result_size = usize::try_from(head.result_size).map_err(|_| "result too large")?;
    let mut out = Vec::with_capacity(result_size);
    let mut ops = Ops {
        data: delta,
        pos: head.ops_start,
    };
    while let Some(op) = ops.next_op()? {
        let piece = match op {
            Op::Copy { offset, len } => {
                let start = usize::try_from(offset).map_err(|_| "copy offset out of range")?;
                let len = usize::try_from(len).map_err(|_| "copy length out of range")?;
                let end = start.checked_add(len).ok_or("copy range overflows")?;
                base.get(start..end)
                    .ok_or("copy reaches past the end of the base")?
            }
            Op::Insert(bytes) => bytes,
        };
        if out.len().saturating_add(piece.len()) > result_size {
            return Err("delta produces more than its declared result size");
        }
        out.extend_from_slice(piece);
    }
    if out.len() != result_size {
        return Err("delta produces less than its declared result size");
    }
    Ok(out)
}

/// For a delta whose base is not available: checks the instructions against the declared sizes
/// and returns the inserted bytes. Adjacent inserts are joined as they are (git splits long
/// inserts into 127-byte pieces); runs separated by a copy are separated by a newline so no
/// match is made across unknown base bytes.
pub fn inserted_bytes(delta: &[u8], head: &DeltaHeader) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    let mut produced = 0u64;
    let mut after_copy = false;
    let mut ops = Ops {
        data: delta,
        pos: head.ops_start,
    };
    while let Some(op) = ops.next_op()? {
        let len = match op {
            Op::Copy { offset, len } => {
                let end = offset.checked_add(len).ok_or("copy range overflows")?;
                if end > head.base_size {
                    return Err("copy reaches past the end of the base");
                }
                after_copy = true;
                len
            }
            Op::Insert(bytes) => {
                if after_copy && !out.is_empty() {
                    out.push(b'\n');
                }
                after_copy = false;
                out.extend_from_slice(bytes);
                u64::try_from(bytes.len()).map_err(|_| "insert too long")?
            }
        };
        produced = produced.checked_add(len).ok_or("delta result overflows")?;
        if produced > head.result_size {
            return Err("delta produces more than its declared result size");
        }
    }
    if produced != head.result_size {
        return Err("delta produces less than its declared result size");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(base_len: u8, result_len: u8, ops: &[u8]) -> Vec<u8> {
        let mut d = vec![base_len, result_len];
        d.extend_from_slice(ops);
        d
    }

    #[test]
    fn copy_and_insert() {
        let base = b"hello world";
        // copy 5 bytes from offset 0, insert ", gate", copy " world"? keep it simple
        let d = delta(11, 12, &[0x90, 5, 1, b'!', 0x91, 5, 6]);
        let h = header(&d).expect("header");
        assert_eq!(apply(base, &d, &h), Ok(b"hello! world".to_vec()));
        assert_eq!(inserted_bytes(&d, &h), Ok(b"!".to_vec()));
    }

    #[test]
    fn copy_size_zero_means_64k() {
        let base = vec![7u8; 0x10000];
        let mut d = vec![0x80, 0x80, 0x04, 0x80, 0x80, 0x04, 0x80];
        let h = header(&d).expect("header");
        assert_eq!(h.base_size, 0x10000);
        assert_eq!(apply(&base, &d, &h).map(|v| v.len()), Ok(0x10000));
        d.push(0x80);
        assert!(apply(&base, &d, &h).is_err(), "second copy overshoots");
    }

    #[test]
    fn rejects_out_of_range_reserved_and_short() {
        let base = b"abc";
        let out_of_range = delta(3, 4, &[0x91, 1, 4]);
        let h = header(&out_of_range).expect("header");
        assert!(apply(base, &out_of_range, &h).is_err());
        assert!(inserted_bytes(&out_of_range, &h).is_err());
        let reserved = delta(3, 1, &[0]);
        let h = header(&reserved).expect("header");
        assert!(apply(base, &reserved, &h).is_err());
        let short = delta(3, 5, &[0x90, 3]);
        let h = header(&short).expect("header");
        assert!(apply(base, &short, &h).is_err());
        let wrong_base = delta(4, 1, &[1, b'x']);
        let h = header(&wrong_base).expect("header");
        assert!(apply(base, &wrong_base, &h).is_err());
        let truncated_insert = delta(3, 5, &[5, b'x']);
        let h = header(&truncated_insert).expect("header");
        assert!(apply(base, &truncated_insert, &h).is_err());
        assert!(header(&[0x80, 0x80]).is_err());
        assert!(header(&[0xff; 12]).is_err());
    }

    #[test]
    fn inserts_are_split_at_copies() {
        let d = delta(3, 6, &[2, b'a', b'b', 1, b'c', 0x90, 1, 2, b'd', b'e']);
        let h = header(&d).expect("header");
        assert_eq!(inserted_bytes(&d, &h), Ok(b"abc\nde".to_vec()));
    }
}
