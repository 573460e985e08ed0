//! What a client's request head may carry, decided once.
//!
//! The fast path (bytes, `httparse`) and the hyper path (`HeaderMap`) both
//! call these functions, so a field one path refuses or drops is refused or
//! dropped by the other: a difference between them is how a request slips
//! past rules and policies (request smuggling, path tricks). Each function
//! takes hostile bytes and never panics.
//!
//! - [`normalize_path`]: the one path that rules, auth policies, function
//!   events and targets see.
//! - [`connection_names_framing`]: a `Connection` field that names a framing
//!   field (Content-Length, Transfer-Encoding, Host) is refused.
//! - [`is_proxy_field`]: fields only the proxy sets, spelled with `_` too.
//! - [`is_hop_by_hop`], [`keeps_te`]: fields that describe one hop.
//! - [`decode_query_component`]: `application/x-www-form-urlencoded` decoding
//!   of query keys and values.

use std::borrow::Cow;

use http::{header, HeaderMap, HeaderName, HeaderValue};

/// Why a request head is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// More than one `Host` field (RFC 9112 3.2).
    #[error("more than one Host field")]
    DuplicateHost,
    /// `Connection` names a field that frames the message: removing it as
    /// hop-by-hop would change where the request ends.
    #[error("Connection names a framing field ({0})")]
    ConnectionNamesFraming(&'static str),
    /// The path cannot be normalised safely.
    #[error("request path: {0}")]
    Path(#[from] PathError),
}

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// It does not start with `/`.
    #[error("does not start with /")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadPercent,
    /// `%2F` or `%5C`: a separator hidden from the proxy that a target may
    /// decode into one.
    #[error("encoded slash or backslash")]
    EncodedSeparator,
    /// A backslash, which some targets read as `/`.
    #[error("backslash")]
    Backslash,
    /// NUL or another control character, encoded or not.
    #[error("control character")]
    Control,
    /// The normalised path is not a valid request target.
    #[error("not a valid request target")]
    Invalid,
    /// A `.` or `..` segment with parameters (`..;x`): Java servlet
    /// containers read it as `..`, so `/public/..;/admin` reaches `/admin`
    /// there while it looks like a path under `/public` here.
    #[error("dot segment with parameters")]
    DotSegmentParams,
}

/// The tokens of a `Connection` field's value, as bytes: a value that is
/// not ASCII still lists the tokens it has (hyper's `to_str` would drop
/// the whole field, and the two paths would disagree).
pub fn connection_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The framing fields `Connection` must not name.
const FRAMING: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// The framing field the value of a `Connection` field names, if any.
pub fn connection_names_framing(value: &[u8]) -> Option<&'static str> {
    connection_tokens(value).find_map(|token| {
        FRAMING
            .iter()
            .copied()
            .find(|f| token.eq_ignore_ascii_case(f.as_bytes()))
    })
}

/// The names of the fields only the proxy sets (see `request::ProxyFields`).
pub const PROXY_FIELD_NAMES: [&str; 7] = [
    "x-forwarded-for",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-amzn-lattice-network",
    "x-amzn-lattice-target",
    "x-amzn-lattice-identity",
    "x-amzn-requestid",
];

/// Whether a client-sent field name is one only the proxy may set, reading
/// `_` as `-`: CGI, WSGI, Rack and PHP targets see `X_Forwarded_For` and
/// `X-Forwarded-For` as the same variable (`HTTP_X_FORWARDED_FOR`), so a
/// client copy under either spelling would pass as the proxy's.
pub fn is_proxy_field(name: &[u8]) -> bool {
    PROXY_FIELD_NAMES
        .iter()
        .any(|p| same_name_folding_underscore(p.as_bytes(), name))
}

fn same_name_folding_underscore(canonical: &[u8], name: &[u8]) -> bool {
    canonical.len() == name.len()
        && canonical.iter().zip(name).all(|(&c, &n)| {
            let n = if n == b'_' { b'-' } else { n };
            c == n.to_ascii_lowercase()
        })
}

/// Fields that describe one hop and are never forwarded (RFC 9110 7.6.1),
/// besides the ones a `Connection` field lists. `TE` is among them; see
/// [`keeps_te`].
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "keep-alive",
    "proxy-connection",
];

/// Whether `name` is always dropped as hop-by-hop.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// Whether a `TE` field is passed on anyway: `TE: trailers` is what gRPC
/// needs and the one value HTTP/2 allows. It is passed on even when
/// `Connection` lists `TE`, as RFC 9110 asks senders to.
pub fn keeps_te(value: &[u8]) -> bool {
    value.trim_ascii().eq_ignore_ascii_case(b"trailers")
}

