//! Just enough of the DNS wire format (RFC 1035) to read the one question of a query, check an
//! upstream reply against it, and write error replies; everything else is relayed untouched.
//! Every read is bounds-checked: malformed input is an error value, never a panic.

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Longest name on the wire, length octets included (RFC 1035 §3.1).
const MAX_NAME_WIRE: usize = 255;
/// Longest label (RFC 1035 §2.3.4); a longer length octet has a type bit set.
const MAX_LABEL: usize = 63;

pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NOTIMP: u8 = 4;
pub const RCODE_REFUSED: u8 = 5;

pub const QTYPE_IXFR: u16 = 251;
pub const QTYPE_AXFR: u16 = 252;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message shorter than a DNS header")]
    ShortHeader,
    #[error("message is a response, not a query")]
    NotAQuery,
    #[error("query carries {0} questions; exactly one is supported")]
    QuestionCount(u16),
    #[error("question runs past the end of the message")]
    Truncated,
    #[error("name longer than 255 octets")]
    LongName,
    #[error("compression pointer or reserved label type in a question name")]
    BadLabelType,
}

/// The one question of a query, and where it ends in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The name as text, labels joined by dots, no trailing dot (`""` for the root). Bytes outside
    /// printable ASCII, and `.` or `\` inside a label, are written as `\DDD` (RFC 1035 master file
    /// style), so the text is unambiguous and safe to log.
    pub name: String,
    /// The raw labels (wire bytes, without length octets).
    pub labels: Vec<Vec<u8>>,
    pub qtype: u16,
    pub qclass: u16,
    /// Offset just past QTYPE/QCLASS: `msg[HEADER_LEN..end]` is the question on the wire.
    pub end: usize,
}

/// Header fields the forwarder looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub is_response: bool,
    pub opcode: u8,
    pub truncated: bool,
    pub qdcount: u16,
}

fn be16(msg: &[u8], at: usize) -> Option<u16> {
    let b = msg.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

pub fn header(msg: &[u8]) -> Result<Header, WireError> {
    let h = msg.get(..HEADER_LEN).ok_or(WireError::ShortHeader)?;
    Ok(Header {
        id: u16::from_be_bytes([h[0], h[1]]),
        is_response: h[2] & 0x80 != 0,
        opcode: (h[2] >> 3) & 0x0f,
        truncated: h[2] & 0x02 != 0,
        qdcount: u16::from_be_bytes([h[4], h[5]]),
    })
}

/// Reads the single question of a query.
pub fn question(msg: &[u8]) -> Result<Question, WireError> {
    let h = header(msg)?;
    if h.is_response {
        return Err(WireError::NotAQuery);
    }
    if h.qdcount != 1 {
        return Err(WireError::QuestionCount(h.qdcount));
    }
    let mut at = HEADER_LEN;
    let mut labels = Vec::new();
    let mut wire_len = 1usize; // the root's zero octet
    loop {
        let len = *msg.get(at).ok_or(WireError::Truncated)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        if len > MAX_LABEL {
            // A label over 63 octets has a type bit set. A pointer in a query's only question can only point into the header; the
            // reserved types (0x40, 0x80) are not in use. Either way: not a name we accept.
            return Err(WireError::BadLabelType);
        }
        wire_len += len + 1;
        if wire_len > MAX_NAME_WIRE {
            return Err(WireError::LongName);
        }
        let label = msg.get(at..at + len).ok_or(WireError::Truncated)?;
        labels.push(label.to_vec());
        at += len;
    }
    let qtype = be16(msg, at).ok_or(WireError::Truncated)?;
    let qclass = be16(msg, at + 2).ok_or(WireError::Truncated)?;
    Ok(Question {
        name: name_text(&labels),
        labels,
        qtype,
        qclass,
        end: at + 4,
    })
}

/// Presentation form of a name's labels (see [`Question::name`]).
pub fn name_text(labels: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                out.push(b as char);
            } else {
                out.push_str(&format!("\\{b:03}"));
            }
        }
    }
    out
}

