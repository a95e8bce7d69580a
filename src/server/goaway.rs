//! Says why the server closed an HTTP/2 connection.
//!
//! The HTTP/2 library (h2) refuses some client behaviour by closing the whole connection with a
//! GOAWAY frame: too many small DATA frames left unread (`ENHANCE_YOUR_CALM`,
//! `too_many_data_frames`), too many streams reset, protocol errors. It logs most of these only at
//! debug level and never with the client's address, and hyper hands the server no error it could
//! log, so an operator saw nothing while every call on the connection failed.
//!
//! [`Watched`] wraps an accepted connection and watches the bytes the server *writes*: it parses
//! the 9-byte HTTP/2 frame headers (a server sends no connection preface magic, its first frame is
//! SETTINGS) and, on a GOAWAY whose error code is not `NO_ERROR`, logs a warning with the peer
//! address, the error code's name and the debug data. It never changes, delays or copies what
//! passes through, except the few bytes of a GOAWAY payload. A connection whose first written bytes
//! are not a SETTINGS frame (HTTP/1.1, for gRPC-Web) is not parsed further.
//!
//! It must wrap the plaintext stream: under TLS it would have to sit inside the TLS layer.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::Connected;

/// Length of an HTTP/2 frame header: 24-bit length, type, flags, 31-bit stream id.
const FRAME_HEADER_LEN: usize = 9;
/// Frame type of SETTINGS, the first frame a server writes.
const SETTINGS: u8 = 0x4;
/// Frame type of GOAWAY.
const GOAWAY: u8 = 0x7;
/// GOAWAY payload before its debug data: last stream id and error code.
const GOAWAY_FIXED_LEN: usize = 8;
/// Debug data kept for the log line; the rest of a longer payload is skipped.
const MAX_DEBUG_DATA: usize = 256;
/// The error code of a graceful GOAWAY (shutdown, idle close).
const NO_ERROR: u32 = 0x0;

/// A GOAWAY frame found in what the server wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAway {
    /// Highest stream id the server may have processed.
    pub last_stream_id: u32,
    /// HTTP/2 error code (RFC 9113 §7).
    pub error_code: u32,
    /// Opaque debug data (h2 puts a reason there, e.g. `too_many_data_frames`), at most 256 bytes.
    pub debug_data: Vec<u8>,
}

impl GoAway {
    /// Returns the RFC 9113 name of the error code, or `UNKNOWN`.
    pub fn error_name(&self) -> &'static str {
        error_name(self.error_code)
    }
}

/// Returns the RFC 9113 name of an HTTP/2 error code.
pub fn error_name(code: u32) -> &'static str {
    match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => "UNKNOWN",
    }
}

/// Where the scanner is in the written byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Collecting the 9 bytes of a frame header (`header_len` of them so far).
    Header,
    /// Inside a frame's payload, `remaining` bytes still to come; kept when the frame is a GOAWAY.
    Payload { remaining: usize, goaway: bool },
    /// Not HTTP/2 (or not parseable): everything from here on is ignored.
    Off,
}

/// Finds GOAWAY frames in the bytes a server writes, however the writes split them.
#[derive(Debug)]
pub struct FrameScanner {
    phase: Phase,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// Whether the next header is the connection's first (which must be SETTINGS).
    first: bool,
    /// The start of the GOAWAY payload being read (capped at 8 + 256 bytes).
    goaway: Vec<u8>,
}

impl Default for FrameScanner {
    fn default() -> Self {
        Self {
            phase: Phase::Header,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            first: true,
            goaway: Vec::new(),
        }
    }
}

impl FrameScanner {
    /// Returns a scanner for a new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns whether the scanner gave up on the connection (it is not HTTP/2).
    pub fn is_off(&self) -> bool {
        self.phase == Phase::Off
    }