/// The value a kept `TE` is forwarded with, on every path: lowercase, as
/// HTTP/2 requires it.
pub const TE_TRAILERS: &str = "trailers";

/// The value a client's request field reaches the target with, `None` if
/// it does not: not hop-by-hop (a `TE: trailers` aside, written as
/// [`TE_TRAILERS`]), not listed in `Connection`, not the proxy's own. The
/// framing fields are the writers' to set (each path frames the body it
/// forwards), and a `Connection` naming one was refused before this.
pub fn forwarded_request_field<'v>(
    name: &[u8],
    value: &'v [u8],
    listed: impl Fn(&[u8]) -> bool,
) -> Option<&'v [u8]> {
    if name.eq_ignore_ascii_case(b"te") {
        return keeps_te(value).then_some(TE_TRAILERS.as_bytes());
    }
    (!is_hop_by_hop(name) && !is_proxy_field(name) && !listed(name)).then_some(value)
}

/// Writes the `Content-Length` of a forwarded HTTP/1.1 request whose body
/// has `len` bytes. Each path frames what it forwards itself, never with
/// the client's field: a zero length is written only for the methods that
/// carry a body, as clients do.
pub fn write_length(out: &mut Vec<u8>, method: &http::Method, len: u64) {
    if len == 0
        && !matches!(
            *method,
            http::Method::POST | http::Method::PUT | http::Method::PATCH
        )
    {
        return;
    }
    out.extend_from_slice(b"content-length: ");
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        // n % 10 < 10: the cast keeps the digit.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// The path rules, policies, function events and targets see: percent-
/// encoded unreserved characters decoded (RFC 3986 2.3), other escapes with
/// upper-case hex, runs of `/` merged, and `.` and `..` segments removed
/// (RFC 3986 5.2.4; `..` at the root stays at the root). `Borrowed` when
/// the path is normal already, as nearly every path is.
///
/// Refused, because no normalisation is safe for them: an encoded `/` or
/// `\` (the proxy would match one path and the target may decode another),
/// a backslash, and control characters (NUL included).
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(b)? {
        return Ok(Cow::Borrowed(raw));
    }
    // Decode what may be decoded; split into segments as we go.
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let v = hex_pair(b, i + 1).ok_or(PathError::BadPercent)?;
            match v {
                b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                v if v < 0x20 || v == 0x7f => return Err(PathError::Control),
                v if is_unreserved(v) => decoded.push(char::from(v)),
                v => {
                    decoded.push('%');
                    decoded.push(char::from(HEX[usize::from(v >> 4)]));
                    decoded.push(char::from(HEX[usize::from(v & 0xf)]));
                }
            }
            i += 3;
        } else {
            // Checked by `is_normal`: no control characters or backslashes
            // here. `%` is ASCII, so the run before it ends on a character
            // boundary.
            let start = i;
            while i < b.len() && b[i] != b'%' {
                i += 1;
            }
            decoded.push_str(raw.get(start..i).unwrap_or_default());
        }
    }
    // Merge slashes and remove dot segments over the decoded segments.
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (n, seg) in segments.iter().enumerate() {
        let sb = seg.as_bytes();
        if [&b".;"[..], b"..;", b".%3B", b"..%3B"]
            .iter()
            .any(|p| sb.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p)))
        {
            return Err(PathError::DotSegmentParams);
        }
        match *seg {
            "" => {
                // An empty segment: a doubled slash, or the trailing one.
                trailing_slash = n == last;
            }
            "." => trailing_slash = n == last,
            ".." => {
                out.pop();
                trailing_slash = n == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if trailing_slash || out.is_empty() {
        path.push('/');
    }
    Ok(Cow::Owned(path))
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether `b` is normal already (see [`normalize_path`]); errors for what
/// is refused outright.
fn is_normal(b: &[u8]) -> Result<bool, PathError> {
    let mut normal = true;
    for (i, &c) in b.iter().enumerate() {
        match c {
            0..=0x1f | 0x7f => return Err(PathError::Control),
            b'\\' => return Err(PathError::Backslash),
            b'%' => normal = false,
            b'/' if b.get(i + 1) == Some(&b'/') => normal = false,
            b'.' if b.get(i.wrapping_sub(1)) == Some(&b'/') => {
                // "/." or "/.." ending a segment.
                let rest = &b[i + 1..];
                let seg_end = |r: &[u8]| r.is_empty() || r[0] == b'/';
                let params = |r: &[u8]| r.first() == Some(&b';');
                if seg_end(rest)
                    || params(rest)
                    || (rest.first() == Some(&b'.') && (seg_end(&rest[1..]) || params(&rest[1..])))
                {
                    normal = false;
                }
            }
            _ => {}
        }
    }
    Ok(normal)
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex_pair(b: &[u8], at: usize) -> Option<u8> {
    let hi = hex_digit(*b.get(at)?)?;
    let lo = hex_digit(*b.get(at + 1)?)?;
    Some(hi << 4 | lo)
}

/// Decodes a query key or value as browsers and frameworks do
/// (`application/x-www-form-urlencoded`): `+` is a space, `%XX` a byte; a
/// `%` without two hex digits stays as it is. Bytes that are not UTF-8
/// become U+FFFD. Works on bytes, so no input can split a character.
pub fn decode_query_component(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    if !b.iter().any(|&c| c == b'%' || c == b'+') {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match hex_pair(b, i + 1) {
                Some(v) => {
                    out.push(v);
                    i += 3;
                }
                None => {
                    out.push(b'%');
                    i += 1;
                }
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The decoded `(key, value)` pairs of a query string, in order.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_query_component(k), decode_query_component(v))
    })
}

/// Appends the HTTP/1.1 header line `name: value`.
pub(crate) fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Headers that describe one hop and must not be forwarded (RFC 9110 7.6.1),
/// plus any the `Connection` header names. `TE: trailers` stays: gRPC needs
/// it and it is the one value HTTP/2 allows.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests carry none of them: one pass over the names is cheaper
    // than hashing every name below for a removal that finds nothing.
    if !headers.keys().any(|n| is_hop_by_hop(n.as_str().as_bytes())) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| connection_tokens(v.as_bytes()))
            .filter_map(|name| HeaderName::from_bytes(name).ok())
            .collect();
        for name in listed {
            if name != header::TE {
                headers.remove(name);
            }
        }
    }
    // Field by field, as `head::forwarded_request_field` decides for the
    // fast path: each `TE: trailers` stays, as `head::TE_TRAILERS`; any
    // other `TE` goes.
    let kept_te = headers
        .get_all(header::TE)
        .iter()
        .filter(|v| keeps_te(v.as_bytes()))
        .count();
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    for _ in 0..kept_te {
        headers.append(header::TE, HeaderValue::from_static(TE_TRAILERS));
    }
}

