//! A small blocking HTTP/1.1 client for herd's own benchmark and tests: one request per
//! connection, `Content-Length` or chunked bodies, and server-sent events read as they come.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Where a server listens: `host:port`, from a URL such as `http://127.0.0.1:8080`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub api_key: Option<String>,
}

impl Endpoint {
    /// Accepts `http://HOST:PORT[/]` or `HOST:PORT`.
    pub fn parse(url: &str, api_key: Option<String>) -> Result<Self, String> {
        if url.starts_with("https://") {
            return Err(format!("{url}: only http:// URLs are supported"));
        }
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(format!("{url}: expected http://HOST:PORT"));
        }
        let host = if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        Ok(Endpoint { host, api_key })
    }
}

/// A response head and its reader, positioned at the body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BodyReader,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The whole body as text.
    pub fn text(mut self) -> std::io::Result<String> {
        let mut out = Vec::new();
        while let Some(chunk) = self.reader.next_chunk()? {
            out.extend_from_slice(&chunk);
        }
        String::from_utf8(out).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// The whole body as JSON.
    pub fn json(self) -> std::io::Result<serde_json::Value> {
        let text = self.text()?;
        serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e}: {text}"))
        })
    }

    /// Server-sent events: the `data:` payload of each event, in order, as they arrive.
    pub fn events(self) -> Events {
        Events {
            reader: self.reader,
            buf: Vec::new(),
        }
    }
}

/// Reads a body in its transfer encoding.
struct BodyReader {
    inner: BufReader<TcpStream>,
    /// `None`: chunked; `Some(n)`: `n` bytes left; body to the end when `until_close`.
    left: Option<usize>,
    until_close: bool,
    done: bool,
}

impl BodyReader {
    fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        if self.until_close {
            let mut buf = vec![0; 8192];
            let n = self.inner.read(&mut buf)?;
            if n == 0 {
                self.done = true;
                return Ok(None);
            }
            buf.truncate(n);
            return Ok(Some(buf));
        }
        match self.left {
            Some(0) => {
                self.done = true;
                Ok(None)
            }
            Some(n) => {
                let mut buf = vec![0; n.min(65536)];
                let got = self.inner.read(&mut buf)?;
                if got == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.truncate(got);
                self.left = Some(n - got);
                Ok(Some(buf))
            }
            None => {
                let mut line = String::new();
                self.inner.read_line(&mut line)?;
                let size_text = line.trim().split(';').next().unwrap_or("");
                let size = usize::from_str_radix(size_text, 16).map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("bad chunk size line {line:?}"),
                    )
                })?;
                if size == 0 {
                    // Trailers end with an empty line.
                    loop {
                        line.clear();
                        if self.inner.read_line(&mut line)? == 0 || line.trim().is_empty() {
                            break;
                        }
                    }
                    self.done = true;
                    return Ok(None);
                }
                let mut buf = vec![0; size];
                self.inner.read_exact(&mut buf)?;
                let mut crlf = [0; 2];
                self.inner.read_exact(&mut crlf)?;
                Ok(Some(buf))
            }
        }
    }
}

/// Iterator over the `data:` payloads of an event stream.
pub struct Events {
    reader: BodyReader,
    buf: Vec<u8>,
}

impl Iterator for Events {
    type Item = std::io::Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(end) = find(&self.buf, b"\n\n") {
                let event: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&event);
                let data: Vec<&str> = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return Some(Ok(data.join("\n")));
            }
            match self.reader.next_chunk() {
                Ok(Some(c)) => self.buf.extend_from_slice(&c),
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends one request (`body` as JSON when given) and reads the response head.
pub fn request(
    ep: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    extra_headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let stream = TcpStream::connect(&ep.host)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        ep.host
    );
    if let Some(key) = &ep.api_key {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    for (k, v) in extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let mut w = stream.try_clone()?;
    w.write_all(head.as_bytes())?;
    if let Some(b) = body {
        w.write_all(b)?;
    }
    w.flush()?;
    let mut inner = BufReader::new(stream);
    let mut line = String::new();
    inner.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if inner.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let chunked = get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length = get("content-length").and_then(|v| v.parse::<usize>().ok());
    let reader = BodyReader {
        inner,
        left: if chunked { None } else { length },
        until_close: !chunked && length.is_none(),
        done: false,
    };
    Ok(Response {
        status,
        headers,
        reader,
    })
}

/// POST with a JSON body.
pub fn post_json(ep: &Endpoint, path: &str, body: &serde_json::Value) -> std::io::Result<Response> {
    request(ep, "POST", path, Some(body.to_string().as_bytes()), &[])
}

/// GET.
pub fn get(ep: &Endpoint, path: &str) -> std::io::Result<Response> {
    request(ep, "GET", path, None, &[])
}