    /// Feeds the next written bytes; returns every GOAWAY frame they complete.
    pub fn scan(&mut self, mut bytes: &[u8]) -> Vec<GoAway> {
        let mut found = Vec::new();
        while !bytes.is_empty() {
            match self.phase {
                Phase::Off => break,
                Phase::Header => {
                    let take = (FRAME_HEADER_LEN - self.header_len).min(bytes.len());
                    self.header[self.header_len..self.header_len + take]
                        .copy_from_slice(&bytes[..take]);
                    self.header_len += take;
                    bytes = &bytes[take..];
                    if self.header_len == FRAME_HEADER_LEN {
                        self.header_len = 0;
                        self.start_frame(&mut found);
                    }
                }
                Phase::Payload { remaining, goaway } => {
                    let take = remaining.min(bytes.len());
                    if goaway {
                        let room =
                            (GOAWAY_FIXED_LEN + MAX_DEBUG_DATA).saturating_sub(self.goaway.len());
                        self.goaway.extend_from_slice(&bytes[..take.min(room)]);
                    }
                    bytes = &bytes[take..];
                    let remaining = remaining - take;
                    if remaining == 0 {
                        self.phase = Phase::Header;
                        if goaway {
                            found.extend(self.finish_goaway());
                        }
                    } else {
                        self.phase = Phase::Payload { remaining, goaway };
                    }
                }
            }
        }
        found
    }

    /// Reads the complete header in `self.header` and moves to its payload.
    fn start_frame(&mut self, found: &mut Vec<GoAway>) {
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = self.header;
        let length = u32::from_be_bytes([0, l0, l1, l2]) as usize;
        let stream = u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff;
        if std::mem::take(&mut self.first) {
            // A server's preface is a SETTINGS frame on stream 0, not an ACK, whose length is a
            // multiple of 6. Anything else (an HTTP/1.1 status line) is not HTTP/2: stop here.
            if kind != SETTINGS || flags & 0x1 != 0 || stream != 0 || !length.is_multiple_of(6) {
                self.phase = Phase::Off;
                return;
            }
        }
        let goaway = kind == GOAWAY && stream == 0;
        if goaway {
            self.goaway.clear();
        }
        self.phase = Phase::Payload {
            remaining: length,
            goaway,
        };
        if length == 0 {
            self.phase = Phase::Header;
            if goaway {
                found.extend(self.finish_goaway());
            }
        }
    }

    /// Decodes the collected GOAWAY payload; `None` when it is shorter than the fixed part.
    fn finish_goaway(&mut self) -> Option<GoAway> {
        let payload = std::mem::take(&mut self.goaway);
        if payload.len() < GOAWAY_FIXED_LEN {
            return None;
        }
        let word = |at: usize| {
            u32::from_be_bytes([
                payload[at],
                payload[at + 1],
                payload[at + 2],
                payload[at + 3],
            ])
        };
        Some(GoAway {
            last_stream_id: word(0) & 0x7fff_ffff,
            error_code: word(4),
            debug_data: payload[GOAWAY_FIXED_LEN..].to_vec(),
        })
    }
}

/// Logs `goaway`, sent to `peer`: a warning unless it is a graceful `NO_ERROR`.
fn report(peer: Option<SocketAddr>, goaway: &GoAway) {
    let peer = peer.map_or_else(|| "unknown".to_owned(), |peer| peer.to_string());
    let debug_data = String::from_utf8_lossy(&goaway.debug_data);
    if goaway.error_code == NO_ERROR {
        tracing::debug!(
            %peer,
            last_stream_id = goaway.last_stream_id,
            "HTTP/2 connection closing gracefully (GOAWAY NO_ERROR)"
        );
        return;
    }
    let hint = hint(goaway.error_code, &debug_data);
    tracing::warn!(
        %peer,
        error_code = goaway.error_name(),
        debug_data = %debug_data,
        last_stream_id = goaway.last_stream_id,
        hint,
        doc = "docs/http2-limits.md",
        "closed an HTTP/2 connection with GOAWAY: every call still open on it fails"
    );
}

