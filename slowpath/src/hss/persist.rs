//! SQN durability as values (TS 33.102 6.3.2: a restart never reuses an SQN that left in a
//! challenge). The HSS queues a [`PersistRecord`] for every SQN it hands out; whoever owns
//! the disk writes the records (as journal lines, [`PersistRecord::journal_line`]) and
//! reports them durable by [`PersistTicket`]. This module also reads and writes the two
//! on-disk forms, a journal and a snapshot, as text: no file I/O happens here.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::HssError;

/// Orders SQN records: a record with a larger ticket was handed out later. "Durable up to
/// ticket `t`" covers every record whose ticket is `<= t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistTicket(u64);

impl PersistTicket {
    /// The ticket's sequence number (1 for the first record of a process).
    pub fn get(self) -> u64 {
        self.0
    }

    /// The ticket after this one.
    pub(crate) fn next(self) -> Self {
        PersistTicket(self.0 + 1)
    }

    /// The ticket before the first record: nothing is covered by it.
    pub(crate) const ZERO: PersistTicket = PersistTicket(0);
}

/// One SQN advance to be made durable: subscriber `impi` handed out `sqn` (48 bits,
/// SEQ||IND). Carries no key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistRecord {
    ticket: PersistTicket,
    /// The subscriber's own IMPI, shared (a challenge allocates no copy of it, and the
    /// slowpath thread frees none after its group commit).
    impi: Arc<str>,
    sqn: u64,
}

impl PersistRecord {
    pub(crate) fn new(ticket: PersistTicket, impi: Arc<str>, sqn: u64) -> Self {
        PersistRecord { ticket, impi, sqn }
    }

    /// Its place in the order of records.
    pub fn ticket(&self) -> PersistTicket {
        self.ticket
    }

    /// The subscriber's private identity.
    pub fn impi(&self) -> &str {
        &self.impi
    }

    /// The SQN handed out.
    pub fn sqn(&self) -> u64 {
        self.sqn
    }

    /// The record as one journal line, `<sqn in 12 hex digits> <impi>\n`.
    pub fn journal_line(&self) -> String {
        let mut line = String::with_capacity(14 + self.impi.len());
        self.push_journal_line(&mut line);
        line
    }

    /// Appends [`PersistRecord::journal_line`] to `out` (a batch's lines, one buffer).
    pub fn push_journal_line(&self, out: &mut String) {
        out.reserve(14 + self.impi.len());
        push_hex12(out, self.sqn);
        out.push(' ');
        out.push_str(&self.impi);
        out.push('\n');
    }

    /// [`PersistRecord::push_journal_line`] into bytes (the registration store's SQN
    /// record: no UTF-8 check of the digits).
    pub fn push_journal_bytes(&self, out: &mut Vec<u8>) {
        out.reserve(14 + self.impi.len());
        push_hex12_bytes(out, self.sqn);
        out.push(b' ');
        out.extend_from_slice(self.impi.as_bytes());
        out.push(b'\n');
    }
}

/// Appends `v` in lower-case hex, at least 12 digits (zero-padded), as `{:012x}` writes it
/// (an SQN is 48 bits, so always 12), without the formatting machinery (issue 10: a line per
/// challenge on the slowpath thread).
fn push_hex12(out: &mut String, v: u64) {
    match hex12(v) {
        Some(digits) => out.extend(digits.iter().map(|&d| char::from(d))),
        None => push_hex_long(out, v),
    }
}

