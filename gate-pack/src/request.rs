//! The command section of a push (gitprotocol-pack "update-request"): shallow lines, ref update
//! commands with the client's capabilities, an optional push certificate and push options. Read
//! apart from the pack so a push whose pack is malformed can still be refused per ref.

use crate::error::PackError;
use crate::oid::Oid;
use crate::pktline::{Pkt, PktReader};

/// One ref update command: `old-oid new-oid refname`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub old: Oid,
    pub new: Oid,
    pub name: String,
}

impl RefUpdate {
    /// The ref does not exist yet on the server.
    pub fn is_create(&self) -> bool {
        self.old.is_zero()
    }

    /// The ref is being deleted (no objects are sent for it).
    pub fn is_delete(&self) -> bool {
        self.new.is_zero()
    }
}

/// The capabilities the client sent after the NUL of its first command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities(pub Vec<String>);

impl Capabilities {
    /// True if the capability `name` was sent (with or without a `=value`).
    pub fn has(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|c| c == name || c.split_once('=').is_some_and(|(k, _)| k == name))
    }

    /// The value of a `name=value` capability.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.0.iter().find_map(|c| {
            c.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v)
        })
    }

    /// The client wants the status report (`report-status` or `report-status-v2`).
    pub fn report_status(&self) -> bool {
        self.has("report-status") || self.has("report-status-v2")
    }

    /// The side-band flavour the client asked for, as the largest data payload per packet.
    pub fn side_band_payload(&self) -> Option<usize> {
        if self.has("side-band-64k") {
            Some(crate::pktline::MAX_PKT_LEN - 5)
        } else if self.has("side-band") {
            Some(1000 - 5)
        } else {
            None
        }
    }
}

/// Everything in a push body before the pack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushRequest {
    pub commands: Vec<RefUpdate>,
    pub capabilities: Capabilities,
    /// `shallow <oid>` lines sent before the commands.
    pub shallow: Vec<Oid>,
    /// `git push -o` values (sent when the client lists the `push-options` capability).
    pub push_options: Vec<String>,
    /// The text of a signed push certificate (`git push --signed`), when one was sent.
    pub push_cert: Option<String>,
    /// Byte offset in the body where the pack starts (the body length when no pack follows).
    pub pack_offset: usize,
}

fn cmd_err(msg: impl Into<String>) -> PackError {
    PackError::Command(msg.into())
}

fn strip_lf(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

fn parse_command(line: &[u8]) -> Result<RefUpdate, PackError> {
    let line = strip_lf(line);
    let old = line.get(..40).and_then(Oid::from_hex);
    let new = line.get(41..81).and_then(Oid::from_hex);
    let (Some(old), Some(new)) = (old, new) else {
        return Err(cmd_err(
            "expected `old-oid new-oid refname` with 40-hex ids",
        ));
    };
    if line.get(40) != Some(&b' ') || line.get(81) != Some(&b' ') {
        return Err(cmd_err(
            "expected spaces between old-oid, new-oid and refname",
        ));
    }
    let name = line.get(82..).unwrap_or_default();
    if name.is_empty() || name.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(cmd_err(
            "refname is empty or holds spaces or control characters",
        ));
    }
    let name = String::from_utf8(name.to_vec()).map_err(|_| cmd_err("refname is not UTF-8"))?;
    Ok(RefUpdate { old, new, name })
}

fn parse_caps(raw: &[u8]) -> Result<Capabilities, PackError> {
    let text =
        std::str::from_utf8(strip_lf(raw)).map_err(|_| cmd_err("capabilities are not UTF-8"))?;
    let caps = Capabilities(
        text.split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    );
    if let Some(format) = caps.value("object-format")
        && format != "sha1"
    {
        return Err(PackError::Unsupported(format!("object-format={format}")));
    }
    Ok(caps)
}

/// Reads the command section of a receive-pack request body.
pub fn parse_push_request(body: &[u8]) -> Result<PushRequest, PackError> {
    let mut r = PktReader::new(body);
    let mut req = PushRequest::default();
    let mut pkt = r.next_pkt()?;
    // shallow lines come first
    while let Some(Pkt::Data(line)) = pkt {
        let Some(hex) = line.strip_prefix(b"shallow ") else {
            break;
        };
        let oid = Oid::from_hex(strip_lf(hex)).ok_or_else(|| cmd_err("bad shallow line"))?;
        req.shallow.push(oid);
        pkt = r.next_pkt()?;
    }
    match pkt {
        None => return Err(cmd_err("body ends before the command list")),
        Some(Pkt::Flush) => {}
        Some(Pkt::Delim | Pkt::ResponseEnd) => return Err(cmd_err("unexpected delim packet")),
        Some(Pkt::Data(first)) => {
            let (head, caps) = match first.iter().position(|&b| b == 0) {
                Some(nul) => (first.get(..nul).unwrap_or_default(), first.get(nul + 1..)),
                None => (first, None),
            };
            req.capabilities = parse_caps(caps.unwrap_or_default())?;
            if strip_lf(head) == b"push-cert" {
                let (cert, commands) = read_push_cert(&mut r)?;
                req.push_cert = Some(cert);
                req.commands = commands;
            } else {
                req.commands.push(parse_command(head)?);
                loop {
                    match r.next_pkt()? {
                        Some(Pkt::Flush) => break,
                        Some(Pkt::Data(line)) => req.commands.push(parse_command(line)?),
                        Some(_) => return Err(cmd_err("unexpected delim packet")),
                        None => return Err(cmd_err("body ends inside the command list")),
                    }
                }
            }
        }
    }
    if req.capabilities.has("push-options") {
        loop {
            match r.next_pkt()? {
                Some(Pkt::Flush) => break,
                Some(Pkt::Data(line)) => req
                    .push_options
                    .push(String::from_utf8_lossy(strip_lf(line)).into_owned()),
                Some(_) => return Err(cmd_err("unexpected delim packet in push options")),
                None => return Err(cmd_err("body ends inside the push options")),
            }
        }
    }
    req.pack_offset = r.pos();
    Ok(req)
}

