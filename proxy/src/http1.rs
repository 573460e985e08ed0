//! HTTP/1.1 framing, as both HTTP/1.1 paths toward targets read it: where
//! a head ends, a target's response head, and how its body ends (length,
//! chunks, close). The fast path (`fastpath`) and the hyper path's HTTP/1.1
//! client (`upstream_h1`) share it, so they cannot frame a body apart.

use http::StatusCode;

/// Header fields parsed per head; more go to hyper (which enforces the
/// configured limit and answers 431).
pub(crate) const MAX_HEADERS: usize = 64;
/// Read size, and the capacity buffers are kept at.
pub(crate) const CHUNK: usize = 8 * 1024;
/// Largest target response head relayed.
pub(crate) const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Reads from a target until `buf` holds a whole response head (at most
/// [`MAX_RESPONSE_HEAD`]); returns its length. Both paths read a target's
/// head here. Reads go through `poll_read`, not `try_read`: tokio forgets
/// the readiness after a short read, so the pool's liveness probe when the
/// connection is next taken costs no system call.
pub(crate) async fn read_response_head<S, B>(stream: &mut S, buf: &mut B) -> Result<usize, String>
where
    S: tokio::io::AsyncRead + Unpin,
    B: bytes::BufMut + AsRef<[u8]>,
{
    use tokio::io::AsyncReadExt as _;
    let mut scanned = 0;
    loop {
        let have = buf.as_ref();
        if let Some(end) = head_end(have, scanned) {
            return Ok(end);
        }
        scanned = have.len().saturating_sub(3);
        if have.len() > MAX_RESPONSE_HEAD {
            return Err("response head too large".into());
        }
        match stream.read_buf(buf).await {
            Ok(0) => return Err("connection closed before a response".into()),
            Err(e) => return Err(e.to_string()),
            Ok(_) => {}
        }
    }
}

/// Where the head in `buf` ends (after the empty line), searching from
/// `from`. Bare LF line ends count, as httparse accepts them.
pub(crate) fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let lf = i + p;
        match buf.get(lf + 1) {
            Some(b'\n') => return Some(lf + 2),
            Some(b'\r') if buf.get(lf + 2) == Some(&b'\n') => return Some(lf + 3),
            _ => i = lf + 1,
        }
    }
    None
}

/// A Content-Length value: digits only, at most 19 of them.
pub(crate) fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The target's response head, in `ubuf[..head_len]`.
pub(crate) struct ResponseHead {
    pub(crate) head_len: usize,
    /// `ubuf[a..b]`: status code and reason, as the target sent them.
    pub(crate) status_at: (usize, usize),
    pub(crate) status: StatusCode,
    pub(crate) framing: Framing,
    /// The target keeps the connection open for another request.
    pub(crate) reusable: bool,
}

#[cfg(test)]
pub(crate) fn parse_response(head: &[u8], head_request: bool) -> Result<ResponseHead, String> {
    parse_response_with(head, head_request, |_, _| Ok(()))
}