/// [`push_hex12`] into bytes.
fn push_hex12_bytes(out: &mut Vec<u8>, v: u64) {
    match hex12(v) {
        Some(digits) => out.extend_from_slice(&digits),
        None => {
            let mut s = String::new();
            push_hex_long(&mut s, v);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// Lower-case hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// The 12 hex digits of an SQN (`v` below 2^48), written at fixed places; `None` above.
#[inline]
fn hex12(v: u64) -> Option<[u8; 12]> {
    if v >> 48 != 0 {
        return None;
    }
    let mut digits = [0u8; 12];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((v >> (44 - 4 * i)) & 0xf) as usize];
    }
    Some(digits)
}

/// `v` (at least 2^48: more than 12 digits) in hex.
#[cold]
fn push_hex_long(out: &mut String, v: u64) {
    let mut digits = [0u8; 16];
    let mut n = 0;
    let mut rest = v;
    while rest != 0 {
        digits[15 - n] = HEX[(rest & 0xf) as usize];
        rest >>= 4;
        n += 1;
    }
    // ASCII hex digits: always UTF-8.
    out.push_str(std::str::from_utf8(&digits[16 - n..]).unwrap_or_default());
}

/// The last SQN per IMPI, as recovered from a snapshot and a journal.
pub type SqnState = BTreeMap<String, u64>;

/// Applies journal text (lines of [`PersistRecord::journal_line`]) to `state`, keeping the
/// largest SQN per IMPI. A torn or garbled line (a crash mid-append) is skipped: no challenge
/// carrying it was sent, since sending waits for durability.
pub fn apply_journal(state: &mut SqnState, text: &str) {
    for line in text.lines() {
        let Some((hex, impi)) = line.split_once(' ') else {
            continue;
        };
        if let Some(sqn) = parse_sqn_hex(hex) {
            let e = state.entry(impi.to_string()).or_insert(0);
            *e = (*e).max(sqn);
        }
    }
}

/// Parses a snapshot (TOML map IMPI -> SQN in 12 hex digits). A snapshot as
/// [`render_snapshot`] writes it without `toml` is read line by line (issue 10: a million
/// IMPIs); any other (an older file `toml` wrote with escapes, one edited by hand) by `toml`
/// ([`parse_snapshot_document`]), whose result and errors it then is.
pub fn parse_snapshot(text: &str) -> Result<SqnState, HssError> {
    match super::plain::snapshot(text) {
        Some(state) => Ok(state),
        None => parse_snapshot_document(text),
    }
}

/// Parses a snapshot with the `toml` crate only (the reference [`parse_snapshot`]'s line
/// reader agrees with).
pub fn parse_snapshot_document(text: &str) -> Result<SqnState, HssError> {
    let snap: BTreeMap<String, String> = toml::from_str(text).map_err(|e| HssError::Parse {
        line: 0,
        reason: format!("SQN state: {}", e.message()),
    })?;
    snap.into_iter()
        .map(|(impi, hex)| match parse_sqn_hex(&hex) {
            Some(sqn) => Ok((impi, sqn)),
            None => Err(HssError::Parse {
                line: 0,
                reason: format!("SQN state: bad SQN for {impi}"),
            }),
        })
        .collect()
}

/// Renders a snapshot (TOML map IMPI -> SQN in 12 hex digits): one `key = "sqn"` line per
/// IMPI, sorted (as `toml` writes a map; a state given in another order is sorted first,
/// an IMPI given twice written once with its largest SQN). IMPIs of the usual characters are written
/// directly, byte for byte as `toml` writes them (issue 10: `toml`'s serializer was ~10k
/// instructions a registration at shutdown); a state with any other IMPI goes through `toml`.
pub fn render_snapshot<'a>(
    state: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<String, HssError> {
    let mut state: Vec<(&str, u64)> = state.into_iter().collect();
    if !state.windows(2).all(|w| w[0].0 < w[1].0) {
        // A checkpoint's state comes in the HSS's order: sorted here (an IMPI twice keeps
        // its largest SQN, the fold's rule), so it is written without `toml` too.
        state.sort_unstable_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
        state.dedup_by(|later, first| later.0 == first.0);
    }
    if let Some(text) = render_plain(&state) {
        return Ok(text);
    }
    let snap: BTreeMap<&str, String> = state
        .into_iter()
        .map(|(k, v)| (k, format!("{v:012x}")))
        .collect();
    toml::to_string(&snap).map_err(|e| HssError::Parse {
        line: 0,
        reason: e.to_string(),
    })
}

/// [`render_snapshot`] without `toml`, if every IMPI is a bare key (`A-Za-z0-9_-`) or a
/// quoted one of printable ASCII without `"`, `\` or `'` (so neither form needs an escape),
/// and the IMPIs come sorted without duplicates (as `toml` writes a map); `None` otherwise.
fn render_plain(state: &[(&str, u64)]) -> Option<String> {
    let bytes: usize = state.iter().map(|(impi, _)| impi.len() + 20).sum();
    let mut out: Vec<u8> = Vec::with_capacity(bytes);
    let mut last: Option<&str> = None;
    for &(impi, sqn) in state {
        if last.is_some_and(|l| l >= impi) {
            return None;
        }
        last = Some(impi);
        // One pass, a table look-up a byte: bare if every byte is `A-Za-z0-9_-`; a byte
        // outside printable ASCII, or `"`, `\` or `'`, needs an escape.
        let class = impi
            .bytes()
            .fold(BARE | QUOTED, |c, b| c & KEY_CLASS[usize::from(b)]);
        if class & QUOTED == 0 {
            return None;
        }
        let bare = !impi.is_empty() && class & BARE != 0;
        if !bare {
            out.push(b'"');
        }
        out.extend_from_slice(impi.as_bytes());
        out.extend_from_slice(if bare { b" = \"" } else { b"\" = \"" });
        push_hex12_bytes(&mut out, sqn);
        out.extend_from_slice(b"\"\n");
    }
    // Printable ASCII only: one check of the whole text.
    String::from_utf8(out).ok()
}

/// [`KEY_CLASS`]: the byte may stand in a bare TOML key.
const BARE: u8 = 1;
/// [`KEY_CLASS`]: the byte may stand in a quoted TOML key without an escape.
const QUOTED: u8 = 2;
/// Per byte, [`BARE`] and [`QUOTED`] as they apply.
const KEY_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c >= b' ' && c <= b'~' && c != b'"' && c != b'\\' && c != b'\'' {
            t[b] |= QUOTED;
        }
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' {
            t[b] |= BARE;
        }
        b += 1;
    }
    t
};