/// The fields the proxy adds to a request head it writes. The request
/// layer's `ProxyFields` is the one source; the HTTP/1.1 writers below it
/// take them through this, without knowing what they are.
pub(crate) trait WriteFields {
    /// Appends them as HTTP/1.1 header lines.
    fn write_fields(&self, out: &mut Vec<u8>);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize_path(p).map(Cow::into_owned)
    }

    #[test]
    fn paths_that_hide_admin_all_become_admin() {
        for p in [
            "/admin/x",
            "//admin/x",
            "/./admin/x",
            "/public/../admin/x",
            "/%61dmin/x",
            "/%61%64%6D%69%6E/x",
            "/public/%2e%2e/admin/x",
            "/public/%2E%2E/admin/x",
            "///admin//x",
            "/../../admin/x",
            "/admin/./x",
            "/admin/y/../x",
        ] {
            assert_eq!(norm(p).as_deref(), Ok("/admin/x"), "{p}");
        }
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert_eq!(
            norm("/public/..%2fadmin/x"),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(norm("/a%2Fb"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/a%5cb"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/a\\b"), Err(PathError::Backslash));
        assert_eq!(norm("/a%00b"), Err(PathError::Control));
        assert_eq!(norm("/a%0ab"), Err(PathError::Control));
        assert_eq!(norm("/a%zz"), Err(PathError::BadPercent));
        assert_eq!(norm("/a%4"), Err(PathError::BadPercent));
        assert_eq!(norm("/a%"), Err(PathError::BadPercent));
        assert_eq!(norm("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(norm("/public/..;/admin"), Err(PathError::DotSegmentParams));
        assert_eq!(
            norm("/public/..;x=1/admin"),
            Err(PathError::DotSegmentParams)
        );
        assert_eq!(norm("/public/.;/admin"), Err(PathError::DotSegmentParams));
        assert_eq!(
            norm("/public/..%3b/admin"),
            Err(PathError::DotSegmentParams)
        );
        assert_eq!(
            norm("/public/%2e%2e;/admin"),
            Err(PathError::DotSegmentParams)
        );
        // Parameters elsewhere are the target's business.
        assert_eq!(norm("/a;b/c"), Ok("/a;b/c".into()));
        assert_eq!(norm("/a/..b;c"), Ok("/a/..b;c".into()));
        assert_eq!(norm(""), Err(PathError::NotAbsolute));
    }

    #[test]
    fn normal_paths_are_borrowed_and_others_keep_their_meaning() {
        for p in ["/", "/a/b", "/a/b/", "/a.b/.c/..d/", "/é/ü", "/a-b_c~d"] {
            assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
        assert_eq!(norm("/a/."), Ok("/a/".into()));
        assert_eq!(norm("/a/.."), Ok("/".into()));
        assert_eq!(norm("/a//"), Ok("/a/".into()));
        assert_eq!(norm("/.."), Ok("/".into()));
        // Reserved characters stay encoded, with upper-case hex.
        assert_eq!(norm("/a%3fb%3a"), Ok("/a%3Fb%3A".into()));
        assert_eq!(norm("/a%20b"), Ok("/a%20b".into()));
        // Encoded non-ASCII stays encoded: the target decodes it.
        assert_eq!(norm("/%c3%a9"), Ok("/%C3%A9".into()));
        assert_eq!(norm("/é/./x"), Ok("/é/x".into()));
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for p in ["//a/./b/../%61%2e%2E/c//", "/%7e/%2D", "/x/%41/../y"] {
            let once = norm(p).unwrap();
            assert_eq!(norm(&once).unwrap(), once, "{p}");
            assert!(matches!(normalize_path(&once), Ok(Cow::Borrowed(_))));
        }
    }

    #[test]
    fn framing_fields_named_by_connection_are_found() {
        assert_eq!(
            connection_names_framing(b"content-length"),
            Some("content-length")
        );
        assert_eq!(
            connection_names_framing(b"keep-alive, Content-Length"),
            Some("content-length")
        );
        assert_eq!(
            connection_names_framing(b" Transfer-Encoding "),
            Some("transfer-encoding")
        );
        assert_eq!(connection_names_framing(b"close,host"), Some("host"));
        assert_eq!(connection_names_framing(b"keep-alive, x-secret, te"), None);
        assert_eq!(connection_names_framing(b"content-lengthx"), None);
    }

    #[test]
    fn proxy_fields_are_found_under_any_spelling() {
        for n in [
            "x-amzn-lattice-identity",
            "X-Amzn-Lattice-Identity",
            "x_amzn_lattice_identity",
            "X_Forwarded_For",
            "x-forwarded_for",
            "X-AMZN-REQUESTID",
        ] {
            assert!(is_proxy_field(n.as_bytes()), "{n}");
        }
        for n in ["x-forwarded-forx", "x-forwarded", "host", "x_custom"] {
            assert!(!is_proxy_field(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn te_trailers_is_forwarded_even_when_connection_lists_te() {
        let listed = |n: &[u8]| n.eq_ignore_ascii_case(b"te");
        assert_eq!(
            forwarded_request_field(b"TE", b"trailers", listed),
            Some(&b"trailers"[..])
        );
        assert_eq!(
            forwarded_request_field(b"TE", b" Trailers ", listed),
            Some(&b"trailers"[..])
        );
        assert_eq!(forwarded_request_field(b"te", b"gzip", listed), None);
        assert_eq!(
            forwarded_request_field(b"keep-alive", b"5", |_| false),
            None
        );
        assert_eq!(
            forwarded_request_field(b"x-secret", b"1", |n| n == b"x-secret"),
            None
        );
        assert_eq!(
            forwarded_request_field(b"X_Amzn_Lattice_Identity", b"1", |_| false),
            None
        );
        assert_eq!(
            forwarded_request_field(b"x-kept", b"1", |_| false),
            Some(&b"1"[..])
        );
    }

    #[test]
    fn lengths_are_written_for_bodies_and_for_methods_that_carry_one() {
        let w = |m: http::Method, n| {
            let mut out = Vec::new();
            write_length(&mut out, &m, n);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(w(http::Method::GET, 0), "");
        assert_eq!(w(http::Method::POST, 0), "content-length: 0\r\n");
        assert_eq!(w(http::Method::GET, 7), "content-length: 7\r\n");
        assert_eq!(
            w(http::Method::PUT, u64::MAX),
            format!("content-length: {}\r\n", u64::MAX)
        );
    }

    #[test]
    fn query_components_decode_without_panicking_on_any_bytes() {
        assert_eq!(decode_query_component("a%20b+c"), "a b c");
        assert_eq!(decode_query_component("100%"), "100%");
        // The reported panic: a '%' before a multi-byte character.
        assert_eq!(decode_query_component("%aé"), "%aé");
        assert_eq!(decode_query_component("%é"), "%é");
        assert_eq!(decode_query_component("%ff"), "\u{fffd}");
        assert_eq!(decode_query_component("%61ction"), "action");
        let pairs: Vec<_> = query_pairs("%61ction=x&b&&c=%3D")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("action".into(), "x".into()),
                ("b".into(), String::new()),
                ("c".into(), "=".into())
            ]
        );
    }
}
