//! A blocking reader that frames SIP from a byte stream (RFC 3261 18.3), for the kernel-socket
//! sides (the daemon's link to the IMS core, the test core akacore): one loop for both.

use std::io::{ErrorKind, Read, Write};

use crate::sipscan::{FrameLimits, ScanError, StreamFramer, StreamItem};

/// Bytes read from the socket at a time.
const CHUNK: usize = 16 * 1024;

/// Why [`read_sip_stream`] returned.
#[derive(Debug)]
pub enum StreamEnd {
    /// The peer closed the stream.
    Closed,
    /// `stopped()` said so.
    Stopped,
    /// A read failed (other than a timeout).
    Failed(std::io::Error),
    /// The bytes cannot be framed as SIP any more; the stream must be closed.
    BadFraming(ScanError),
}

/// Reads `stream` until it closes, fails, cannot be framed or `stopped()` is true (looked at
/// after every read, so give the stream a read timeout), handing each whole SIP message to
/// `on_message` and answering each CRLFCRLF ping with a CRLF pong (RFC 5626 4.4.1).
pub fn read_sip_stream<S: Read + Write>(
    stream: &mut S,
    stopped: impl Fn() -> bool,
    mut on_message: impl FnMut(Vec<u8>),
) -> StreamEnd {
    let mut framer = StreamFramer::new(FrameLimits::default());
    let mut chunk = vec![0u8; CHUNK];
    while !stopped() {
        match stream.read(&mut chunk) {
            Ok(0) => return StreamEnd::Closed,
            Ok(n) => framer.push(chunk.get(..n).unwrap_or_default()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => return StreamEnd::Failed(e),
        }
        loop {
            match framer.next_item() {
                Ok(Some(StreamItem::Message(bytes))) => on_message(bytes),
                Ok(Some(StreamItem::Ping)) => {
                    // A failed pong shows up as a failed read next.
                    let _ = stream.write_all(b"\r\n");
                }
                Ok(Some(StreamItem::Pong)) => {}
                Ok(None) => break,
                Err(e) => return StreamEnd::BadFraming(e),
            }
        }
    }
    StreamEnd::Stopped
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A scripted peer: reads come from `input` in pieces of `piece` bytes, writes are kept.
    struct Peer {
        input: Cursor<Vec<u8>>,
        piece: usize,
        written: Vec<u8>,
    }

    impl Read for Peer {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.piece);
            self.input.read(&mut buf[..n])
        }
    }

    impl Write for Peer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn peer(input: &[u8], piece: usize) -> Peer {
        Peer {
            input: Cursor::new(input.to_vec()),
            piece,
            written: Vec::new(),
        }
    }

    const OPTIONS: &[u8] = b"OPTIONS sip:p SIP/2.0\r\nContent-Length: 3\r\n\r\nabc";

    #[test]
    fn messages_split_across_reads_come_out_whole_and_pings_get_pongs() {
        let mut input = OPTIONS.to_vec();
        input.extend_from_slice(b"\r\n\r\n");
        input.extend_from_slice(OPTIONS);
        let mut p = peer(&input, 7);
        let mut got = Vec::new();
        let end = read_sip_stream(&mut p, || false, |m| got.push(m));
        assert!(matches!(end, StreamEnd::Closed), "{end:?}");
        assert_eq!(got, vec![OPTIONS.to_vec(), OPTIONS.to_vec()]);
        assert_eq!(p.written, b"\r\n");
    }

    #[test]
    fn unframable_bytes_end_the_stream() {
        let mut p = peer(b"OPTIONS sip:p SIP/2.0\r\nContent-Length: x\r\n\r\n", 64);
        let end = read_sip_stream(&mut p, || false, |_| panic!("no message"));
        assert!(matches!(end, StreamEnd::BadFraming(_)), "{end:?}");
    }

    #[test]
    fn a_stopped_reader_reads_nothing() {
        let mut p = peer(OPTIONS, 64);
        let end = read_sip_stream(&mut p, || true, |_| panic!("no message"));
        assert!(matches!(end, StreamEnd::Stopped), "{end:?}");
    }
}