/// Parses a target's response head, and hands it with its fields (in
/// order) to `then` from the same parse: the fast path writes the client's
/// head there, the hyper path builds its `HeaderMap`.
pub(crate) fn parse_response_with(
    head: &[u8],
    head_request: bool,
    then: impl FnOnce(&ResponseHead, &[httparse::Header<'_>]) -> Result<(), String>,
) -> Result<ResponseHead, String> {
    let bad = |why: &str| format!("invalid response head: {why}");
    let mut fields = [std::mem::MaybeUninit::uninit(); MAX_HEADERS];
    let mut r = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut r,
        head,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("incomplete")),
        Err(e) => return Err(bad(&e.to_string())),
    }
    let code = r.code.ok_or_else(|| bad("no status"))?;
    let status = StatusCode::from_u16(code).map_err(|_| bad("status code"))?;
    // The status line is "HTTP/1.x NNN reason": code and reason start at 9.
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line_end = if line_end > 0 && head.get(line_end - 1) == Some(&b'\r') {
        line_end - 1
    } else {
        line_end
    };
    let status_at = (9.min(line_end), line_end);
    let mut reusable = r.version == Some(1);
    let mut length = None;
    let mut chunked = None;
    for h in r.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(h.value).ok_or_else(|| bad("content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting content-length"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Only the last coding says how the body is framed.
            let last = h
                .value
                .split(|&b| b == b',')
                .next_back()
                .map(<[u8]>::trim_ascii);
            chunked = Some(last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    reusable = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && r.version == Some(0) {
                    reusable = true;
                }
            }
        }
    }
    let framing = if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Length(0)
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked(Chunked::default()),
            (Some(false), _) | (None, None) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
        }
    };
    if matches!(framing, Framing::Close) {
        reusable = false;
    }
    let parsed = ResponseHead {
        head_len: head.len(),
        status_at,
        status,
        framing,
        reusable,
    };
    then(&parsed, r.headers)?;
    Ok(parsed)
}

/// How a response body ends.
#[derive(Debug)]
pub(crate) enum Framing {
    /// After this many more bytes.
    Length(u64),
    /// After the last chunk and trailers.
    Chunked(Chunked),
    /// When the target closes the connection.
    Close,
}

impl Framing {
    /// Takes the body's next bytes out of `buf`, without chunked framing;
    /// says whether the body ended (bytes past its end stay in `buf`).
    pub(crate) fn decode(&mut self, buf: &mut bytes::BytesMut) -> Result<(bytes::Bytes, bool), ()> {
        match self {
            Self::Length(left) => {
                let n = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
                *left -= n as u64;
                Ok((buf.split_to(n).freeze(), *left == 0))
            }
            Self::Close => Ok((buf.split().freeze(), false)),
            Self::Chunked(c) => {
                let mut out = bytes::BytesMut::new();
                let end = c.feed_with(buf, |r| out.extend_from_slice(&buf[r]), |_| {})?;
                let _ = buf.split_to(end.unwrap_or(buf.len()));
                Ok((out.freeze(), end.is_some()))
            }
        }
    }

    /// Of `data`, how many bytes belong to the body, whether the body ends
    /// within them, and which of them are trailer fields (a chunked body's
    /// trailer lines, which are not relayed: see [`Take::trailers`]).
    pub(crate) fn take(&mut self, data: &[u8]) -> Result<Take, ()> {
        match self {
            Self::Length(left) => {
                let n = usize::try_from(*left).map_or(data.len(), |l| l.min(data.len()));
                *left -= n as u64;
                Ok(Take {
                    body: n,
                    done: *left == 0,
                    trailers: None,
                })
            }
            Self::Chunked(c) => {
                let mut trailers: Option<std::ops::Range<usize>> = None;
                let end = c.feed_with(
                    data,
                    |_| {},
                    |r| {
                        trailers = Some(trailers.as_ref().map_or(r.clone(), |t| t.start..r.end));
                    },
                )?;
                Ok(Take {
                    body: end.unwrap_or(data.len()),
                    done: end.is_some(),
                    trailers,
                })
            }
            Self::Close => Ok(Take {
                body: data.len(),
                done: false,
                trailers: None,
            }),
        }
    }
}

/// What [`Framing::take`] found in the bytes it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Take {
    /// How many belong to the body.
    pub(crate) body: usize,
    /// Whether the body ends within them.
    pub(crate) done: bool,
    /// Which of them are trailer fields. Neither HTTP/1.1 path relays a
    /// target's trailers (hyper's client path decodes them away), so the
    /// fast path leaves these bytes out and the body still ends with its
    /// last chunk and empty line.
    pub(crate) trailers: Option<std::ops::Range<usize>>,
}