/// Returns what a GOAWAY's error code and debug data mean, in the words of docs/http2-limits.md.
fn hint(error_code: u32, debug_data: &str) -> &'static str {
    match (error_code, debug_data) {
        (0xb, "too_many_data_frames") => {
            "the client sent more small DATA frames than the server had read (the connection's \
             small-frame budget, half its window), or over 100 empty ones"
        }
        (0xb, "too_many_resets") => {
            "the client reset too many streams before the server accepted them (rapid reset)"
        }
        (0xb, "too_many_internal_resets") => {
            "the server reset too many streams for the client's protocol errors"
        }
        (0xb, "too_many_continuations" | "header_list_way_too_large") => {
            "the client sent a header block far over the limit (CONTINUATION flood)"
        }
        (0xb, _) => "the client exceeded an HTTP/2 abuse limit",
        _ => "HTTP/2 protocol error on the connection",
    }
}

/// An accepted connection whose written HTTP/2 frames are watched for GOAWAY (see the module docs).
#[derive(Debug)]
pub struct Watched<IO> {
    inner: IO,
    peer: Option<SocketAddr>,
    scanner: FrameScanner,
    /// What was reported, for the unit tests.
    #[cfg(test)]
    reported: Vec<GoAway>,
}

impl<IO> Watched<IO> {
    /// Wraps `inner`, a connection with `peer`.
    pub fn new(inner: IO, peer: Option<SocketAddr>) -> Self {
        Self {
            inner,
            peer,
            scanner: FrameScanner::new(),
            #[cfg(test)]
            reported: Vec::new(),
        }
    }

    /// Feeds the `written` bytes to the scanner and logs each GOAWAY found.
    fn saw_written(&mut self, written: &[u8]) {
        if self.scanner.is_off() {
            return;
        }
        for goaway in self.scanner.scan(written) {
            report(self.peer, &goaway);
            #[cfg(test)]
            self.reported.push(goaway);
        }
    }
}

impl Watched<TcpStream> {
    /// Wraps an accepted TCP connection.
    pub fn tcp(stream: TcpStream) -> Self {
        let peer = stream.peer_addr().ok();
        Self::new(stream, peer)
    }
}

impl<IO: Connected> Connected for Watched<IO> {
    type ConnectInfo = IO::ConnectInfo;