/// Whether `reply` answers `query`: same id, a response, and the same question (names compared
/// case-insensitively, as resolvers may echo a different case).
pub fn reply_matches(query: &[u8], q: &Question, reply: &[u8]) -> bool {
    let (Ok(qh), Ok(rh)) = (header(query), header(reply)) else {
        return false;
    };
    if qh.id != rh.id || !rh.is_response || rh.qdcount != 1 {
        return false;
    }
    let (Some(asked), Some(echoed)) = (query.get(HEADER_LEN..q.end), reply.get(HEADER_LEN..q.end))
    else {
        return false;
    };
    asked.eq_ignore_ascii_case(echoed)
}

/// Writes `id` into a message's header (no-op on a message too short to have one).
pub fn set_id(msg: &mut [u8], id: u16) {
    if let Some(b) = msg.get_mut(..2) {
        b.copy_from_slice(&id.to_be_bytes());
    }
}

/// An error reply to `query` with `rcode`: the query's id, opcode and RD flag, RA set, and the
/// question echoed when it could be read (`question_end`), else no question. `None` when the
/// message has no header to answer.
pub fn error_reply(query: &[u8], question_end: Option<usize>, rcode: u8) -> Option<Vec<u8>> {
    let h = query.get(..HEADER_LEN)?;
    let question = question_end.and_then(|end| query.get(HEADER_LEN..end));
    let mut out = Vec::with_capacity(HEADER_LEN + question.map_or(0, <[u8]>::len));
    out.extend_from_slice(&h[..2]);
    // QR=1, opcode and RD kept; AA=0, TC=0.
    out.push(0x80 | (h[2] & 0x79));
    // RA=1, Z/AD/CD cleared, rcode.
    out.push(0x80 | (rcode & 0x0f));
    out.extend_from_slice(&u16::from(question.is_some()).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    if let Some(q) = question {
        out.extend_from_slice(q);
    }
    Some(out)
}

/// RFC 8914 Extended DNS Error info code "Blocked" (by the operator's policy).
pub const EDE_BLOCKED: u16 = 15;
const TYPE_OPT: u16 = 41;
/// The UDP payload size we advertise in our own OPT records (the DNS flag day 2020 value).
const OUR_UDP_SIZE: u16 = 1232;
/// Longest EDE text we attach, so a refusal always fits a 512-octet UDP reply: header 12,
/// question at most 259, OPT record 11, EDE option header 6, text 200.
const MAX_EDE_TEXT: usize = 200;

/// Skips one (possibly compressed) name starting at `at`; returns the offset after it.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    // At most 128 labels fit in 255 octets; the bound also stops pointer games.
    for _ in 0..128 {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2).filter(|&e| e <= msg.len()),
            l if l & 0xc0 == 0 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
    None
}

/// Whether a query carries an EDNS OPT record (RFC 6891), so its reply may carry one too.
/// `question_end` is [`Question::end`].
pub fn has_opt(msg: &[u8], question_end: usize) -> bool {
    let count = |at| be16(msg, at).map_or(0, usize::from);
    let (an, ns, ar) = (count(6), count(8), count(10));
    let mut at = question_end;
    for i in 0..(an + ns + ar) {
        let Some(after_name) = skip_name(msg, at) else {
            return false;
        };
        let (Some(rtype), Some(rdlen)) = (be16(msg, after_name), be16(msg, after_name + 8)) else {
            return false;
        };
        if i >= an + ns && rtype == TYPE_OPT {
            return true;
        }
        at = after_name + 10 + usize::from(rdlen);
    }
    false
}