impl Take {
    /// The bytes of `data` to relay: the body's, without trailer fields.
    pub(crate) fn relayed<'d>(&self, data: &'d [u8]) -> std::borrow::Cow<'d, [u8]> {
        let body = &data[..self.body];
        match &self.trailers {
            None => std::borrow::Cow::Borrowed(body),
            Some(t) => {
                let mut v = Vec::with_capacity(body.len() - t.len());
                v.extend_from_slice(&body[..t.start]);
                v.extend_from_slice(&body[t.end..]);
                std::borrow::Cow::Owned(v)
            }
        }
    }
}

/// Finds the end of a chunked body as it passes (RFC 9112 7.1), without
/// changing it.
#[derive(Debug, Default)]
pub(crate) struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u8,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// Chunk extensions, up to the line end.
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    EndLf,
    Done,
}

impl Chunked {
    /// Consumes `data`; `Some(n)` when the body ends after `data[..n]`.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, ()> {
        self.feed_with(data, |_| {}, |_| {})
    }

    /// [`Chunked::feed`], also reporting where the chunks' data is, and
    /// each trailer line's bytes (its line end included).
    fn feed_with(
        &mut self,
        data: &[u8],
        mut on_data: impl FnMut(std::ops::Range<usize>),
        mut on_trailer: impl FnMut(std::ops::Range<usize>),
    ) -> Result<Option<usize>, ()> {
        use ChunkState as S;
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match self.state {
                S::Size => self.size_byte(b)?,
                S::Ext => {
                    if b == b'\n' {
                        self.end_size();
                    }
                }
                S::SizeLf => {
                    if b != b'\n' {
                        return Err(());
                    }
                    self.end_size();
                }
                S::Data => {
                    let n = usize::try_from(self.size)
                        .map_or(data.len() - i, |s| s.min(data.len() - i));
                    self.size -= n as u64;
                    on_data(i..i + n);
                    i += n;
                    if self.size == 0 {
                        self.state = S::DataCr;
                    }
                    continue;
                }
                S::DataCr => match b {
                    b'\r' => self.state = S::DataLf,
                    b'\n' => self.state = S::Size,
                    _ => return Err(()),
                },
                S::DataLf => {
                    if b != b'\n' {
                        return Err(());
                    }
                    self.state = S::Size;
                }
                S::TrailerStart => match b {
                    b'\r' => self.state = S::EndLf,
                    b'\n' => {
                        self.state = S::Done;
                        return Ok(Some(i + 1));
                    }
                    _ => {
                        on_trailer(i..i + 1);
                        self.state = S::TrailerLine;
                    }
                },
                S::TrailerLine => {
                    on_trailer(i..i + 1);
                    if b == b'\n' {
                        self.state = S::TrailerStart;
                    }
                }
                S::EndLf => {
                    if b != b'\n' {
                        return Err(());
                    }
                    self.state = S::Done;
                    return Ok(Some(i + 1));
                }
                S::Done => return Ok(Some(i)),
            }
            i += 1;
        }
        Ok((self.state == S::Done).then_some(i))
    }

    /// One byte of a chunk-size line: a hex digit (at most 15 keep the
    /// size in u64), or what ends the digits.
    fn size_byte(&mut self, b: u8) -> Result<(), ()> {
        match b {
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                let d = (b as char).to_digit(16).ok_or(())?;
                self.digits += 1;
                if self.digits > 15 {
                    return Err(());
                }
                self.size = self.size * 16 + u64::from(d);
            }
            b';' | b' ' | b'\t' if self.digits > 0 => self.state = ChunkState::Ext,
            b'\r' if self.digits > 0 => self.state = ChunkState::SizeLf,
            b'\n' if self.digits > 0 => self.end_size(),
            _ => return Err(()),
        }
        Ok(())
    }

    fn end_size(&mut self) {
        self.state = if self.size == 0 {
            ChunkState::TrailerStart
        } else {
            ChunkState::Data
        };
        self.digits = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked_end(parts: &[&[u8]]) -> Result<Option<usize>, ()> {
        let mut c = Chunked::default();
        let mut total = 0;
        for p in parts {
            if let Some(end) = c.feed(p)? {
                return Ok(Some(total + end));
            }
            total += p.len();
        }
        Ok(None)
    }

    #[test]
    fn chunked_bodies_end_where_the_last_chunk_and_trailers_end() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nGET / HTTP/1.1";
        let end = body.len() - b"GET / HTTP/1.1".len();
        assert_eq!(chunked_end(&[body]), Ok(Some(end)));
        // Byte by byte, as a slow target sends it.
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(chunked_end(&bytes), Ok(Some(end)));
        // Trailers.
        let t = b"0\r\nx-checksum: 1\r\nx-more: 2\r\n\r\n";
        assert_eq!(chunked_end(&[t]), Ok(Some(t.len())));
        // Bare LF line ends.
        let lf = b"3\nabc\n0\n\n";
        assert_eq!(chunked_end(&[lf]), Ok(Some(lf.len())));
        // Not finished yet.
        assert_eq!(chunked_end(&[b"a\r\n0123"]), Ok(None));
        assert_eq!(chunked_end(&[b"0\r\n"]), Ok(None));
    }

    #[test]
    fn malformed_chunked_bodies_are_refused() {
        assert!(chunked_end(&[b"zz\r\n"]).is_err());
        assert!(chunked_end(&[b"3\r\nabcX"]).is_err());
        assert!(chunked_end(&[b"1234567890abcdef0\r\n"]).is_err());
        assert!(chunked_end(&[b"\r\n"]).is_err());
    }

    #[test]
    fn head_ends_after_the_empty_line() {
        assert_eq!(
            head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nxyz", 0),
            Some(27)
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nxyz", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0), None);
    }

    #[test]
    fn framing_follows_the_response_head() {
        let framing = |head: &[u8], head_req| match parse_response(head, head_req) {
            Ok(h) => format!("{:?} reusable={}", h.framing, h.reusable),
            Err(_) => "error".into(),
        };
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
            "Length(5) reusable=true"
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            "Length(0) reusable=true"
        );
        assert_eq!(
            framing(b"HTTP/1.1 204 No Content\r\n\r\n", false),
            "Length(0) reusable=true"
        );
        assert!(framing(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false
        )
        .starts_with("Chunked"));
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\n\r\n", false),
            "Close reusable=false"
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
                false
            ),
            "Length(1) reusable=false"
        );
        assert_eq!(
            framing(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false),
            "Length(1) reusable=false"
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            ),
            "error"
        );
    }

    #[test]
    fn trailer_fields_are_left_out_of_what_is_relayed_even_split_across_reads() {
        let body: &[u8] = b"6\r\nfirst \r\n0\r\nx-checksum: 42\r\nx-more: 1\r\n\r\n";
        let whole = Framing::Chunked(Chunked::default()).take(body).unwrap();
        assert!(whole.done);
        assert_eq!(&*whole.relayed(body), b"6\r\nfirst \r\n0\r\n\r\n");
        for at in 1..body.len() {
            let mut f = Framing::Chunked(Chunked::default());
            let a = f.take(&body[..at]).unwrap();
            assert!(!a.done);
            let b = f.take(&body[at..]).unwrap();
            assert!(b.done, "split at {at}");
            let mut relayed = a.relayed(&body[..at]).into_owned();
            relayed.extend_from_slice(&b.relayed(&body[at..]));
            assert_eq!(relayed, b"6\r\nfirst \r\n0\r\n\r\n", "split at {at}");
        }
        // Without trailers, nothing is left out and nothing is copied.
        let plain: &[u8] = b"3\r\nabc\r\n0\r\n\r\n";
        let t = Framing::Chunked(Chunked::default()).take(plain).unwrap();
        assert!(matches!(t.relayed(plain), std::borrow::Cow::Borrowed(b) if b == plain));
    }
}
