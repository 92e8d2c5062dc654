//! The PACK container (gitformat-pack): header, object entries with their type-and-size
//! headers, delta base references, zlib streams inflated under a size bound, and the SHA-1
//! trailer. Produces the raw entries; resolving deltas is `resolve.rs`'s job.

use crate::error::PackError;
use crate::limits::Limits;
use crate::oid::Oid;
use flate2::{Decompress, FlushDecompress, Status};
use sha1::{Digest, Sha1};

/// The four real object types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    Commit,
    Tree,
    Blob,
    Tag,
}

impl ObjectType {
    pub fn name(self) -> &'static str {
        match self {
            ObjectType::Commit => "commit",
            ObjectType::Tree => "tree",
            ObjectType::Blob => "blob",
            ObjectType::Tag => "tag",
        }
    }
}

/// How an entry is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Whole(ObjectType),
    /// OFS_DELTA: the base is the entry starting at this pack offset.
    OfsDelta {
        base_offset: usize,
    },
    /// REF_DELTA: the base is the object with this id (in the pack or, for a thin pack, not).
    RefDelta {
        base: Oid,
    },
}

/// One entry of the pack with its inflated content (object data, or delta instructions).
#[derive(Debug, Clone)]
pub struct Entry {
    pub offset: usize,
    pub kind: EntryKind,
    pub data: Vec<u8>,
}

/// A parsed pack: version and entries in pack order.
#[derive(Debug, Clone)]
pub struct RawPack {
    pub version: u32,
    pub entries: Vec<Entry>,
}

/// Counts inflated bytes against [`Limits::max_total_bytes`].
#[derive(Debug)]
pub struct Budget {
    used: u64,
    limit: u64,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Budget { used: 0, limit }
    }

    pub fn charge(&mut self, bytes: usize) -> Result<(), PackError> {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(PackError::TotalTooLarge { limit: self.limit });
        }
        Ok(())
    }
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let arr: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(arr))
}

/// Parses a whole pack (header, entries, trailer), checking the trailer first.
pub fn read_pack(pack: &[u8], limits: &Limits, budget: &mut Budget) -> Result<RawPack, PackError> {
    if pack.len() < 32 {
        return Err(PackError::Truncated(format!(
            "{} bytes cannot hold a pack header and trailer",
            pack.len()
        )));
    }
    let split = pack.len() - 20;
    let (content, trailer) = (
        pack.get(..split).unwrap_or_default(),
        pack.get(split..).unwrap_or_default(),
    );
    if content.get(..4) != Some(b"PACK".as_slice()) {
        return Err(PackError::PackHeader("signature is not PACK".into()));
    }
    let version = be32(content, 4).unwrap_or(0);
    if version != 2 && version != 3 {
        return Err(PackError::PackHeader(format!(
            "version {version} (only 2 and 3 exist)"
        )));
    }
    let count = be32(content, 8).unwrap_or(0);
    if u64::from(count) > limits.max_objects {
        return Err(PackError::TooManyObjects {
            count: u64::from(count),
            limit: limits.max_objects,
        });
    }
    let expected = Oid::from_bytes(trailer).unwrap_or_default();
    let actual = Oid(Sha1::digest(content).into());
    if expected != actual {
        return Err(PackError::Checksum { expected, actual });
    }

    // Each entry takes at least 3 bytes, so the count cannot make us reserve much.
    let mut entries = Vec::with_capacity((count as usize).min(content.len() / 3));
    let mut pos = 12usize;
    for index in 0..count {
        if pos >= content.len() {
            return Err(PackError::Count(format!(
                "header declares {count} objects, pack ends after {index}"
            )));
        }
        let (entry, next) = read_entry(content, pos, limits, budget)?;
        entries.push(entry);
        pos = next;
    }
    if pos != content.len() {
        return Err(PackError::Count(format!(
            "{} bytes follow the {count} objects the header declares",
            content.len().saturating_sub(pos)
        )));
    }
    Ok(RawPack { version, entries })
}