/// An error reply (see [`error_reply`]) carrying, when the query spoke EDNS, an OPT record with
/// an Extended DNS Error (RFC 8914) whose text says why, so `dig` and friends show the reason.
pub fn error_reply_with_reason(
    query: &[u8],
    question_end: usize,
    rcode: u8,
    info_code: u16,
    text: &str,
) -> Option<Vec<u8>> {
    let mut out = error_reply(query, Some(question_end), rcode)?;
    if !has_opt(query, question_end) {
        return Some(out);
    }
    let mut cut = text.len().min(MAX_EDE_TEXT);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let text = &text.as_bytes()[..cut];
    let option_len = 2 + text.len() as u16;
    out[11] = 1; // arcount
    out.push(0); // root owner name
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&OUR_UDP_SIZE.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // extended rcode, version, flags
    out.extend_from_slice(&(4 + option_len).to_be_bytes());
    out.extend_from_slice(&15u16.to_be_bytes()); // option code: EDE
    out.extend_from_slice(&option_len.to_be_bytes());
    out.extend_from_slice(&info_code.to_be_bytes());
    out.extend_from_slice(text);
    Some(out)
}

/// The response code of a reply (low four bits of the header's fourth octet).
pub fn rcode(msg: &[u8]) -> Option<u8> {
    msg.get(3).map(|b| b & 0x0f)
}

