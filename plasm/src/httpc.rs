//! A minimal HTTP/1.0 client for the CLI's API commands, the demo and the tests.
//!
//! It speaks plain HTTP to a node's API (loopback by default), one request per
//! connection, the body delimited by the connection's end. It exists so the
//! binary carries no TLS stack or general-purpose client; a remote API behind TLS
//! is reached with curl or the PHP SDK.

use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest response body read.
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not `http://host:port/path`.
    #[error("unsupported URL {0}: expected http://host:port/...")]
    Url(String),
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The response is not HTTP.
    #[error("malformed HTTP response")]
    Malformed,
    /// The request took too long.
    #[error("timed out")]
    Timeout,
}

/// A response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn split(url: &str) -> Result<(String, String), HttpError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HttpError::Url(url.to_owned()))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if !host.contains(':') {
        return Err(HttpError::Url(url.to_owned()));
    }
    Ok((host.to_owned(), path.to_owned()))
}

async fn send(
    method: &str,
    url: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<BufReader<TcpStream>, HttpError> {
    let (host, path) = split(url)?;
    let mut stream = TcpStream::connect(&host).await?;
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    Ok(BufReader::new(stream))
}

async fn read_head(
    reader: &mut BufReader<TcpStream>,
) -> Result<(u16, Vec<(String, String)>), HttpError> {
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(HttpError::Malformed)?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    Ok((status, headers))
}

/// Sends one request and reads the whole response.
pub async fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    tokio::time::timeout(timeout, async {
        let mut reader = send(method, url, token, content_type, body).await?;
        let (status, headers) = read_head(&mut reader).await?;
        let mut body = Vec::new();
        reader.take(MAX_RESPONSE).read_to_end(&mut body).await?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    })
    .await
    .map_err(|_| HttpError::Timeout)?
}

/// GETs a Server-Sent Events stream and calls `on_event(event, data)` for each
/// event until the stream ends or `on_event` returns false.
pub async fn events(
    url: &str,
    token: Option<&str>,
    mut on_event: impl FnMut(&str, &str) -> bool,
) -> Result<u16, HttpError> {
    let mut reader = send("GET", url, token, None, b"").await?;
    let (status, _) = read_head(&mut reader).await?;
    if status != 200 {
        return Ok(status);
    }
    let (mut event, mut data) = (String::new(), String::new());
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(status);
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            if !data.is_empty() && !on_event(&event, &data) {
                return Ok(status);
            }
            event.clear();
            data.clear();
        } else if let Some(v) = l.strip_prefix("event:") {
            event = v.trim().to_owned();
        } else if let Some(v) = l.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
}