/// Parses 12 hex digits (a 48-bit SQN).
pub(crate) fn parse_sqn_hex(hex: &str) -> Option<u64> {
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The snapshot is written without `toml` (issue 10) byte for byte as `toml` wrote it,
    /// bare and quoted keys alike; an IMPI that would need an escape takes `toml`'s way, and
    /// every rendering parses back to the state.
    #[test]
    fn snapshots_are_the_bytes_toml_wrote() {
        let via_toml = |state: &SqnState| {
            let snap: BTreeMap<&str, String> = state
                .iter()
                .map(|(k, v)| (k.as_str(), format!("{v:012x}")))
                .collect();
            toml::to_string(&snap).unwrap()
        };
        let plain = [
            "user1@ims.mnc001.mcc001.3gppnetwork.org",
            "bare_key-1",
            "",
            "A",
            "with space",
            "punct ~!#$%^&*()+={}[]|:;<>,./?",
            "001010000000001@ims.mnc001.mcc001.3gppnetwork.org",
        ];
        let escaped = [
            "quo\"te",
            "back\\slash",
            "apo'strophe",
            "tab\there",
            "é@x",
            "nl\n",
        ];
        for impis in [
            &plain[..],
            &escaped[..],
            &[plain[0], escaped[3]][..],
            &[][..],
        ] {
            let state: SqnState = (impis.iter().enumerate())
                .map(|(i, k)| (k.to_string(), (i as u64 + 1) * 0x1_0001 + (1 << 47)))
                .collect();
            let text = render_snapshot(state.iter().map(|(k, v)| (k.as_str(), *v))).unwrap();
            assert_eq!(text, via_toml(&state), "{impis:?}");
            assert_eq!(parse_snapshot(&text).unwrap(), state);
        }
        let all_plain = plain.iter().all(|k| render_plain(&[(k, 7)]).is_some());
        assert!(all_plain, "the usual IMPIs are written without toml");
        for k in escaped {
            assert!(render_plain(&[(k, 7)]).is_none(), "{k:?}");
        }
    }

    /// The journal line is written without `fmt` (issue 10), byte for byte what
    /// `writeln!("{:012x} {}")` wrote before, for SQNs of every width.
    #[test]
    fn journal_lines_are_the_bytes_fmt_wrote() {
        let mut values = vec![0, 1, 0xf, 0x10, 0x20, (1 << 48) - 1, 1 << 48, u64::MAX];
        values.extend((0..64).map(|b| 1u64 << b));
        values.extend((0..64).map(|b| (1u64 << b).wrapping_sub(1)));
        values.extend([0x0123_4567_89ab, 0xfedc_ba98_7654_3210, 0xa5a5_a5a5_a5a5]);
        for sqn in values {
            for impi in ["a@x", "user1@ims.mnc001.mcc001.3gppnetwork.org", ""] {
                let r = PersistRecord::new(PersistTicket(7), impi.into(), sqn);
                let mut got = String::from("before\n");
                r.push_journal_line(&mut got);
                assert_eq!(got, format!("before\n{sqn:012x} {impi}\n"), "sqn {sqn:#x}");
                assert_eq!(r.journal_line(), format!("{sqn:012x} {impi}\n"));
                let mut bytes = b"before\n".to_vec();
                r.push_journal_bytes(&mut bytes);
                assert_eq!(bytes, format!("before\n{sqn:012x} {impi}\n").into_bytes());
            }
        }
    }

    /// A state in the HSS's order (a checkpoint's), an IMPI twice among it, renders as the
    /// sorted map `toml` writes, the largest SQN of the IMPI kept, and without `toml` when
    /// its IMPIs allow.
    #[test]
    fn an_unsorted_state_renders_as_its_sorted_map() {
        let given = [
            ("c@x", 3u64),
            ("a@x", 1),
            ("b@x", 0x20),
            ("a@x", 9),
            ("b@x", 0x10),
            ("with space", 5),
        ];
        let mut want: SqnState = SqnState::new();
        for (k, v) in given {
            let e = want.entry(k.to_string()).or_insert(0);
            *e = (*e).max(v);
        }
        let via_toml = toml::to_string(
            &(want.iter())
                .map(|(k, v)| (k.as_str(), format!("{v:012x}")))
                .collect::<BTreeMap<&str, String>>(),
        )
        .unwrap();
        let text = render_snapshot(given).unwrap();
        assert_eq!(text, via_toml);
        assert_eq!(parse_snapshot(&text).unwrap(), want);
        // The same with an IMPI that needs `toml`'s escapes.
        let text = render_snapshot([("z\"q", 4), ("a@x", 2), ("z\"q", 7)]).unwrap();
        let want: SqnState = [("a@x".to_string(), 2), ("z\"q".to_string(), 7)].into();
        assert_eq!(parse_snapshot(&text).unwrap(), want);
    }

    #[test]
    fn journal_lines_round_trip_and_torn_lines_are_skipped() {
        let records = [
            PersistRecord::new(PersistTicket(1), "a@x".into(), 0x20),
            PersistRecord::new(PersistTicket(2), "a@x".into(), 0x40),
            PersistRecord::new(PersistTicket(3), "b@x".into(), 0x60),
        ];
        let mut text: String = records.iter().map(PersistRecord::journal_line).collect();
        assert_eq!(text.lines().next(), Some("000000000020 a@x"));
        let mut batch = String::new();
        records.iter().for_each(|r| r.push_journal_line(&mut batch));
        assert_eq!(
            batch,
            "000000000020 a@x\n000000000040 a@x\n000000000060 b@x\n"
        );
        text.push_str("0000000");
        let mut state = SqnState::new();
        apply_journal(&mut state, &text);
        assert_eq!(state.get("a@x"), Some(&0x40));
        assert_eq!(state.get("b@x"), Some(&0x60));
        assert_eq!(state.len(), 2);
    }

    #[test]
    fn snapshot_round_trip_and_bad_snapshots() {
        let text = render_snapshot([("a@x", 0x20), ("b@x", 0xffff_ffff_ffff)]).unwrap();
        let state = parse_snapshot(&text).unwrap();
        assert_eq!(state.get("b@x"), Some(&0xffff_ffff_ffff));
        assert!(parse_snapshot("\"a@x\" = \"20\"\n").is_err());
        assert!(parse_snapshot("not toml").is_err());
    }
}
