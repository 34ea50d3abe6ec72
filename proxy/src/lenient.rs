//! Request targets as PostgREST's HTTP server (Warp) takes them.
//!
//! PostgREST's own documentation writes `select=json_data->>blood_type` and
//! `in.("a","b")` in plain `curl` commands, and curl sends `"`, `<` and `>`
//! as they are. The `http` crate's URI parser (under hyper) refuses those
//! three bytes, so such a request got a bare 400 before any of the proxy's
//! code ran. [`Lenient`] wraps the listener: on each connection it follows
//! HTTP/1.1 framing (request line, headers, `Content-Length` or chunked
//! body) and percent-encodes exactly those bytes in request lines, which is
//! what a browser or an HTTP library would have sent. Bodies are never
//! touched; anything it does not follow (HTTP/2 prior knowledge, an
//! `Upgrade`, a malformed length, an over-long line) turns it into a plain
//! pass-through for the rest of the connection, and hyper answers as before.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest request or header line followed (hyper's own limit is lower).
const MAX_LINE: usize = 64 * 1024;

/// A listener whose connections percent-encode `"`, `<`, `>` in request
/// lines (see the module docs).
pub struct Lenient<L>(pub L);

impl<L: axum::serve::Listener> axum::serve::Listener for Lenient<L> {
    type Io = LenientIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        (LenientIo::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// One connection: reads go through a [`Framer`]. They land in hyper's
/// own buffer; only when a request line needs rewriting do the bytes from
/// there on take a detour through `out`.
pub struct LenientIo<T> {
    inner: T,
    framer: Framer,
    /// Rewritten bytes not yet handed to the reader, from `at`.
    out: Vec<u8>,
    at: usize,
}

impl<T> LenientIo<T> {
    pub fn new(inner: T) -> Self {
        LenientIo {
            inner,
            framer: Framer::default(),
            out: Vec::new(),
            at: 0,
        }
    }

    /// Move pending rewritten bytes into `buf`, as many as fit.
    fn drain_into(&mut self, buf: &mut ReadBuf<'_>) {
        let take = (self.out.len() - self.at).min(buf.remaining());
        buf.put_slice(&self.out[self.at..self.at + take]);
        self.at += take;
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for LenientIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.at < me.out.len() {
            me.drain_into(buf);
            return Poll::Ready(Ok(()));
        }
        if me.framer.passing() {
            return Pin::new(&mut me.inner).poll_read(cx, buf);
        }
        let start = buf.filled().len();
        match Pin::new(&mut me.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        // the common case: nothing to rewrite, the bytes stay where they are
        let Some(pos) = me.framer.scan(&buf.filled()[start..]) else {
            return Poll::Ready(Ok(()));
        };
        // from the first byte to rewrite on, through `out`
        me.out.clear();
        me.at = 0;
        me.framer.feed(&buf.filled()[start + pos..], &mut me.out);
        buf.set_filled(start + pos);
        me.drain_into(buf);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for LenientIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
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

fn needs_encoding(b: u8) -> bool {
    matches!(b, b'"' | b'<' | b'>')
}

/// `bytes` with `"`, `<`, `>` percent-encoded.
fn encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"%22"),
            b'<' => out.extend_from_slice(b"%3C"),
            b'>' => out.extend_from_slice(b"%3E"),
            b => out.push(b),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Before or in a request line.
    #[default]
    RequestLine,
    Header,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailer,
    /// Not followed any more: bytes pass unchanged.
    Pass,
}

/// HTTP/1.1 request framing over a byte stream, fed in any pieces.
#[derive(Debug, Default)]
pub struct Framer {
    state: State,
    /// The current request, header, chunk-size or trailer line.
    line: Vec<u8>,
    length: Option<u64>,
    chunked: bool,
    upgrade: bool,
}

impl Framer {
    fn passing(&self) -> bool {
        self.state == State::Pass
    }

    /// Append `input`, transformed, to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.run(input, Some(out));
    }

    /// Follow `input` as [`Framer::feed`] would, without copying it, up to
    /// the first byte that would be rewritten: its position (the framer
    /// stands just before it), or `None` when `input` passes unchanged.
    pub fn scan(&mut self, input: &[u8]) -> Option<usize> {
        self.run(input, None)
    }

    fn run(&mut self, input: &[u8], mut out: Option<&mut Vec<u8>>) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Pass => {
                    if let Some(o) = out {
                        o.extend_from_slice(&input[i..]);
                    }
                    return None;
                }
                State::Body(n) | State::ChunkData(n) => {
                    let take = (input.len() - i).min(usize::try_from(n).unwrap_or(usize::MAX));
                    if let Some(o) = out.as_deref_mut() {
                        o.extend_from_slice(&input[i..i + take]);
                    }
                    i += take;
                    let left = n - take as u64;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => State::RequestLine,
                        (State::Body(_), l) => State::Body(l),
                        (_, 0) => State::ChunkEnd,
                        (_, l) => State::ChunkData(l),
                    };
                }
                _ => {
                    // a line's worth at once: up to and with its `\n`, or to
                    // the byte that makes the line too long
                    let rest = &input[i..];
                    let newline = rest.iter().position(|&b| b == b'\n');
                    let text_len = newline.unwrap_or(rest.len());
                    let room = MAX_LINE - self.line.len();
                    let (emit, too_long) = if text_len > room {
                        (room + 1, true)
                    } else {
                        (newline.map_or(rest.len(), |p| p + 1), false)
                    };
                    let seg = &rest[..emit];
                    let encode = self.state == State::RequestLine;
                    match out.as_deref_mut() {
                        Some(o) if encode => encode_into(seg, o),
                        Some(o) => o.extend_from_slice(seg),
                        None if encode => {
                            if let Some(j) = seg.iter().position(|&b| needs_encoding(b)) {
                                self.line.extend_from_slice(&seg[..j]);
                                return Some(i + j);
                            }
                        }
                        None => {}
                    }
                    i += emit;
                    if too_long {
                        self.line.extend_from_slice(&seg[..room]);
                        self.state = State::Pass;
                    } else if newline.is_some() && emit == text_len + 1 {
                        self.line.extend_from_slice(&seg[..text_len]);
                        self.end_of_line();
                    } else {
                        self.line.extend_from_slice(seg);
                    }
                }
            }
        }
        None
    }

    fn end_of_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let text = line.strip_suffix(b"\r").unwrap_or(&line);
        self.state = match self.state {
            // empty lines before a request are allowed (RFC 9112 §2.2)
            State::RequestLine if text.is_empty() => State::RequestLine,
            State::RequestLine if text.starts_with(b"PRI * HTTP/2") => State::Pass,
            State::RequestLine => {
                self.length = None;
                self.chunked = false;
                self.upgrade = false;
                State::Header
            }
            State::Header if text.is_empty() => {
                if self.upgrade {
                    State::Pass
                } else if self.chunked {
                    State::ChunkSize
                } else {
                    match self.length {
                        Some(n) if n > 0 => State::Body(n),
                        _ => State::RequestLine,
                    }
                }
            }
            State::Header => self.header(text),
            State::ChunkSize => {
                let size = text.split(|&c| c == b';').next().unwrap_or_default();
                match std::str::from_utf8(size)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                {
                    Some(0) => State::Trailer,
                    Some(n) => State::ChunkData(n),
                    None => State::Pass,
                }
            }
            State::ChunkEnd if text.is_empty() => State::ChunkSize,
            State::ChunkEnd => State::Pass,
            State::Trailer if text.is_empty() => State::RequestLine,
            State::Trailer => State::Trailer,
            s => s,
        };
    }

    fn header(&mut self, text: &[u8]) -> State {
        let Some(colon) = text.iter().position(|&c| c == b':') else {
            return State::Pass;
        };
        let name = text[..colon].to_ascii_lowercase();
        let value = String::from_utf8_lossy(&text[colon + 1..])
            .trim()
            .to_string();
        match name.as_slice() {
            b"content-length" => match value.parse::<u64>() {
                Ok(n) if self.length.is_none_or(|m| m == n) => self.length = Some(n),
                _ => return State::Pass,
            },
            b"transfer-encoding" if value.to_ascii_lowercase().contains("chunked") => {
                self.chunked = true
            }
            b"upgrade" => self.upgrade = true,
            _ => {}
        }
        State::Header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut f = Framer::default();
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c, &mut out);
        }
        out
    }

    /// As LenientIo reads: each piece scanned in place, fed from the first
    /// byte to rewrite.
    fn in_place(chunks: &[&[u8]]) -> Vec<u8> {
        let mut f = Framer::default();
        let mut out = Vec::new();
        for c in chunks {
            match f.scan(c) {
                None => out.extend_from_slice(c),
                Some(p) => {
                    out.extend_from_slice(&c[..p]);
                    f.feed(&c[p..], &mut out);
                }
            }
        }
        out
    }

    /// The same output whether the stream comes whole or byte by byte, fed
    /// or scanned in place.
    fn both(input: &[u8]) -> Vec<u8> {
        let whole = run(&[input]);
        for n in [1, 2, 3, 7, 64] {
            let pieces: Vec<&[u8]> = input.chunks(n).collect();
            assert_eq!(run(&pieces), whole, "in pieces of {n}");
            assert_eq!(in_place(&pieces), whole, "in place, in pieces of {n}");
        }
        assert_eq!(in_place(&[input]), whole, "in place");
        whole
    }

    #[test]
    fn request_lines_are_encoded() {
        let got = both(b"GET /t?select=j->>k&a=in.(\"x\",\"y\")&b=lt.<1> HTTP/1.1\r\nHost: h\r\nX-Q: \"<>\"\r\n\r\n");
        assert_eq!(
            got,
            b"GET /t?select=j-%3E%3Ek&a=in.(%22x%22,%22y%22)&b=lt.%3C1%3E HTTP/1.1\r\nHost: h\r\nX-Q: \"<>\"\r\n\r\n"
        );
    }

    #[test]
    fn bodies_pass_unchanged_and_the_next_request_is_followed() {
        let body = b"{\"a\":\"<x>\"}\r\n\r\nGET /\"";
        let mut input = format!(
            "POST /t?x=\"1\" HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(b"GET /u?y=\"2\" HTTP/1.1\r\n\r\n");
        let mut want = format!(
            "POST /t?x=%221%22 HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        want.extend_from_slice(body);
        want.extend_from_slice(b"GET /u?y=%222%22 HTTP/1.1\r\n\r\n");
        assert_eq!(both(&input), want);
    }

    #[test]
    fn chunked_bodies_pass_unchanged() {
        let input = b"POST /t HTTP/1.1\r\ntransfer-encoding: Chunked\r\n\r\n\
            5;ext=1\r\n\"<>\"\n\r\n3\r\nGET\r\n0\r\nX-T: \"\r\n\r\n\
            GET /v?q=\"z\" HTTP/1.1\r\n\r\n";
        let mut want = input.to_vec();
        let n = want.len();
        want.truncate(n - b"GET /v?q=\"z\" HTTP/1.1\r\n\r\n".len());
        want.extend_from_slice(b"GET /v?q=%22z%22 HTTP/1.1\r\n\r\n");
        assert_eq!(both(input), want);
    }

    #[test]
    fn what_it_does_not_follow_passes_through() {
        // HTTP/2 prior knowledge, an upgrade, a bad length, a bad chunk size
        for input in [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\"<>"[..],
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\"<>",
            b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n\"<>",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n\"<>",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\"<>",
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n\"<>",
        ] {
            assert_eq!(both(input), input, "{}", String::from_utf8_lossy(input));
        }
        // an over-long line stops the following (hyper refuses it anyway)
        let mut long = b"GET /".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
        long.extend_from_slice(b"\"");
        assert_eq!(run(&[&long]), long);
        assert_eq!(in_place(&[&long]), long);
        // a request line just under the limit is still followed
        // (its text, `\r` included, exactly MAX_LINE bytes)
        let mut near = b"GET /?q=\"".to_vec();
        near.extend(std::iter::repeat_n(
            b'a',
            MAX_LINE - near.len() - b" HTTP/1.1\r".len(),
        ));
        near.extend_from_slice(b" HTTP/1.1\r\n\r\nGET /?r=<> HTTP/1.1\r\n\r\n");
        let got = both(&near);
        assert!(got.starts_with(b"GET /?q=%22aaa"));
        assert!(got.ends_with(b"GET /?r=%3C%3E HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn leading_empty_lines_and_bare_newlines() {
        assert_eq!(
            both(b"\r\n\nGET /?a=\"b\" HTTP/1.1\nHost: h\n\nGET /?c=<d> HTTP/1.1\r\n\r\n"),
            b"\r\n\nGET /?a=%22b%22 HTTP/1.1\nHost: h\n\nGET /?c=%3Cd%3E HTTP/1.1\r\n\r\n"
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Scanning in place and feeding agree on any byte stream cut
        /// anywhere (request-like bytes, to reach every state).
        #[test]
        fn in_place_equals_feed(
            parts in prop::collection::vec(prop_oneof![
                Just(&b"GET /a?b=\"<x>\" HTTP/1.1\r\n"[..]),
                Just(&b"POST /t HTTP/1.1\r\n"[..]),
                Just(&b"Content-Length: 5\r\n"[..]),
                Just(&b"Transfer-Encoding: chunked\r\n"[..]),
                Just(&b"\r\n"[..]),
                Just(&b"3\r\n<\">\r\n0\r\n"[..]),
                Just(&b"\"<>\"x"[..]),
                Just(&b"\n"[..]),
            ], 0..24),
            cuts in prop::collection::vec(1usize..9, 1..8),
        ) {
            let input: Vec<u8> = parts.concat();
            let mut whole = Vec::new();
            Framer::default().feed(&input, &mut whole);
            let mut pieces = Vec::new();
            let (mut at, mut k) = (0, 0);
            while at < input.len() {
                let n = cuts[k % cuts.len()].min(input.len() - at);
                pieces.push(&input[at..at + n]);
                at += n;
                k += 1;
            }
            let mut f = Framer::default();
            let mut got = Vec::new();
            for c in &pieces {
                match f.scan(c) {
                    None => got.extend_from_slice(c),
                    Some(p) => {
                        got.extend_from_slice(&c[..p]);
                        f.feed(&c[p..], &mut got);
                    }
                }
            }
            prop_assert_eq!(got, whole);
        }
    }
}
