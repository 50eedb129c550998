//! The client of a node's HTTP API, for the CLI, the demo, the bench and the tests.
//!
//! Built on reqwest with rustls (ring, the provider libp2p's QUIC already links),
//! so `--api https://…` works; a private CA or a self-signed certificate is
//! trusted with `--cacert`. Connections are kept alive and reused. Every
//! response body is bounded: a body over [`MAX_RESPONSE_BYTES`] is an error,
//! never silently cut, and each Server-Sent Event is bounded too.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// Largest response body read (a module or an output with room to spare).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Largest single Server-Sent Event (its `data:` lines together).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// How long a connection may take to be established.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on one request, headers to last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL is not `http://` or `https://` with a host.
    #[error("unsupported URL {0}: expected http://host:port or https://host:port")]
    Url(String),
    /// The CA certificate file could not be read or parsed.
    #[error("CA certificate {path}: {message}")]
    CaCert {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Connecting, TLS, sending or reading failed (the chain of causes is in the message).
    #[error("{0}")]
    Transport(String),
    /// The request took longer than its bound.
    #[error("timed out")]
    Timeout,
    /// The response body is larger than the client reads.
    #[error("response body exceeds {limit} bytes")]
    TooLarge {
        /// The bound.
        limit: usize,
    },
    /// The node answered with an error status.
    #[error("HTTP {status}: {message}")]
    Status {
        /// Status code.
        status: u16,
        /// The node's `error.code`, when it sent one.
        code: Option<String>,
        /// The node's `error.message`, or the body.
        message: String,
    },
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            return Self::Timeout;
        }
        // reqwest's Display names only the outermost layer; the cause (refused,
        // certificate unknown...) is what a user needs.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        // An https:// URL for a node that serves plain HTTP: rustls reads the HTTP
        // answer as a TLS record of an unknown type.
        if message.contains("InvalidContentType") || message.contains("corrupt message") {
            message.push_str(
                " (the node does not answer TLS there: if it serves plain HTTP, use an http:// URL)",
            );
        }
        Self::Transport(message)
    }
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
    /// The status as an error when it is not 2xx, carrying the node's error message.
    pub fn error_for_status(self) -> Result<Self, ClientError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let v = self.json();
        let field = |k: &str| {
            v.as_ref()
                .and_then(|v| v["error"][k].as_str().map(str::to_owned))
        };
        Err(ClientError::Status {
            status: self.status,
            code: field("code"),
            message: field("message")
                .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned()),
        })
    }
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("plasm/", env!("CARGO_PKG_VERSION")))
}

/// A client bound to one node's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    timeout: Duration,
}

