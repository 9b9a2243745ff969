//! Answers to requests the parser rejected: when `response_to` cannot be used, the response
//! copies the Via, From, To, Call-ID and CSeq lines as they were written (RFC 3261 8.2.6.2).

use crate::sip::{HeaderKind, MessageBuilder};

/// The `code reason` response to the raw request `raw`, or `None` if `raw` is a response,
/// an ACK (never answered, RFC 3261 17.1.1.3) or lacks one of the headers a response copies.
pub(crate) fn raw_error_response(
    raw: &[u8],
    code: u16,
    reason: &str,
    to_tag: &str,
) -> Option<Vec<u8>> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(raw.get(..end)?);
    let mut lines: Vec<String> = Vec::new();
    for line in head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        // RFC 3261 7.3.1: a line starting with white space continues the previous one.
        match lines.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push(' ');
                last.push_str(line.trim_start());
            }
            _ => lines.push(line.to_string()),
        }
    }
    let mut it = lines.iter();
    let start = it.next()?;
    let method = start.split(' ').next()?;
    if start.starts_with("SIP/") || method == "ACK" || method.is_empty() {
        return None;
    }
    let (mut vias, mut from, mut to, mut call_id, mut cseq) = (Vec::new(), None, None, None, None);
    for line in it {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match HeaderKind::from_name(name.trim()) {
            HeaderKind::Via => vias.push(value),
            HeaderKind::From => from = from.or(Some(value)),
            HeaderKind::To => to = to.or(Some(value)),
            HeaderKind::CallId => call_id = call_id.or(Some(value)),
            HeaderKind::CSeq => cseq = cseq.or(Some(value)),
            _ => {}
        }
    }
    let (from, to, call_id, cseq) = (from?, to?, call_id?, cseq?);
    if vias.is_empty() {
        return None;
    }
    let mut b = MessageBuilder::response(code, reason);
    for v in vias {
        b.push_header("Via", v);
    }
    b.push_header("From", from);
    if to.to_ascii_lowercase().contains(";tag=") {
        b.push_header("To", to);
    } else {
        b.push_header("To", &format!("{to};tag={to_tag}"));
    }
    b.push_header("Call-ID", call_id);
    b.push_header("CSeq", cseq);
    Some(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_five_headers_of_a_505() {
        let raw = b"OPTIONS sip:a@b SIP/7.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1\r\nt: <sip:a@b>\r\ni: c1\r\nCSeq: 1\r\n OPTIONS\r\n\r\n";
        let r = raw_error_response(
            raw,
            505,
            "Version Not Supported: unsupported SIP version",
            "t9",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "SIP/2.0 505 Version Not Supported: unsupported SIP version\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=t9\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn no_answer_without_headers_or_for_ack_and_responses() {
        assert!(
            raw_error_response(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n", 400, "B", "t").is_none()
        );
        assert!(raw_error_response(
            b"ACK sip:a SIP/2.0\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n",
            400,
            "B",
            "t"
        )
        .is_none());
        assert!(raw_error_response(
            b"SIP/2.0 200 OK\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n",
            400,
            "B",
            "t"
        )
        .is_none());
        assert!(raw_error_response(b"", 400, "B", "t").is_none());
    }
}