/// Builds a query for `name` (tests and the start-up self check use it).
pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let bytes = label.as_bytes();
        let n = bytes.len().min(MAX_LABEL);
        out.push(n as u8);
        out.extend_from_slice(&bytes[..n]);
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_question() {
        let q = build_query(0x1234, "www.Example.test", 1);
        let parsed = question(&q).unwrap();
        assert_eq!(parsed.name, "www.Example.test");
        assert_eq!(parsed.labels.len(), 3);
        assert_eq!(parsed.qtype, 1);
        assert_eq!(parsed.qclass, 1);
        assert_eq!(parsed.end, q.len());
        assert_eq!(header(&q).unwrap().id, 0x1234);
    }

    #[test]
    fn root_name_is_empty_text() {
        let q = build_query(1, ".", 2);
        assert_eq!(question(&q).unwrap().name, "");
    }

    #[test]
    fn odd_bytes_are_escaped() {
        let labels = vec![b"a.b".to_vec(), vec![0, b'\\', b' ', b'z']];
        assert_eq!(name_text(&labels), "a\\046b.\\000\\092\\032z");
    }

    #[test]
    fn malformed_questions_are_errors() {
        let good = build_query(7, "a.test", 1);
        // Every truncation of a good query is an error, never a panic.
        for n in 0..good.len() {
            assert!(question(&good[..n]).is_err(), "prefix {n}");
        }
        let mut resp = good.clone();
        resp[2] |= 0x80;
        assert_eq!(question(&resp), Err(WireError::NotAQuery));
        let mut two = good.clone();
        two[5] = 2;
        assert_eq!(question(&two), Err(WireError::QuestionCount(2)));
        let mut ptr = good.clone();
        ptr[12] = 0xc0;
        assert_eq!(question(&ptr), Err(WireError::BadLabelType));
        let mut long = good[..12].to_vec();
        long.push(64);
        long.extend_from_slice(&[b'a'; 64]);
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(question(&long), Err(WireError::BadLabelType));
        let mut huge = good[..12].to_vec();
        for _ in 0..5 {
            huge.push(60);
            huge.extend_from_slice(&[b'a'; 60]);
        }
        huge.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(question(&huge), Err(WireError::LongName));
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small xorshift: deterministic, no dependency.
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let base = build_query(9, "abc.example.test", 1);
        for _ in 0..20_000 {
            let mut m = base.clone();
            let len = (next() % (base.len() as u64 + 8)) as usize;
            m.resize(len, 0);
            for _ in 0..(next() % 6) {
                if m.is_empty() {
                    break;
                }
                let i = (next() % m.len() as u64) as usize;
                m[i] = next() as u8;
            }
            let q = question(&m).ok();
            let _ = error_reply(&m, q.as_ref().map(|q| q.end), RCODE_FORMERR);
            if let Some(q) = &q {
                let _ = reply_matches(&m, q, &m);
            }
        }
    }

    #[test]
    fn error_reply_echoes_id_question_and_rd() {
        let q = build_query(0xbeef, "x.test", 1);
        let parsed = question(&q).unwrap();
        let r = error_reply(&q, Some(parsed.end), RCODE_REFUSED).unwrap();
        let h = header(&r).unwrap();
        assert_eq!(h.id, 0xbeef);
        assert!(h.is_response);
        assert_eq!(r[2] & 0x01, 1, "RD kept");
        assert_eq!(rcode(&r), Some(RCODE_REFUSED));
        assert_eq!(&r[12..], &q[12..]);
        let bare = error_reply(&q[..12], None, RCODE_FORMERR).unwrap();
        assert_eq!(bare.len(), 12);
        assert_eq!(header(&bare).unwrap().qdcount, 0);
        assert!(error_reply(&q[..11], None, RCODE_FORMERR).is_none());
    }

    /// A query with an EDNS OPT record (payload 1232, no options), as dig sends it.
    fn edns_query(name: &str) -> Vec<u8> {
        let mut q = build_query(3, name, 1);
        q[11] = 1;
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        q
    }

    #[test]
    fn refusals_carry_the_reason_when_the_client_speaks_edns() {
        let q = edns_query("x.evil.test");
        let end = question(&q).unwrap().end;
        assert!(has_opt(&q, end));
        let r = error_reply_with_reason(&q, end, RCODE_REFUSED, EDE_BLOCKED, "on the deny list")
            .unwrap();
        assert_eq!(rcode(&r), Some(RCODE_REFUSED));
        assert!(has_opt(&r, end), "reply carries OPT");
        let tail = &r[end..];
        assert_eq!(&tail[..3], &[0, 0, 41]);
        assert_eq!(&tail[11..15], &[0, 15, 0, 2 + 16]);
        assert_eq!(&tail[15..17], &EDE_BLOCKED.to_be_bytes());
        assert_eq!(&tail[17..], b"on the deny list");
        // No EDNS in the query: none in the reply.
        let plain = build_query(3, "x.evil.test", 1);
        let r =
            error_reply_with_reason(&plain, plain.len(), RCODE_REFUSED, EDE_BLOCKED, "x").unwrap();
        assert_eq!(r.len(), plain.len());
        // Long reasons are cut, on a character boundary.
        let long = "é".repeat(200);
        let r = error_reply_with_reason(&q, end, RCODE_REFUSED, EDE_BLOCKED, &long).unwrap();
        assert!(r.len() <= 512);
        assert!(std::str::from_utf8(&r[end + 17..]).is_ok());
    }

    #[test]
    fn opt_search_survives_garbage() {
        let q = edns_query("a.test");
        let end = question(&q).unwrap().end;
        for n in end..q.len() {
            assert!(!has_opt(&q[..n], end), "prefix {n}");
        }
        let mut lying = q.clone();
        lying[11] = 0xff; // 255 additional records claimed
        assert!(has_opt(&lying, end));
        let mut ptr_loop = build_query(1, "a.test", 1);
        ptr_loop[11] = 1;
        let at = ptr_loop.len();
        ptr_loop.extend_from_slice(&[0xc0, at as u8]);
        assert!(!has_opt(&ptr_loop, end));
    }

    #[test]
    fn reply_must_match_id_and_question() {
        let q = build_query(5, "a.test", 1);
        let parsed = question(&q).unwrap();
        let mut r = q.clone();
        r[2] |= 0x80;
        r[13] = b'A';
        assert!(reply_matches(&q, &parsed, &r), "case-insensitive echo");
        let mut other_id = r.clone();
        set_id(&mut other_id, 6);
        assert!(!reply_matches(&q, &parsed, &other_id));
        let mut other_name = r.clone();
        other_name[13] = b'b';
        assert!(!reply_matches(&q, &parsed, &other_name));
        assert!(!reply_matches(&q, &parsed, &q), "a query is no reply");
        assert!(!reply_matches(&q, &parsed, &r[..14]));
    }
}
