//! Builds packs byte by byte for unit tests of shapes real git never writes (cycles, deep
//! trees, reserved types), so the parser's refusals can be checked.

use crate::oid::Oid;
use flate2::{Compression, write::ZlibEncoder};
use sha1::{Digest, Sha1};
use std::io::Write;

pub enum Obj {
    Whole(u8, Vec<u8>),
    Ofs(u64, Vec<u8>),
    Ref(Oid, Vec<u8>),
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).expect("zlib");
    e.finish().expect("zlib")
}

fn type_size(out: &mut Vec<u8>, kind: u8, size: usize) {
    let mut size = size;
    let mut byte = (kind << 4) | (size & 15) as u8;
    size >>= 4;
    while size > 0 {
        out.push(byte | 0x80);
        byte = (size & 0x7f) as u8;
        size >>= 7;
    }
    out.push(byte);
}

/// A pack with the given objects; returns the pack and each object's offset.
pub fn pack(objs: &[Obj]) -> (Vec<u8>, Vec<usize>) {
    let mut out = b"PACK\0\0\0\x02".to_vec();
    out.extend_from_slice(&(objs.len() as u32).to_be_bytes());
    let mut offsets = Vec::new();
    for o in objs {
        offsets.push(out.len());
        match o {
            Obj::Whole(kind, data) => {
                type_size(&mut out, *kind, data.len());
                out.extend_from_slice(&zlib(data));
            }
            Obj::Ofs(back, data) => {
                type_size(&mut out, 6, data.len());
                let mut back = *back;
                let mut bytes = vec![(back & 0x7f) as u8];
                back >>= 7;
                while back > 0 {
                    back -= 1;
                    bytes.push(0x80 | (back & 0x7f) as u8);
                    back >>= 7;
                }
                bytes.reverse();
                out.extend_from_slice(&bytes);
                out.extend_from_slice(&zlib(data));
            }
            Obj::Ref(base, data) => {
                type_size(&mut out, 7, data.len());
                out.extend_from_slice(&base.0);
                out.extend_from_slice(&zlib(data));
            }
        }
    }
    let sum: [u8; 20] = Sha1::digest(&out).into();
    out.extend_from_slice(&sum);
    (out, offsets)
}

/// A push body: one create command for `refs/heads/main`, then `pack`.
pub fn body(pack: &[u8]) -> Vec<u8> {
    let line = format!(
        "{} {} refs/heads/main\0report-status",
        Oid::ZERO,
        Oid([1; 20])
    );
    let mut b = format!("{:04x}{line}0000", line.len() + 4).into_bytes();
    b.extend_from_slice(pack);
    b
}

/// A delta that turns a base of `base_len` bytes into `insert` (no copies).
pub fn insert_delta(base_len: u8, insert: &[u8]) -> Vec<u8> {
    let mut d = vec![base_len, insert.len() as u8, insert.len() as u8];
    d.extend_from_slice(insert);
    d
}

pub fn tree_entry(mode: &str, name: &str, oid: Oid) -> Vec<u8> {
    let mut e = format!("{mode} {name}\0").into_bytes();
    e.extend_from_slice(&oid.0);
    e
}
