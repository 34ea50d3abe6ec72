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

/// One connection: reads go through a [`Framer`].
pub struct LenientIo<T> {
    inner: T,
    framer: Framer,
    raw: Box<[u8]>,
    out: Vec<u8>,
    at: usize,
}

impl<T> LenientIo<T> {
    pub fn new(inner: T) -> Self {
        LenientIo {
            inner,
            framer: Framer::default(),
            raw: vec![0; 16 * 1024].into_boxed_slice(),
            out: Vec::new(),
            at: 0,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for LenientIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.at == me.out.len() {
            if me.framer.passing() {
                return Pin::new(&mut me.inner).poll_read(cx, buf);
            }
            let mut rb = ReadBuf::new(&mut me.raw);
            match Pin::new(&mut me.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            let n = rb.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            me.out.clear();
            me.at = 0;
            me.framer.feed(&me.raw[..n], &mut me.out);
        }
        let take = (me.out.len() - me.at).min(buf.remaining());
        buf.put_slice(&me.out[me.at..me.at + take]);
        me.at += take;
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
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Pass => {
                    out.extend_from_slice(&input[i..]);
                    return;
                }
                State::Body(n) | State::ChunkData(n) => {
                    let take = (input.len() - i).min(usize::try_from(n).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[i..i + take]);
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
                    let b = input[i];
                    i += 1;
                    if self.state == State::RequestLine {
                        match b {
                            b'"' => out.extend_from_slice(b"%22"),
                            b'<' => out.extend_from_slice(b"%3C"),
                            b'>' => out.extend_from_slice(b"%3E"),
                            b => out.push(b),
                        }
                    } else {
                        out.push(b);
                    }
                    if b == b'\n' {
                        self.end_of_line();
                    } else if self.line.len() >= MAX_LINE {
                        self.state = State::Pass;
                    } else {
                        self.line.push(b);
                    }
                }
            }
        }
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

    /// The same output whether the stream comes whole or byte by byte.
    fn both(input: &[u8]) -> Vec<u8> {
        let whole = run(&[input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes), whole, "byte by byte");
        let threes: Vec<&[u8]> = input.chunks(3).collect();
        assert_eq!(run(&threes), whole, "in threes");
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
        let out = run(&[&long]);
        assert_eq!(out, long);
    }

    #[test]
    fn leading_empty_lines_and_bare_newlines() {
        assert_eq!(
            both(b"\r\n\nGET /?a=\"b\" HTTP/1.1\nHost: h\n\nGET /?c=<d> HTTP/1.1\r\n\r\n"),
            b"\r\n\nGET /?a=%22b%22 HTTP/1.1\nHost: h\n\nGET /?c=%3Cd%3E HTTP/1.1\r\n\r\n"
        );
    }
}