    // The same connect info as the plain stream: `Request::remote_addr` keeps working.
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(count)) = written {
            this.saw_written(&buf[..count]);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(count)) = written {
            // Only the first `count` bytes, across the slices, were written.
            let mut left = count;
            for buf in bufs {
                if left == 0 {
                    break;
                }
                let take = left.min(buf.len());
                this.saw_written(&buf[..take]);
                left -= take;
            }
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns an HTTP/2 frame: header plus payload.
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut bytes = vec![length[1], length[2], length[3], kind, flags];
        bytes.extend_from_slice(&stream.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn settings() -> Vec<u8> {
        // SETTINGS_MAX_CONCURRENT_STREAMS = 200.
        frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 200])
    }

    fn goaway(last_stream: u32, code: u32, debug: &[u8]) -> Vec<u8> {
        let mut payload = last_stream.to_be_bytes().to_vec();
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(debug);
        frame(GOAWAY, 0, 0, &payload)
    }

    /// What a server writes before an abuse GOAWAY: preface, a settings ACK, headers and data.
    fn conversation() -> Vec<u8> {
        let mut bytes = settings();
        bytes.extend(frame(SETTINGS, 1, 0, &[]));
        bytes.extend(frame(0x8, 0, 0, &[0, 0x10, 0, 0])); // WINDOW_UPDATE
        bytes.extend(frame(0x1, 0x4, 1, &[0x88])); // HEADERS :status 200
        bytes.extend(frame(0x0, 0, 1, &[0, 0, 0, 0, 2, 8, 1])); // DATA, a gRPC message
        // A GOAWAY id inside a DATA payload must not be mistaken for a frame.
        bytes.extend(frame(0x0, 0, 3, &goaway(1, 0xb, b"fake")));
        bytes.extend(goaway(7, 0xb, b"too_many_data_frames"));
        bytes
    }

    fn expected() -> GoAway {
        GoAway {
            last_stream_id: 7,
            error_code: 0xb,
            debug_data: b"too_many_data_frames".to_vec(),
        }
    }

    #[test]
    fn finds_a_goaway_written_at_once() {
        let found = FrameScanner::new().scan(&conversation());
        assert_eq!(found, vec![expected()]);
        assert_eq!(found[0].error_name(), "ENHANCE_YOUR_CALM");
    }

    #[test]
    fn finds_a_goaway_across_every_split_of_the_writes() {
        let bytes = conversation();
        // Two writes, split at every position: through headers, payloads and the GOAWAY itself.
        for split in 0..=bytes.len() {
            let mut scanner = FrameScanner::new();
            let mut found = scanner.scan(&bytes[..split]);
            found.extend(scanner.scan(&bytes[split..]));
            assert_eq!(found, vec![expected()], "split at {split}");
        }
        // One byte per write.
        let mut scanner = FrameScanner::new();
        let found: Vec<GoAway> = bytes
            .iter()
            .flat_map(|byte| scanner.scan(&[*byte]))
            .collect();
        assert_eq!(found, vec![expected()]);
    }

    #[test]
    fn reads_graceful_and_several_goaways() {
        let mut bytes = settings();
        bytes.extend(goaway(0x7fff_ffff, NO_ERROR, b""));
        bytes.extend(goaway(5, 0x1, b"")); // PROTOCOL_ERROR, no debug data
        let found = FrameScanner::new().scan(&bytes);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].error_name(), "NO_ERROR");
        assert_eq!(found[0].last_stream_id, 0x7fff_ffff);
        assert_eq!(
            (found[1].error_name(), found[1].last_stream_id),
            ("PROTOCOL_ERROR", 5)
        );
        assert!(found[1].debug_data.is_empty());
    }

    #[test]
    fn caps_long_debug_data_and_keeps_parsing_after_it() {
        let mut bytes = settings();
        bytes.extend(goaway(1, 0x2, &[b'x'; 1000]));
        bytes.extend(goaway(3, 0xb, b"after"));
        let found = FrameScanner::new().scan(&bytes);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].debug_data.len(), MAX_DEBUG_DATA);
        assert_eq!(found[1].debug_data, b"after");
    }

    #[test]
    fn ignores_http1_connections() {
        let mut scanner = FrameScanner::new();
        let response = b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc-web\r\n\r\n";
        assert!(scanner.scan(response).is_empty());
        assert!(scanner.is_off());
        // Even if the body happened to hold a GOAWAY-shaped frame.
        assert!(scanner.scan(&goaway(1, 0xb, b"x")).is_empty());
    }

    #[test]
    fn a_short_goaway_payload_is_not_reported() {
        let mut bytes = settings();
        bytes.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 1]));
        bytes.extend(goaway(1, 0xb, b"ok"));
        let found = FrameScanner::new().scan(&bytes);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].debug_data, b"ok");
    }

    #[tokio::test]
    async fn the_wrapper_sees_vectored_and_plain_writes() {
        use tokio::io::AsyncWriteExt as _;
        let (client, mut server_end) = tokio::io::duplex(1 << 16);
        let mut watched = Watched::new(client, None);
        let bytes = conversation();
        let (head, tail) = bytes.split_at(bytes.len() - 10);
        watched.write_all(head).await.unwrap();
        let slices = [io::IoSlice::new(&tail[..4]), io::IoSlice::new(&tail[4..])];
        // A duplex stream takes the first slice only; a partial vectored write is the case to get right.
        let written = watched.write_vectored(&slices).await.unwrap();
        watched.write_all(&tail[written..]).await.unwrap();
        assert_eq!(watched.reported, vec![expected()]);
        drop(watched);
        let mut echoed = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut server_end, &mut echoed)
            .await
            .unwrap();
        assert_eq!(echoed, bytes, "bytes pass through unchanged");
    }
}