impl ApiClient {
    /// A client for the API at `base` (e.g. `https://node.example:4611`), with an
    /// optional bearer token and an optional PEM file of extra trusted CA certificates.
    pub fn new(
        base: &str,
        token: Option<String>,
        cacert: Option<&Path>,
    ) -> Result<Self, ClientError> {
        // `http://host:4611/v1` and `http://host:4611/` name the same API: the paths
        // this client asks for start with `/v1/`.
        let base = base.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base).to_owned();
        let valid = ["http://", "https://"]
            .iter()
            .any(|p| base.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
        if !valid {
            return Err(ClientError::Url(base));
        }
        let mut b = builder();
        if let Some(path) = cacert {
            let ca_err = |message: String| ClientError::CaCert {
                path: path.display().to_string(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let config = crate::apiclient_tls::cacert_config(&pem).map_err(ca_err)?;
            b = b.use_preconfigured_tls(config);
        }
        let http = b.build()?;
        Ok(Self {
            base,
            token,
            http,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Bounds each request (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// One request; any status is returned as a response.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<HttpResponse, ClientError> {
        let url = format!("{}{path}", self.base);
        send(
            &self.http,
            method,
            &url,
            self.token.as_deref(),
            (!body.is_empty()).then_some("application/json"),
            body,
            self.timeout,
        )
        .await
    }

    /// One request; a non-2xx answer is a [`ClientError::Status`].
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<HttpResponse, ClientError> {
        self.request(method, path, body).await?.error_for_status()
    }

    /// Follows a Server-Sent Events stream, calling `on_event(event, data)` for
    /// each event until the stream ends or `on_event` returns false. Returns the
    /// status; a non-200 answer calls nothing.
    pub async fn events(
        &self,
        path: &str,
        on_event: impl FnMut(&str, &str) -> bool,
    ) -> Result<u16, ClientError> {
        let url = format!("{}{path}", self.base);
        follow_resuming(&self.http, &url, self.token.as_deref(), on_event).await
    }
}

/// The shared client of the free functions (plain HTTP and the system's CAs).
fn shared() -> Result<&'static reqwest::Client, ClientError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let c = builder().build()?;
    Ok(CLIENT.get_or_init(|| c))
}

/// Sends one request to a full URL and reads the whole response (any status).
pub async fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, ClientError> {
    send(shared()?, method, url, token, content_type, body, timeout).await
}

/// Follows a Server-Sent Events stream at a full URL (see [`ApiClient::events`]).
pub async fn events(
    url: &str,
    token: Option<&str>,
    on_event: impl FnMut(&str, &str) -> bool,
) -> Result<u16, ClientError> {
    follow_resuming(shared()?, url, token, on_event).await
}

/// Times a dropped event stream is resumed (with `Last-Event-ID`) before the
/// caller hears that it ended.
const RESUMES: u32 = 5;

/// Follows an event stream, reconnecting with `Last-Event-ID` when it breaks or
/// ends before `on_event` said stop (a node restarting, a proxy timing out).
async fn follow_resuming(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    mut on_event: impl FnMut(&str, &str) -> bool,
) -> Result<u16, ClientError> {
    let mut last_id = None;
    let mut tries = 0;
    loop {
        let attempt = follow_events(http, url, token, &mut last_id, &mut on_event).await;
        match attempt {
            Ok((status, true)) => return Ok(status),
            Ok((status, false)) if status != 200 => return Ok(status),
            // An answer that is not a stream, or too large, will not get better.
            Err(e @ (ClientError::TooLarge { .. } | ClientError::Url(_))) => return Err(e),
            other if tries >= RESUMES => return other.map(|(status, _)| status),
            _ => {}
        }
        tries += 1;
        tokio::time::sleep(Duration::from_millis(200 << tries)).await;
    }
}

async fn send(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, ClientError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ClientError::Url(url.to_owned()));
    }
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| ClientError::Transport(format!("invalid method {method}")))?;
    let mut req = http.request(method, url).timeout(timeout);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(ct) = content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    if !body.is_empty() {
        req = req.body(body.to_vec());
    }
    let mut resp = req.send().await?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(ClientError::TooLarge {
            limit: MAX_RESPONSE_BYTES,
        });
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(ClientError::TooLarge {
                limit: MAX_RESPONSE_BYTES,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(HttpResponse {
        status,
        headers,
        body: out,
    })
}

/// One connection of an event stream: the status, and whether `on_event` said stop.
async fn follow_events(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    last_id: &mut Option<String>,
    on_event: &mut impl FnMut(&str, &str) -> bool,
) -> Result<(u16, bool), ClientError> {
    let mut req = http
        .get(url)
        .header(reqwest::header::ACCEPT, "text/event-stream");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(id) = last_id.as_deref() {
        req = req.header("Last-Event-ID", id);
    }
    let mut resp = req.send().await?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Ok((status, false));
    }
    let mut parser = SseParser::default();
    while let Some(chunk) = resp.chunk().await? {
        for (event, data) in parser.feed(&chunk)? {
            if parser.id.is_some() {
                last_id.clone_from(&parser.id);
            }
            if !on_event(&event, &data) {
                return Ok((status, true));
            }
        }
    }
    Ok((status, false))
}

/// An incremental `text/event-stream` parser with bounded buffers.
#[derive(Debug, Default)]
struct SseParser {
    line: Vec<u8>,
    event: String,
    data: String,
    /// The last `id:` seen (the stream's position, for `Last-Event-ID`).
    id: Option<String>,
}

impl SseParser {
    /// Feeds bytes; returns the events completed by them.
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<(String, String)>, ClientError> {
        let mut done = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                if self.line.len() + self.data.len() > MAX_EVENT_BYTES {
                    return Err(ClientError::TooLarge {
                        limit: MAX_EVENT_BYTES,
                    });
                }
                continue;
            }
            let raw = std::mem::take(&mut self.line);
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                if !self.data.is_empty() {
                    done.push((
                        std::mem::take(&mut self.event),
                        std::mem::take(&mut self.data),
                    ));
                }
                self.event.clear();
            } else if let Some(v) = line.strip_prefix("id:") {
                self.id = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("event:") {
                self.event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(
            p.feed(b"event: state\r\ndata: {\"a\"")
                .expect("feed")
                .is_empty()
        );
        let got = p
            .feed(b":1}\n\n: comment\n\ndata: x\ndata: y\n\n")
            .expect("feed");
        assert_eq!(
            got,
            vec![
                ("state".to_owned(), "{\"a\":1}".to_owned()),
                (String::new(), "x\ny".to_owned())
            ]
        );
    }

    #[test]
    fn sse_event_size_is_bounded() {
        let mut p = SseParser::default();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert!(matches!(p.feed(&big), Err(ClientError::TooLarge { .. })));
    }

    #[test]
    fn urls_and_ca_files_are_checked() {
        assert!(matches!(
            ApiClient::new("ftp://x", None, None),
            Err(ClientError::Url(_))
        ));
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        assert!(matches!(
            ApiClient::new("https://127.0.0.1:1", None, Some(&path)),
            Err(ClientError::CaCert { .. })
        ));
    }
}