/// Reads a push certificate up to its `push-cert-end` and the flush after it; the ref updates
/// are the command lines between the blank line and the signature.
fn read_push_cert(r: &mut PktReader<'_>) -> Result<(String, Vec<RefUpdate>), PackError> {
    let mut text = String::new();
    let mut commands = Vec::new();
    let mut in_body = false;
    let mut in_sig = false;
    loop {
        let line = match r.next_pkt()? {
            Some(Pkt::Data(line)) => line,
            _ => return Err(cmd_err("push certificate ends before push-cert-end")),
        };
        if strip_lf(line) == b"push-cert-end" {
            break;
        }
        text.push_str(&String::from_utf8_lossy(line));
        if !in_body {
            in_body = strip_lf(line).is_empty();
        } else if line.starts_with(b"-----BEGIN") {
            in_sig = true;
        } else if !in_sig {
            commands.push(parse_command(line)?);
        }
    }
    match r.next_pkt()? {
        Some(Pkt::Flush) => Ok((text, commands)),
        _ => Err(cmd_err("no flush after the push certificate")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pktline::{write_flush, write_pkt};

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn commands_caps_shallow_and_push_options() {
        let mut body = Vec::new();
        write_pkt(&mut body, format!("shallow {A}\n").as_bytes());
        write_pkt(
            &mut body,
            format!("{A} {B} refs/heads/main\0report-status side-band-64k push-options object-format=sha1").as_bytes(),
        );
        write_pkt(
            &mut body,
            format!("{B} {} refs/heads/old", Oid::ZERO).as_bytes(),
        );
        write_flush(&mut body);
        write_pkt(&mut body, b"ci.skip\n");
        write_flush(&mut body);
        let at = body.len();
        body.extend_from_slice(b"PACK");
        let req = parse_push_request(&body).expect("parses");
        assert_eq!(req.commands.len(), 2);
        assert_eq!(
            req.commands.first().map(|c| c.name.as_str()),
            Some("refs/heads/main")
        );
        assert!(req.commands.get(1).is_some_and(RefUpdate::is_delete));
        assert!(req.capabilities.report_status());
        assert_eq!(req.capabilities.side_band_payload(), Some(65515));
        assert_eq!(req.shallow.len(), 1);
        assert_eq!(req.push_options, vec!["ci.skip".to_string()]);
        assert_eq!(req.pack_offset, at);
    }

    #[test]
    fn rejects_bad_commands_and_sha256() {
        let mut body = Vec::new();
        write_pkt(&mut body, format!("{A} {B}\0report-status").as_bytes());
        write_flush(&mut body);
        assert!(matches!(
            parse_push_request(&body),
            Err(PackError::Command(_))
        ));

        let mut body = Vec::new();
        write_pkt(&mut body, format!("{A} {B} refs/heads/a b\0").as_bytes());
        write_flush(&mut body);
        assert!(parse_push_request(&body).is_err());

        let mut body = Vec::new();
        write_pkt(
            &mut body,
            format!("{A} {B} refs/heads/main\0object-format=sha256").as_bytes(),
        );
        write_flush(&mut body);
        assert!(matches!(
            parse_push_request(&body),
            Err(PackError::Unsupported(_))
        ));

        let mut body = Vec::new();
        write_pkt(&mut body, format!("{A} {B} refs/heads/main\0").as_bytes());
        assert!(parse_push_request(&body).is_err(), "missing flush");
    }

    #[test]
    fn push_certificate_commands() {
        let mut body = Vec::new();
        write_pkt(&mut body, b"push-cert\0report-status\n");
        for line in [
            "certificate version 0.1\n".to_string(),
            "pusher someone 0 +0000\n".to_string(),
            "\n".to_string(),
            format!("{A} {B} refs/heads/main\n"),
            "-----BEGIN PGP SIGNATURE-----\n".to_string(),
            "xyz\n".to_string(),
            "-----END PGP SIGNATURE-----\n".to_string(),
            "push-cert-end\n".to_string(),
        ] {
            write_pkt(&mut body, line.as_bytes());
        }
        write_flush(&mut body);
        let req = parse_push_request(&body).expect("parses");
        assert_eq!(req.commands.len(), 1);
        assert!(req.push_cert.unwrap_or_default().contains("pusher someone"));
    }
}
