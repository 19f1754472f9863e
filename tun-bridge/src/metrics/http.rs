//! The HTTP/1.x side of the metrics endpoint, without IO: the request
//! head parser (network input, bounded, never panics) and the answers.
//! Only `GET` and `HEAD` of `/metrics` are served; every answer closes
//! the connection.

/// Largest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 8192;

/// The parts of a request head the endpoint looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// Method, e.g. `GET`.
    pub method: &'a str,
    /// Path without the query string.
    pub path: &'a str,
}

/// Why a request head was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// No end of head within [`MAX_HEAD`] bytes.
    TooLarge,
    /// Not an HTTP/1.x request line.
    Malformed,
}

/// Parses the request head at the start of `buf`: `Ok(None)` while the
/// blank line that ends it has not arrived.
pub fn parse_request_head(buf: &[u8]) -> Result<Option<RequestHead<'_>>, HttpError> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let Some(end) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_HEAD {
            Err(HttpError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&window[..end]).map_err(|_| HttpError::Malformed)?;
    let line = head.split("\r\n").next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed);
    };
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
        || !version.starts_with("HTTP/1.")
    {
        return Err(HttpError::Malformed);
    }
    let path = target.split('?').next().unwrap_or(target);
    Ok(Some(RequestHead { method, path }))
}

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The answer to `req` (or to a refused head), with the body of
/// `/metrics` from `body` (called only when it is served).
pub fn respond(req: Result<RequestHead<'_>, HttpError>, body: impl FnOnce() -> String) -> Vec<u8> {
    let (status, ctype, text, head_only, allow) = match req {
        Err(HttpError::TooLarge) => (
            "431 Request Header Fields Too Large",
            "text/plain",
            "request head too large\n".to_string(),
            false,
            false,
        ),
        Err(HttpError::Malformed) => (
            "400 Bad Request",
            "text/plain",
            "bad request\n".to_string(),
            false,
            false,
        ),
        Ok(r) if r.method != "GET" && r.method != "HEAD" => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET and HEAD\n".to_string(),
            false,
            true,
        ),
        Ok(r) if r.path != "/metrics" => (
            "404 Not Found",
            "text/plain",
            "try /metrics\n".to_string(),
            r.method == "HEAD",
            false,
        ),
        Ok(r) => ("200 OK", CONTENT_TYPE, body(), r.method == "HEAD", false),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        text.len()
    );
    if allow {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(text.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(req: &[u8]) -> String {
        let r = parse_request_head(req).map(|h| h.expect("complete head"));
        String::from_utf8(respond(r, || "m 1\n".into())).unwrap()
    }

    #[test]
    fn requests_and_answers() {
        assert_eq!(
            parse_request_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"),
            Ok(None)
        );
        let a = answer(b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
        assert!(a.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(
            a.contains("Content-Length: 4\r\n") && a.ends_with("\r\n\r\nm 1\n"),
            "{a}"
        );
        let h = answer(b"HEAD /metrics HTTP/1.0\r\n\r\n");
        assert!(
            h.contains("Content-Length: 4\r\n") && h.ends_with("\r\n\r\n"),
            "{h}"
        );
        assert!(answer(b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        let p = answer(b"POST /metrics HTTP/1.1\r\n\r\n");
        assert!(p.starts_with("HTTP/1.1 405") && p.contains("Allow: GET, HEAD"));
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET / SPDY/3 x\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
        ] {
            assert_eq!(
                parse_request_head(bad),
                Err(HttpError::Malformed),
                "{bad:?}"
            );
        }
        let big = vec![b'a'; MAX_HEAD + 10];
        assert_eq!(parse_request_head(&big), Err(HttpError::TooLarge));
        let r = String::from_utf8(respond(Err(HttpError::TooLarge), || unreachable!())).unwrap();
        assert!(r.starts_with("HTTP/1.1 431"));
    }
}