fn read_entry(
    content: &[u8],
    start: usize,
    limits: &Limits,
    budget: &mut Budget,
) -> Result<(Entry, usize), PackError> {
    let obj_err = |reason: &str| PackError::Object {
        offset: start,
        reason: reason.to_owned(),
    };
    let truncated = || PackError::Truncated(format!("object header at offset {start}"));
    let mut pos = start;
    let mut byte = *content.get(pos).ok_or_else(truncated)?;
    pos += 1;
    let type_bits = (byte >> 4) & 7;
    let mut size = u64::from(byte & 15);
    let mut shift = 4u32;
    while byte & 0x80 != 0 {
        byte = *content.get(pos).ok_or_else(truncated)?;
        pos += 1;
        let bits = u64::from(byte & 0x7f);
        if shift > 63 || (bits << shift) >> shift != bits {
            return Err(obj_err("size does not fit in 64 bits"));
        }
        size |= bits << shift;
        shift += 7;
    }
    let kind = match type_bits {
        1 => EntryKind::Whole(ObjectType::Commit),
        2 => EntryKind::Whole(ObjectType::Tree),
        3 => EntryKind::Whole(ObjectType::Blob),
        4 => EntryKind::Whole(ObjectType::Tag),
        6 => {
            byte = *content.get(pos).ok_or_else(truncated)?;
            pos += 1;
            let mut back = u64::from(byte & 0x7f);
            while byte & 0x80 != 0 {
                byte = *content.get(pos).ok_or_else(truncated)?;
                pos += 1;
                back = back
                    .checked_add(1)
                    .and_then(|v| v.checked_mul(128))
                    .and_then(|v| v.checked_add(u64::from(byte & 0x7f)))
                    .ok_or_else(|| obj_err("OFS_DELTA offset overflows"))?;
            }
            if back == 0 {
                return Err(obj_err("OFS_DELTA refers to itself (a delta cycle)"));
            }
            let base_offset = usize::try_from(back)
                .ok()
                .and_then(|b| start.checked_sub(b))
                .filter(|&b| b >= 12)
                .ok_or_else(|| obj_err("OFS_DELTA base offset is before the start of the pack"))?;
            EntryKind::OfsDelta { base_offset }
        }
        7 => {
            let end = pos.checked_add(20).ok_or_else(truncated)?;
            let base = content
                .get(pos..end)
                .and_then(Oid::from_bytes)
                .ok_or_else(truncated)?;
            pos = end;
            EntryKind::RefDelta { base }
        }
        0 => return Err(obj_err("object type 0 is invalid")),
        _ => return Err(obj_err("object type 5 is reserved")),
    };
    if size > limits.max_object_bytes {
        return Err(PackError::ObjectTooLarge {
            offset: start,
            size,
            limit: limits.max_object_bytes,
        });
    }
    let size = usize::try_from(size).map_err(|_| obj_err("size does not fit in memory"))?;
    let input = content.get(pos..).unwrap_or_default();
    let (data, used) = inflate(input, size, start, budget)?;
    Ok((
        Entry {
            offset: start,
            kind,
            data,
        },
        pos + used,
    ))
}

/// Inflates one zlib stream that must produce exactly `size` bytes; returns the data and how
/// many input bytes the stream took. Output grows as data arrives, so a lying size header
/// costs no more memory than the data really inflates to.
fn inflate(
    input: &[u8],
    size: usize,
    offset: usize,
    budget: &mut Budget,
) -> Result<(Vec<u8>, usize), PackError> {
    let bad = |reason: String| PackError::Inflate { offset, reason };
    let mut z = Decompress::new(true);
    let mut out = vec![0u8; size.min(64 * 1024)];
    let mut filled = 0usize;
    let mut used = 0usize;
    loop {
        if filled == out.len() && out.len() < size {
            let grown = out.len().saturating_mul(2).clamp(64 * 1024, size);
            out.resize(grown, 0);
        }
        let mut scratch = [0u8; 1];
        let dest: &mut [u8] = if filled < out.len() {
            out.get_mut(filled..).unwrap_or_default()
        } else {
            &mut scratch
        };
        let src = input.get(used..).unwrap_or_default();
        let (in0, out0) = (z.total_in(), z.total_out());
        let status = z
            .decompress(src, dest, FlushDecompress::None)
            .map_err(|e| bad(e.to_string()))?;
        let took_in = usize::try_from(z.total_in() - in0).unwrap_or(usize::MAX);
        let made = usize::try_from(z.total_out() - out0).unwrap_or(usize::MAX);
        used = used.saturating_add(took_in);
        if filled >= out.len() && made > 0 {
            return Err(bad(format!(
                "inflates to more than the declared {size} bytes"
            )));
        }
        filled = filled.saturating_add(made);
        budget.charge(made)?;
        match status {
            Status::StreamEnd => break,
            Status::Ok | Status::BufError => {
                if took_in == 0 && made == 0 {
                    return Err(if used >= input.len() {
                        PackError::Truncated(format!("zlib stream of object at offset {offset}"))
                    } else {
                        bad("zlib stream makes no progress".into())
                    });
                }
            }
        }
    }
    if filled != size {
        return Err(bad(format!(
            "inflates to {filled} bytes, header declares {size}"
        )));
    }
    out.truncate(filled);
    Ok((out, used))
}
